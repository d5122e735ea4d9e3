#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, only what is missing:
# Debian packages for the droplet tests (systemd-nspawn, debootstrap, ip), the
# static binary check (file), the dashboard test (chromium) and the /metrics
# test (the reference Prometheus text parser, python3-prometheus-client, for
# Debian's /usr/bin/python3, and promtool from the `prometheus` package), the
# aarch64 cross build and its check (gcc-aarch64-linux-gnu compiles ring's C
# and links; qemu-user-static runs the result), wrk (load through a
# self-update in the droplet tests), and the musl targets for the static builds.
set -euo pipefail

need_apt=()
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v file >/dev/null || need_apt+=(file)
command -v curl >/dev/null || need_apt+=(curl)
command -v nsenter >/dev/null || need_apt+=(util-linux)
# `ip netns`: each droplet test's own network namespace.
command -v ip >/dev/null || need_apt+=(iproute2)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v wrk >/dev/null || need_apt+=(wrk)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_apt+=(python3-prometheus-client)
# `prometheus` is wanted for promtool only: installed without its recommends.
need_lean=()
command -v promtool >/dev/null || need_lean+=(prometheus)
if [ $(( ${#need_apt[@]} + ${#need_lean[@]} )) -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "prereqs: need root to install: ${need_apt[*]} ${need_lean[*]} (run: sudo apt-get install -y ${need_apt[*]} ${need_lean[*]})" >&2
    exit 1
  fi
  echo "prereqs: installing ${need_apt[*]} ${need_lean[*]}" >&2
  apt-get update -qq
  if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  if [ ${#need_lean[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_lean[@]}" >/dev/null
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "prereqs: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
for musl_target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$musl_target"; then
    echo "prereqs: adding the $musl_target target" >&2
    rustup target add "$musl_target"
  fi
done
# zipsign signs release artifacts (deploy.sh release, tests/droplet/update.test.sh).
if ! command -v zipsign >/dev/null && [ ! -x "$HOME/.cargo/bin/zipsign" ]; then
  echo "prereqs: installing zipsign (artifact signing) with cargo" >&2
  cargo install zipsign --version '^0.2' --locked
fi
for component in clippy rustfmt; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
