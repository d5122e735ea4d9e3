#!/usr/bin/env bash
# tests/droplet/hardening-probe.sh: which systemd hardening directives really
# take effect inside the nspawn droplet?
#
# For each directive it runs a transient service (systemd-run --wait --pipe,
# as root unless noted) twice: once WITHOUT the directive (baseline) and once
# WITH it, each running a shell test that succeeds iff the restriction is in
# effect. Verdicts:
#   works        baseline: not restricted; with directive: restricted
#   NO EFFECT    with directive: still not restricted (silently not applied)
#   inherent     already restricted without it (nspawn restricts the whole
#                container), so the directive cannot be observed here
#   START FAILS  the unit failed to start with the directive (exit 2xx)
#
# Usage: sudo tests/droplet/hardening-probe.sh       (boots its own droplet)
#   or, from a script with a droplet up:  . hardening-probe.sh; probe_all
# Results are documented in tests/droplet/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

PROBE_FAILS=0

# probe NAME "PROPS" 'TEST' [BASE_PROPS]
# PROPS / BASE_PROPS: space-separated systemd-run -p assignments (no spaces inside).
probe() {
    local name=$1 props=$2 test=$3 base=${4:-} p
    local bargs=() wargs=()
    for p in $base; do bargs+=(-p "$p"); wargs+=(-p "$p"); done
    for p in $props; do wargs+=(-p "$p"); done
    local brc=0 wrc=0 bout wout verdict
    bout=$(droplet_exec timeout 20 systemd-run --quiet --wait --pipe --collect \
        "${bargs[@]}" -- /bin/bash -c "$test" 2>&1 </dev/null) || brc=$?
    wout=$(droplet_exec timeout 20 systemd-run --quiet --wait --pipe --collect \
        "${wargs[@]}" -- /bin/bash -c "$test" 2>&1 </dev/null) || wrc=$?
    if [ $wrc -ge 200 ] && [ $wrc -lt 250 ]; then verdict="START FAILS ($wrc)"; PROBE_FAILS=$((PROBE_FAILS+1))
    elif [ $brc = 0 ]; then verdict=inherent
    elif [ $wrc = 0 ]; then verdict=works
    else verdict="NO EFFECT"; PROBE_FAILS=$((PROBE_FAILS+1))
    fi
    printf '%-34s %-16s base:%s with:%s\n' "$name" "$verdict" \
        "$(echo "$bout" | tail -n1 | cut -c1-60)" "$(echo "$wout" | tail -n1 | cut -c1-60)"
}

# capability bit N absent from the bounding set
cap_gone() { echo "b=\$(awk '/^CapBnd/{print \$2}' /proc/self/status); [ \$(( 0x\$b >> $1 & 1 )) = 0 ] && echo cap$1-gone || { echo cap$1-present; false; }"; }

probe_all() {
    local t0
    t0=$(_droplet_now)
    # Fixtures: the probe binary, a file in the container's /tmp, a listener for
    # the IP firewall probe, a fake module dir.
    if ! droplet_exec test -x /usr/local/bin/standin; then
        if [ -z "${STANDIN:-}" ]; then
            STANDIN=$(mktemp -d)/standin
            musl-gcc -static -O2 -o "$STANDIN" "$HERE/standin.c" 2>/dev/null || gcc -static -O2 -o "$STANDIN" "$HERE/standin.c"
        fi
        droplet_copy_in "$STANDIN" /usr/local/bin/standin 0755
    fi
    droplet_exec touch /tmp/probe-outside
    droplet_exec mkdir -p /usr/lib/modules/probe
    droplet_exec systemd-run --quiet --unit=probe-listen -p Type=notify -p StateDirectory=probe-listen -p ProtectSystem=strict \
        -E VOLSPIKE_HTTP_ADDR=127.0.0.1:18080 /usr/local/bin/standin run
    printf '%-34s %-16s %s\n' DIRECTIVE VERDICT "LAST LINE OF OUTPUT (baseline / with)"
    probe NoNewPrivileges=yes            NoNewPrivileges=yes 'grep -q "NoNewPrivs:.*1" /proc/self/status && echo nnp || { echo no-nnp; false; }'
    probe CapabilityBoundingSet=         CapabilityBoundingSet= 'grep -q "CapBnd:.*0000000000000000" /proc/self/status && echo caps-empty || { grep CapBnd /proc/self/status; false; }'
    probe ProtectSystem=strict           ProtectSystem=strict '! { touch /etc/.probe && rm -f /etc/.probe; } 2>/dev/null && echo etc-ro || { echo etc-rw; false; }'
    probe ProtectHome=yes                ProtectHome=yes '! test -e /root/.profile && echo home-hidden || { echo home-visible; false; }'
    probe PrivateTmp=yes                 PrivateTmp=yes '! test -e /tmp/probe-outside && echo tmp-private || { echo tmp-shared; false; }'
    probe PrivateDevices=yes             PrivateDevices=yes '! test -e /dev/net/tun && ! test -e /dev/console && echo dev-private || { echo /dev/*; false; }'
    probe "DevicePolicy=closed"          "DevicePolicy=closed" 'if exec 3</dev/net/tun; then echo tun-openable; false; else echo tun-refused; fi 2>&1'
    probe ProtectKernelModules=yes       ProtectKernelModules=yes '! ls /usr/lib/modules/probe >/dev/null 2>&1 && echo modules-hidden || { echo modules-visible; false; }'
    probe "ProtectKernelModules(cap)"    ProtectKernelModules=yes "$(cap_gone 16)"
    probe ProtectKernelLogs=yes          ProtectKernelLogs=yes '! head -c0 /dev/kmsg 2>/dev/null && echo kmsg-refused || { echo kmsg-open; false; }'
    probe "ProtectKernelLogs(cap)"       ProtectKernelLogs=yes "$(cap_gone 34)"
    probe ProtectKernelTunables=yes      ProtectKernelTunables=yes 'findmnt -n -o OPTIONS /proc/sys | grep -q "^ro" && echo proc-sys-ro || { echo proc-sys-rw; false; }'
    probe ProtectControlGroups=yes       ProtectControlGroups=yes 'c=/sys/fs/cgroup; [ -d $c/systemd ] && c=$c/systemd; findmnt -n -o OPTIONS $c | grep -q "^ro" && echo cgroup-ro || { echo cgroup-rw; false; }'
    probe "ProtectClock(cap)"            ProtectClock=yes "$(cap_gone 25)"
    probe "ProtectClock(settimeofday)"   ProtectClock=yes 'if date -s "$(date)" >/dev/null 2>&1; then echo clock-settable; false; else echo clock-refused; fi'
    probe ProtectHostname=yes            ProtectHostname=yes '[ "$(readlink /proc/self/ns/uts)" != "$(readlink /proc/1/ns/uts)" ] && echo own-uts || { echo shared-uts; false; }'
    probe ProtectProc=invisible          ProtectProc=invisible '! test -e /proc/1 && echo pid1-invisible || { echo pid1-visible; false; }' "User=nobody"
    probe ProcSubset=pid                 ProcSubset=pid '! test -e /proc/meminfo && echo no-meminfo || { echo meminfo; false; }' "User=nobody"
    probe PrivateUsers=yes               PrivateUsers=yes '! grep -q 4294967295 /proc/self/uid_map && echo "$(cat /proc/self/uid_map)" || { echo full-uid-map; false; }' "User=nobody"
    probe RestrictAddressFamilies=AF_UNIX RestrictAddressFamilies=AF_UNIX 'bash -c "exec 3<>/dev/tcp/127.0.0.1/18080" 2>&1 | grep -q "family not supported" && echo inet-refused || { echo inet-allowed; false; }'
    probe RestrictNamespaces=yes         RestrictNamespaces=yes '! unshare -m true 2>/dev/null && echo unshare-refused || { echo unshare-ok; false; }'
    probe RestrictRealtime=yes           RestrictRealtime=yes '! chrt -f 1 true 2>/dev/null && echo rt-refused || { echo rt-ok; false; }'
    probe RestrictSUIDSGID=yes           RestrictSUIDSGID=yes 'f=/var/tmp/suid.$$; touch $f; chmod u+s $f 2>/dev/null; r=$?; rm -f $f; [ $r != 0 ] && echo suid-refused || { echo suid-ok; false; }'
    probe LockPersonality=yes            LockPersonality=yes '! setarch linux32 true 2>/dev/null && echo personality-refused || { echo personality-ok; false; }'
    probe MemoryDenyWriteExecute=yes     MemoryDenyWriteExecute=yes '/usr/local/bin/standin probe-wx'
    probe SystemCallArchitectures=native SystemCallArchitectures=native '/usr/local/bin/standin probe-compat'
    probe "SystemCallFilter=~mkdir"      "SystemCallFilter=~mkdir SystemCallFilter=~mkdirat SystemCallErrorNumber=EPERM" 'd=/var/tmp/p.$$; if mkdir $d 2>/dev/null; then rmdir $d; echo mkdir-ok; false; else echo mkdir-refused; fi'
    probe "SystemCallFilter=@system-service" "SystemCallFilter=@system-service SystemCallErrorNumber=EPERM" 'if mount -t tmpfs none /mnt 2>/dev/null; then umount /mnt; echo mount-ok; false; else echo mount-refused; fi' "PrivateMounts=yes"
    probe PrivateNetwork=yes             PrivateNetwork=yes '[ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] && echo own-netns || { echo shared-netns; false; }'
    probe "IPAddressDeny=any (unused)"   IPAddressDeny=any 'if bash -c "exec 3<>/dev/tcp/127.0.0.1/18080" 2>/dev/null; then echo connect-ok; false; else echo connect-refused; fi'
    probe "SocketBindDeny=any (unused)"  SocketBindDeny=any '/usr/local/bin/standin probe-bind 18081'
    probe "MemoryMax=64M (unused)"       MemoryMax=64M 'if grep -q "memory:/system.slice/" /proc/self/cgroup || [ "$(cat /sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)/memory.max 2>/dev/null)" = 67108864 ]; then echo memory-limited; else echo no-memory-limit; false; fi'
    droplet_exec systemctl stop probe-listen
    echo "probes took $(_droplet_since "$t0") s; START FAILS/NO EFFECT count: $PROBE_FAILS" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    droplet_trap
    droplet_boot probe
    probe_all
    droplet_stop
fi
