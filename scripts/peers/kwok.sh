#!/usr/bin/env bash
# Simulated nodes for the test control plane (test/support/controlplane.ts, `kwok: true`), built
# into ${SLUICE_BIN:-~/.cache/sluice/bin} only when missing:
#   kwok-<v>                  from sigs.k8s.io/kwok/cmd/kwok (fake nodes; Pods on them become
#                             Running and Ready as a kubelet would report them)
#   kube-scheduler-<v>        from k8s.io/kubernetes/cmd/kube-scheduler (binds Pods to those nodes),
#                             through the same build module as kube-apiserver (tools/kube/, see kube.sh)
# Go build and module caches are shared with kube.sh under ~/.cache/sluice.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
export SLUICE_BIN="${SLUICE_BIN:-$HOME/.cache/sluice/bin}"
export GOCACHE="${GOCACHE:-$HOME/.cache/sluice/go-build}"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/sluice/go-mod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"
MOD_DIR="$PWD/tools/kube"

kwok_bin="$SLUICE_BIN/kwok-$KWOK_VERSION"
sched_bin="$SLUICE_BIN/kube-scheduler-$KUBE_VERSION"

if [ -x "$kwok_bin" ] && [ -x "$sched_bin" ]; then
  echo "kwok: already built: kwok $KWOK_VERSION and kube-scheduler $KUBE_VERSION in $SLUICE_BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "kwok: the Go toolchain is needed to build kwok and kube-scheduler (install golang, then run again)" >&2
  exit 1
fi
mkdir -p "$SLUICE_BIN" "$GOCACHE" "$GOMODCACHE"

if [ ! -x "$kwok_bin" ]; then
  echo "kwok: building kwok $KWOK_VERSION with $(go version | cut -d' ' -f3) (about 5 minutes on 2 cores the first time)"
  start=$(date +%s)
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$tmp/kwok" "$kwok_bin"
  rmdir "$tmp"
  echo "kwok: built kwok $KWOK_VERSION in $(( $(date +%s) - start ))s"
fi

if [ ! -x "$sched_bin" ]; then
  if ! grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MOD_DIR/go.mod" 2>/dev/null; then
    echo "kwok: tools/kube/go.mod is not for $KUBE_VERSION: run scripts/peers/kube.sh first" >&2
    exit 1
  fi
  echo "kwok: building kube-scheduler $KUBE_VERSION (quick once kube-apiserver is built: shared build cache)"
  start=$(date +%s)
  (cd "$MOD_DIR" && go build -mod=mod -trimpath -ldflags="-s -w" -o "$sched_bin.tmp" k8s.io/kubernetes/cmd/kube-scheduler)
  mv "$sched_bin.tmp" "$sched_bin"
  echo "kwok: built kube-scheduler $KUBE_VERSION in $(( $(date +%s) - start ))s"
fi
