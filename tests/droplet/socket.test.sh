#!/usr/bin/env bash
# tests/droplet/socket.test.sh: socket activation on a fresh Debian 12 droplet
# with a real systemd (systemd-nspawn, see lib.sh): volspike.socket holds the
# HTTP listener, so a self-update and a rollback lose no request.
# Run as root:  tests/droplet/socket.test.sh
#
# Builds OLD (this tree, x86_64) and lets `deploy.sh release` build NEW itself
# for both targets (x86_64 and aarch64, patch version + 1 through
# VOLSPIKE_VERSION_OVERRIDE, in the target dir update.test.sh also uses), so
# one signed manifest lists NEW for both targets and OLD for x86_64. Fake
# Binance (funding stream) and fake backend run in the droplet's network namespace.
#
# On one droplet, after `volspike install` of OLD:
#   - volspike.socket is enabled and listening on VOLSPIKE_HTTP_ADDR, the
#     service requires it and logs that it serves the socket's listener;
#   - wrk (keep-alive; the host's Debian binary, copied in with its LuaJIT
#     library) and loops of curl (a new connection per request) run inside the
#     droplet against /funding/BTCUSDT through `self-update --yes` (OLD -> NEW,
#     the x86_64 artifact of a two-target release) and through
#     `self-update --rollback --yes`: no request fails (wrk: connect, read,
#     write and timeout errors 0; curl: every exit 0), every answer is 200
#     (the new process accepts once its funding cache has data, so no 503
#     "no funding data yet" either: see expect_no_failures); and
#     volspike.socket was never restarted (same activation time);
#   - `uninstall` stops and removes the socket too: the port is closed.
# Prints requests, errors and the max latency of each swap.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

droplet_test_harness 62

TARGET=x86_64-unknown-linux-musl
ARM=aarch64-unknown-linux-musl
SVC=volspike.service
SOCK=volspike.socket
BIN=/usr/local/bin/volspike
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export PATH="$HOME/.cargo/bin:$PATH"
# Seconds of load around each swap; the swap itself takes ~1-3 s.
LOAD_SECS=${VOLSPIKE_SOCKET_TEST_LOAD_SECS:-12}

step "rootfs, tools"
droplet_rootfs >/dev/null
command -v zipsign >/dev/null || cargo install zipsign --version '^0.2' --locked >&2
command -v wrk >/dev/null || fail "wrk missing (Debian package wrk; tests/prereqs.sh installs it)"
done_step

step "OLD binary, fakes"
(cd "$REPO" && cargo build -q --release --locked --target "$TARGET") >&2
mkdir -p "$WORK/old"
OLD_BIN=$WORK/old/volspike
cp "$TARGET_DIR/$TARGET/release/volspike" "$OLD_BIN"
OLD=$("$OLD_BIN" version | awk '{print $2}')
IFS=. read -r major minor patch <<<"${OLD%%-*}"
NEW=$major.$minor.$((patch + 1))
(cd "$REPO" && cargo build -q -p volspike-fakes --bins) >&2
FAKES=$TARGET_DIR/debug
ok "OLD $OLD; NEW will be $NEW"
done_step

step "deploy.sh release: NEW for x86_64 and aarch64 in one manifest"
KEYS=$WORK/keys
mkdir -p "$KEYS"
zipsign gen-key "$KEYS/test.key" "$KEYS/test.pub" >/dev/null
SRV=$WORK/srv
VOLSPIKE_SIGNING_KEY_FILE=$KEYS/test.key "$REPO/deploy.sh" release --binary "$OLD_BIN" --dist "$SRV" 2>"$WORK/release-old.err" \
    || { cat "$WORK/release-old.err" >&2; fail "deploy.sh release OLD"; }
t0=$(_droplet_now)
# No --binary: deploy.sh builds every release target itself.
VOLSPIKE_SIGNING_KEY_FILE=$KEYS/test.key VOLSPIKE_VERSION_OVERRIDE=$NEW CARGO_TARGET_DIR=$TARGET_DIR/update-test-new \
    "$REPO/deploy.sh" release --dist "$SRV" 2>"$WORK/release-new.err" \
    || { tail -n 30 "$WORK/release-new.err" >&2; fail "deploy.sh release (both targets)"; }
for t in $TARGET $ARM; do
    art=volspike-$NEW-$t.tar.gz
    [ -s "$SRV/$art" ] || fail "no $art"
    zipsign verify tar -q -c "$art" "$SRV/$art" "$KEYS/test.pub" >/dev/null || fail "$art: signature does not verify"
done
python3 - "$SRV/manifest.json" "$NEW" "$OLD" "$TARGET" "$ARM" <<'EOF' || fail "manifest: $(cat "$SRV/manifest.json")"
import json, sys
m = json.load(open(sys.argv[1]))
new, old, x86, arm = sys.argv[2:6]
assets = {r["version"]: sorted(a["name"] for a in r["assets"]) for r in m["releases"]}
assert list(assets) == [new, old], assets
assert assets[new] == sorted(f"volspike-{new}-{t}.tar.gz" for t in (x86, arm)), assets
assert all(a["digest"].startswith("sha256:") for r in m["releases"] for a in r["assets"])
EOF
ok "manifest: $NEW for $TARGET and $ARM, $OLD for $TARGET; all signed ($(_droplet_since "$t0") s incl. builds)"
done_step

step "fakes on the droplet network's 127.0.0.1, boot droplet, install OLD"
# The droplet boots into its own network namespace (lib.sh): the fakes and
# the release server run there too, so they share its 127.0.0.1 and a port
# taken on the host cannot fail the test.
droplet_netns || fail "no network namespace for the droplet"
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$(shuf -i 20000-29999 -n 1)
        if ! droplet_net_exec ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}
droplet_start_fake fake-binance --rest 127.0.0.1:0 --ws 127.0.0.1:0 --symbols 50
REST_URL=$(sed -E 's/.*rest=([^ ]+).*/\1/' <<<"$FAKE_READY")
WS_URL=$(sed -E 's/.*ws=([^ ]+).*/\1/' <<<"$FAKE_READY")
droplet_start_fake fake-backend --addr 127.0.0.1:0 --log "$WORK/backend.log"
BACKEND_URL=$(sed -E 's/.*url=([^ ]+).*/\1/' <<<"$FAKE_READY")
SRV_PORT=$(free_port) || fail "no free port"
HTTP_PORT=$(free_port) || fail "no free port"
ip netns exec "$DROPLET_NETNS" python3 -m http.server --bind 127.0.0.1 --directory "$SRV" "$SRV_PORT" >"$WORK/http.log" 2>&1 &
BG_PIDS+=($!)
droplet_wait 10 "release server" droplet_net_exec curl -fsS -o /dev/null "http://127.0.0.1:$SRV_PORT/manifest.json"
droplet_boot socket
# Only the funding stream: the API under load is /funding/BTCUSDT.
# Every job, from the one registry (jobs::registry::ALL).
mapfile -t JOBS < <(sed -n 's/^ *name: "\([a-z_]*\)",$/\1/p' "$REPO/src/jobs/registry.rs")
[ ${#JOBS[@]} -gt 0 ] || fail "no job names found in src/jobs/registry.rs"
OFF=()
for j in "${JOBS[@]}"; do [ "$j" = funding_stream ] || OFF+=("$j"); done
cat >"$WORK/volspike.env" <<EOF
BACKEND_URL=$BACKEND_URL
ALERT_INGEST_API_KEY=socket-test
BINANCE_FAPI_URL=$REST_URL
BINANCE_WS_URL=$WS_URL
VOLSPIKE_DISABLED_JOBS=$(IFS=,; echo "${OFF[*]}")
VOLSPIKE_HTTP_ADDR=127.0.0.1:$HTTP_PORT
VOLSPIKE_UPDATE_URL=http://127.0.0.1:$SRV_PORT/manifest.json
EOF
droplet_copy_in "$OLD_BIN" /root/volspike 0755
droplet_copy_in "$WORK/volspike.env" /root/volspike.env 0600
out=$(droplet_exec /root/volspike install --env-file /root/volspike.env 2>&1) || { echo "$out" >&2; fail "install"; }
grep -q "enable volspike.socket volspike.service" <<<"$out" || { echo "$out" >&2; fail "install did not enable the socket"; }
droplet_copy_in "$KEYS/test.pub" /etc/volspike/release-keys.pub 0644
droplet_exec chown root:root /etc/volspike/release-keys.pub
ok "installed $(droplet_exec $BIN version)"
done_step

step "volspike.socket holds the listener; the service serves it"
[ "$(droplet_exec systemctl is-enabled $SOCK)" = enabled ] || fail "$SOCK not enabled"
[ "$(droplet_exec systemctl is-active $SOCK)" = active ] || fail "$SOCK not active"
listen=$(droplet_exec systemctl show -p Listen --value $SOCK)
[ "$listen" = "127.0.0.1:$HTTP_PORT (Stream)" ] || fail "$SOCK listens on '$listen', want 127.0.0.1:$HTTP_PORT"
requires=$(droplet_exec systemctl show -p Requires --value $SVC)
grep -qw $SOCK <<<"$requires" || fail "$SVC does not require $SOCK ($requires)"
grep -q 'HTTP listener from systemd' <<<"$(droplet_journal -u $SVC -o cat)" || fail "the service did not take the socket's listener"
funding_ok() { droplet_exec curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$HTTP_PORT/funding/BTCUSDT"; }
droplet_wait 60 "/funding/BTCUSDT answers 200 (funding stream from fake Binance)" funding_ok
ok "$SOCK enabled, listening on $listen; $SVC requires it and serves its fd; /funding/BTCUSDT 200"
done_step

# Two load generators run inside the droplet (they reach the service on its
# own loopback whatever the network setup) through each swap:
# - wrk (the host's Debian binary, copied in with the one library a minimal
#   Debian lacks, LuaJIT), keep-alive connections, for throughput and
#   latency; a Lua script counts the answers by status;
# - loops of curl, one new connection per request, where curl's exit code
#   tells exactly how a request failed: 7 refused, 52 accepted but closed
#   without an answer, 56 reset, 28 timed out.
# Every answer must be 200; a 503 "no funding data yet" (the new process
# serving before its funding stream delivered) is counted apart, and must
# not happen either.
luajit=$(ldd "$(command -v wrk)" | awk '/libluajit/ { print $3 }')
[ -n "$luajit" ] || fail "cannot find wrk's LuaJIT library"
droplet_copy_in "$(command -v wrk)" /opt/load/wrk 0755
droplet_copy_in "$(readlink -f "$luajit")" "/opt/load/$(basename "$luajit")" 0644
cat >"$WORK/report.lua" <<'LUA'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() counts = {} end
response = function(status, headers, body)
  local k = tostring(status)
  if status == 503 and body and body:find("no funding data yet", 1, true) then k = "notready" end
  counts[k] = (counts[k] or 0) + 1
end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do total[k] = (total[k] or 0) + v end
  end
  local other = 0
  for k, v in pairs(total) do
    if k ~= "200" and k ~= "notready" then other = other + v end
  end
  local e = summary.errors
  io.write(string.format("WRK requests=%d ok=%d notready=%d other=%d connect=%d read=%d write=%d timeout=%d max_ms=%.1f p99_ms=%.1f\n",
    summary.requests, total["200"] or 0, total["notready"] or 0, other, e.connect, e.read, e.write, e.timeout,
    latency.max / 1000, latency:percentile(99) / 1000))
end
LUA
droplet_copy_in "$WORK/report.lua" /opt/load/report.lua 0644
cat >"$WORK/curl-loop.sh" <<'SH'
#!/bin/sh
# curl-loop.sh URL OUT: one request per connection until /run/load.stop exists;
# a line per request: curl's exit code, HTTP status, seconds, not-ready mark.
while [ ! -e /run/load.stop ]; do
    r=$(curl -s -m 10 -H 'Connection: close' -w ' @@%{http_code} %{time_total}' "$1")
    rc=$?
    case $r in *"no funding data yet"*) mark=notready ;; *) mark=- ;; esac
    echo "$rc ${r##*@@} $mark"
done >"$2"
SH
droplet_copy_in "$WORK/curl-loop.sh" /opt/load/curl-loop.sh 0755
URL=http://127.0.0.1:$HTTP_PORT/funding/BTCUSDT
CURL_LOOPS=3
WRK_CONNS=4

# Runs both load generators for LOAD_SECS inside the droplet while "$@" runs
# there 2 s in; sets RC/OUT (the command's), WRK (wrk's summary line) and
# CURL (the curl loops' summary line) and prints them.
under_load() {
    local wrk_pid i
    droplet_exec rm -f /run/load.stop
    for (( i = 0; i < CURL_LOOPS; i++ )); do
        droplet_exec sh -c "/opt/load/curl-loop.sh '$URL' /run/load.curl.$i </dev/null >/dev/null 2>&1 &"
    done
    (droplet_exec env LD_LIBRARY_PATH=/opt/load /opt/load/wrk -t1 -c$WRK_CONNS -d"${LOAD_SECS}s" --timeout 10s \
        -s /opt/load/report.lua "$URL" >"$WORK/wrk.out" 2>&1) &
    wrk_pid=$!
    BG_PIDS+=("$wrk_pid")
    sleep 2
    RC=0
    OUT=$(droplet_exec "$@" 2>&1) || RC=$?
    indent <<<"$OUT"
    wait "$wrk_pid" || { cat "$WORK/wrk.out" >&2; fail "wrk failed"; }
    droplet_exec touch /run/load.stop
    sleep 1.5
    WRK=$(grep '^WRK ' "$WORK/wrk.out") || { cat "$WORK/wrk.out" >&2; fail "no wrk summary"; }
    indent <"$WORK/wrk.out"
    droplet_exec sh -c 'cat /run/load.curl.*' >"$WORK/curl.out"
    CURL=$(awk '
        { n++ }
        $1 != 0 { failed++; byrc[$1]++ }
        $1 == 7 { refused++ }
        $1 == 28 { timedout++ }
        $1 == 0 && $2 == 200 { ok++ }
        $1 == 0 && $4 == "notready" { notready++ }
        $1 == 0 && $2 != 200 && $4 != "notready" { other++ }
        $1 == 0 && $3 + 0 > max { max = $3 + 0 }
        END {
            rcs = ""; for (r in byrc) rcs = rcs " rc" r "=" byrc[r]
            printf "CURL requests=%d ok=%d notready=%d other=%d refused=%d timedout=%d failed=%d%s max_ms=%.1f\n",
                n, ok, notready, other, refused, timedout, failed, rcs, max * 1000
        }' "$WORK/curl.out")
}
# "WRK requests=N connect=0 ..." -> the value of field $1 of line $2.
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
# No request fails and every answer is 200. The old process stops
# accepting at SIGTERM (new connections wait in volspike.socket's backlog)
# and answers what each accepted connection sent with `Connection: close`
# (src/http/server/drain.rs); the new process accepts once its funding cache
# has data (src/http/server/first_data.rs). So: wrk 0 errors of any kind,
# every curl exit 0 (7 refused, 52 closed without an answer, 56 reset, 28
# timed out would each be a lost request), 0 not-ready 503s.
expect_no_failures() {
    local what=$1 f
    [ "$(field requests "$WRK")" -gt 0 ] || fail "$what: wrk made no requests"
    [ "$(field requests "$CURL")" -gt 0 ] || fail "$what: the curl loops made no requests"
    for f in connect read write timeout notready other; do
        [ "$(field $f "$WRK")" = 0 ] || fail "$what: wrk counted $f: $WRK"
    done
    for f in failed notready other; do
        [ "$(field $f "$CURL")" = 0 ] || fail "$what: curl loops: $f: $CURL"
    done
}
sock_since() { droplet_exec systemctl show -p ActiveEnterTimestampMonotonic --value $SOCK; }
installed() { droplet_exec $BIN version | awk '{print $2}'; }

step "self-update OLD -> NEW under load: 0 failed requests"
s0=$(sock_since)
under_load $BIN self-update --yes
[ "$RC" = 0 ] || fail "self-update exit $RC"
[ "$(installed)" = "$NEW" ] || fail "installed: $(installed), want $NEW"
grep -qF "volspike-$NEW-$TARGET.tar.gz" <<<"$OUT$(droplet_exec cat /var/lib/volspike/update.json)" \
    || fail "self-update did not take the $TARGET artifact"
[ "$(sock_since)" = "$s0" ] || fail "$SOCK was restarted by the update"
ok "update: $WRK"
ok "update: $CURL"
UPDATE_LOAD="$WRK; $CURL"
expect_no_failures "self-update"
done_step

step "self-update --rollback under load: 0 failed requests"
under_load $BIN self-update --rollback --yes
[ "$RC" = 0 ] || fail "--rollback exit $RC"
[ "$(installed)" = "$OLD" ] || fail "installed: $(installed), want $OLD"
[ "$(sock_since)" = "$s0" ] || fail "$SOCK was restarted by the rollback"
ok "rollback: $WRK"
ok "rollback: $CURL"
ROLLBACK_LOAD="$WRK; $CURL"
expect_no_failures "rollback"
done_step

step "uninstall removes the socket: the port is closed"
out=$(droplet_exec $BIN uninstall 2>&1) || { echo "$out" >&2; fail "uninstall"; }
indent <<<"$out"
droplet_exec test ! -e /etc/systemd/system/$SOCK || fail "$SOCK file left"
[ "$(droplet_exec systemctl is-active $SOCK)" != active ] || fail "$SOCK still active"
if droplet_exec curl -sS -m 2 -o /dev/null "http://127.0.0.1:$HTTP_PORT/health" 2>/dev/null; then
    fail "127.0.0.1:$HTTP_PORT still answers after uninstall"
fi
ok "$SOCK stopped and removed; 127.0.0.1:$HTTP_PORT refuses"
done_step

echo >&2
echo "timings:" >&2
printf '  %s\n' "${TIMINGS[@]}" >&2
echo "  total $(_droplet_since "$T_START") s" >&2
echo "UNDER LOAD (wrk -t1 -c$WRK_CONNS -d${LOAD_SECS}s keep-alive + $CURL_LOOPS curl loops, a connection per request, $URL):" >&2
echo "  self-update $OLD -> $NEW: $UPDATE_LOAD" >&2
echo "  --rollback $NEW -> $OLD: $ROLLBACK_LOAD" >&2
echo "socket.test: PASS" >&2
