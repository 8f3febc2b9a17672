#!/usr/bin/env bash
# Installs everything Sluice's demo and tests need on a fresh Debian machine, idempotently:
# Debian packages (when missing), npm dependencies, with --peers the Go-built peer binaries the
# tests use (in ~/.cache/sluice/bin), and the compiled CLI. Safe to run again: each step checks
# before it works.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_BIN="${SLUICE_BIN:-$HOME/.cache/sluice/bin}"
mkdir -p "$SLUICE_BIN"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Debian packages: one per line in scripts/apt-packages.txt ("package" or "package command").
missing=()
while read -r pkg cmd; do
  [ -z "${pkg:-}" ] || [ "${pkg:0:1}" = "#" ] && continue
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then missing+=("$pkg"); fi
done < scripts/apt-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || apt-get update
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies: reinstall when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm install (from package-lock.json)"
  # Not `npm ci`: npm 11 leaves biome's optional per-platform packages out of the lock file it
  # writes, then `npm ci` refuses that same lock as out of sync. `install --no-save` installs the
  # locked versions and never rewrites package.json or the lock.
  npm install --no-audit --no-fund --no-save --loglevel=error
fi

# Go-built peers for the tests (sops, kube-apiserver, …): only with --peers (the test command
# passes it; the demo needs none of them). Each builds into $SLUICE_BIN only when missing.
for peer in scripts/peers/*.sh; do
  [ "${1:-}" = "--peers" ] || break
  [ -e "$peer" ] || continue
  bash "$peer"
done

step "building sluice"
npx tsc -p tsconfig.json

# The dashboard (web/ → dist/web, served by `sluice serve`): type-checked and built by Vite only
# when the build is missing or older than its sources.
if [ ! -f dist/web/index.html ] ||
  [ -n "$(find web package-lock.json -newer dist/web/index.html -not -path '*/node_modules/*' -print -quit)" ]; then
  step "building the dashboard (web/ → dist/web)"
  npx tsc -p web/tsconfig.json
  npx vite build --config web/vite.config.ts
fi
