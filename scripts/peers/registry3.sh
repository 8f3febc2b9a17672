#!/usr/bin/env bash
# Builds the CNCF distribution registry v3 (github.com/distribution/distribution/v3/cmd/registry)
# from the Go module proxy into ${SLUICE_BIN:-~/.cache/sluice/bin}/registry-$VERSION, only when it
# is missing. Debian's docker-registry (distribution 2.8) ignores `n` when listing tags; v3 paginates
# with `Link` headers, so the tests and benchmarks of src/images/ run against it.
# Go build and module caches live under ~/.cache so CI can reuse them between runs.
set -euo pipefail
REGISTRY3_VERSION="${REGISTRY3_VERSION:-v3.1.2}"
export SLUICE_BIN="${SLUICE_BIN:-$HOME/.cache/sluice/bin}"
export GOCACHE="${GOCACHE:-$HOME/.cache/sluice/go-build}"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/sluice/go-mod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"
out="$SLUICE_BIN/registry-$REGISTRY3_VERSION"

if [ -x "$out" ]; then
  echo "registry $REGISTRY3_VERSION: already built at $out"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "registry $REGISTRY3_VERSION: the Go toolchain is needed to build it (install golang, then run again)" >&2
  exit 1
fi
mkdir -p "$SLUICE_BIN" "$GOCACHE" "$GOMODCACHE"
echo "registry $REGISTRY3_VERSION: building github.com/distribution/distribution/v3/cmd/registry with $(go version | cut -d' ' -f3) into $out (a few minutes the first time)"
start=$(date +%s)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY3_VERSION"
mv "$tmp/registry" "$out.partial"
mv "$out.partial" "$out"
echo "registry $REGISTRY3_VERSION: built $("$out" --version 2>/dev/null | head -n1 || echo "$out") in $(( $(date +%s) - start ))s"
