"""The volume-sweep minute of the real appliance, measured against the fakes.

Usage (from the repository root, after `cargo build --bins -p volspike -p volspike-fakes`):

    python3 loadtest/sweep_minute.py [--symbols 600] [--latency-ms 50] [--target-dir target/debug]

Runs `volspike run` (every job, default 40 % weight ceiling) against the fake
Binance (N synthetic symbols, about a third of them liquid) and the fake
backend, its clock shifted so that a 5-minute boundary falls a few seconds
after start. The first boundary fills the liquid set (open_interest starts
polling it); the second, five minutes later, is a steady-state sweep minute:
volume sweep + liquid_universe + two open-interest polls. Prints the weight
the fake saw per minute, the governor's reservation and sweep cap, and every
open_interest tick of that minute with its duration, so a poll held or
skipped by the sweep shows. About seven minutes; everything on 127.0.0.1.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (Processes, field, free_port, http_json, ready_line,  # noqa: E402
                   wait_for)

LEAD_MS = 10_000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--target-dir", default="target/debug")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="volspike-sweep-minute-")
    procs = Processes()
    try:
        fb = procs.start([os.path.join(a.target_dir, "fake-binance"), "--rest", "127.0.0.1:0",
                          "--ws", "127.0.0.1:0", "--symbols", str(a.symbols),
                          "--latency-ms", str(a.latency_ms)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = ready_line(fb, "READY", 30)
        rest, ws = field(line, "rest"), field(line, "ws")
        be = procs.start([os.path.join(a.target_dir, "fake-backend"), "--addr", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        backend = field(ready_line(be, "READY", 30), "url")
        now = int(time.time() * 1000)
        first = -(-(now + LEAD_MS) // 60_000) * 60_000
        offset = (-first) % 300_000
        addr = f"127.0.0.1:{free_port()}"
        logpath = os.path.join(tmp, "volspike.log")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BACKEND_URL": backend,
               "ALERT_INGEST_API_KEY": "k", "BINANCE_FAPI_URL": rest, "BINANCE_WS_URL": ws,
               "VOLSPIKE_STATE_DIR": os.path.join(tmp, "state"), "VOLSPIKE_HTTP_ADDR": addr,
               "VOLSPIKE_CLOCK_OFFSET_MS": str(offset), "VOLSPIKE_LOG": "info"}
        procs.start([os.path.join(a.target_dir, "volspike"), "run"], env=env,
                    stdout=subprocess.DEVNULL, stderr=open(logpath, "wb"))
        wait_for("/health", 30, lambda: http_json(f"http://{addr}/health"))
        second = first + 300_000
        end = second + 75_000
        print(f"sweep minutes at {first} (fills the liquid set) and {second} (measured); "
              f"waiting {(end - time.time() * 1000) / 1000:.0f} s", flush=True)
        governor = {}
        while time.time() * 1000 < end:
            h = http_json(f"http://{addr}/health") or {}
            b = h.get("binance") or {}
            if b.get("reserved_per_window"):
                governor = b
            time.sleep(2)
        stats = http_json(f"{rest}/__stats?since={first}") or {}
        print("weight per minute (fake Binance):")
        for w in stats.get("windows", []):
            mark = "  <- measured sweep minute" if w["start"] == second else ""
            print(f"  {w['start']}: {w['weight']} weight, {w['requests']} requests{mark}")
        print(f"governor: ceiling {governor.get('ceiling')}, reserved for open_interest "
              f"{governor.get('reserved_per_window')}, sweep cap {governor.get('yielding_cap')}")
        print("paths:", {k: v["weight"] for k, v in stats.get("paths", {}).items()})
        log = open(logpath, encoding="utf-8", errors="replace").read()
        print("ticks of the measured minute (open_interest, volume_spike, liquid_universe):")
        for line in log.splitlines():
            if ("open_interest" in line or "volume_spike" in line or "liquid_universe" in line
                    or "skipping" in line or "yields" in line or "reached its" in line):
                if re.search(r"duration_ms=|skipping|reached its|waiting", line):
                    print("  " + line[:240])
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
