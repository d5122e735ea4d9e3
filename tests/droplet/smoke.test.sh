#!/usr/bin/env bash
# tests/droplet/smoke.test.sh: the droplet rig and packaging/volspike.service
# against a real systemd. Run as root:  tests/droplet/smoke.test.sh
#
# Boots a fresh droplet, installs a stand-in for the binary (standin.c, built
# static) as /usr/local/bin/volspike with the rendered unit, the way
# `volspike install` will, and checks:
#   - the unit as shipped starts (Type=notify: active only after READY=1),
#     the hardening is applied to the process, the state dir is created
#     (volspike:volspike 0750) and writable, nothing else is;
#   - `systemd-analyze security` exposure <= 2.0 (printed);
#   - journald has the service's lines;
#   - clean stop on SIGTERM within TimeoutStopSec;
#   - watchdog: with a test drop-in (WatchdogSec=5, RestartSec=1, see below)
#     a stand-in that stops sending WATCHDOG=1 is killed ("Watchdog timeout")
#     and restarted (NRestarts grows), and recovers;
#   - exit status 78 is not restarted (RestartPreventExitStatus=78);
#   - a second droplet booted afterwards is fresh again.
# Prints how long each step took. Warm-cache runtime: well under a minute.
#
# The test drop-in /etc/systemd/system/volspike.service.d/test.conf shortens
# WatchdogSec=30 -> 5 and RestartSec=10 -> 1 so the watchdog check takes ~7 s
# instead of ~45 s; the shipped unit itself is what gets the security score.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

T_START=$(_droplet_now)
TIMINGS=()
STEP_T0=
step() { STEP_NAME=$1; STEP_T0=$(_droplet_now); echo "== $1" >&2; }
done_step() { TIMINGS+=("$(printf '%-52s %6s s' "$STEP_NAME" "$(_droplet_since "$STEP_T0")")"); }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*" >&2; }

BINARY=/usr/local/bin/volspike
ENV_FILE=/etc/volspike/volspike.env
SVC_USER=volspike

droplet_trap
WORK=$(mktemp -d)
trap 'droplet_cleanup $?; rm -rf "$WORK"' EXIT

step "rootfs (cached tarball, built if missing)"
droplet_rootfs >/dev/null
done_step

step "build stand-in (static)"
if command -v musl-gcc >/dev/null; then
    musl-gcc -static -O2 -o "$WORK/standin" "$HERE/standin.c"
elif command -v gcc >/dev/null; then
    gcc -static -O2 -o "$WORK/standin" "$HERE/standin.c"
else
    fail "need musl-gcc or gcc to build tests/droplet/standin.c"
fi
# What `volspike install` will do with the template.
sed -e "s|@BINARY@|$BINARY|g" -e "s|@ENV_FILE@|$ENV_FILE|g" -e "s|@USER@|$SVC_USER|g" \
    "$REPO/packaging/volspike.service" >"$WORK/volspike.service"
if grep -n '@[A-Z_]*@' "$WORK/volspike.service"; then fail "unrendered placeholder left in the unit"; fi
# The service requires its socket, which holds the HTTP listener.
sed -e "s|@LISTEN@|127.0.0.1:8080|g" "$REPO/packaging/volspike.socket" >"$WORK/volspike.socket"
if grep -n '@[A-Z_]*@' "$WORK/volspike.socket"; then fail "unrendered placeholder left in the socket unit"; fi
done_step

step "boot droplet 'smoke'"
droplet_boot smoke
done_step

step "install stand-in + rendered unit, enable --now"
droplet_exec useradd --system --no-create-home --home-dir /var/lib/volspike \
    --shell /usr/sbin/nologin "$SVC_USER"
droplet_copy_in "$WORK/standin" "$BINARY" 0755
droplet_exec install -d -m 0755 /etc/volspike
printf '# smoke test\nBACKEND_URL=http://127.0.0.1:9/\nALERT_INGEST_API_KEY=smoke\n' >"$WORK/env"
droplet_copy_in "$WORK/env" "$ENV_FILE" 0600
droplet_copy_in "$WORK/volspike.service" /etc/systemd/system/volspike.service 0644
droplet_copy_in "$WORK/volspike.socket" /etc/systemd/system/volspike.socket 0644
droplet_exec systemctl daemon-reload
# Type=notify: start returns only once READY=1 arrived (or the start failed).
if ! droplet_exec timeout 60 systemctl enable --now volspike.service; then
    droplet_exec systemctl status --no-pager volspike.service >&2 || true
    droplet_journal -u volspike.service -n 50 >&2 || true
    fail "volspike.service did not start"
fi
done_step

step "unit active, READY, hardening applied"
[ "$(droplet_exec systemctl is-active volspike.service)" = active ] || fail "unit not active"
ok "unit active"
status=$(droplet_exec systemctl show -p StatusText --value volspike.service)
[[ $status == *ready* ]] || fail "STATUS= not seen (StatusText='$status')"
ok "READY=1 + STATUS= received: $status"
pid=$(droplet_exec systemctl show -p MainPID --value volspike.service)
droplet_exec grep -qx 'NoNewPrivs:.1' "/proc/$pid/status" || fail "NoNewPrivs not set"
droplet_exec grep -qx 'CapBnd:.0000000000000000' "/proc/$pid/status" || fail "capabilities left"
droplet_exec grep -qx 'Seccomp:.2' "/proc/$pid/status" || fail "no seccomp filter"
[ "$(droplet_exec awk 'NR==2{print $1}' "/proc/$pid/uid_map")" = "$(droplet_exec id -u $SVC_USER)" ] \
    || fail "PrivateUsers: uid_map is not root + $SVC_USER only"
ok "main PID $pid: NoNewPrivs, no capabilities, seccomp, private user namespace"
[ "$(droplet_exec stat -c '%U:%G %a' /var/lib/volspike)" = "$SVC_USER:$SVC_USER 750" ] \
    || fail "state dir: $(droplet_exec stat -c '%U:%G %a' /var/lib/volspike)"
[ "$(droplet_exec stat -c '%U %a' /var/lib/volspike/standin.state)" = "$SVC_USER 600" ] \
    || fail "state file not written by the service with UMask=0077"
ok "StateDirectory /var/lib/volspike volspike:volspike 0750, written by the service (file 0600)"
# (journal captured first: `journalctl | grep -q` can SIGPIPE under pipefail)
jr=$(droplet_journal -u volspike.service -o cat)
checks=$(grep -c '^standin: check .* ok' <<<"$jr" || true)
if grep 'FAILED' <<<"$jr"; then fail "a stand-in check failed"; fi
[ "$checks" -ge 6 ] || fail "expected 6 stand-in checks in the journal, saw $checks"
grep -q 'af_netlink_refused=yes' <<<"$jr" || fail "AF_NETLINK was not refused"
grep -q 'check listen_tcp ok.*fd 3 from systemd' <<<"$jr" || fail "the stand-in did not get its listener from volspike.socket"
[ "$(droplet_exec systemctl is-active volspike.socket)" = active ] || fail "volspike.socket not active"
ok "stand-in checks inside the sandbox: $checks ok (state writable, /etc and /usr read-only, TLS roots, AF_INET6, listener 127.0.0.1:8080 from volspike.socket), AF_NETLINK refused"
done_step

step "systemd-analyze security"
droplet_exec systemd-analyze security --no-pager volspike.service >"$WORK/security.txt" 2>&1 || true
# SMOKE_SECURITY_OUT=FILE keeps the full report (tests/droplet/security-score.txt is one).
[ -z "${SMOKE_SECURITY_OUT:-}" ] || cp "$WORK/security.txt" "$SMOKE_SECURITY_OUT"
score_line=$(grep 'Overall exposure level' "$WORK/security.txt") || { cat "$WORK/security.txt" >&2; fail "no exposure score"; }
echo "  $score_line" >&2
grep '✗' "$WORK/security.txt" | sed 's/^/    /' >&2 || true
score=$(echo "$score_line" | sed -E 's/.*: ([0-9.]+) .*/\1/')
awk -v s="$score" 'BEGIN{exit !(s <= 2.0)}' || fail "exposure $score > 2.0"
ok "exposure $score <= 2.0"
verify=$(droplet_exec systemd-analyze verify /etc/systemd/system/volspike.service /etc/systemd/system/volspike.socket 2>&1) || true
if [ -n "$verify" ]; then echo "$verify" >&2; fail "systemd-analyze verify complained"; fi
ok "systemd-analyze verify: clean"
done_step

step "journald"
n=$(droplet_journal -u volspike.service -o cat | wc -l)
[ "$n" -gt 0 ] || fail "journalctl -u volspike has no entries"
last=$(droplet_journal _SYSTEMD_UNIT=volspike.service -o verbose -n 1)
grep -q 'SYSLOG_IDENTIFIER=volspike' <<<"$last" || { echo "$last" >&2; fail "service's journal entries lack SYSLOG_IDENTIFIER=volspike"; }
ok "journalctl -u volspike: $n lines; the service's own have SYSLOG_IDENTIFIER=volspike"
done_step

step "clean stop (SIGTERM -> STOPPING=1, exit 0)"
droplet_exec timeout 30 systemctl stop volspike.service
[ "$(droplet_exec systemctl show -p Result --value volspike.service)" = success ] || fail "stop: Result is not success"
grep -q 'SIGTERM, stopping cleanly' <<<"$(droplet_journal -u volspike.service -o cat)" || fail "no clean-stop line"
ok "stopped cleanly, Result=success"
done_step

step "test drop-in (WatchdogSec=5, RestartSec=1), restart"
printf '[Service]\n# Test only: make the watchdog and restart checks quick.\nWatchdogSec=5\nRestartSec=1\n' >"$WORK/test.conf"
droplet_copy_in "$WORK/test.conf" /etc/systemd/system/volspike.service.d/test.conf 0644
droplet_exec systemctl daemon-reload
droplet_exec timeout 30 systemctl start volspike.service
[ "$(droplet_exec systemctl show -p WatchdogUSec --value volspike.service)" = 5s ] || fail "drop-in not applied"
ok "active with WatchdogSec=5"
done_step

step "watchdog: pings stop -> killed and restarted"
n0=$(droplet_exec systemctl show -p NRestarts --value volspike.service)
droplet_exec touch /var/lib/volspike/hang    # the stand-in stops WATCHDOG=1 ("wedged")
nrestarts_above() { [ "$(droplet_exec systemctl show -p NRestarts --value volspike.service)" -gt "$1" ]; }
droplet_wait 30 "NRestarts to grow past $n0 after the pings stopped" nrestarts_above "$n0"
grep -m1 'Watchdog timeout' <<<"$(droplet_journal -u volspike.service)" >&2 || fail "journal has no 'Watchdog timeout'"
n1=$(droplet_exec systemctl show -p NRestarts --value volspike.service)
ok "NRestarts $n0 -> $n1, 'Watchdog timeout' in the journal"
droplet_exec rm -f /var/lib/volspike/hang
# The process running now may have seen the file: restart into a healthy one.
droplet_exec timeout 30 systemctl restart volspike.service
n2=$(droplet_exec systemctl show -p NRestarts --value volspike.service)
sleep 6   # more than one WatchdogSec: a pinging process must survive it
droplet_wait_active volspike.service 10
n3=$(droplet_exec systemctl show -p NRestarts --value volspike.service)
[ "$n3" = "$n2" ] || fail "restarted again ($n2 -> $n3) although WATCHDOG=1 pings resumed"
ok "recovered: active through a full watchdog interval once the pings resumed (NRestarts stays $n3)"
done_step

step "exit 78 is not restarted"
droplet_exec touch /var/lib/volspike/exit78
droplet_exec systemctl restart volspike.service || true   # start fails: exits 78 before READY
sleep 2.5   # > RestartSec=1: a restart would have happened by now
st=$(droplet_exec systemctl show -p ActiveState,ExecMainStatus,NRestarts volspike.service | tr '\n' ' ')
[[ $st == *ActiveState=failed* && $st == *ExecMainStatus=78* ]] || fail "after exit 78: $st"
ok "after exit 78: $st(no restart loop)"
droplet_exec rm -f /var/lib/volspike/exit78
done_step

step "stop droplet 'smoke'"
droplet_stop
done_step

step "second droplet is fresh"
droplet_boot smoke2
if droplet_exec id "$SVC_USER" >/dev/null 2>&1 || droplet_exec test -e /etc/systemd/system/volspike.service; then
    fail "second droplet is not fresh"
fi
ok "no volspike user or unit on the second droplet"
droplet_stop
done_step

echo >&2
echo "== timings" >&2
printf '  %s\n' "${TIMINGS[@]}" >&2
printf '  %-52s %6s s\n' total "$(_droplet_since "$T_START")" >&2
echo "== security: $score_line" >&2
echo "PASS" >&2
