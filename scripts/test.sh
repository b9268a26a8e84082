#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs Deno, QEMU and the guest
# kit as needed (root), checks formatting, lint and types, then runs every
# test, including the end-to-end tests that boot a Linux guest under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

bash scripts/install_qemu.sh
bash scripts/build_guest_kit.sh >/dev/null
bash scripts/build_guest_kit_aarch64.sh >/dev/null

deno fmt --check
deno lint
deno check .
# JSDoc and explicit types on every export of every module (test files aside).
git ls-files '*.ts' | grep -v '_test.ts$' | xargs deno doc --lint

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
NO_COLOR=1 deno test --allow-all "$@" 2>&1 | tee "$log" || status=$?
# Deno ends with "ok | N passed (M steps) | F failed"; restate it in the plain form CI reads.
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1 || true)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
echo "deno-test: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
