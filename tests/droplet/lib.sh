# shellcheck shell=bash
# tests/droplet/lib.sh: a "fresh droplet" (Debian bookworm booted by a real
# systemd inside systemd-nspawn) for tests of the appliance's systemd side.
#
# Source it from a bash test script (works under `set -euo pipefail`), as root:
#
#   . tests/droplet/lib.sh
#   droplet_trap                       # stop + remove every droplet on exit
#   droplet_boot smoke                 # sets DROPLET_ROOT, DROPLET_PID1, ...
#   droplet_copy_in ./volspike /usr/local/bin/volspike 0755
#   droplet_exec systemctl daemon-reload
#   droplet_journal -u volspike -n 20
#   droplet_stop
#
# Functions (all return non-zero with a message on stderr on failure):
#   droplet_deps                  install systemd-container/debootstrap if missing
#   droplet_rootfs                build (once, ~1 min) or reuse the cached tarball;
#                                 prints its path
#   droplet_boot NAME             untar a fresh tree, boot it, wait for
#                                 running/degraded; sets and exports
#                                 DROPLET_NAME DROPLET_DIR DROPLET_ROOT
#                                 DROPLET_PID1 DROPLET_NSPAWN_PID
#                                 (call it directly, NOT inside $(...): the
#                                 variables must land in the calling shell)
#   droplet_netns                 create (once per shell) the network namespace
#                                 every droplet of this shell boots into, with
#                                 only its own loopback up; sets and exports
#                                 DROPLET_NETNS (its name under /run/netns)
#   droplet_net_exec CMD...       run host-side CMD inside that namespace (a
#                                 fake, curl, a release server): it then shares
#                                 127.0.0.1 with the droplet and not with the
#                                 host, so a port taken on the host cannot fail
#                                 a test. For a background process use
#                                 `ip netns exec "$DROPLET_NETNS" CMD &` after
#                                 droplet_netns, so $! is CMD's own PID
#   droplet_exec CMD...           run CMD inside (nsenter -t PID1 -a), stdin/out
#                                 passed through, exit status preserved
#   droplet_sh 'SCRIPT'           droplet_exec sh -c 'SCRIPT'
#   droplet_copy_in SRC DEST [MODE]
#                                 copy a file or directory to container path
#                                 DEST (written under $DROPLET_ROOT; paths on
#                                 the container's own tmpfs mounts (/tmp, /run,
#                                 /dev/shm) are streamed in through nsenter)
#   droplet_journal [ARGS...]     journalctl --no-pager ARGS inside
#   droplet_wait TIMEOUT DESC CMD...
#                                 poll host-side CMD every 0.25 s until it
#                                 succeeds; on timeout print DESC and the last
#                                 50 journal lines and return 1
#   droplet_wait_active UNIT [TIMEOUT]   wait for `systemctl is-active UNIT`
#   droplet_stop                  SIGTERM nspawn, wait (timeout, then SIGKILL),
#                                 remove the tree; boot another one afterwards
#   droplet_trap                  install an EXIT/INT/TERM trap that stops and
#                                 removes every droplet this shell booted (on a
#                                 failing exit it prints the journal tail first)
#   droplet_cleanup               what the trap runs
#   droplet_test_harness WIDTH    for test scripts: defines step NAME, done_step
#                                 (adds "NAME  SECONDS" padded to WIDTH to
#                                 TIMINGS), fail MSG, ok MSG, indent; sets
#                                 T_START, WORK (a scratch dir) and BG_PIDS
#                                 (append background processes to it); on exit
#                                 kills BG_PIDS, runs droplet_cleanup, removes
#                                 WORK (instead of droplet_trap)
#   droplet_start_fake NAME [ARGS...]
#                                 with the harness, after droplet_netns: start
#                                 $FAKES/NAME ARGS in the droplet's network
#                                 namespace in the background (its PID added to
#                                 BG_PIDS, so call it in this shell, not in a
#                                 $(...)), wait for its READY line and set
#                                 FAKE_READY to the rest of that line
#
# Settings (environment):
#   VOLSPIKE_DROPLET_CACHE   cache dir for bookworm.tar   (/var/cache/volspike-droplet)
#   VOLSPIKE_DROPLET_WORK    where fresh trees are untarred (/var/tmp)
#   VOLSPIKE_DROPLET_MIRROR  Debian mirror                (http://deb.debian.org/debian)
#   VOLSPIKE_DROPLET_BOOT_TIMEOUT  seconds                (60)
#   VOLSPIKE_DROPLET_STOP_TIMEOUT  seconds                (30)
#   VOLSPIKE_DROPLET_KEEP=1  keep the tree of a failed run for debugging
#   VOLSPIKE_DROPLET_CGROUP  unified (default): the container's systemd gets a
#                            cgroup v2 tree like a real Debian 12 droplet, even
#                            on a host with the legacy/hybrid layout (sets
#                            SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1);
#                            host: whatever systemd-nspawn picks for this host
#
# What does not work inside such a container is listed in
# tests/droplet/README.md.

DROPLET_CACHE=${VOLSPIKE_DROPLET_CACHE:-/var/cache/volspike-droplet}
DROPLET_TARBALL=$DROPLET_CACHE/bookworm.tar
DROPLET_WORK=${VOLSPIKE_DROPLET_WORK:-/var/tmp}
DROPLET_MIRROR=${VOLSPIKE_DROPLET_MIRROR:-http://deb.debian.org/debian}
DROPLET_BOOT_TIMEOUT=${VOLSPIKE_DROPLET_BOOT_TIMEOUT:-60}
DROPLET_STOP_TIMEOUT=${VOLSPIKE_DROPLET_STOP_TIMEOUT:-30}
DROPLET_CGROUP=${VOLSPIKE_DROPLET_CGROUP:-unified}
DROPLET_SUITE=bookworm
DROPLET_PACKAGES=systemd,systemd-sysv,dbus,ca-certificates,procps,curl
# Bump when the tree preparation below changes: a cache with another key is rebuilt.
DROPLET_CACHE_KEY="v1 $DROPLET_SUITE minbase $DROPLET_PACKAGES"

# Every droplet booted by this shell, "NSPAWN_PID:PID1:DIR" per entry, for cleanup.
DROPLET__ALL=()
# The network namespace of this shell's droplets (named after this shell's
# PID, which subshells share, so every subshell finds the same one).
DROPLET_NETNS=volspike-droplet-$$

_droplet_log() { printf '[droplet %s] %s\n' "$(date +%T)" "$*" >&2; }
_droplet_err() { printf '[droplet %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; }
_droplet_now() { date +%s.%N; }
_droplet_since() { awk -v a="$1" -v b="$(_droplet_now)" 'BEGIN{printf "%.1f", b-a}'; }

droplet_deps() {
    if [ "$(id -u)" != 0 ]; then
        _droplet_err "the droplet rig needs root (debootstrap, systemd-nspawn, nsenter)"
        return 1
    fi
    local missing=()
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v nsenter >/dev/null || missing+=(util-linux)
    command -v ip >/dev/null || missing+=(iproute2)
    if [ ${#missing[@]} -gt 0 ]; then
        _droplet_log "installing ${missing[*]} (apt-get update first)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || { _droplet_err "apt-get update failed"; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
            || { _droplet_err "apt-get install ${missing[*]} failed"; return 1; }
    fi
}

# Unmount anything left mounted below $1 (an interrupted debootstrap leaves
# proc/sys mounted in its target), deepest first.
_droplet_umount_below() {
    local dir=$1 m
    [ -d "$dir" ] || return 0
    dir=$(realpath "$dir")
    findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

_droplet_rmtree() {
    local dir=$1
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    _droplet_umount_below "$dir"
    rm -rf --one-file-system "$dir"
}

droplet_rootfs() {
    droplet_deps || return 1
    mkdir -p "$DROPLET_CACHE" || return 1
    if [ -s "$DROPLET_TARBALL" ] && [ "$(cat "$DROPLET_TARBALL.key" 2>/dev/null)" = "$DROPLET_CACHE_KEY" ]; then
        echo "$DROPLET_TARBALL"
        return 0
    fi
    # One builder at a time; the others wait here and then reuse its result.
    local lockfd
    exec {lockfd}>"$DROPLET_CACHE/.lock" || return 1
    if ! flock -n "$lockfd"; then
        _droplet_log "another process is building $DROPLET_TARBALL; waiting for it (up to 15 min)"
    fi
    if ! flock -w 900 "$lockfd"; then
        _droplet_err "timed out waiting for another build of $DROPLET_TARBALL (lock $DROPLET_CACHE/.lock)"
        exec {lockfd}>&-
        return 1
    fi
    if [ -s "$DROPLET_TARBALL" ] && [ "$(cat "$DROPLET_TARBALL.key" 2>/dev/null)" = "$DROPLET_CACHE_KEY" ]; then
        exec {lockfd}>&-
        echo "$DROPLET_TARBALL"
        return 0
    fi
    local rc=0
    _droplet_build_rootfs || rc=$?
    exec {lockfd}>&-
    [ $rc = 0 ] && echo "$DROPLET_TARBALL"
    return $rc
}

# Called with the cache lock held. Everything goes to a temporary directory in
# the cache dir and only a finished tarball is renamed into place.
_droplet_build_rootfs() {
    local t0 stale tmp
    t0=$(_droplet_now)
    for stale in "$DROPLET_CACHE"/build.*; do   # leftovers of an interrupted build
        [ -e "$stale" ] && { _droplet_log "removing stale $stale"; _droplet_rmtree "$stale"; }
    done
    tmp=$(mktemp -d "$DROPLET_CACHE/build.XXXXXX") || return 1
    _droplet_log "building $DROPLET_TARBALL: debootstrap $DROPLET_SUITE minbase + $DROPLET_PACKAGES from $DROPLET_MIRROR (about 1 minute, once)"
    if ! debootstrap --variant=minbase --include="$DROPLET_PACKAGES" \
            "$DROPLET_SUITE" "$tmp/root" "$DROPLET_MIRROR" >"$tmp/debootstrap.log" 2>&1; then
        _droplet_err "debootstrap failed; last lines of its log:"
        tail -n 30 "$tmp/debootstrap.log" >&2
        tail -n 30 "$tmp/root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        _droplet_rmtree "$tmp"
        return 1
    fi
    _droplet_log "debootstrap done after $(_droplet_since "$t0") s; preparing and packing the tree"
    _droplet_umount_below "$tmp/root"
    local r=$tmp/root
    # A droplet is what a cloud image is after its first boot: no package
    # caches, a hostname; droplet_boot writes a new machine-id per droplet (an
    # empty one would make systemd treat the boot as a first boot).
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/debootstrap
    echo droplet >"$r/etc/hostname"
    # Nothing on a test droplet should go and talk to the internet on a timer.
    ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
    ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
    # Keep the journal on disk (like a droplet) so it survives service restarts
    # and `journalctl -u` sees everything.
    mkdir -p "$r/var/log/journal"
    echo "$DROPLET_CACHE_KEY" >"$r/etc/volspike-droplet"
    if ! tar -C "$r" --numeric-owner --xattrs -cf "$tmp/bookworm.tar" . 2>"$tmp/tar.err"; then
        _droplet_err "tar of the tree failed: $(tail -n 5 "$tmp/tar.err")"
        _droplet_rmtree "$tmp"
        return 1
    fi
    rm -f "$DROPLET_TARBALL.key"
    mv -f "$tmp/bookworm.tar" "$DROPLET_TARBALL" || { _droplet_rmtree "$tmp"; return 1; }
    echo "$DROPLET_CACHE_KEY" >"$DROPLET_TARBALL.key.tmp" && mv -f "$DROPLET_TARBALL.key.tmp" "$DROPLET_TARBALL.key"
    _droplet_rmtree "$tmp"
    _droplet_log "rootfs ready: $DROPLET_TARBALL ($(du -h "$DROPLET_TARBALL" | cut -f1)) in $(_droplet_since "$t0") s"
}

droplet_netns() {
    export DROPLET_NETNS
    [ -e "/run/netns/$DROPLET_NETNS" ] && return 0
    droplet_deps || return 1
    if ! ip netns add "$DROPLET_NETNS"; then
        _droplet_err "cannot create network namespace $DROPLET_NETNS (ip netns add)"
        return 1
    fi
    if ! ip -n "$DROPLET_NETNS" link set lo up; then
        _droplet_err "cannot bring up loopback in network namespace $DROPLET_NETNS"
        ip netns del "$DROPLET_NETNS" 2>/dev/null || true
        return 1
    fi
    _droplet_log "network namespace $DROPLET_NETNS: loopback only, shared by this test's droplets and fakes"
}

droplet_net_exec() {
    droplet_netns || return 1
    ip netns exec "$DROPLET_NETNS" "$@"
}

_droplet_netns_remove() {
    [ -e "/run/netns/$DROPLET_NETNS" ] || return 0
    ip netns del "$DROPLET_NETNS" 2>/dev/null || _droplet_err "could not remove network namespace $DROPLET_NETNS"
}

_droplet_alive() { [ -n "${DROPLET_NSPAWN_PID:-}" ] && kill -0 "$DROPLET_NSPAWN_PID" 2>/dev/null; }

# Print what is known about the current droplet's state: journal tail if it is
# up, else the nspawn console log.
_droplet_diagnose() {
    if [ -n "${DROPLET_PID1:-}" ] && kill -0 "$DROPLET_PID1" 2>/dev/null; then
        echo "----- last 50 journal lines of droplet ${DROPLET_NAME:-?} -----" >&2
        timeout 10 nsenter -t "$DROPLET_PID1" -a journalctl --no-pager -n 50 >&2 2>&1 || true
        echo "----- end of journal -----" >&2
    fi
    if [ -n "${DROPLET_DIR:-}" ] && [ -s "$DROPLET_DIR/console.log" ]; then
        echo "----- last 30 lines of nspawn console ($DROPLET_DIR/console.log) -----" >&2
        tail -n 30 "$DROPLET_DIR/console.log" >&2
        echo "----- end of console -----" >&2
    fi
}

droplet_boot() {
    local name=${1:?usage: droplet_boot NAME}
    if _droplet_alive; then
        _droplet_err "droplet ${DROPLET_NAME} is still running; droplet_stop it before booting $name"
        return 1
    fi
    case $name in *[!a-zA-Z0-9-]*|'') _droplet_err "droplet name '$name': use letters, digits, '-'"; return 1 ;; esac
    local t0 tarball dir
    t0=$(_droplet_now)
    tarball=$(droplet_rootfs) || return 1
    droplet_netns || return 1
    mkdir -p "$DROPLET_WORK"
    dir=$(mktemp -d "$DROPLET_WORK/volspike-droplet-$name.XXXXXX") || return 1
    DROPLET_NAME=$name DROPLET_DIR=$dir DROPLET_ROOT=$dir/root DROPLET_PID1='' DROPLET_NSPAWN_PID=''
    export DROPLET_NAME DROPLET_DIR DROPLET_ROOT DROPLET_PID1 DROPLET_NSPAWN_PID
    mkdir "$DROPLET_ROOT"
    if ! tar -C "$DROPLET_ROOT" --numeric-owner --xattrs -xf "$tarball"; then
        _droplet_err "untar of $tarball failed"; _droplet_rmtree "$dir"; return 1
    fi
    echo "$name" >"$DROPLET_ROOT/etc/hostname"
    # Every droplet gets its own machine-id, as a freshly provisioned one does.
    tr -d '-' </proc/sys/kernel/random/uuid >"$DROPLET_ROOT/etc/machine-id"
    _droplet_log "droplet $name: fresh tree at $DROPLET_ROOT ($(_droplet_since "$t0") s); booting"
    # The droplet's own network namespace (loopback only): its 127.0.0.1 is
    # not the host's, so a port in use on the host cannot clash; the fakes a
    # test starts with droplet_net_exec listen on this same loopback.
    local cg=()
    [ "$DROPLET_CGROUP" = unified ] && cg=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
    env ${cg[@]+"${cg[@]}"} systemd-nspawn -D "$DROPLET_ROOT" -M "$name" \
        --network-namespace-path="/run/netns/$DROPLET_NETNS" \
        --boot --register=no --keep-unit --console=pipe </dev/null >"$dir/console.log" 2>&1 &
    DROPLET_NSPAWN_PID=$!
    DROPLET__ALL+=("$DROPLET_NSPAWN_PID::$dir")
    # PID 1 of the container: the child of systemd-nspawn named "systemd".
    local deadline=$(( $(date +%s) + DROPLET_BOOT_TIMEOUT )) pid
    while [ -z "$DROPLET_PID1" ]; do
        for pid in $(pgrep -P "$DROPLET_NSPAWN_PID" 2>/dev/null); do
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then DROPLET_PID1=$pid; fi
        done
        [ -n "$DROPLET_PID1" ] && break
        if ! _droplet_alive; then
            _droplet_err "systemd-nspawn for $name exited before the container's systemd started"
            _droplet_diagnose; droplet_stop; return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            _droplet_err "no systemd child of systemd-nspawn ($DROPLET_NSPAWN_PID) after ${DROPLET_BOOT_TIMEOUT} s"
            _droplet_diagnose; droplet_stop; return 1
        fi
        sleep 0.1
    done
    export DROPLET_PID1
    DROPLET__ALL[${#DROPLET__ALL[@]}-1]="$DROPLET_NSPAWN_PID:$DROPLET_PID1:$dir"
    # Early on, systemctl may not reach the manager yet: retry until the deadline.
    local state=
    while :; do
        state=$(timeout 5 nsenter -t "$DROPLET_PID1" -a systemctl is-system-running --wait 2>/dev/null) || true
        case $state in running|degraded) break ;; esac
        if ! _droplet_alive; then
            _droplet_err "droplet $name died while booting (last state '${state}')"
            _droplet_diagnose; droplet_stop; return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            _droplet_err "droplet $name not running/degraded after ${DROPLET_BOOT_TIMEOUT} s (state '${state}')"
            timeout 10 nsenter -t "$DROPLET_PID1" -a systemctl list-jobs --no-pager >&2 || true
            _droplet_diagnose; droplet_stop; return 1
        fi
        sleep 0.2
    done
    if [ "$state" = degraded ]; then
        _droplet_log "droplet $name is degraded; failed units:"
        nsenter -t "$DROPLET_PID1" -a systemctl --failed --no-pager --no-legend >&2 || true
    fi
    _droplet_log "droplet $name $state ($(droplet_exec stat -f -c %T /sys/fs/cgroup | sed 's/cgroup2fs/cgroup v2/;s/tmpfs/cgroup v1/')): PID1=$DROPLET_PID1 nspawn=$DROPLET_NSPAWN_PID root=$DROPLET_ROOT (boot $(_droplet_since "$t0") s)"
}

_droplet_need() {
    if [ -z "${DROPLET_PID1:-}" ] || ! kill -0 "$DROPLET_PID1" 2>/dev/null; then
        _droplet_err "no droplet running (droplet_boot first)"
        return 1
    fi
}

droplet_exec() {
    _droplet_need || return 1
    # A clean environment: the host's variables are not the droplet's.
    nsenter -t "$DROPLET_PID1" -a -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

droplet_sh() { droplet_exec sh -c "$1"; }

droplet_journal() { droplet_exec journalctl --no-pager "$@"; }

droplet_copy_in() {
    local src=${1:?usage: droplet_copy_in SRC DEST [MODE]} dest=${2:?usage: droplet_copy_in SRC DEST [MODE]} mode=${3:-}
    [ -n "${DROPLET_ROOT:-}" ] && [ -d "$DROPLET_ROOT" ] || { _droplet_err "no droplet tree (droplet_boot first)"; return 1; }
    [ -e "$src" ] || { _droplet_err "droplet_copy_in: $src does not exist"; return 1; }
    case $dest in /*) ;; *) _droplet_err "droplet_copy_in: DEST must be absolute: $dest"; return 1 ;; esac
    case $dest in */) dest=$dest$(basename "$src") ;; esac
    case $dest in
        /tmp/*|/run/*|/dev/shm/*)
            # The booted container mounts its own tmpfs there, hiding $ROOT/tmp
            # etc.: stream the data in through its mount namespace instead.
            _droplet_need || return 1
            local parent
            parent=$(dirname "$dest")
            droplet_exec mkdir -p "$parent" || return 1
            if [ -d "$src" ]; then
                tar -C "$src" -cf - . | droplet_exec sh -c 'mkdir -p "$1" && tar -C "$1" -xf -' sh "$dest" || return 1
            else
                droplet_exec sh -c 'cat >"$1"' sh "$dest" <"$src" || return 1
                droplet_exec chmod "$(stat -c %a "$src")" "$dest" || return 1
            fi
            [ -z "$mode" ] || droplet_exec chmod "$mode" "$dest" || return 1
            ;;
        *)
            mkdir -p "$DROPLET_ROOT$(dirname "$dest")" || return 1
            if [ -d "$src" ]; then
                mkdir -p "$DROPLET_ROOT$dest" && cp -a "$src/." "$DROPLET_ROOT$dest/" || return 1
            else
                # Write beside and rename: never modify a file a process runs.
                cp -a "$src" "$DROPLET_ROOT$dest.droplet-tmp" && mv -f "$DROPLET_ROOT$dest.droplet-tmp" "$DROPLET_ROOT$dest" || return 1
            fi
            [ -z "$mode" ] || chmod "$mode" "$DROPLET_ROOT$dest" || return 1
            ;;
    esac
}

droplet_wait() {
    local secs=${1:?usage: droplet_wait TIMEOUT DESC CMD...} desc=${2:?usage: droplet_wait TIMEOUT DESC CMD...}
    shift 2
    local deadline
    deadline=$(( $(date +%s) + secs ))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            _droplet_err "timed out after ${secs} s waiting for: $desc"
            _droplet_diagnose
            return 1
        fi
        sleep 0.25
    done
}

droplet_wait_active() {
    local unit=${1:?usage: droplet_wait_active UNIT [TIMEOUT]} secs=${2:-30}
    if ! droplet_wait "$secs" "$unit to be active" droplet_exec systemctl is-active --quiet "$unit"; then
        droplet_exec systemctl status --no-pager -n 0 "$unit" >&2 || true
        return 1
    fi
}

# Stop one droplet given its nspawn PID, PID1 (may be empty) and dir.
_droplet_stop_one() {
    local npid=$1 pid1=$2 dir=$3 i
    if [ -n "$npid" ] && kill -0 "$npid" 2>/dev/null; then
        # nspawn turns SIGTERM into an orderly shutdown of the container.
        kill -TERM "$npid" 2>/dev/null || true
        for (( i = 0; i < DROPLET_STOP_TIMEOUT * 10; i++ )); do
            kill -0 "$npid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$npid" 2>/dev/null; then
            _droplet_err "systemd-nspawn $npid still running ${DROPLET_STOP_TIMEOUT} s after SIGTERM; killing it"
            # Killing the container's init kills its whole PID namespace.
            [ -n "$pid1" ] && kill -KILL "$pid1" 2>/dev/null
            sleep 0.5
            kill -KILL "$npid" 2>/dev/null || true
        fi
        wait "$npid" 2>/dev/null || true
    fi
    if [ -n "$pid1" ] && kill -0 "$pid1" 2>/dev/null && [ "$(cat "/proc/$pid1/comm" 2>/dev/null)" = systemd ]; then
        kill -KILL "$pid1" 2>/dev/null || true
    fi
    _droplet_rmtree "$dir"
}

droplet_stop() {
    [ -n "${DROPLET_DIR:-}" ] || return 0
    local t0 i entry
    t0=$(_droplet_now)
    _droplet_stop_one "${DROPLET_NSPAWN_PID:-}" "${DROPLET_PID1:-}" "$DROPLET_DIR"
    for i in "${!DROPLET__ALL[@]}"; do
        entry=${DROPLET__ALL[$i]}
        [ "${entry##*:}" = "$DROPLET_DIR" ] && unset 'DROPLET__ALL[i]'
    done
    DROPLET__ALL=("${DROPLET__ALL[@]}")
    _droplet_log "droplet ${DROPLET_NAME:-?} stopped and removed ($(_droplet_since "$t0") s)"
    DROPLET_NAME='' DROPLET_DIR='' DROPLET_ROOT='' DROPLET_PID1='' DROPLET_NSPAWN_PID=''
}

droplet_cleanup() {
    local rc=${1:-$?} entry npid rest pid1 dir
    if [ "$rc" != 0 ] && _droplet_alive; then
        _droplet_err "exiting with status $rc; state of droplet ${DROPLET_NAME}:"
        _droplet_diagnose
    fi
    if [ "${VOLSPIKE_DROPLET_KEEP:-}" = 1 ] && [ "$rc" != 0 ]; then
        _droplet_log "VOLSPIKE_DROPLET_KEEP=1: stopping but keeping ${DROPLET__ALL[*]:-nothing}"
    fi
    for entry in ${DROPLET__ALL[@]+"${DROPLET__ALL[@]}"}; do
        npid=${entry%%:*} rest=${entry#*:}
        pid1=${rest%%:*} dir=${rest#*:}
        if [ "${VOLSPIKE_DROPLET_KEEP:-}" = 1 ] && [ "$rc" != 0 ]; then
            dir=/nonexistent-keep
        fi
        _droplet_stop_one "$npid" "$pid1" "$dir"
        _droplet_log "cleaned up droplet (nspawn $npid)"
    done
    DROPLET__ALL=()
    DROPLET_NAME='' DROPLET_DIR='' DROPLET_ROOT='' DROPLET_PID1='' DROPLET_NSPAWN_PID=''
    _droplet_netns_remove
}

droplet_trap() {
    trap 'droplet_cleanup $?' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# The variables and functions are for the sourcing script.
# shellcheck disable=SC2034,SC2317
droplet_test_harness() {
    DROPLET__STEP_WIDTH=$1
    T_START=$(_droplet_now)
    TIMINGS=()
    STEP_T0=
    STEP_NAME=
    step() { STEP_NAME=$1; STEP_T0=$(_droplet_now); echo "== $1" >&2; }
    done_step() { TIMINGS+=("$(printf "%-${DROPLET__STEP_WIDTH}s %6s s" "$STEP_NAME" "$(_droplet_since "$STEP_T0")")"); }
    fail() { echo "FAIL: $*" >&2; exit 1; }
    ok() { echo "  ok: $*" >&2; }
    indent() { sed 's/^/    /' >&2; }

    WORK=$(mktemp -d)
    BG_PIDS=()
    _droplet_test_cleanup() {
        local rc=$?
        for pid in ${BG_PIDS[@]+"${BG_PIDS[@]}"}; do
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        droplet_cleanup "$rc"
        rm -rf "$WORK"
        exit "$rc"
    }
    trap _droplet_test_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

droplet_start_fake() {
    local name=$1 i
    shift
    FAKE_READY=
    ip netns exec "$DROPLET_NETNS" "$FAKES/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    BG_PIDS+=($!)
    for (( i = 0; i < 100; i++ )); do
        if grep -q '^READY' "$WORK/$name.out" 2>/dev/null; then
            FAKE_READY=$(sed -n 's/^READY //p' "$WORK/$name.out" | head -n 1)
            return 0
        fi
        kill -0 "${BG_PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$WORK/$name.err" >&2
    fail "$name did not print READY"
}
