#!/usr/bin/env bash
# deploy.sh: build, try and ship volspike.
#
#   ./deploy.sh local          build and run `volspike run --local` against live Binance
#   ./deploy.sh build          build the static musl binary (target/x86_64-unknown-linux-musl/release/volspike)
#   ./deploy.sh help           this text
set -euo pipefail
cd "$(dirname "$0")"

target=x86_64-unknown-linux-musl

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

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

cmd_build() {
  ensure_toolchain
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
  cargo build --release --locked --target "$target"
  local bin=target/$target/release/volspike
  echo "deploy: built $bin ($(stat -c %s "$bin") bytes)" >&2
  file "$bin" 2>/dev/null >&2 || true
}

cmd_local() {
  ensure_toolchain
  cargo build --release --locked
  echo "deploy: starting volspike run --local: live Binance, no backend, alerts in this log;" >&2
  echo "deploy: health at http://${VOLSPIKE_HTTP_ADDR:-127.0.0.1:8080}/health, Ctrl-C to stop" >&2
  exec target/release/volspike run --local "$@"
}

case "${1:-help}" in
  local) shift; cmd_local "$@" ;;
  build) cmd_build ;;
  help|-h|--help) usage ;;
  *) echo "deploy: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
