#!/usr/bin/env bash
# The whole test suite: set-up, lint and format check, type check, every test file, and the
# benchmarks in --quick mode so they never rot. Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --peers
export PATH="$HOME/.cache/sluice/bin:$PATH"

echo "==> lint (biome)"
npx biome check .
echo "==> typecheck"
npx tsc -p tsconfig.test.json
npx tsc -p web/tsconfig.json
echo "==> tests"
mapfile -t files < <(find src test examples bench -name '*.test.ts' -not -path '*/node_modules/*' 2>/dev/null | sort)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
node --import tsx --test --test-reporter=spec "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(sed -n 's/^ℹ pass \([0-9]*\)$/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^ℹ fail \([0-9]*\)$/\1/p' "$log" | tail -1)
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
[ "$status" -eq 0 ] || exit "$status"
if [ -f bench/main.ts ]; then
  echo "==> benchmarks (--quick)"
  node --import tsx bench/main.ts --quick
fi
