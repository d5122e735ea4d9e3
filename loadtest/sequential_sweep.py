"""The old design's volume sweep, as reference: one request at a time.

The old Python script read the universe, then asked Binance for each
symbol's hourly klines with `requests` in a loop. This does the same against
the fake Binance (never a real one) and prints one JSON line:
{"symbols": N, "seconds": S, "errors": E, "weight": W}.

usage: python sequential_sweep.py http://127.0.0.1:PORT [--limit 2] [--timeout 120]
"""

import argparse
import json
import sys
import time
from urllib.parse import urlparse

import requests


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rest")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on the sweep after this many seconds")
    args = parser.parse_args()
    host = urlparse(args.rest).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to sweep {args.rest}: the reference only runs against a local fake")

    # A keep-alive session: kinder to the old design than a new connection a call.
    session = requests.Session()
    info = session.get(f"{args.rest}/fapi/v1/exchangeInfo", timeout=10).json()
    symbols = [
        s["symbol"] for s in info["symbols"]
        if s.get("contractType") == "PERPETUAL"
        and s.get("quoteAsset") == "USDT"
        and s.get("status") == "TRADING"
    ]
    errors = 0
    weight = 0
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    done = 0
    for symbol in symbols:
        if time.monotonic() > deadline:
            break
        try:
            r = session.get(
                f"{args.rest}/fapi/v1/klines",
                params={"symbol": symbol, "interval": "1h", "limit": args.limit},
                timeout=10,
            )
            if r.status_code != 200:
                errors += 1
            else:
                r.json()
            weight = int(r.headers.get("X-MBX-USED-WEIGHT-1M", weight))
        except requests.RequestException:
            errors += 1
        done += 1
    seconds = time.monotonic() - started
    print(json.dumps({"symbols": done, "universe": len(symbols), "seconds": seconds,
                      "errors": errors}))


if __name__ == "__main__":
    main()
