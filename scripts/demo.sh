#!/usr/bin/env bash
# The README's first command: install what is missing, then run the local demo end to end
# (Git server, registry, image build, sluice serve, production and staging on podman).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/sluice.js demo "$@"
