#!/usr/bin/env bash
# Benchmarks volspike against the old Python design (not a test: it asserts
# nothing and is not part of tests/run.sh).
#
#   loadtest/run.sh [--seconds N] [--symbols N] [--latency-ms MS] [--keep] [--no-build]
#                   [--spikes N] [--spike-interval S] [--volume-only | --no-volume]
#
# Builds the static release binary and the fakes, installs wrk (Debian) and
# fastapi/uvicorn/requests (PyPI, into a venv under the cargo target dir),
# then runs loadtest/bench.py, which prints one table. Everything runs on
# 127.0.0.1 against fakes; every process it starts is stopped on exit and on
# Ctrl-C. Takes about --seconds (default 150) plus two minutes, plus the
# volume detection phase (stream against sweep side by side, about
# --spikes x --spike-interval plus two minutes; --volume-only runs just it
# and needs neither wrk nor the venv).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
volume_only=0
pass=()
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --volume-only) volume_only=1; pass+=("$arg") ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$arg") ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-target}
musl=x86_64-unknown-linux-musl
if [ "$build" = 1 ]; then
  echo "bench: building the static release binary and the fakes" >&2
  cargo build --release --locked --target "$musl" --bin volspike >&2
  cargo build --release --locked -p volspike-fakes --bin fake-binance --bin fake-backend >&2
fi
volspike=$target_dir/$musl/release/volspike
for f in "$volspike" "$target_dir/release/fake-binance" "$target_dir/release/fake-backend"; do
  [ -x "$f" ] || { echo "bench: $f missing (run without --no-build)" >&2; exit 1; }
done

if [ "$volume_only" = 1 ]; then
  export PYTHONDONTWRITEBYTECODE=1
  exec python3 loadtest/bench.py \
    --volspike "$volspike" \
    --fake-binance "$target_dir/release/fake-binance" \
    --fake-backend "$target_dir/release/fake-backend" \
    ${pass[@]+"${pass[@]}"}
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  as_root apt-get install -y wrk >&2 || { as_root apt-get update >&2 && as_root apt-get install -y wrk >&2; }
fi

venv=$target_dir/bench-venv
if ! "$venv/bin/python" -c 'import fastapi, uvicorn, requests' 2>/dev/null; then
  echo "bench: installing fastapi, uvicorn, requests into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check fastapi uvicorn requests >&2
fi

# No __pycache__ in the source tree (uvicorn imports loadtest/fastapi_funding.py).
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" loadtest/bench.py \
  --volspike "$volspike" \
  --fake-binance "$target_dir/release/fake-binance" \
  --fake-backend "$target_dir/release/fake-backend" \
  --python "$venv/bin/python" \
  ${pass[@]+"${pass[@]}"}
