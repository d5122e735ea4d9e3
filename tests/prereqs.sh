#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, only what is missing:
# Debian packages for the droplet tests (systemd-nspawn, debootstrap), the
# static binary check (file), the dashboard test (chromium) and the /metrics
# test (the reference Prometheus text parser, python3-prometheus-client, for
# Debian's /usr/bin/python3, and promtool from the `prometheus` package), and
# the musl target for the static build.
set -euo pipefail

need_apt=()
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v file >/dev/null || need_apt+=(file)
command -v curl >/dev/null || need_apt+=(curl)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v chromium >/dev/null || need_apt+=(chromium)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_apt+=(python3-prometheus-client)
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "prereqs: need root to install: ${need_apt[*]} (run: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  echo "prereqs: installing ${need_apt[*]}" >&2
  apt-get update -qq
  # --no-install-recommends: `prometheus` is wanted for promtool only.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "prereqs: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  echo "prereqs: adding the x86_64-unknown-linux-musl target" >&2
  rustup target add x86_64-unknown-linux-musl
fi
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
