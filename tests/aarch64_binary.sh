#!/usr/bin/env bash
# The aarch64 release binary (ARM droplets), cross-built on this x86_64 machine
# with Debian's gcc-aarch64-linux-gnu (.cargo/config.toml) and proven by running
# it under qemu-user (qemu-aarch64-static): `file` calls it a static ARM aarch64
# executable; `version` names the target; `check-config` accepts a good env
# file and refuses a bad one with 78; `run` against fake Binance and a fake
# backend answers /health and /funding/BTCUSDT and stops cleanly on SIGTERM.
# Needs: tests/prereqs.sh (gcc-aarch64-linux-gnu, qemu-user-static, the
# aarch64-unknown-linux-musl target).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$target/release/volspike
qemu=${VOLSPIKE_QEMU:-qemu-aarch64-static}
fail() { echo "aarch64: FAIL: $*" >&2; exit 1; }

start=$(date +%s)
cargo build --release --locked --target "$target"
echo "aarch64: release build took $(( $(date +%s) - start )) s"

desc=$(file -L "$bin")
echo "aarch64: $desc"
case "$desc" in *"ARM aarch64"*) ;; *) fail "not an aarch64 executable" ;; esac
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) fail "not a static binary" ;;
esac
size=$(stat -c %s "$bin")
echo "aarch64: size $size bytes ($(( size / 1024 )) KiB)"
command -v "$qemu" >/dev/null || fail "$qemu not found (Debian package qemu-user-static; tests/prereqs.sh installs it)"

work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

out=$("$qemu" "$bin" version)
echo "aarch64: qemu version: $out"
case "$out" in "volspike "*"($target,"*) ;; *) fail "unexpected version output" ;; esac

# The fakes run natively; the aarch64 binary reaches them on loopback.
(cargo build -q -p volspike-fakes --bins) >&2
fakes=$target_dir/debug
start_fake() { # NAME ARGS...: runs it, prints its READY line
  local name=$1 i
  shift
  "$fakes/$name" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for (( i = 0; i < 100; i++ )); do
    if grep -q '^READY' "$work/$name.out" 2>/dev/null; then
      sed -n 's/^READY //p' "$work/$name.out" | head -n 1
      return 0
    fi
    sleep 0.1
  done
  cat "$work/$name.err" >&2
  fail "$name did not print READY"
}
start_fake fake-binance --rest 127.0.0.1:0 --ws 127.0.0.1:0 --symbols 20 >"$work/binance.ready"
start_fake fake-backend --addr 127.0.0.1:0 --log "$work/backend.log" >"$work/backend.ready"
rest=$(sed -E 's/.*rest=([^ ]+).*/\1/' "$work/binance.ready")
ws=$(sed -E 's/.*ws=([^ ]+).*/\1/' "$work/binance.ready")
backend=$(sed -E 's/.*url=([^ ]+).*/\1/' "$work/backend.ready")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat >"$work/volspike.env" <<EOF
BACKEND_URL=$backend
ALERT_INGEST_API_KEY=aarch64-test
BINANCE_FAPI_URL=$rest
BINANCE_WS_URL=$ws
VOLSPIKE_HTTP_ADDR=127.0.0.1:$port
VOLSPIKE_STATE_DIR=$work/state
EOF
rc=0
"$qemu" "$bin" check-config --env-file "$work/volspike.env" >"$work/check.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/check.out" >&2; fail "check-config of a good env file exited $rc"; }
echo "aarch64: qemu check-config (good env file): exit 0, $(grep -c . "$work/check.out") lines"
printf 'VOLSPIKE_HTTP_ADDR=nowhere\n' >"$work/bad.env"
rc=0
"$qemu" "$bin" check-config --env-file "$work/bad.env" >"$work/bad.out" 2>&1 || rc=$?
[ "$rc" = 78 ] || { cat "$work/bad.out" >&2; fail "check-config of a bad env file exited $rc, want 78"; }
grep -q 'VOLSPIKE_HTTP_ADDR' "$work/bad.out" || fail "check-config did not name VOLSPIKE_HTTP_ADDR"
echo "aarch64: qemu check-config (bad env file): exit 78, names the bad setting"

"$qemu" "$bin" run --env-file "$work/volspike.env" --only funding_stream >"$work/run.out" 2>"$work/run.err" &
app=$!
pids+=("$app")
health=
for (( i = 0; i < 240; i++ )); do
  health=$(curl -fsS -m 2 "http://127.0.0.1:$port/health" 2>/dev/null) && break
  kill -0 "$app" 2>/dev/null || { tail -n 20 "$work/run.err" >&2; fail "volspike run exited early"; }
  health=
  sleep 0.25
done
[ -n "$health" ] || { tail -n 20 "$work/run.err" >&2; fail "no healthy /health within 60 s"; }
echo "aarch64: qemu run: GET /health -> $health"
case "$health" in *'"version"'*) ;; *) fail "/health without a version" ;; esac
funding=
for (( i = 0; i < 120; i++ )); do
  funding=$(curl -fsS -m 2 "http://127.0.0.1:$port/funding/BTCUSDT" 2>/dev/null) && break
  funding=
  sleep 0.25
done
[ -n "$funding" ] || { tail -n 20 "$work/run.err" >&2; fail "/funding/BTCUSDT never answered 200 (funding stream from fake Binance)"; }
echo "aarch64: qemu run: GET /funding/BTCUSDT -> ${funding:0:160}"
kill -TERM "$app"
rc=0
wait "$app" || rc=$?
[ "$rc" = 0 ] || { tail -n 20 "$work/run.err" >&2; fail "run exited $rc on SIGTERM, want 0"; }
grep -q 'stopped cleanly' "$work/run.err" || fail "no 'stopped cleanly' in the log"
echo "aarch64: qemu run: SIGTERM -> exit 0, stopped cleanly"
