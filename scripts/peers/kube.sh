#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests of src/targets/kubernetes/ into
# ${SLUICE_BIN:-~/.cache/sluice/bin}, only when missing:
#   etcd-<v>                     from go.etcd.io/etcd/server/v3
#   kube-apiserver-<v>           from k8s.io/kubernetes/cmd/kube-apiserver
#   kube-controller-manager-<v>  from k8s.io/kubernetes/cmd/kube-controller-manager
# k8s.io/kubernetes is built through the small module in tools/kube/, whose go.mod pins every
# k8s.io/* staging module to the matching v0.x.y (kubernetes' own go.mod replaces them with
# ./staging/src/…, which a dependent module cannot see). `bash scripts/peers/kube.sh --regen`
# rewrites tools/kube/go.mod for $KUBE_VERSION.
# Go build and module caches live under ~/.cache/sluice so CI can reuse them between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
export SLUICE_BIN="${SLUICE_BIN:-$HOME/.cache/sluice/bin}"
export GOCACHE="${GOCACHE:-$HOME/.cache/sluice/go-build}"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/sluice/go-mod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"
MOD_DIR="$PWD/tools/kube"

etcd_bin="$SLUICE_BIN/etcd-$ETCD_VERSION"
apiserver_bin="$SLUICE_BIN/kube-apiserver-$KUBE_VERSION"
kcm_bin="$SLUICE_BIN/kube-controller-manager-$KUBE_VERSION"

regen_gomod() {
  local kmod staging
  kmod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kmod")
  {
    echo "// Build-only module for the test control plane (scripts/peers/kube.sh). No code lives here."
    echo "module sluice.dev/tools/kube"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0.${KUBE_VERSION#v1.}"; done
    echo ")"
  } >"$MOD_DIR/go.mod"
  echo "kube: wrote tools/kube/go.mod for k8s.io/kubernetes $KUBE_VERSION ($(echo "$staging" | wc -w) staging modules)"
}

if [ "${1:-}" = "--regen" ]; then regen_gomod; exit 0; fi

if [ -x "$etcd_bin" ] && [ -x "$apiserver_bin" ] && [ -x "$kcm_bin" ]; then
  echo "kube: already built: etcd $ETCD_VERSION, kube-apiserver and kube-controller-manager $KUBE_VERSION in $SLUICE_BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "kube: the Go toolchain is needed to build etcd and kube-apiserver (install golang, then run again)" >&2
  exit 1
fi
mkdir -p "$SLUICE_BIN" "$GOCACHE" "$GOMODCACHE"

if [ ! -x "$etcd_bin" ]; then
  echo "kube: building etcd $ETCD_VERSION with $(go version | cut -d' ' -f3) (a few minutes the first time)"
  start=$(date +%s)
  # etcd's server module has ../ replace directives, so `go install …@version` refuses it; the
  # module in tools/kube/etcd requires it and its sibling modules at the same tag instead.
  if ! grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$MOD_DIR/etcd/go.mod"; then
    sed -i "s#\(go.etcd.io/etcd/[a-z/0-9]*\) v3[^ ]*#\1 $ETCD_VERSION#" "$MOD_DIR/etcd/go.mod"
  fi
  (cd "$MOD_DIR/etcd" && go build -mod=mod -trimpath -ldflags="-s -w" -o "$etcd_bin.tmp" go.etcd.io/etcd/server/v3)
  mv "$etcd_bin.tmp" "$etcd_bin"
  echo "kube: built etcd $ETCD_VERSION in $(( $(date +%s) - start ))s"
fi

if ! grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MOD_DIR/go.mod" 2>/dev/null; then regen_gomod; fi

build_k8s() { # name output
  echo "kube: building $1 $KUBE_VERSION (10+ minutes on 2 cores the first time)"
  local start
  start=$(date +%s)
  (cd "$MOD_DIR" && go build -mod=mod -trimpath -ldflags="-s -w" -o "$2.tmp" "k8s.io/kubernetes/cmd/$1")
  mv "$2.tmp" "$2"
  echo "kube: built $1 $KUBE_VERSION in $(( $(date +%s) - start ))s"
}
[ -x "$apiserver_bin" ] || build_k8s kube-apiserver "$apiserver_bin"
[ -x "$kcm_bin" ] || build_k8s kube-controller-manager "$kcm_bin"
