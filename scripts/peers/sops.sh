#!/usr/bin/env bash
# Builds the real `sops` (getsops/sops) from the Go module proxy into ${SLUICE_BIN:-~/.cache/sluice/bin},
# only when it is missing. Tests of src/sops/ run it to check our decryption against the real tool.
# Go build and module caches live under ~/.cache so CI can reuse them between runs.
set -euo pipefail
SOPS_VERSION="${SOPS_VERSION:-v3.13.3}"
export SLUICE_BIN="${SLUICE_BIN:-$HOME/.cache/sluice/bin}"
export GOCACHE="${GOCACHE:-$HOME/.cache/sluice/go-build}"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/sluice/go-mod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

if [ -x "$SLUICE_BIN/sops" ]; then
  echo "sops: already built at $SLUICE_BIN/sops ($("$SLUICE_BIN/sops" --version --disable-version-check 2>/dev/null | head -n1 || echo unknown version))"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "sops: the Go toolchain is needed to build sops $SOPS_VERSION (install golang, then run again)" >&2
  exit 1
fi
mkdir -p "$SLUICE_BIN" "$GOCACHE" "$GOMODCACHE"
echo "sops: building github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION with $(go version | cut -d' ' -f3) into $SLUICE_BIN (this takes a few minutes the first time)"
start=$(date +%s)
GOBIN="$SLUICE_BIN" go install "github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION"
echo "sops: built $("$SLUICE_BIN/sops" --version --disable-version-check 2>/dev/null | head -n1) in $(( $(date +%s) - start ))s"
