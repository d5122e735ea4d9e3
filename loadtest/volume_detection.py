"""Volume-spike detection, `stream` against `sweep`, side by side in one run.

Two appliances run every job at the same time, each against its own fake
Binance (same synthetic market, every subscribed kline pushed every 250 ms)
and its own fake backend (every request logged with its arrival time):

  A: VOLSPIKE_VOLUME_SOURCE=stream, real clock;
  B: VOLSPIKE_VOLUME_SOURCE=sweep, its clock shifted so its 5-minute sweep
     falls just after the last injection (the sweep's best case: a spike
     waits at most one injection window, not a whole 5 minutes).

After A has read its previous hours and its streams flow, the same spike is
injected into both fakes every --spike-interval seconds (GET /__spike: the
symbol's open hour goes to 4x its previous hour + 3 M). Latency per spike is
the fake backend's arrival time of the SPIKE post minus the event time `E` of
the first kline push carrying the new volume (A; B has no kline stream, so
from the injection instant). Also measured over the injection window:
Binance weight of /fapi/v1/klines (the volume job's only REST call in steady
state), CPU of a core and VmHWM of each appliance.
"""

import json
import os
import subprocess
import time

SPIKE_PATH = "/api/volume-alerts/ingest"


def quantile(values, q):
    """Nearest-rank quantile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    rank = max(0, min(len(s) - 1, -(-int(q * len(s) * 1000) // 1000) - 1))
    return s[rank]


def start_fakes(b, symbols, latency_ms, tag):
    """One fake Binance and one logging fake backend; (rest, ws, backend, log path)."""
    fb = b.procs.start(
        [b.args.fake_binance, "--rest", "127.0.0.1:0", "--ws", "127.0.0.1:0",
         "--symbols", str(symbols), "--latency-ms", str(latency_ms), "--ws-interval-ms", "1000"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(b.tmp, f"fake-binance-{tag}.log"), "wb"))
    line = b.ready_line(fb, "READY", 30)
    rest, ws = b.field(line, "rest"), b.field(line, "ws")
    posts = os.path.join(b.tmp, f"backend-{tag}.jsonl")
    be = b.procs.start(
        [b.args.fake_backend, "--addr", "127.0.0.1:0", "--log", posts],
        stdout=subprocess.PIPE, stderr=open(os.path.join(b.tmp, f"fake-backend-{tag}.log"), "wb"))
    backend = b.field(b.ready_line(be, "READY", 30), "url")
    return rest, ws, backend, posts


def first_spike_posts(path):
    """symbol -> arrival ms of its first SPIKE post."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                body = r.get("body")
                if isinstance(body, str):
                    try:
                        body = json.loads(body)
                    except ValueError:
                        continue
                if r.get("path") != SPIKE_PATH or not isinstance(body, dict):
                    continue
                if body.get("alertType") != "SPIKE":
                    continue
                sym, at = body.get("symbol"), r.get("received_at_ms")
                if sym and at is not None and sym not in out:
                    out[sym] = at
    except OSError:
        pass
    return out


def klines_weight(b, rest, since_ms):
    stats = b.http_json(f"{rest}/__stats?since={since_ms}") or {}
    return stats.get("paths", {}).get("/fapi/v1/klines", {}).get("weight", 0)


def run(b, spikes, interval_s, symbols, latency_ms):
    """Runs the phase; returns the figures. `b` gives the bench helpers."""
    fakes = {tag: start_fakes(b, symbols, latency_ms, tag) for tag in ("stream", "sweep")}
    names = [f"SYM{i:04d}USDT" for i in range(10, symbols - 1, max(1, (symbols - 12) // spikes))][:spikes]
    procs = {}

    def appliance(tag, extra):
        rest, ws, backend, _ = fakes[tag]
        addr = f"127.0.0.1:{b.free_port()}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BACKEND_URL": backend, "ALERT_INGEST_API_KEY": "bench-key",
            "BINANCE_FAPI_URL": rest, "BINANCE_WS_URL": ws,
            "VOLSPIKE_STATE_DIR": os.path.join(b.tmp, f"state-{tag}"),
            "VOLSPIKE_HTTP_ADDR": addr, "VOLSPIKE_LOG": "info",
            "VOLSPIKE_VOLUME_SOURCE": tag,
        }
        env.update(b.args.env)
        env.update(extra)
        logpath = os.path.join(b.tmp, f"volspike-{tag}.log")
        child = b.procs.start([b.args.volspike, "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(logpath, "wb"))
        procs[tag] = (child, f"http://{addr}", logpath)

    appliance("stream", {})
    rest_a = fakes["stream"][0]
    b.log("volume detection: stream-mode appliance started; waiting for its previous hours and streams")
    b.wait_for("the stream appliance's previous-hour reads", 180,
               lambda: (b.http_json(f"{rest_a}/__stats") or {}).get("paths", {})
               .get("/fapi/v1/klines", {}).get("requests", 0) >= symbols, every=1.0)
    time.sleep(15)  # steady state: every stream flowing, the seed's minute over

    window_s = spikes * interval_s
    inject_start = int(time.time() * 1000)
    sweep_at = inject_start + window_s * 1000 + 10_000
    # B's clock: its :10 slot (a 5-minute boundary, not hh:00) at sweep_at.
    shifted = sweep_at // 3_600_000 * 3_600_000 + 10 * 60_000
    appliance("sweep", {"VOLSPIKE_CLOCK_OFFSET_MS": str(shifted - sweep_at)})
    cpu0 = {t: (b.cpu_seconds(p[0].pid), time.monotonic()) for t, p in procs.items()}
    b.log(f"volume detection: injecting {len(names)} spikes, one every {interval_s} s, into both fakes")
    injected = {}
    for i, sym in enumerate(names):
        target = inject_start / 1000 + i * interval_s
        time.sleep(max(0.0, target - time.time()))
        for tag in ("stream", "sweep"):
            r = b.http_json(f"{fakes[tag][0]}/__spike?symbol={sym}")
            if r and tag == "sweep":
                injected[sym] = r["injectedMs"]
    cpu1 = {t: (b.cpu_seconds(p[0].pid), time.monotonic()) for t, p in procs.items()}
    inject_end = int(time.time() * 1000)
    b.log("volume detection: waiting for the sweep appliance's tick and every post")
    deadline = time.time() + max(60, (sweep_at - time.time() * 1000) / 1000 + 90)
    while time.time() < deadline:
        if all(len(first_spike_posts(fakes[t][3])) >= len(names) for t in fakes):
            break
        time.sleep(1)

    result = {"spikes": len(names), "interval_s": interval_s}
    marks = {m["symbol"]: m for m in (b.http_json(f"{rest_a}/__spikes") or [])}
    for tag in ("stream", "sweep"):
        posts = first_spike_posts(fakes[tag][3])
        lat = []
        for sym in names:
            start = (marks.get(sym, {}).get("firstEventMs") if tag == "stream" else injected.get(sym))
            if start is not None and sym in posts:
                lat.append(posts[sym] - start)
        child, base, _ = procs[tag]
        st = b.proc_status(child.pid)
        c0, m0 = cpu0[tag]
        c1, m1 = cpu1[tag]
        minutes = (inject_end - inject_start) / 60_000
        health = b.http_json(f"{base}/health") or {}
        result[tag] = {
            "detected": len(lat),
            "p50_ms": quantile(lat, 0.5),
            "p99_ms": quantile(lat, 0.99),
            "max_ms": max(lat) if lat else None,
            "klines_weight_per_min": klines_weight(b, fakes[tag][0], inject_start) / max(minutes, 1e-9)
            if tag == "stream" else None,
            "klines_weight_total": klines_weight(b, fakes[tag][0], inject_start),
            "cpu_pct": (c1 - c0) / (m1 - m0) * 100 if m1 > m0 else None,
            "rss_peak_kb": st.get("VmHWM"),
            "latency_metrics": health.get("volumeLatency"),
            "summary": health.get("jobs", {}).get("volume_spike", {}).get("lastSummary"),
        }
    for child, _, _ in procs.values():
        b.procs.stop(child)
    result["window_min"] = (inject_end - inject_start) / 60_000
    return result


def rows(v, row, mib):
    """The table rows of the phase, through the bench's `row`."""
    s, w = v["stream"], v["sweep"]

    def ms(x):
        return "n/a" if x is None else f"{x:.0f} ms"

    row(f"volume spike latency p50 / p99, stream ({s['detected']}/{v['spikes']} spikes, E -> POST)",
        f"{ms(s['p50_ms'])} / {ms(s['p99_ms'])}",
        ref=f"sweep {ms(w['p50_ms'])} / {ms(w['p99_ms'])} ({w['detected']} spikes, injection -> POST)",
        ratio=f"{w['p99_ms'] / s['p99_ms']:.0f}x" if s["p99_ms"] and w["p99_ms"] else "n/a",
        target="p99 <= 1000 ms", met=s["p99_ms"] is not None and s["p99_ms"] <= 1000
        and s["detected"] >= 50)
    row("volume job REST weight per minute, steady (stream)",
        f"{s['klines_weight_per_min']:.1f}/min",
        ref=f"sweep: {w['klines_weight_total']} per 5-minute tick ({w['klines_weight_total'] / 5:.0f}/min mean)",
        target="<= 5/min", met=s["klines_weight_per_min"] <= 5)
    row("CPU, all jobs, stream mode (injection window)",
        "n/a" if s["cpu_pct"] is None else f"{s['cpu_pct']:.2f} % of a core",
        ref="n/a" if w["cpu_pct"] is None else f"sweep {w['cpu_pct']:.2f} %",
        target="<= 1.5 %", met=s["cpu_pct"] is not None and s["cpu_pct"] <= 1.5)
    row("RSS peak (VmHWM), all jobs, stream mode", mib(s["rss_peak_kb"]),
        ref=f"sweep {mib(w['rss_peak_kb'])}", target="<= 12 MiB",
        met=s["rss_peak_kb"] is not None and s["rss_peak_kb"] <= 12 * 1024)
