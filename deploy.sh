#!/usr/bin/env bash
# deploy.sh: build, try, release and ship volspike.
#
#   ./deploy.sh local                  build and run `volspike run --local` against live Binance
#   ./deploy.sh build                  build the static musl binary (target/x86_64-unknown-linux-musl/release/volspike)
#   ./deploy.sh release [--binary F]... [--dist DIR]
#                                      build for x86_64 and aarch64 (or take each F given), pack every
#                                      volspike-<version>-<target>.tar.gz, sign it, write its .sha256, and list
#                                      them all in DIR/manifest.json (DIR: dist); each host's self-update
#                                      takes the artifact of its own target
#   ./deploy.sh push HOST [ARTIFACT]   copy a signed artifact (default: this version's in dist/) to HOST over
#                                      ssh and run `volspike self-update --from` there (verify, swap, restart,
#                                      roll back on failure)
#   ./deploy.sh install HOST [--env-file F] [--binary F] [--dry-run]
#                                      first install on a fresh droplet: copy the binary (and env file) over
#                                      ssh and run `volspike install` there (--dry-run: show the plan and
#                                      check the env file, change nothing; exit 78 when it would not start)
#   ./deploy.sh status HOST            `volspike status` on HOST: unit, health, jobs, WebSocket, backlog
#   ./deploy.sh logs HOST [JOB] [-f]   the service's journal on HOST (last 200 lines; JOB: only that job's
#                                      lines, e.g. open_interest; -f: follow)
#   ./deploy.sh rollback HOST          put back the version that ran before the last update on HOST
#                                      (`volspike self-update --rollback`)
#   ./deploy.sh help                   this text
#
# Signing key (release): VOLSPIKE_SIGNING_KEY_FILE (default ~/.config/volspike/release.key, a zipsign
# private key) or VOLSPIKE_SIGNING_KEY (that file's bytes, base64). It is never read from or written to
# the repository. A new key pair: `zipsign gen-key release.key release.pub`; the .pub goes to
# packaging/release-keys/ (built into the binary), the .key stays with the release manager.
# ssh: VOLSPIKE_SSH (default "ssh") is the command used to reach HOST, e.g. "ssh -p 2222".
# Release targets: VOLSPIKE_RELEASE_TARGETS (default "x86_64-unknown-linux-musl aarch64-unknown-linux-musl").
# aarch64 is cross-built with Debian's gcc-aarch64-linux-gnu (.cargo/config.toml) and its `version` is
# read under qemu-aarch64-static (Debian's qemu-user-static); both are installed with apt when missing.
set -euo pipefail
cd "$(dirname "$0")"

target=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
built=$target_dir/$target/release/volspike
release_targets=${VOLSPIKE_RELEASE_TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl}

# The header comment above, without the leading "# ".
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() { echo "deploy: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# A fresh Debian has neither a C compiler (ring builds C) nor Rust.
ensure_toolchain() {
  if ! command -v cc >/dev/null; then
    echo "deploy: installing a C compiler (build-essential) for ring" >&2
    as_root apt-get update -qq
    as_root apt-get install -y -qq build-essential curl ca-certificates
  fi
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    echo "deploy: installing Rust with rustup (https://rustup.rs)" >&2
    command -v curl >/dev/null || { as_root apt-get update -qq; as_root apt-get install -y -qq curl ca-certificates; }
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# zipsign signs .tar.gz artifacts in the format self_update verifies; the
# 0.2 line matches self_update 1.3's zipsign-api 0.2.
ensure_zipsign() {
  if ! command -v zipsign >/dev/null && [ -x "$HOME/.cargo/bin/zipsign" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v zipsign >/dev/null; then
    ensure_toolchain
    echo "deploy: installing zipsign (the artifact signing tool) from crates.io" >&2
    cargo install zipsign --version '^0.2' --locked
  fi
}

# What building and checking TARGET needs beyond the native toolchain:
# for aarch64 on another machine, Debian's cross gcc (ring's C and the link)
# and qemu-user (to ask the binary its version), plus the Rust target.
ensure_cross() {
  local t=$1 need=()
  if [ "$t" = aarch64-unknown-linux-musl ] && [ "$(uname -m)" != aarch64 ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
    command -v "${VOLSPIKE_QEMU:-qemu-aarch64-static}" >/dev/null || need+=(qemu-user-static)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "deploy: installing ${need[*]} (Debian) for $t" >&2
    as_root apt-get update -qq
    as_root apt-get install -y -qq "${need[@]}"
  fi
}

# Builds the release binary for target $1; prints its path.
build_target() {
  local t=$1
  ensure_toolchain
  ensure_cross "$t"
  if ! rustup target list --installed | grep -qx "$t"; then
    rustup target add "$t" >&2
  fi
  cargo build --release --locked --target "$t" >&2
  local out=$target_dir/$t/release/volspike
  echo "deploy: built $out ($(stat -c %s "$out") bytes)" >&2
  file "$out" 2>/dev/null >&2 || true
  echo "$out"
}

cmd_build() {
  ensure_toolchain
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
  cargo build --release --locked --target "$target"
  echo "deploy: built $built ($(stat -c %s "$built") bytes)" >&2
  file "$built" 2>/dev/null >&2 || true
}

cmd_local() {
  ensure_toolchain
  echo "deploy: building volspike (release build: a few minutes the first time, seconds after that)" >&2
  cargo build --release --locked
  echo "deploy: starting volspike run --local: live Binance, no backend, alerts in this log;" >&2
  echo "deploy: dashboard at http://${VOLSPIKE_HTTP_ADDR:-127.0.0.1:8080}/ (health: /health), Ctrl-C to stop" >&2
  exec "$target_dir/release/volspike" run --local "$@"
}

# Prints "VERSION TARGET" as the binary itself reports them. An aarch64
# binary on another machine answers under qemu-user.
binary_identity() {
  local line run=()
  if [ "$(uname -m)" != aarch64 ] && file -L "$1" 2>/dev/null | grep -q 'ARM aarch64'; then
    ensure_cross aarch64-unknown-linux-musl
    run=("${VOLSPIKE_QEMU:-qemu-aarch64-static}")
  fi
  line=$("${run[@]}" "$1" version) || die "$1 version failed"
  # volspike 0.1.0 (x86_64-unknown-linux-musl, commit abc, built 2026-11-25)
  [[ $line =~ ^volspike\ ([^ ]+)\ \(([^,]+), ]] || die "$1 version printed '$line', not a volspike version line"
  echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}

# Writes the signing key to $1 (mode 0600) from the env var or the key file.
signing_key_to() {
  local out=$1 file=${VOLSPIKE_SIGNING_KEY_FILE:-$HOME/.config/volspike/release.key}
  if [ -n "${VOLSPIKE_SIGNING_KEY:-}" ]; then
    (umask 077; printf '%s' "$VOLSPIKE_SIGNING_KEY" | base64 -d >"$out") \
      || die "VOLSPIKE_SIGNING_KEY is not base64 of a zipsign key file"
    return
  fi
  [ -r "$file" ] || die "no signing key: set VOLSPIKE_SIGNING_KEY_FILE (now $file) or VOLSPIKE_SIGNING_KEY (base64)"
  # A key inside the repository must at least be ignored by git.
  local abs repo
  abs=$(realpath "$file")
  repo=$(realpath .)
  if [ "${abs#"$repo"/}" != "$abs" ] && git rev-parse --git-dir >/dev/null 2>&1 \
      && ! git check-ignore -q "$abs"; then
    die "signing key $file is inside the repository and not ignored by git: move it out (it must never be committed)"
  fi
  if [ -n "$(find "$abs" -perm /077 2>/dev/null)" ]; then
    echo "deploy: warning: $file is readable by group/others (chmod 600 it)" >&2
  fi
  (umask 077; cat "$abs" >"$out")
}

# Rebuilds DIR/manifest.json (self_update manifest schema 1) from every
# DIR/*.tar.gz.json asset entry, newest version first.
write_manifest() {
  local dist=$1 versions v first_r first_a entry
  versions=$(for entry in "$dist"/volspike-*.tar.gz.json; do
      [ -e "$entry" ] || continue
      sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$entry" | head -n1
    done | sort -Vru)
  {
    printf '{\n  "schema": 1,\n  "releases": ['
    first_r=1
    for v in $versions; do
      [ $first_r = 1 ] || printf ','
      first_r=0
      printf '\n    {\n      "version": "%s",\n      "date": "%s",\n      "assets": [' "$v" \
        "$(sed -n 's/.*"date": *"\([^"]*\)".*/\1/p' "$dist"/volspike-"$v"-*.tar.gz.json | head -n1)"
      first_a=1
      for entry in "$dist"/volspike-"$v"-*.tar.gz.json; do
        [ $first_a = 1 ] || printf ','
        first_a=0
        printf '\n        %s' "$(sed -n 's/.*"asset": *\({[^}]*}\).*/\1/p' "$entry")"
      done
      printf '\n      ]\n    }'
    done
    printf '\n  ]\n}\n'
  } >"$dist/manifest.json.tmp"
  mv -f "$dist/manifest.json.tmp" "$dist/manifest.json"
}

cmd_release() {
  local binaries=() dist=dist
  while [ $# -gt 0 ]; do
    case $1 in
      --binary) binaries+=("${2:?--binary needs a file}"); shift 2 ;;
      --dist) dist=${2:?--dist needs a directory}; shift 2 ;;
      *) die "release: unknown argument '$1' (see ./deploy.sh help)" ;;
    esac
  done
  if [ ${#binaries[@]} -eq 0 ]; then
    local t out
    for t in $release_targets; do
      out=$(build_target "$t") || die "release: building for $t failed"
      binaries+=("$out")
    done
  fi
  local binary
  for binary in "${binaries[@]}"; do
    [ -x "$binary" ] || die "release: $binary is not an executable file"
  done
  ensure_zipsign
  mkdir -p "$dist"
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  signing_key_to "$work/release.key"
  local names=()
  for binary in "${binaries[@]}"; do
    pack_and_sign "$binary" "$dist" "$work"
    names+=("$packed")
  done
  rm -f "$work/release.key"
  write_manifest "$dist"
  echo "deploy: manifest $dist/manifest.json lists: $(grep -o '"version": "[^"]*"' "$dist/manifest.json" | cut -d'"' -f4 | tr '\n' ' ')" >&2
  echo "deploy: publish: copy $dist/manifest.json and ${names[*]/#/$dist/} to the host behind VOLSPIKE_UPDATE_URL" >&2
}

# Packs binary $1 as $2/volspike-<version>-<target>.tar.gz, signs it with the
# key in $3/release.key, writes its .sha256 and its manifest entry; sets
# `packed` to the artifact's name.
pack_and_sign() {
  local binary=$1 dist=$2 work=$3 version btarget name
  read -r version btarget < <(binary_identity "$binary")
  name=volspike-$version-$btarget.tar.gz
  rm -rf "$work/pack" && mkdir "$work/pack"
  # One file, root-owned, no build-machine metadata.
  install -m 0755 "$binary" "$work/pack/volspike"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/pack" -cf - volspike | gzip -n -9 >"$work/$name"
  # The context is the artifact's file name, as self_update verifies it.
  zipsign sign tar -f -c "$name" -o "$dist/$name" "$work/$name" "$work/release.key" >/dev/null \
    || die "zipsign could not sign $name"
  chmod 0644 "$dist/$name"
  local digest
  digest=$(sha256sum "$dist/$name" | cut -d' ' -f1)
  echo "$digest  $name" >"$dist/$name.sha256"
  # Does a key built into the binary verify it? Otherwise only machines
  # trusting the key through /etc/volspike/release-keys.pub will install it.
  local pubs=(packaging/release-keys/*.pub) trusted=no
  if [ -e "${pubs[0]}" ] && zipsign verify tar -q -c "$name" "$dist/$name" "${pubs[@]}" >/dev/null 2>&1; then
    trusted=yes
  fi
  printf '{"version": "%s", "date": "%s", "asset": {"name": "%s", "url": "%s", "digest": "sha256:%s"}}\n' \
    "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$name" "$digest" >"$dist/$name.json"
  echo "deploy: released $dist/$name (sha256 $digest)" >&2
  if [ $trusted = yes ]; then
    echo "deploy: signed with a key built into the binary (packaging/release-keys/)" >&2
  else
    echo "deploy: warning: signed with a key that is NOT built into the binary; only hosts listing it in /etc/volspike/release-keys.pub accept it" >&2
  fi
  packed=$name
}

# ssh to $1 and run the rest as one remote shell command (quoted here).
remote() {
  local host=$1; shift
  local cmd='' arg
  for arg in "$@"; do cmd+=" $(printf '%q' "$arg")"; done
  # shellcheck disable=SC2086  # VOLSPIKE_SSH may carry options
  ${VOLSPIKE_SSH:-ssh} "$host" "$cmd"
}

# Copies local file $2 to remote path $3 on $1 with mode $4 (over ssh, no scp needed).
remote_put() {
  local host=$1 src=$2 dest=$3 mode=$4
  # shellcheck disable=SC2086
  ${VOLSPIKE_SSH:-ssh} "$host" "umask 077 && cat > $(printf '%q' "$dest") && chmod $mode $(printf '%q' "$dest")" <"$src"
}

# Prints "sudo -n" unless the remote user is root.
remote_sudo() {
  if [ "$(remote "$1" id -u)" = 0 ]; then echo ""; else echo "sudo -n"; fi
}

cmd_push() {
  local host=${1:-} artifact=${2:-}
  [ -n "$host" ] || die "push: which HOST? (./deploy.sh push HOST [ARTIFACT])"
  if [ -z "$artifact" ]; then
    local version
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
    artifact=dist/volspike-$version-$target.tar.gz
    [ -e "$artifact" ] || die "push: no $artifact: run ./deploy.sh release first, or name the artifact"
  fi
  [ -r "$artifact" ] || die "push: cannot read $artifact"
  local name dir sudo
  name=$(basename "$artifact")
  sudo=$(remote_sudo "$host")
  dir=$(remote "$host" mktemp -d /var/tmp/volspike-push.XXXXXX) || die "push: cannot reach $host"
  echo "deploy: copying $name to $host:$dir" >&2
  remote_put "$host" "$artifact" "$dir/$name" 0644
  if [ -r "$artifact.sha256" ]; then
    remote_put "$host" "$artifact.sha256" "$dir/$name.sha256" 0644
  fi
  echo "deploy: running volspike self-update --from $dir/$name on $host" >&2
  local rc=0
  # shellcheck disable=SC2086  # $sudo is empty or "sudo -n"
  remote "$host" $sudo /usr/local/bin/volspike self-update --from "$dir/$name" --yes || rc=$?
  remote "$host" rm -rf "$dir" || true
  if [ $rc -ne 0 ]; then
    die "push: self-update on $host exited $rc (see its message above; the running version is unchanged or restored)"
  fi
  echo "deploy: $host updated" >&2
}

cmd_install() {
  local host=${1:-} env_file='' binary='' dry_run=''
  [ -n "$host" ] || die "install: which HOST? (./deploy.sh install HOST [--env-file F] [--binary F] [--dry-run])"
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --env-file) env_file=${2:?--env-file needs a file}; shift 2 ;;
      --binary) binary=${2:?--binary needs a file}; shift 2 ;;
      --dry-run) dry_run=--dry-run; shift ;;
      *) die "install: unknown argument '$1' (see ./deploy.sh help)" ;;
    esac
  done
  if [ -z "$binary" ]; then
    cmd_build
    binary=$built
  fi
  [ -x "$binary" ] || die "install: $binary is not an executable file"
  [ -z "$env_file" ] || [ -r "$env_file" ] || die "install: cannot read $env_file"
  local dir sudo args=()
  sudo=$(remote_sudo "$host")
  dir=$(remote "$host" mktemp -d /var/tmp/volspike-install.XXXXXX) || die "install: cannot reach $host"
  echo "deploy: copying the binary to $host:$dir" >&2
  remote_put "$host" "$binary" "$dir/volspike" 0755
  if [ -n "$env_file" ]; then
    # Secrets: mode 0600 on the way and in place.
    remote_put "$host" "$env_file" "$dir/volspike.env" 0600
    args=(--env-file "$dir/volspike.env")
  fi
  [ -z "$dry_run" ] || args+=(--dry-run)
  echo "deploy: running volspike install ${dry_run:+--dry-run }on $host" >&2
  local rc=0
  # shellcheck disable=SC2086
  remote "$host" $sudo "$dir/volspike" install ${args[@]+"${args[@]}"} || rc=$?
  remote "$host" rm -rf "$dir" || true
  if [ -n "$dry_run" ]; then
    # 78: the env file has problems (listed above); pass the code on.
    [ $rc -eq 0 ] || { echo "deploy: install --dry-run on $host exited $rc (nothing was changed)" >&2; exit $rc; }
    echo "deploy: dry run on $host done; nothing was changed" >&2
    return
  fi
  [ $rc -eq 0 ] || die "install: volspike install on $host exited $rc"
  echo "deploy: $host installed; later versions: ./deploy.sh release && ./deploy.sh push $host" >&2
  echo "deploy: watch it: ./deploy.sh status $host, ./deploy.sh logs $host" >&2
}

# The jobs `logs HOST JOB` accepts (volspike's job names).
jobs_known="funding_stream funding_health volume_spike liquid_universe open_interest user_alerts telegram"

cmd_status() {
  local host=${1:-}
  [ -n "$host" ] || die "status: which HOST? (./deploy.sh status HOST)"
  local sudo rc=0
  sudo=$(remote_sudo "$host")
  # Root reads the env file for the HTTP address; exit 1 degraded, 3 down.
  # shellcheck disable=SC2086
  remote "$host" $sudo /usr/local/bin/volspike status || rc=$?
  exit $rc
}

cmd_logs() {
  local host=${1:-} job='' follow=''
  [ -n "$host" ] || die "logs: which HOST? (./deploy.sh logs HOST [JOB] [-f])"
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -f|--follow) follow=-f; shift ;;
      -*) die "logs: unknown option '$1' (see ./deploy.sh help)" ;;
      *)
        [[ " $jobs_known " == *" $1 "* ]] || die "logs: unknown job '$1' (jobs: $jobs_known)"
        job=$1; shift ;;
    esac
  done
  local sudo args=(journalctl -u volspike.service -n 200 --no-pager -o short-iso)
  [ -z "$follow" ] || args+=(-f)
  # Every line inside a job carries the journal field JOB=<name>.
  [ -z "$job" ] || args+=("JOB=$job")
  sudo=$(remote_sudo "$host")
  # shellcheck disable=SC2086
  remote "$host" $sudo "${args[@]}"
}

cmd_rollback() {
  local host=${1:-}
  [ -n "$host" ] || die "rollback: which HOST? (./deploy.sh rollback HOST)"
  local sudo rc=0
  sudo=$(remote_sudo "$host")
  echo "deploy: rolling $host back to the version before its last update" >&2
  # shellcheck disable=SC2086
  remote "$host" $sudo /usr/local/bin/volspike self-update --rollback --yes || rc=$?
  [ $rc -eq 0 ] || die "rollback: volspike self-update --rollback on $host exited $rc (see its message above)"
  echo "deploy: $host rolled back" >&2
}

case "${1:-help}" in
  local) shift; cmd_local "$@" ;;
  build) cmd_build ;;
  release) shift; cmd_release "$@" ;;
  push) shift; cmd_push "$@" ;;
  install) shift; cmd_install "$@" ;;
  status) shift; cmd_status "$@" ;;
  logs) shift; cmd_logs "$@" ;;
  rollback) shift; cmd_rollback "$@" ;;
  help|-h|--help) usage ;;
  *) echo "deploy: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
