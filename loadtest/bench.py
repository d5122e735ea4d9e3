"""volspike against the old design: drives the fakes, the real static
binary and the Python references, then prints one table.

Run through loadtest/run.sh, which builds what is measured and installs wrk and
the Python packages first. Everything listens on 127.0.0.1; nothing reaches
Binance or a real backend. Every process started here is stopped on exit,
on Ctrl-C and on SIGTERM.

Phases, in order (each bounded in time):
  1. fake Binance (N symbols, markPrice@arr every second, 50 ms REST latency)
     and fake backend;
  2. start → READY=1 of `volspike run` (NOTIFY_SOCKET read here), median of
     several runs;
  3. `volspike run` with every available job for --seconds, its wall clock
     shifted (VOLSPIKE_CLOCK_OFFSET_MS) so the 5-minute jobs, the volume
     sweep among them, run a few seconds after start: RSS every second, CPU
     from /proc, Binance weight from the fake's /__stats and the governor;
  4. the funding API of that process under wrk;
  5. the reference funding API (FastAPI + uvicorn, 1 worker, same JSON)
     under the same wrk command;
  6. the reference sweep: the same klines, one request at a time, Python
     `requests`, against the same fake.
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.request

import volume_detection

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = 1024  # /proc/*/status figures are in kB
MIB = 1024 * 1024
SWEEP_PERIOD_MS = 300_000
# The 5-minute jobs run at the first real minute boundary at least this
# long after the main run starts (so 8 to 68 s in).
LEAD_MS = 8_000
# Time the main run needs at least: jobs due by 68 s, their whole minute
# inside the run.
MIN_SECONDS = 130


class Bench(Exception):
    """A phase could not complete; the message says why."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: stop like on Ctrl-C."""


def _raise_interrupted(signum, _frame):
    raise Interrupted(f"signal {signum}")


class Processes:
    """Every child started here, stopped (TERM, then KILL) on cleanup."""

    def __init__(self):
        self.children = []

    def start(self, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        child = subprocess.Popen(cmd, **kw)
        self.children.append(child)
        return child

    def stop(self, child, timeout=15.0):
        if child.poll() is None:
            try:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
            except ProcessLookupError:
                pass
        if child in self.children:
            self.children.remove(child)

    def stop_all(self):
        for child in reversed(list(self.children)):
            try:
                self.stop(child, timeout=10.0)
            except Exception as e:  # keep stopping the others
                print(f"bench: could not stop pid {child.pid}: {e}", file=sys.stderr)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def ready_line(child, prefix, timeout):
    """The first stdout line of `child` starting with `prefix`."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = child.stdout.fileno()
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise Bench(f"{child.args[0]} exited with {child.returncode} before {prefix}")
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
    raise Bench(f"{child.args[0]} printed no {prefix} line in {timeout} s")


def field(line, name):
    m = re.search(rf"{name}=(\S+)", line)
    if not m:
        raise Bench(f"no {name}= in {line!r}")
    return m.group(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body bytes); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def http_json(url, timeout=5.0):
    status, body = http_get(url, timeout)
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def wait_for(what, timeout, probe, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise Bench(f"timed out after {timeout} s waiting for {what}")


def proc_status(pid):
    """kB figures of /proc/<pid>/status (VmRSS, VmHWM, Threads...)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """utime + stime of `pid`, seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        after = f.read().rpartition(")")[2].split()
    return (int(after[11]) + int(after[12])) / CLOCK_TICKS


def clock_offset_ms(lead_ms):
    """(VOLSPIKE_CLOCK_OFFSET_MS, seconds until the jobs run): the appliance's
    clock shifted by whole minutes so that its next 5-minute boundary is the
    first real minute boundary at least `lead_ms` away. As in production, the
    5-minute jobs then start with a real (Binance weight) minute, so the
    busiest minute is measured, not split across two."""
    now = int(time.time() * 1000)
    target = -(-(now + lead_ms) // 60_000) * 60_000  # real minute boundary
    offset = (-target) % SWEEP_PERIOD_MS  # a multiple of 60 s
    return offset, (target - now) / 1000, target


class Setup:
    def __init__(self, args, procs, tmp):
        self.args = args
        self.procs = procs
        self.tmp = tmp
        self.rest = self.ws = self.backend = None

    def start_fakes(self):
        a = self.args
        fb = self.procs.start(
            [a.fake_binance, "--rest", "127.0.0.1:0", "--ws", "127.0.0.1:0",
             "--symbols", str(a.symbols), "--latency-ms", str(a.latency_ms),
             "--ws-interval-ms", "1000"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.tmp, "fake-binance.log"), "wb"))
        line = ready_line(fb, "READY", 30)
        self.rest, self.ws = field(line, "rest"), field(line, "ws")
        be = self.procs.start(
            [a.fake_backend, "--addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.tmp, "fake-backend.log"), "wb"))
        self.backend = field(ready_line(be, "READY", 30), "url")
        for url in (self.rest, self.ws, self.backend):
            if not re.match(r"^(http|ws)://127\.0\.0\.1:\d+", url):
                raise Bench(f"a fake is not on loopback: {url}")
        log(f"fake Binance {self.rest} {self.ws}; fake backend {self.backend}")

    def volspike_env(self, state_dir, http_addr, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BACKEND_URL": self.backend,
            "ALERT_INGEST_API_KEY": "bench-key",
            "BINANCE_FAPI_URL": self.rest,
            "BINANCE_WS_URL": self.ws,
            "VOLSPIKE_STATE_DIR": state_dir,
            "VOLSPIKE_HTTP_ADDR": http_addr,
            "VOLSPIKE_LOG": "info",
        }
        env.update(self.args.env)
        env.update(extra or {})
        return env


def start_to_ready(setup, runs):
    """Spawn → READY=1 on NOTIFY_SOCKET, `runs` times; seconds each."""
    times = []
    for i in range(runs):
        sock_path = os.path.join(setup.tmp, f"notify-{i}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        try:
            state = os.path.join(setup.tmp, f"ready-state-{i}")
            env = setup.volspike_env(state, f"127.0.0.1:{free_port()}",
                                     {"NOTIFY_SOCKET": sock_path})
            logf = open(os.path.join(setup.tmp, f"ready-{i}.log"), "wb")
            t0 = time.monotonic()
            child = setup.procs.start([setup.args.volspike, "run"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=logf)
            elapsed = None
            deadline = t0 + 30
            while time.monotonic() < deadline and elapsed is None:
                r, _, _ = select.select([sock], [], [], 0.5)
                if r:
                    msg = sock.recv(65536).decode(errors="replace")
                    if "READY=1" in msg.split("\n"):
                        elapsed = time.monotonic() - t0
                elif child.poll() is not None:
                    break
            setup.procs.stop(child)
            if elapsed is None:
                raise Bench(f"no READY=1 from volspike (see {logf.name})")
            times.append(elapsed)
        finally:
            sock.close()
    return times


def main_run(setup, seconds):
    """`volspike run` with every job for `seconds`; returns figures and the
    still-running process (for the API load)."""
    state = os.path.join(setup.tmp, "state")
    addr = f"127.0.0.1:{free_port()}"
    offset, due_s, boundary_ms = clock_offset_ms(LEAD_MS)
    # The sweep's rows (duration, busiest minute) measure the REST sweep; the
    # stream mode is measured in the volume detection phase.
    env = setup.volspike_env(state, addr, {"VOLSPIKE_CLOCK_OFFSET_MS": str(offset),
                                           "VOLSPIKE_VOLUME_SOURCE": "sweep"})
    logpath = os.path.join(setup.tmp, "volspike.log")
    started_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    child = setup.procs.start([setup.args.volspike, "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(logpath, "wb"))
    base = f"http://{addr}"
    health = wait_for("/health", 30, lambda: http_json(f"{base}/health"))
    jobs = sorted(health.get("jobs", {}))
    log(f"volspike run: pid {child.pid}, {base}, jobs {', '.join(jobs)}; "
        f"measuring for {seconds} s (5-minute jobs due in {due_s:.0f} s)")
    pid = child.pid
    cpu0, c0 = cpu_seconds(pid), time.monotonic()
    rss = []
    governor_peak = 0
    last_health = health
    end = t0 + seconds
    next_health = 0.0
    while time.monotonic() < end:
        if child.poll() is not None:
            raise Bench(f"volspike exited with {child.returncode} during the run (see {logpath})")
        st = proc_status(pid)
        if "VmRSS" in st:
            rss.append(st["VmRSS"])
        now = time.monotonic()
        if now >= next_health:
            h = http_json(f"{base}/health")
            if h:
                last_health = h
                governor_peak = max(governor_peak, h.get("binance", {}).get("used_in_window", 0))
            next_health = now + 2.0
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    cpu1, c1 = cpu_seconds(pid), time.monotonic()
    ended_ms = int(time.time() * 1000)
    st = proc_status(pid)
    h = http_json(f"{base}/health") or last_health
    governor_peak = max(governor_peak, h.get("binance", {}).get("used_in_window", 0))
    stats = http_json(f"{setup.rest}/__stats?since={started_ms}") or {}
    vs = h.get("jobs", {}).get("volume_spike", {})
    log_text = open(logpath, encoding="utf-8", errors="replace").read()
    sweep_log_ms = None
    for line in log_text.splitlines():
        if "swept" in line and "duration_ms=" in line:
            sweep_log_ms = int(re.search(r"duration_ms=(\d+)", line).group(1))
    half = rss[len(rss) // 2:]
    return {
        "child": child,
        "base": base,
        "jobs": sorted(h.get("jobs", {})),
        "job_states": {k: (v.get("lastResult"), v.get("lastSummary") or v.get("lastError"))
                       for k, v in h.get("jobs", {}).items()},
        "rss_steady_kb": statistics.median(half) if half else None,
        "rss_peak_kb": st.get("VmHWM"),
        "threads": st.get("Threads"),
        "cpu_per_min": (cpu1 - cpu0) / ((c1 - c0) / 60.0),
        "window_s": c1 - c0,
        "governor_peak": governor_peak,
        "governor": h.get("binance", {}),
        "stats": stats,
        "started_ms": started_ms,
        "ended_ms": ended_ms,
        "boundary_ms": boundary_ms,
        "sweep_s": vs.get("lastDurationSeconds"),
        "sweep_log_ms": sweep_log_ms,
        "sweep_summary": vs.get("lastSummary") or vs.get("lastError"),
        "log": logpath,
    }


WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def write_wrk_script(tmp, symbols):
    path = os.path.join(tmp, "funding.lua")
    with open(path, "w", encoding="ascii") as f:
        f.write(WRK_LUA % ",".join(f'"/funding/{s}"' for s in symbols))
    return path


def wrk_command(args, script, base):
    return ["wrk", f"-t{args.wrk_threads}", f"-c{args.wrk_connections}",
            f"-d{args.wrk_seconds}s", "--latency", "--timeout", "5s", "-s", script, base]


def to_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(args, procs, script, base):
    cmd = wrk_command(args, script, base)
    child = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = child.communicate(timeout=args.wrk_seconds + 30)
    except subprocess.TimeoutExpired:
        procs.stop(child)
        raise Bench("wrk did not finish in time")
    procs.children.remove(child)
    text = out.decode(errors="replace")
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    lat = {p: to_ms(v, u) for p, v, u in
           re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or "99" not in lat:
        raise Bench(f"cannot read wrk's output:\n{text}")
    return {
        "rps": float(rps.group(1)),
        "p50": lat.get("50"),
        "p99": lat["99"],
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(0) if errors else None,
        "requests": int(total.group(1)) if total else None,
        "cmd": " ".join(cmd[:-3] + ["funding.lua", base]),
    }


def fastapi_reference(args, procs, tmp, data_path, script):
    port = free_port()
    logf = open(os.path.join(tmp, "uvicorn.log"), "wb")
    env = dict(os.environ, FUNDING_DATA=data_path)
    child = procs.start(
        [args.python, "-m", "uvicorn", "--app-dir", args.bench_dir, "fastapi_funding:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        env=env, stdout=logf, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("uvicorn", 60,
                 lambda: http_get(f"{base}/funding/BTCUSDT", timeout=2)[0] == 200
                 or child.poll() is not None, every=0.25)
        if child.poll() is not None:
            raise Bench(f"uvicorn exited (see {logf.name})")
        return run_wrk(args, procs, script, base)
    finally:
        procs.stop(child)


def sequential_sweep(args, procs, rest):
    child = procs.start([args.python, os.path.join(args.bench_dir, "sequential_sweep.py"),
                         rest, "--limit", "2", "--timeout", "180"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        procs.stop(child)
        raise Bench("the sequential sweep did not finish in 240 s")
    procs.children.remove(child)
    if child.returncode != 0:
        raise Bench(f"sequential sweep failed: {err.decode(errors='replace')}")
    return json.loads(out.decode().strip().splitlines()[-1])


def mib(kb):
    return f"{kb / 1024:.1f} MiB" if kb is not None else "n/a"


def ms(s):
    return f"{s * 1000:.0f} ms" if s is not None else "n/a"


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def table(args, r):
    rows = []

    def row(name, value, ref="", ratio="", target="", met=None):
        rows.append((name, value, ref, ratio, target, "" if target == "" else verdict(met)))

    if args.volume_only:
        volume_detection.rows(r["volume"], row, mib)
        return volume_table(args, r["volume"], rows)

    size = r["binary_size"]
    row("binary size (static musl, stripped)", f"{size / MIB:.2f} MiB", target="<= 10 MiB",
        met=size <= 10 * MIB)
    ready = r["ready"]
    med = statistics.median(ready)
    row(f"start -> READY=1 (median of {len(ready)})", ms(med),
        ref=f"min {ms(min(ready))}, max {ms(max(ready))}", target="<= 300 ms", met=med <= 0.3)
    m = r["main"]
    row("RSS peak (VmHWM), all jobs", mib(m["rss_peak_kb"]), target="<= 16 MiB",
        met=m["rss_peak_kb"] is not None and m["rss_peak_kb"] <= 16 * 1024)
    row("RSS steady (median VmRSS, last half)", mib(m["rss_steady_kb"]), target="<= 16 MiB",
        met=m["rss_steady_kb"] is not None and m["rss_steady_kb"] <= 16 * 1024)
    row("RSS peak incl. funding API load", mib(r["rss_after_load_kb"]))
    row("CPU seconds per minute", f"{m['cpu_per_min']:.2f} s/min",
        ref=f"{m['cpu_per_min'] / 60 * 100:.1f} % of a core")
    stats = m["stats"]
    windows = stats.get("windows", [])
    peak = max((w["weight"] for w in windows), default=0)
    # A 5-minute cycle is one minute holding the 5-minute jobs (the boundary
    # minute, inside the run) and four ordinary ones, at the rate seen in the
    # rest of the run (interval jobs such as open_interest).
    boundary = next((w["weight"] for w in windows if w["start"] == m["boundary_ms"]), None)
    rest_s = (m["ended_ms"] - m["started_ms"]) / 1000 - 60
    if boundary is not None and rest_s > 0:
        ordinary = (stats.get("weight", 0) - boundary) / rest_s * 60
        mean = (boundary + 4 * ordinary) / 5
    else:
        ordinary, mean = None, stats.get("weight", 0) / max(m["window_s"] / 60.0, 5.0)
    row("Binance weight, busiest minute (fake)", f"{peak} ({peak / 2400 * 100:.0f} %)",
        ref=f"governor peak {m['governor_peak']}", target="<= 960 (40 %)", met=peak <= 960)
    row("Binance weight, mean per minute (5-min cycle)", f"{mean:.0f} ({mean / 2400 * 100:.1f} %)",
        ref=(f"other minutes {ordinary:.0f}; " if ordinary is not None else "")
        + f"{stats.get('weight', 0)} in {m['window_s']:.0f} s",
        target="<= 960 (40 %)", met=mean <= 960)
    seq = r["sequential"]
    sweep = m["sweep_s"]
    ratio = (seq["seconds"] / sweep) if sweep else None
    row(f"volume sweep ({seq['symbols']} klines, {args.latency_ms} ms latency)",
        f"{sweep:.2f} s" if sweep is not None else "not run",
        ref=f"{seq['seconds']:.2f} s sequential", ratio=f"{ratio:.1f}x" if ratio else "n/a",
        target=">= 8x", met=None if ratio is None else ratio >= 8)
    api, ref_api = r["api"], r["fastapi"]
    rps_ratio = api["rps"] / ref_api["rps"] if ref_api["rps"] else None
    row("funding API requests/s", f"{api['rps']:.0f}", ref=f"{ref_api['rps']:.0f} FastAPI",
        ratio=f"{rps_ratio:.1f}x" if rps_ratio else "n/a", target=">= 10x",
        met=None if rps_ratio is None else rps_ratio >= 10)
    row("funding API latency p99", f"{api['p99']:.2f} ms", ref=f"{ref_api['p99']:.2f} ms FastAPI",
        ratio=f"{ref_api['p99'] / api['p99']:.1f}x" if api["p99"] else "", target="< 2 ms",
        met=api["p99"] < 2.0)
    row("funding API latency p50", f"{api['p50']:.2f} ms", ref=f"{ref_api['p50']:.2f} ms FastAPI")
    if r.get("volume"):
        volume_detection.rows(r["volume"], row, mib)

    headers = ("figure", "volspike", "old design / detail", "ratio", "target", "")
    widths = [max(len(str(x[i])) for x in rows + [headers]) for i in range(6)]
    lines = []
    lines.append(f"volspike bench: {args.symbols} symbols, markPrice@arr 1/s, "
                 f"{args.latency_ms} ms REST latency, run {m['window_s']:.0f} s")
    lines.append(f"jobs: {', '.join(m['jobs'])}"
                 + (f"; settings: {' '.join(f'{k}={v}' for k, v in args.env.items())}" if args.env else ""))
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines.append(fmt.format(*headers).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for x in rows:
        lines.append(fmt.format(*x).rstrip())
    lines.append("")
    lines.append(f"load: {api['cmd']} (same command for both; "
                 f"{api['requests']} vs {ref_api['requests']} requests, "
                 f"non-2xx {api['non2xx']} vs {ref_api['non2xx']})")
    if api["errors"] or ref_api["errors"]:
        lines.append(f"wrk socket errors: volspike {api['errors']}; FastAPI {ref_api['errors']}")
    lines.append("sequential sweep: Python requests, one keep-alive session, one call at a time")
    lines.append(f"volume_spike tick: {m['sweep_summary']}"
                 + (f" (log duration_ms={m['sweep_log_ms']})" if m["sweep_log_ms"] else ""))
    per_path = ", ".join(f"{p} {v['requests']}x/{v['weight']}w"
                         for p, v in sorted(stats.get("paths", {}).items()))
    lines.append(f"Binance calls in the run: {per_path or 'none'}")
    lines.append(f"threads at the end of the run: {m['threads']}")
    return "\n".join(lines)


def volume_table(args, v, rows):
    headers = ("figure", "volspike", "old design / detail", "ratio", "target", "")
    widths = [max(len(str(x[i])) for x in rows + [headers]) for i in range(6)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [f"volspike bench, volume detection only: {args.symbols} symbols, every kline 4/s, "
             f"{v['spikes']} spikes one every {v['interval_s']} s ({v['window_min']:.1f} min), "
             f"{args.latency_ms} ms REST latency, all jobs in both appliances",
             fmt.format(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*x).rstrip() for x in rows]
    for tag in ("stream", "sweep"):
        lines.append(f"{tag}: appliance's own latency figures {v[tag]['latency_metrics']}")
        lines.append(f"{tag}: volume_spike tick: {v[tag]['summary']}")
    return "\n".join(lines)


def bench_helpers(args, procs, tmp):
    """What volume_detection needs of this file."""
    return types.SimpleNamespace(
        args=args, procs=procs, tmp=tmp, log=log, ready_line=ready_line, field=field,
        free_port=free_port, http_json=http_json, wait_for=wait_for,
        cpu_seconds=cpu_seconds, proc_status=proc_status)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=150, help="length of the main run (default 150)")
    p.add_argument("--symbols", type=int, default=600)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--ready-runs", type=int, default=5)
    p.add_argument("--wrk-seconds", type=int, default=10)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--wrk-connections", type=int, default=8)
    p.add_argument("--volspike", required=True)
    p.add_argument("--fake-binance", required=True)
    p.add_argument("--fake-backend", required=True)
    p.add_argument("--python", default=sys.executable, help="python with fastapi, uvicorn, requests")
    p.add_argument("--bench-dir", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--spikes", type=int, default=60, help="volume spikes injected (default 60)")
    p.add_argument("--spike-interval", type=int, default=3, help="seconds between spikes (default 3)")
    p.add_argument("--volume-only", action="store_true",
                   help="only the volume detection phase (stream against sweep)")
    p.add_argument("--no-volume", action="store_true", help="skip the volume detection phase")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for volspike, e.g. VOLSPIKE_BINANCE_CONCURRENCY=12")
    args = p.parse_args()
    try:
        args.env = dict(kv.split("=", 1) for kv in args.env)
    except ValueError:
        p.error("--env takes KEY=VALUE")
    if args.seconds < MIN_SECONDS:
        p.error(f"--seconds must be at least {MIN_SECONDS} (the sweep starts up to 68 s in)")
    if args.seconds > 1800:
        p.error("--seconds is capped at 1800")

    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    procs = Processes()
    tmp = tempfile.mkdtemp(prefix="volspike-bench-")
    code = 0
    try:
        results = {"binary_size": os.stat(args.volspike).st_size}
        helpers = bench_helpers(args, procs, tmp)
        if args.volume_only:
            results["volume"] = volume_detection.run(
                helpers, args.spikes, args.spike_interval, args.symbols, args.latency_ms)
            print(table(args, results), flush=True)
            return code
        setup = Setup(args, procs, tmp)
        setup.start_fakes()
        log(f"start -> READY, {args.ready_runs} runs")
        results["ready"] = start_to_ready(setup, args.ready_runs)
        main = main_run(setup, args.seconds)
        results["main"] = main
        funding = http_json(f"{main['base']}/funding", timeout=10)
        if not funding or not funding.get("data"):
            raise Bench("volspike's /funding has no data")
        data_path = os.path.join(tmp, "funding.json")
        with open(data_path, "w", encoding="utf-8") as f:
            json.dump(funding, f)
        script = write_wrk_script(tmp, [e["symbol"] for e in funding["data"]])
        log(f"funding API of volspike under wrk for {args.wrk_seconds} s")
        results["api"] = run_wrk(args, procs, script, main["base"])
        results["rss_after_load_kb"] = proc_status(main["child"].pid).get("VmHWM")
        procs.stop(main["child"])
        log(f"reference: FastAPI/uvicorn under wrk for {args.wrk_seconds} s")
        results["fastapi"] = fastapi_reference(args, procs, tmp, data_path, script)
        log("reference: sequential sweep (Python requests, one call at a time)")
        results["sequential"] = sequential_sweep(args, procs, setup.rest)
        if not args.no_volume:
            log("volume detection: stream against sweep, side by side")
            results["volume"] = volume_detection.run(
                helpers, args.spikes, args.spike_interval, args.symbols, args.latency_ms)
        print(table(args, results), flush=True)
    except Bench as e:
        log(f"FAILED: {e}")
        code = 1
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); stopping everything")
        code = 130
    finally:
        procs.stop_all()
        if args.keep or code == 1:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
