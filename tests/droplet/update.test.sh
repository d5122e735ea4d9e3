#!/usr/bin/env bash
# tests/droplet/update.test.sh: `volspike self-update` and `deploy.sh
# release|push` against a real systemd on a fresh Debian 12 droplet
# (systemd-nspawn, see lib.sh). Run as root:  tests/droplet/update.test.sh
#
# Builds two static binaries from this tree: OLD (Cargo.toml's version) and
# NEW (the patch version + 1, via the build-time knob VOLSPIKE_VERSION_OVERRIDE,
# in its own target dir so both stay cached), plus BROKEN (a shell script that
# answers `version` as the patch + 2 release but exits 1 on `run`). Everything
# is packed and signed by `deploy.sh release` with a throwaway key whose public
# half the droplet trusts through /etc/volspike/release-keys.pub; manifests and
# artifacts are served by python3 -m http.server on 127.0.0.1 of the
# droplet's own network namespace (droplet_netns), not the host's.
#
# On one droplet, after `deploy.sh install` of OLD (over a stand-in for ssh):
#   --check reports NEW; a tampered artifact (manifest digest), a flipped byte
#   (--from, signature), another key, no signature, a foreign target, and a
#   keys file others may write are each refused with the reason, binary and
#   running process untouched; `self-update --yes` from the manifest brings NEW
#   up (READY, /health, previous kept) and the downtime is measured three ways;
#   OLD without --version is refused; BROKEN is rolled back (exit 1, NEW back,
#   /health 200); `--rollback` goes to OLD by hand; `deploy.sh push` brings
#   NEW back; an updater started inside
#   volspike.service's cgroup moves itself out and survives the restart.
# Prints the time of each step. Everything started is stopped on any exit.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

droplet_test_harness 62

TARGET=x86_64-unknown-linux-musl
SVC=volspike.service
BIN=/usr/local/bin/volspike
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export PATH="$HOME/.cargo/bin:$PATH"

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$(shuf -i 20000-29999 -n 1)
        if ! droplet_net_exec ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

step "rootfs, zipsign"
droplet_rootfs >/dev/null
command -v zipsign >/dev/null || cargo install zipsign --version '^0.2' --locked >&2
ok "$(zipsign --version)"
done_step

step "build OLD and NEW static binaries"
(cd "$REPO" && cargo build -q --release --locked --target "$TARGET") >&2
OLD_BIN=$WORK/old/volspike
mkdir -p "$WORK/old" "$WORK/new" "$WORK/broken"
cp "$TARGET_DIR/$TARGET/release/volspike" "$OLD_BIN"
OLD=$("$OLD_BIN" version | awk '{print $2}')
IFS=. read -r major minor patch <<<"${OLD%%-*}"
NEW=$major.$minor.$((patch + 1))
BROKEN=$major.$minor.$((patch + 2))
# Its own target dir: toggling the knob in one dir would rebuild both every run.
(cd "$REPO" && VOLSPIKE_VERSION_OVERRIDE=$NEW CARGO_TARGET_DIR=$TARGET_DIR/update-test-new \
    cargo build -q --release --locked --target "$TARGET") >&2
NEW_BIN=$WORK/new/volspike
cp "$TARGET_DIR/update-test-new/$TARGET/release/volspike" "$NEW_BIN"
[ "$("$NEW_BIN" version | awk '{print $2}')" = "$NEW" ] || fail "NEW binary says $("$NEW_BIN" version)"
# Signed like any release, so only the start check can catch it.
cat >"$WORK/broken/volspike" <<EOF
#!/bin/sh
case "\$1" in
  version) echo "volspike $BROKEN ($TARGET, commit broken, built $(date -u +%F))" ;;
  *) echo "volspike $BROKEN: broken on purpose, exiting at start" >&2; exit 1 ;;
esac
EOF
chmod 755 "$WORK/broken/volspike"
ok "OLD $OLD, NEW $NEW, BROKEN $BROKEN (script)"
done_step

step "keys, artifacts and manifests via deploy.sh release"
KEYS=$WORK/keys
mkdir -p "$KEYS"
zipsign gen-key "$KEYS/test.key" "$KEYS/test.pub" >/dev/null
zipsign gen-key "$KEYS/rogue.key" "$KEYS/rogue.pub" >/dev/null
SRV=$WORK/srv
release() { # DIST BINARY [KEYFILE]: deploy.sh release with the test key from a file
    VOLSPIKE_SIGNING_KEY_FILE=${3:-$KEYS/test.key} "$REPO/deploy.sh" release --binary "$2" --dist "$1" 2>"$WORK/release.err" \
        || { cat "$WORK/release.err" >&2; fail "deploy.sh release $2"; }
}
release "$SRV/good" "$OLD_BIN"
release "$SRV/good" "$NEW_BIN"
grep -q 'NOT built into the binary' "$WORK/release.err" || fail "deploy.sh release did not warn about a key outside the binary"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert [r["version"] for r in m["releases"]] == [sys.argv[2], sys.argv[3]], m' \
    "$SRV/good/manifest.json" "$NEW" "$OLD" || fail "manifest: $(cat "$SRV/good/manifest.json")"
release "$SRV/broken" "$WORK/broken/volspike"
NEW_ART=volspike-$NEW-$TARGET.tar.gz
OLD_ART=volspike-$OLD-$TARGET.tar.gz
# Tampered: one byte flipped in the middle of the artifact, manifest unchanged.
mkdir -p "$SRV/tampered"
cp "$SRV/good/manifest.json" "$SRV/good/$NEW_ART" "$SRV/tampered/"
flip_byte() {
    local f=$1 off b
    off=$(( $(stat -c %s "$f") / 2 ))
    b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
    # shellcheck disable=SC2059  # the format is the one octal escape
    printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}
flip_byte "$SRV/tampered/$NEW_ART"
# Local artifacts for --from.
LOCAL=$WORK/local
mkdir -p "$LOCAL/flipped" "$LOCAL/rogue" "$LOCAL/unsigned" "$LOCAL/foreign" "$LOCAL/old" "$LOCAL/new"
cp "$SRV/tampered/$NEW_ART" "$LOCAL/flipped/"
# The rogue key goes in through the environment variable form.
VOLSPIKE_SIGNING_KEY=$(base64 -w0 "$KEYS/rogue.key") VOLSPIKE_SIGNING_KEY_FILE=/nonexistent \
    "$REPO/deploy.sh" release --binary "$NEW_BIN" --dist "$LOCAL/rogue" 2>/dev/null || fail "release with the env key"
tar --owner=0 --group=0 -C "$WORK/new" -czf "$LOCAL/unsigned/$NEW_ART" volspike
cp "$SRV/good/$NEW_ART" "$LOCAL/foreign/volspike-$NEW-aarch64-unknown-linux-musl.tar.gz"
cp "$SRV/good/$OLD_ART" "$SRV/good/$OLD_ART.sha256" "$LOCAL/old/"
cp "$SRV/good/$NEW_ART" "$SRV/good/$NEW_ART.sha256" "$LOCAL/new/"
ok "$(find "$SRV" "$LOCAL" -name '*.tar.gz' | wc -l) artifacts; good manifest lists $NEW, $OLD"
done_step

step "release server on the droplet network's 127.0.0.1, boot droplet, deploy.sh install OLD"
droplet_netns || fail "no network namespace for the droplet"
SRV_PORT=$(free_port) || fail "no free port"
HTTP_PORT=$(free_port) || fail "no free port"
ip netns exec "$DROPLET_NETNS" python3 -m http.server --bind 127.0.0.1 --directory "$SRV" "$SRV_PORT" >"$WORK/http.log" 2>&1 &
BG_PIDS+=($!)
URL=http://127.0.0.1:$SRV_PORT
droplet_wait 10 "release server" droplet_net_exec curl -fsS -o /dev/null "$URL/good/manifest.json"
droplet_boot update
# Nothing here needs the internet: every job is off and the backend is a
# loopback URL nobody posts to.
# Every job, from the one registry (jobs::registry::ALL).
mapfile -t JOBS < <(sed -n 's/^ *name: "\([a-z_]*\)",$/\1/p' "$REPO/src/jobs/registry.rs")
[ ${#JOBS[@]} -gt 0 ] || fail "no job names found in src/jobs/registry.rs"
cat >"$WORK/volspike.env" <<EOF
BACKEND_URL=http://127.0.0.1:9/
ALERT_INGEST_API_KEY=droplet-test
VOLSPIKE_DISABLED_JOBS=$(IFS=,; echo "${JOBS[*]}")
VOLSPIKE_HTTP_ADDR=127.0.0.1:$HTTP_PORT
VOLSPIKE_UPDATE_URL=$URL/good/manifest.json
EOF
# The droplet has no sshd: this stand-in for ssh runs the remote command
# through nsenter, which is what ssh would do on the far side.
cat >"$WORK/fake-ssh" <<EOF
#!/bin/sh
host=\$1; shift
exec nsenter -t $DROPLET_PID1 -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -c "\$*"
EOF
chmod 755 "$WORK/fake-ssh"
# First install the way an operator does it: deploy.sh install HOST.
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" install droplet --binary "$OLD_BIN" --env-file "$WORK/volspike.env" 2>&1) \
    || { echo "$out" >&2; fail "deploy.sh install"; }
grep -q 'is READY' <<<"$out" || { echo "$out" >&2; fail "deploy.sh install: no READY"; }
droplet_exec sh -c 'ls /var/tmp' | grep -q volspike-install && fail "deploy.sh install left its temp dir"
[ "$(droplet_exec stat -c '%U %a' /etc/volspike/volspike.env)" = "root 600" ] || fail "env file not root 0600"
droplet_copy_in "$KEYS/test.pub" /etc/volspike/release-keys.pub 0644
droplet_exec chown root:root /etc/volspike/release-keys.pub
droplet_copy_in "$LOCAL" /root/local
droplet_exec chown -R root:root /root/local
ok "installed $(droplet_exec $BIN version)"
done_step

health_version() { droplet_exec curl -fsS -m 2 "http://127.0.0.1:$HTTP_PORT/health" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'; }
installed() { droplet_exec $BIN version | awk '{print $2}'; }
inv() { droplet_exec systemctl show -p InvocationID --value $SVC; }
md5() { droplet_exec md5sum "$1" | cut -d' ' -f1; }
last_outcome() { droplet_exec cat /var/lib/volspike/update.json | python3 -c 'import json,sys; r=json.load(sys.stdin)["last"]; print(r["action"], r["outcome"], r.get("from"), r.get("to"))'; }
# Runs self-update inside with ARGS; sets RC and OUT (stdout+stderr).
su_run() { RC=0; OUT=$(droplet_exec "$@" 2>&1) || RC=$?; indent <<<"$OUT"; }
# A refusal: exit 1, the message, binary and process untouched.
expect_refused() {
    local want=$1; shift
    local m0 i0
    m0=$(md5 $BIN); i0=$(inv)
    su_run "$@"
    [ "$RC" = 1 ] || fail "$*: exit $RC, want 1"
    grep -qF -- "$want" <<<"$OUT" || fail "$*: no '$want' in the output"
    grep -q 'refused: ' <<<"$OUT" || fail "$*: not called a refusal"
    [ "$(md5 $BIN)" = "$m0" ] || fail "$*: $BIN changed"
    [ "$(inv)" = "$i0" ] || fail "$*: the service was restarted"
    ok "refused ($want); $BIN and invocation unchanged"
}

step "--check reports NEW (also as nobody); nothing changes"
[ "$(health_version)" = "$OLD" ] || fail "/health says $(health_version), want $OLD"
m0=$(md5 $BIN)
su_run $BIN self-update --check
[ "$RC" = 0 ] || fail "--check exit $RC"
grep -qF "update available: $OLD -> $NEW" <<<"$OUT" || fail "--check did not report $NEW"
[ "$(md5 $BIN)" = "$m0" ] || fail "--check changed the binary"
ok "--check: update available, binary unchanged"
# --check needs no root (the env file is root's: the URL comes from the
# environment); anything else does.
NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
su_run "${NOBODY[@]}" env "VOLSPIKE_UPDATE_URL=$URL/good/manifest.json" $BIN self-update --check
{ [ "$RC" = 0 ] && grep -qF "update available: $OLD -> $NEW" <<<"$OUT"; } || fail "--check as nobody: exit $RC"
su_run "${NOBODY[@]}" $BIN self-update --yes
{ [ "$RC" = 1 ] && grep -qF "needs root" <<<"$OUT"; } || fail "self-update as nobody: exit $RC"
[ "$(md5 $BIN)" = "$m0" ] || fail "a non-root attempt changed the binary"
ok "as nobody: --check works, an update is refused (needs root)"
# --check --from verifies everything and changes nothing.
su_run $BIN self-update --check --from "/root/local/new/$NEW_ART"
{ [ "$RC" = 0 ] && grep -qF "would replace $OLD with $NEW (--check: nothing changed)" <<<"$OUT"; } || fail "--check --from: exit $RC"
[ "$(md5 $BIN)" = "$m0" ] || fail "--check --from changed the binary"
done_step

step "refusals: tampered, flipped, other key, unsigned, foreign target, keys file"
expect_refused "digest mismatch: the manifest $URL/tampered/manifest.json says sha256:" \
    env "VOLSPIKE_UPDATE_URL=$URL/tampered/manifest.json" $BIN self-update --yes
expect_refused "signature does not match any trusted key (checked 2 keys: built-in volspike-release-1, /etc/volspike/release-keys.pub #1)" \
    $BIN self-update --yes --from "/root/local/flipped/$NEW_ART"
expect_refused "signature does not match any trusted key" \
    $BIN self-update --yes --from "/root/local/rogue/$NEW_ART"
expect_refused "artifact is not signed" \
    $BIN self-update --yes --from "/root/local/unsigned/$NEW_ART"
expect_refused "wrong target: volspike-$NEW-aarch64-unknown-linux-musl.tar.gz is built for aarch64-unknown-linux-musl, this machine runs $TARGET" \
    $BIN self-update --yes --from "/root/local/foreign/volspike-$NEW-aarch64-unknown-linux-musl.tar.gz"
droplet_exec chmod 664 /etc/volspike/release-keys.pub
expect_refused "ignoring /etc/volspike/release-keys.pub: mode 0664 lets group or others write it" \
    $BIN self-update --yes --from "/root/local/new/$NEW_ART"
grep -qF "checked 1 key: built-in volspike-release-1" <<<"$OUT" || fail "an untrusted keys file still counted"
droplet_exec chmod 644 /etc/volspike/release-keys.pub
droplet_exec test ! -e /usr/local/bin/volspike.previous || fail "a refusal left a volspike.previous"
droplet_exec sh -c 'ls -a /usr/local/bin' | grep -q 'update\.' && fail "a staging dir was left in /usr/local/bin"
[ "$(last_outcome)" = "update refused $OLD $NEW" ] || fail "update.json: $(last_outcome)"
ok "update.json records the refusals"
done_step

step "self-update --yes from the manifest: NEW up, downtime measured"
i0=$(inv)
# Black-box downtime: poll /health from the host side, in the droplet's
# network namespace (same loopback), every 20 ms.
# (set +e: a refused connection during the restart must not end the poller.)
cat >"$WORK/poll.sh" <<'POLL'
set +e +o pipefail
while :; do
    v=$(curl -fsS -m 1 "http://127.0.0.1:$1/health" 2>/dev/null | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
    echo "$(date +%s.%N) ${v:-down}"
    sleep 0.02
done
POLL
ip netns exec "$DROPLET_NETNS" bash "$WORK/poll.sh" "$HTTP_PORT" >"$WORK/poll.log" &
POLLER=$!
BG_PIDS+=("$POLLER")
sleep 0.5
t0=$(_droplet_now)
su_run $BIN self-update --yes
took=$(_droplet_since "$t0")
sleep 0.3
kill "$POLLER" 2>/dev/null || true
[ "$RC" = 0 ] || fail "self-update exit $RC"
[ "$(installed)" = "$NEW" ] || fail "installed: $(installed)"
[ "$(health_version)" = "$NEW" ] || fail "/health: $(health_version)"
[ "$(droplet_exec /usr/local/bin/volspike.previous version | awk '{print $2}')" = "$OLD" ] || fail "previous is not $OLD"
[ "$(inv)" != "$i0" ] || fail "not restarted"
[ "$(droplet_exec systemctl show -p ActiveState,SubState --value $SVC | tr '\n' ' ')" = "active running " ] || fail "service not active/running"
[ "$(last_outcome)" = "update ok $OLD $NEW" ] || fail "update.json: $(last_outcome)"
D_UPDATER=$(sed -n 's/.*downtime \([0-9.]*\) s.*/\1/p' <<<"$OUT")
[ -n "$D_UPDATER" ] || fail "self-update printed no downtime"
D_POLL=$(awk -v old="$OLD" -v new="$NEW" '$2 == old { last_old = $1 } $2 == new && !first_new { first_new = $1 } END { if (last_old && first_new) printf "%.3f", first_new - last_old }' "$WORK/poll.log")
N_DOWN=$(grep -c ' down$' "$WORK/poll.log" || true)
[ "$(grep -c " $NEW\$" "$WORK/poll.log" || true)" -gt 0 ] || fail "the /health poller never saw $NEW: $(tail -n 5 "$WORK/poll.log")"
J=$(droplet_journal -u $SVC -o short-unix --since "@${t0%.*}")
D_JOURNAL=$(awk '/Stopping volspike.service/ { s = $1 } /Started volspike.service/ && s { e = $1 } END { if (s && e) printf "%.3f", e - s }' <<<"$J")
ok "$OLD -> $NEW in $took s; previous kept; update.json: $(last_outcome)"
ok "DOWNTIME: updater (systemd timestamps) ${D_UPDATER} s; journal Stopping->Started ${D_JOURNAL:-?} s; /health polled every 20 ms: last $OLD answer -> first $NEW answer ${D_POLL:-?} s ($N_DOWN polls without an answer)"
done_step

step "OLD without --version refused; --check says up to date"
expect_refused "$OLD is older than the installed $NEW; pass --version $OLD to go back on purpose" \
    $BIN self-update --yes --from "/root/local/old/$OLD_ART"
su_run $BIN self-update --check
grep -qF "volspike $NEW is up to date" <<<"$OUT" || fail "--check after the update"
done_step

step "BROKEN from the manifest: rolled back, NEW running and healthy"
m_new=$(md5 $BIN)
t0=$(_droplet_now)
su_run env "VOLSPIKE_UPDATE_URL=$URL/broken/manifest.json" $BIN self-update --yes --start-timeout 30
[ "$RC" = 1 ] || fail "broken update: exit $RC, want 1"
grep -qF "rolled back: $BROKEN did not come up healthy" <<<"$OUT" || fail "no rollback reason"
grep -qF "exited with status 1" <<<"$OUT" || fail "the reason does not say how it failed"
[ "$(md5 $BIN)" = "$m_new" ] || fail "$BIN is not NEW again"
[ "$(installed)" = "$NEW" ] || fail "installed: $(installed)"
[ "$(droplet_exec /usr/local/bin/volspike.previous version | awk '{print $2}')" = "$OLD" ] || fail "previous is not $OLD any more"
droplet_exec curl -fsS -o /dev/null -m 2 "http://127.0.0.1:$HTTP_PORT/health" || fail "/health not 200 after the rollback"
[ "$(health_version)" = "$NEW" ] || fail "/health: $(health_version)"
[ "$(last_outcome)" = "update rolled-back $NEW $BROKEN" ] || fail "update.json: $(last_outcome)"
grep -q "broken on purpose" <<<"$(droplet_journal -u $SVC --since "@${t0%.*}")" || fail "the broken start is not in the journal"
ok "exit 1 with the reason; $NEW back (same binary), /health 200, previous still $OLD ($(_droplet_since "$t0") s)"
done_step

step "--rollback by hand: OLD"
su_run $BIN self-update --rollback --yes
[ "$RC" = 0 ] || fail "--rollback exit $RC"
{ [ "$(installed)" = "$OLD" ] && [ "$(health_version)" = "$OLD" ]; } || fail "after --rollback: $(installed), /health $(health_version)"
[ "$(droplet_exec /usr/local/bin/volspike.previous version | awk '{print $2}')" = "$NEW" ] || fail "previous is not $NEW"
[ "$(last_outcome)" = "rollback ok $NEW $OLD" ] || fail "update.json: $(last_outcome)"
ok "$OLD running, $NEW kept as previous"
done_step

step "deploy.sh push (same ssh stand-in): NEW"
t0=$(_droplet_now)
rc=0
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" push droplet "$SRV/good/$NEW_ART" 2>&1) || rc=$?
indent <<<"$out"
[ "$rc" = 0 ] || fail "deploy.sh push exit $rc"
{ [ "$(installed)" = "$NEW" ] && [ "$(health_version)" = "$NEW" ]; } || fail "after push: $(installed), /health $(health_version)"
grep -q "sha256 matches /var/tmp/volspike-push" <<<"$out" || fail "push did not carry the digest file"
droplet_exec sh -c 'ls /var/tmp' | grep -q volspike-push && fail "push left its temp dir"
ok "pushed and running in $(_droplet_since "$t0") s"
done_step

step "deploy.sh status, logs, rollback (same ssh stand-in)"
rc=0
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" status droplet 2>&1) || rc=$?
indent <<<"$out"
[ "$rc" = 0 ] || fail "deploy.sh status exit $rc"
grep -q '^volspike: healthy' <<<"$out" || fail "deploy.sh status: not healthy"
grep -q "version $NEW" <<<"$out" || fail "deploy.sh status does not show $NEW"
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" logs droplet 2>&1) || fail "deploy.sh logs: $out"
grep -q 'ready; dashboard at http://127.0.0.1:' <<<"$out" || fail "deploy.sh logs: no ready line with the dashboard address"
# This droplet runs no job: one job's lines are none, and not the rest.
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" logs droplet funding_stream 2>&1) || true
grep -q 'ready; dashboard' <<<"$out" && fail "deploy.sh logs funding_stream: shows lines of the whole service"
ok "status healthy on $NEW; logs show the dashboard address; JOB filter applied"
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" rollback droplet 2>&1) || { echo "$out" >&2; fail "deploy.sh rollback"; }
{ [ "$(installed)" = "$OLD" ] && [ "$(health_version)" = "$OLD" ]; } || fail "after deploy.sh rollback: $(installed), /health $(health_version)"
out=$(VOLSPIKE_SSH=$WORK/fake-ssh "$REPO/deploy.sh" push droplet "$SRV/good/$NEW_ART" 2>&1) || { echo "$out" >&2; fail "deploy.sh push again"; }
[ "$(installed)" = "$NEW" ] || fail "push after rollback: $(installed)"
ok "rolled back to $OLD and pushed $NEW again"
done_step

step "updater inside volspike.service's cgroup moves out and survives"
svc_cgroup=$(droplet_exec sh -c "sed -n 's/^0:://p' /proc/\$(systemctl show -p MainPID --value $SVC)/cgroup")
[ -n "$svc_cgroup" ] || fail "no cgroup v2 path for $SVC"
rc=0
out=$(droplet_exec sh -c "echo \$\$ > /sys/fs/cgroup$svc_cgroup/cgroup.procs && exec $BIN self-update --rollback --yes" 2>&1) || rc=$?
indent <<<"$out"
grep -q "continuing as transient unit volspike-update-run-" <<<"$out" || fail "did not move out of the cgroup"
# The caller may be killed with the service; the transient unit carries on.
rolled_back_again() { [ "$(last_outcome)" = "rollback ok $NEW $OLD" ]; }
droplet_wait 60 "rollback finished by the transient unit" rolled_back_again
{ [ "$(installed)" = "$OLD" ] && [ "$(health_version)" = "$OLD" ]; } || fail "after the in-cgroup rollback: $(installed), /health $(health_version)"
ok "caller exit $rc; the transient unit finished the rollback: $OLD running"
done_step

echo >&2
echo "timings:" >&2
printf '  %s\n' "${TIMINGS[@]}" >&2
echo "  total $(_droplet_since "$T_START") s" >&2
echo "DOWNTIME of an update ($OLD -> $NEW): updater ${D_UPDATER} s, journal ${D_JOURNAL:-?} s, /health poll ${D_POLL:-?} s" >&2
echo "update.test: PASS" >&2
