#!/usr/bin/env bash
# tests/droplet/install.test.sh: `volspike install` / `volspike uninstall` on a
# fresh Debian 12 droplet with a real systemd (systemd-nspawn, see lib.sh).
# Run as root from anywhere:  tests/droplet/install.test.sh
# (tests/run.sh runs every tests/droplet/*.test.sh; ~30 s with a warm rootfs cache)
#
# Uses the static musl binary from $VOLSPIKE_BIN, else
# target/x86_64-unknown-linux-musl/release/volspike (under $CARGO_TARGET_DIR
# when set), building it when missing; and fake-binance/fake-backend from
# $VOLSPIKE_FAKES_DIR, else built with cargo. The fakes listen on 127.0.0.1
# of the droplet's own network namespace (droplet_netns), not the host's.
#
# On one fresh droplet that has the Python deployment's units running
# (a Python volspike.service, binance-funding-ws.service, oi-liquid-universe.timer,
# all stand-ins running sleep) and its /home/trader/.volspike.env, checks:
#   - non-root `install` is refused (exit 1) and changes nothing; `--dry-run`
#     (as nobody and as root) prints the plan and changes nothing;
#   - `install` imports the old env file, retires the legacy units (inactive,
#     disabled, unit files copied to /var/lib/volspike/legacy-units), and the
#     service comes up: active/running (Type=notify: READY seen), /health
#     answers inside the container, journald has structured fields,
#     `systemd-analyze security` exposure <= 2.0;
#   - a second `install` says "already installed, nothing to do" and does not
#     restart (InvocationID unchanged);
#   - a changed binary is installed (the old one kept as volspike.previous) and
#     the service restarted exactly once;
#   - watchdog: `install --env-file` with VOLSPIKE_WEDGE=scheduler@3 and a test
#     drop-in (WatchdogSec=6, RestartSec=1): systemd logs "Watchdog timeout" and
#     NRestarts grows;
#   - `uninstall` removes unit and binary, keeps env and state; a second one
#     has nothing to do; `--purge` removes env and state;
#   - on the now clean droplet, `install` without any env file writes the
#     commented template, says which keys to fill, exits 78 without starting;
#     once the keys are filled in, `install` again starts it (READY);
#   - a service that cannot start (unwritable state dir) makes install exit 1
#     saying so, without hanging.
# Prints the time of each step. Everything started is stopped on any exit.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

droplet_test_harness 58

# The binary under test, copied in outside /root so that `nobody` can run it.
TEST_BIN=/opt/volspike-test/volspike
SVC=volspike.service
show() { droplet_exec systemctl show -p "$1" --value "$2"; }

step "rootfs (cached tarball, built if missing)"
droplet_rootfs >/dev/null
done_step

step "static binary and fakes"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=${VOLSPIKE_BIN:-$TARGET_DIR/x86_64-unknown-linux-musl/release/volspike}
if [ ! -x "$BIN" ]; then
    [ -z "${VOLSPIKE_BIN:-}" ] || fail "VOLSPIKE_BIN=$BIN is not an executable file"
    echo "  building $BIN" >&2
    (cd "$REPO" && cargo build --release --target x86_64-unknown-linux-musl) >&2
fi
file -L "$BIN" | grep -q 'static' || fail "$BIN is not statically linked: $(file -L "$BIN")"
FAKES=${VOLSPIKE_FAKES_DIR:-}
if [ -z "$FAKES" ]; then
    (cd "$REPO" && cargo build -q -p volspike-fakes --bins) >&2
    FAKES=$TARGET_DIR/debug
fi
for f in fake-binance fake-backend; do [ -x "$FAKES/$f" ] || fail "$FAKES/$f missing"; done
ok "$BIN ($(du -h "$BIN" | cut -f1), $("$BIN" version))"
done_step

step "fakes on the droplet network's 127.0.0.1"
droplet_netns || fail "no network namespace for the droplet"
droplet_start_fake fake-binance --rest 127.0.0.1:0 --ws 127.0.0.1:0 --symbols 600
binance=$FAKE_READY
droplet_start_fake fake-backend --addr 127.0.0.1:0 --log "$WORK/backend.log"
backend=$FAKE_READY
REST_URL=$(sed -E 's/.*rest=([^ ]+).*/\1/' <<<"$binance")
WS_URL=$(sed -E 's/.*ws=([^ ]+).*/\1/' <<<"$binance")
BACKEND_URL=$(sed -E 's/.*url=([^ ]+).*/\1/' <<<"$backend")
# A free port for the service's HTTP server on the droplet's loopback: one
# nobody answers on there (the fakes took ephemeral ports); the host's ports
# do not matter.
HTTP_PORT=
for _ in $(seq 1 50); do
    p=$(shuf -i 20000-29999 -n 1)
    if ! droplet_net_exec bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$p" 2>/dev/null; then HTTP_PORT=$p; break; fi
done
[ -n "$HTTP_PORT" ] || fail "no free port found for VOLSPIKE_HTTP_ADDR"
ok "binance $REST_URL $WS_URL, backend $BACKEND_URL, service HTTP 127.0.0.1:$HTTP_PORT"
done_step

step "boot droplet, legacy deployment running"
droplet_boot install
droplet_copy_in "$BIN" "$TEST_BIN" 0755
# The old deployment: a Python volspike.service, a worker, a timer + its service.
cat >"$WORK/py.service" <<'EOF'
[Unit]
Description=legacy Python volspike (test stand-in)
[Service]
ExecStart=/bin/sh -c 'exec sleep infinity; /home/trader/venv/bin/python3 -m volspike'
[Install]
WantedBy=multi-user.target
EOF
cat >"$WORK/ws.service" <<'EOF'
[Unit]
Description=legacy binance-funding-ws (test stand-in)
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
EOF
cat >"$WORK/oi.timer" <<'EOF'
[Unit]
Description=legacy oi-liquid-universe timer (test stand-in)
[Timer]
OnActiveSec=1h
[Install]
WantedBy=timers.target
EOF
printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$WORK/oi.service"
droplet_copy_in "$WORK/py.service" /etc/systemd/system/volspike.service 0644
droplet_copy_in "$WORK/ws.service" /etc/systemd/system/binance-funding-ws.service 0644
droplet_copy_in "$WORK/oi.timer" /etc/systemd/system/oi-liquid-universe.timer 0644
droplet_copy_in "$WORK/oi.service" /etc/systemd/system/oi-liquid-universe.service 0644
droplet_exec systemctl daemon-reload
droplet_exec systemctl enable --now -q volspike.service binance-funding-ws.service oi-liquid-universe.timer
# The old env file, written the way the Python scripts' operators did.
cat >"$WORK/legacy.env" <<EOF
# old deployment
export VOLSPIKE_API_URL=$BACKEND_URL
export VOLSPIKE_API_KEY=legacy-test-key
export BINANCE_FAPI_URL=$REST_URL
export BINANCE_WS_URL=$WS_URL
export VOLSPIKE_HTTP_ADDR=127.0.0.1:$HTTP_PORT
EOF
droplet_exec mkdir -p /home/trader
droplet_copy_in "$WORK/legacy.env" /home/trader/.volspike.env 0600
for u in volspike.service binance-funding-ws.service oi-liquid-universe.timer; do
    [ "$(droplet_exec systemctl is-active $u)" = active ] || fail "legacy $u not active"
done
ok "legacy volspike.service (python), binance-funding-ws.service, oi-liquid-universe.timer: enabled + active"
done_step

# A fingerprint of everything install may touch, to prove "changed nothing".
fingerprint() {
    droplet_sh 'ls -la --time-style=full-iso /usr/local/bin /etc/systemd/system /etc/systemd/system/*.wants /var/lib 2>&1
        ls -la --time-style=full-iso /etc/volspike /var/lib/volspike 2>&1
        getent passwd volspike; md5sum /etc/systemd/system/volspike.service
        systemctl is-active volspike.service binance-funding-ws.service oi-liquid-universe.timer
        systemctl is-enabled volspike.service binance-funding-ws.service oi-liquid-universe.timer
        systemctl show -p InvocationID volspike.service' 2>&1 || true
}

step "non-root refused; --dry-run changes nothing"
before=$(fingerprint)
rc=0
out=$(droplet_exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$TEST_BIN" install 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "non-root install: exit $rc (want 1): $out"
grep -q 'must run as root' <<<"$out" || fail "non-root install: no clear message: $out"
ok "as nobody: exit 1: $out"
rc=0
out=$(droplet_exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$TEST_BIN" uninstall 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "non-root uninstall: exit $rc (want 1): $out"
rc=0
out=$(droplet_exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$TEST_BIN" install --dry-run 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "non-root dry run: exit $rc: $out"
grep -q 'would run' <<<"$out" || fail "non-root dry run printed no plan: $out"
ok "as nobody, --dry-run: exit 0, $(grep -c '^\[' <<<"$out") actions listed"
out=$(droplet_exec "$TEST_BIN" install --dry-run 2>&1) || fail "dry run as root failed: $out"
indent <<<"$out"
for want in 'creating system user volspike' 'copying binary to /usr/local/bin/volspike' \
    'stopping and disabling legacy binance-funding-ws.service' 'oi-liquid-universe.timer' \
    "the Python deployment's volspike.service" 'importing VOLSPIKE_API_URL' \
    'writing /etc/systemd/system/volspike.service' 'waiting for READY'; do
    grep -qF "$want" <<<"$out" || fail "dry run does not mention: $want"
done
[ "$(fingerprint)" = "$before" ] || { diff <(echo "$before") <(fingerprint) >&2 || true; fail "--dry-run changed something"; }
ok "--dry-run as root lists every action; nothing changed"
done_step

step "install (import legacy env, retire legacy units, start)"
t0=$(_droplet_now)
out=$(droplet_exec "$TEST_BIN" install 2>&1) || { echo "$out" >&2; fail "install failed"; }
indent <<<"$out"
grep -q '^\[1/[0-9]*\] ' <<<"$out" || fail "no [i/N] progress lines"
grep -q 'is READY' <<<"$out" || fail "install did not report READY"
ok "install took $(_droplet_since "$t0") s"
done_step

step "installed state: active, READY, /health, files, legacy retired"
st=$(droplet_exec systemctl show -p ActiveState,SubState,Type,StatusText "$SVC" | tr '\n' ' ')
[[ $st == *ActiveState=active* && $st == *SubState=running* && $st == *Type=notify* ]] || fail "service: $st"
ok "$st"
health=$(droplet_exec curl -fsS "http://127.0.0.1:$HTTP_PORT/health") || fail "/health did not answer"
ok "/health: $(head -c 200 <<<"$health")"
[ "$(droplet_exec stat -c '%U %a' /etc/volspike/volspike.env)" = "root 600" ] || fail "env file: $(droplet_exec stat -c '%U %a' /etc/volspike/volspike.env)"
env_text=$(droplet_exec cat /etc/volspike/volspike.env)
grep -q "^VOLSPIKE_API_URL=$BACKEND_URL\$" <<<"$env_text" || { echo "$env_text" >&2; fail "legacy env not imported"; }
grep -q 'export' <<<"$env_text" && fail "env file kept 'export' (systemd does not read it)"
ok "/etc/volspike/volspike.env root 0600, imported from /home/trader/.volspike.env"
[ "$(droplet_exec stat -c '%U:%G %a' /var/lib/volspike)" = "volspike:volspike 750" ] || fail "state dir: $(droplet_exec stat -c '%U:%G %a' /var/lib/volspike)"
droplet_exec getent passwd volspike | grep -q ':/usr/sbin/nologin$' || fail "user volspike missing or has a login shell"
[ "$(show User $SVC)" = volspike ] || fail "unit does not run as volspike"
ok "user volspike (nologin), state dir volspike:volspike 0750"
for u in binance-funding-ws.service oi-liquid-universe.timer; do
    a=$(droplet_exec systemctl is-active $u || true); e=$(droplet_exec systemctl is-enabled $u || true)
    if [ "$a" != inactive ] || [ "$e" != disabled ]; then fail "legacy $u is $a/$e"; fi
done
for f in volspike.service binance-funding-ws.service oi-liquid-universe.timer oi-liquid-universe.service; do
    droplet_exec test -s "/var/lib/volspike/legacy-units/$f" || fail "no copy of $f in /var/lib/volspike/legacy-units"
done
droplet_exec grep -q python3 /var/lib/volspike/legacy-units/volspike.service || fail "the Python unit's copy is not the Python unit"
droplet_exec pgrep -x sleep >/dev/null && fail "a legacy stand-in (sleep) is still running"
ok "legacy units inactive + disabled, copies of 4 unit files kept, no legacy process left"
done_step

step "journald fields, systemd-analyze security"
json=$(droplet_journal -u "$SVC" -o json _SYSTEMD_UNIT=$SVC)
grep -q '"SYSLOG_IDENTIFIER":"volspike"' <<<"$json" || fail "no SYSLOG_IDENTIFIER=volspike entries"
if grep -q '"JOB":' <<<"$json"; then
    ok "journal entries with a JOB field: $(grep -c '"JOB":' <<<"$json")"
else
    # No job has logged yet (jobs run on their wall-clock schedule, minutes
    # away): check the structured fields of the "ready" entry instead.
    grep '"MESSAGE":"ready"' <<<"$json" | grep -q '"HTTP":"127.0.0.1:'"$HTTP_PORT"'"' \
        || fail "the 'ready' entry lacks the structured HTTP field"
    ok "no JOB field yet (no job has run during the test); SYSLOG_IDENTIFIER=volspike and structured fields (HTTP=, JOBS=) present"
fi
droplet_exec systemd-analyze security --no-pager "$SVC" >"$WORK/security.txt" 2>&1 || true
score_line=$(grep 'Overall exposure level' "$WORK/security.txt") || { cat "$WORK/security.txt" >&2; fail "no exposure score"; }
score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$score_line")
awk -v s="$score" 'BEGIN{exit !(s <= 2.0)}' || fail "exposure $score > 2.0"
ok "$score_line"
done_step

step "second install: nothing to do, no restart"
inv=$(show InvocationID $SVC)
out=$(droplet_exec "$TEST_BIN" install 2>&1) || { echo "$out" >&2; fail "second install failed"; }
grep -q 'already installed, nothing to do' <<<"$out" || { echo "$out" >&2; fail "second install did something"; }
[ "$(show InvocationID $SVC)" = "$inv" ] || fail "second install restarted the service"
ok "$(head -n 1 <<<"$out"); InvocationID unchanged"
out=$(droplet_exec /usr/local/bin/volspike install 2>&1) || fail "install from the installed binary failed: $out"
grep -q 'already installed, nothing to do' <<<"$out" || fail "install run from /usr/local/bin/volspike did something: $out"
ok "also when run from /usr/local/bin/volspike"
done_step

step "changed binary: installed, previous kept, one restart"
{ cat "$BIN"; printf 'volspike-test-changed-binary'; } >"$WORK/volspike-changed"   # trailing bytes: same program, other file
droplet_copy_in "$WORK/volspike-changed" /opt/volspike-test/volspike-changed 0755
inv=$(show InvocationID $SVC)
starts_before=$(grep -c 'Started volspike.service' <<<"$(droplet_journal -u $SVC -o cat)" || true)
out=$(droplet_exec /opt/volspike-test/volspike-changed install 2>&1) || { echo "$out" >&2; fail "install of a changed binary failed"; }
grep '^\[' <<<"$out" | indent
grep -q 'binary changed' <<<"$out" || fail "install did not say the binary changed"
[ "$(droplet_exec md5sum </dev/null /usr/local/bin/volspike | cut -d' ' -f1)" = "$(md5sum <"$WORK/volspike-changed" | cut -d' ' -f1)" ] || fail "new binary not in place"
[ "$(droplet_exec md5sum /usr/local/bin/volspike.previous | cut -d' ' -f1)" = "$(md5sum <"$BIN" | cut -d' ' -f1)" ] || fail "previous binary not kept"
starts_after=$(grep -c 'Started volspike.service' <<<"$(droplet_journal -u $SVC -o cat)" || true)
[ "$(show InvocationID $SVC)" != "$inv" ] || fail "not restarted"
[ $((starts_after - starts_before)) = 1 ] || fail "restarted $((starts_after - starts_before)) times, want 1"
ok "new binary in place, old one at volspike.previous, restarted exactly once"
done_step

step "watchdog: wedged scheduler -> killed and restarted"
# Test drop-in: the watchdog and restart checks take seconds, not minutes.
printf '[Service]\n# Test only: quick watchdog and restart.\nWatchdogSec=6\nRestartSec=1\n' >"$WORK/test.conf"
droplet_copy_in "$WORK/test.conf" /etc/systemd/system/volspike.service.d/test.conf 0644
droplet_exec systemctl daemon-reload
{ droplet_exec cat /etc/volspike/volspike.env; echo 'VOLSPIKE_WEDGE=scheduler@3'; } >"$WORK/wedge.env"
droplet_copy_in "$WORK/wedge.env" /root/wedge.env 0600
out=$(droplet_exec /usr/local/bin/volspike install --env-file /root/wedge.env 2>&1) || { echo "$out" >&2; fail "install --env-file failed"; }
grep -q 'env file changed' <<<"$out" || { echo "$out" >&2; fail "install did not apply the changed env file"; }
droplet_exec test -s /etc/volspike/volspike.env.previous || fail "replaced env file not kept"
[ "$(show WatchdogUSec $SVC)" = 6s ] || fail "drop-in not applied: WatchdogUSec=$(show WatchdogUSec $SVC)"
n0=$(show NRestarts $SVC)
nrestarts_above() { [ "$(show NRestarts $SVC)" -gt "$1" ]; }
droplet_wait 60 "NRestarts to grow past $n0 once the wedged scheduler stops the pings" nrestarts_above "$n0"
jr=$(droplet_journal -u $SVC -o cat)
grep -m1 'Watchdog timeout' <<<"$jr" >&2 || fail "journal has no 'Watchdog timeout'"
grep -q 'critical loop stalled' <<<"$jr" || fail "the service did not log which loop stalled"
ok "NRestarts $n0 -> $(show NRestarts $SVC), 'Watchdog timeout' and 'critical loop stalled' in the journal"
done_step

step "a service that cannot start: install reports it, exit 1, no hang"
# A state directory the sandbox does not let it write (ProtectSystem=strict):
# the service exits 1 before READY and systemd keeps restarting it.
{ grep -v '^VOLSPIKE_WEDGE=' /dev/stdin; echo 'VOLSPIKE_STATE_DIR=/etc/volspike-state'; } \
    <<<"$(droplet_exec cat /etc/volspike/volspike.env)" >"$WORK/broken.env"
droplet_copy_in "$WORK/broken.env" /root/broken.env 0600
t0=$(_droplet_now)
rc=0
out=$(droplet_exec timeout 120 /usr/local/bin/volspike install --env-file /root/broken.env 2>&1) || rc=$?
[ "$rc" = 1 ] || { echo "$out" >&2; fail "install with a service that cannot start: exit $rc, want 1"; }
grep -q 'did not come up' <<<"$out" || { echo "$out" >&2; fail "install did not say the service did not come up"; }
grep -q '^installed' <<<"$out" && fail "install claimed success"
ok "exit 1 after $(_droplet_since "$t0") s: $(grep 'did not come up' <<<"$out")"
done_step

step "uninstall; again; --purge"
out=$(droplet_exec "$TEST_BIN" uninstall 2>&1) || { echo "$out" >&2; fail "uninstall failed"; }
indent <<<"$out"
droplet_exec test -e /etc/systemd/system/volspike.service && fail "unit file left"
droplet_exec test -e /usr/local/bin/volspike && fail "binary left"
droplet_exec test -e /usr/local/bin/volspike.previous && fail "previous binary left"
[ "$(show LoadState $SVC)" = not-found ] || fail "systemd still knows volspike.service: $(show LoadState $SVC)"
droplet_exec pgrep -u volspike >/dev/null && fail "a volspike process is still running"
droplet_exec test -s /etc/volspike/volspike.env || fail "plain uninstall removed the env file"
droplet_exec test -d /var/lib/volspike || fail "plain uninstall removed the state"
ok "unit, binaries gone; service unknown to systemd; env + state kept"
out=$(droplet_exec "$TEST_BIN" uninstall 2>&1) || fail "second uninstall failed: $out"
grep -q 'not installed, nothing to do' <<<"$out" || fail "second uninstall: $out"
ok "second uninstall: $(head -n 1 <<<"$out")"
out=$(droplet_exec "$TEST_BIN" uninstall --purge 2>&1) || { echo "$out" >&2; fail "uninstall --purge failed"; }
indent <<<"$out"
for p in /etc/volspike /var/lib/volspike /etc/systemd/system/volspike.service.d; do
    droplet_exec test -e "$p" && fail "--purge left $p"
done
for u in binance-funding-ws.service oi-liquid-universe.timer; do
    [ "$(droplet_exec systemctl is-enabled $u || true)" = disabled ] || fail "legacy $u re-enabled"
done
ok "--purge removed /etc/volspike, /var/lib/volspike and the drop-ins; legacy units stay disabled"
done_step

step "install with no env file: template, exit 78; keys filled: starts"
droplet_exec rm -f /home/trader/.volspike.env
rc=0
out=$(droplet_exec timeout 120 "$TEST_BIN" install 2>&1) || rc=$?
indent <<<"$out"
[ "$rc" = 78 ] || fail "install without configuration: exit $rc, want 78"
grep -q 'installed, but not started: fill BACKEND_URL and ALERT_INGEST_API_KEY' <<<"$out" || fail "no clear 'fill ...' message"
grep -q 'volspike check-config' <<<"$out" || fail "next command not named"
a=$(droplet_exec systemctl is-active $SVC || true)
[ "$a" = inactive ] || fail "service is $a, want inactive"
droplet_exec grep -q '^#VOLSPIKE_HTTP_ADDR=127.0.0.1:8080$' /etc/volspike/volspike.env || fail "template lacks the documented defaults"
rc=0; out=$(droplet_exec "$TEST_BIN" check-config 2>&1) || rc=$?
[ "$rc" = 78 ] || fail "check-config on the template: exit $rc"
ok "template written, service enabled but not started, check-config exits 78"
# The operator fills in the two keys (here also the test's port and fakes)
# and runs install again.
droplet_exec sed -i -e "s|^BACKEND_URL=\$|BACKEND_URL=$BACKEND_URL|" \
    -e 's|^ALERT_INGEST_API_KEY=$|ALERT_INGEST_API_KEY=filled-in|' \
    -e "s|^#VOLSPIKE_HTTP_ADDR=.*|VOLSPIKE_HTTP_ADDR=127.0.0.1:$HTTP_PORT|" \
    -e "s|^#BINANCE_FAPI_URL=.*|BINANCE_FAPI_URL=$REST_URL|" \
    -e "s|^#BINANCE_WS_URL=.*|BINANCE_WS_URL=$WS_URL|" /etc/volspike/volspike.env
out=$(droplet_exec timeout 120 "$TEST_BIN" install 2>&1) || { echo "$out" >&2; fail "install after filling in the keys failed"; }
grep '^\[' <<<"$out" | indent
grep -q 'is READY' <<<"$out" || fail "not READY after filling in the keys"
droplet_exec curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/health" || fail "/health did not answer"
ok "after filling in BACKEND_URL and ALERT_INGEST_API_KEY, install starts it: READY, /health answers"
out=$(droplet_exec "$TEST_BIN" uninstall --purge 2>&1) || fail "final purge failed: $out"
done_step

step "stop droplet"
droplet_stop
for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
BG_PIDS=()
done_step

echo >&2
echo "== timings" >&2
printf '  %s\n' "${TIMINGS[@]}" >&2
printf '  %-58s %6s s\n' total "$(_droplet_since "$T_START")" >&2
echo "== security: $score_line" >&2
echo "PASS" >&2
