#!/usr/bin/env bash
# The release binary is static: built for x86_64-unknown-linux-musl, `file`
# calls it statically linked, and it runs in an empty root with no libc at all.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
bin=${CARGO_TARGET_DIR:-target}/$target/release/volspike
start=$(date +%s)
cargo build --release --locked --target "$target"
echo "static: release build took $(( $(date +%s) - start )) s"

desc=$(file -L "$bin")
echo "static: $desc"
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "static: FAIL: not a static binary" >&2; exit 1 ;;
esac
size=$(stat -c %s "$bin")
echo "static: size $size bytes ($(( size / 1024 )) KiB)"

if [ "$(id -u)" -ne 0 ]; then
  echo "static: skipping the empty-root run (needs root for chroot)" >&2
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "$bin" "$root/volspike"
# Nothing but the binary: no /lib, no libc, no /etc.
out=$(chroot "$root" /volspike version)
echo "static: in an empty root: $out"
case "$out" in
  "volspike "*"($target,"*) ;;
  *) echo "static: FAIL: unexpected version output" >&2; exit 1 ;;
esac
