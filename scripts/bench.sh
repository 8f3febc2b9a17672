#!/usr/bin/env bash
# The benchmark suite (`npm run bench [-- SCENARIO...] [--json FILE] [--quick]`): Sluice side by
# side with its peers; a full run rewrites docs/benchmarks.md. See bench/main.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ]; then bash scripts/setup.sh; fi
export PATH="$HOME/.cache/sluice/bin:$PATH"
# The CLI scenarios run the compiled CLI: build it when it is missing or older than the sources.
if [ ! -f dist/cli/main.js ] || [ -n "$(find src -name '*.ts' -newer dist/cli/main.js -print -quit)" ]; then
  echo "==> building sluice (dist/)" >&2
  npx tsc -p tsconfig.json >&2 || echo "warning: tsc reported errors; benchmarking the JavaScript it emitted" >&2
fi
exec node --import tsx bench/main.ts "$@"
