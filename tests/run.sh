#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
# formatting, lints, unit and integration tests against the fakes, the static
# musl builds (x86_64, and aarch64 run under qemu), and the droplet tests in a
# real systemd container.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
suite() {
  local name=$1; shift
  local start=$(date +%s)
  echo
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($(( $(date +%s) - start )) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name: FAILED ($(( $(date +%s) - start )) s)"
  fi
}

tests/prereqs.sh
# Tests that may skip loudly on a developer's machine (promtool missing)
# must run here: prereqs installed their tools.
export VOLSPIKE_FULL_SUITE=1

suite "cargo fmt" cargo fmt --all -- --check
suite "import circles" python3 tests/import_cycles.py
suite "file lengths" python3 tests/file_lengths.py
suite "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
suite "cargo test" cargo test --workspace --locked
suite "static musl binary" tests/static_binary.sh
suite "aarch64 binary under qemu" tests/aarch64_binary.sh
for t in tests/droplet/*.test.sh; do
  [ -e "$t" ] || continue
  suite "droplet: $(basename "$t" .test.sh)" bash "$t"
done

echo
if [ "$failed" -gt 0 ]; then
  echo "failed suites: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
