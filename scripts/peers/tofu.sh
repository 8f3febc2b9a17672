#!/usr/bin/env bash
# Builds the real OpenTofu (github.com/opentofu/opentofu, cmd/tofu, a pinned release) from the Go
# module proxy into ${SLUICE_BIN:-~/.cache/sluice/bin}/tofu-<version> (+ a `tofu` symlink), the
# providers the infra tests use into a filesystem mirror, and a CLI configuration that installs
# providers from that mirror only (no registry is reachable here). src/infra and its tests pass it
# as TF_CLI_CONFIG_FILE. Only what is missing is built; each step prints what it does.
#
# Why not `go install module@version`: OpenTofu's go.mod has a replace directive (its fork of
# hashicorp/hcl) and the local provider's go.mod names another module path
# (github.com/terraform-providers/terraform-provider-local), and `go install pkg@version` refuses
# both. So each module is downloaded (`go mod download`) and built inside its own directory, where
# its go.mod and go.sum apply as written.
#
# Providers: the Go proxy serves hashicorp/terraform-provider-local v1.4.0 (plugin SDK v1, plugin
# protocol 5, which OpenTofu loads). It serves no usable null or random provider: their go.mod
# lacks the /vN suffix, so every v2+ release tag is refused as a Go module version, and the only
# versions served (null v1.0.0, random v1.3.1 and v2.0.0+incompatible, from 2017-2018) speak plugin
# protocol 4, which OpenTofu cannot load. Tests use OpenTofu's built-in `terraform_data` resource
# (null_resource's documented replacement, in core, no provider) and hashicorp/local.
set -euo pipefail
TOFU_VERSION="${TOFU_VERSION:-v1.12.6}"
LOCAL_PROVIDER_VERSION="${LOCAL_PROVIDER_VERSION:-v1.4.0}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export SLUICE_BIN="${SLUICE_BIN:-$CACHE/bin}"
export GOCACHE="${GOCACHE:-$CACHE/go-build}"
export GOMODCACHE="${GOMODCACHE:-$CACHE/go-mod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"
MIRROR="${SLUICE_TOFU_MIRROR:-$CACHE/tofu-mirror}"
RC="${SLUICE_TOFU_RC:-$CACHE/tofu.rc}"
PLATFORM="linux_amd64"
case "$(uname -m)" in aarch64 | arm64) PLATFORM="linux_arm64" ;; esac

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "tofu: the Go toolchain is needed to build $1 (install golang, then run again)" >&2
    exit 1
  fi
}

# module@version → the directory of its extracted source in the module cache.
module_dir() {
  local dir
  dir="$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "tofu: go mod download $1 gave no source directory" >&2
    exit 1
  fi
  printf '%s\n' "$dir"
}

mkdir -p "$SLUICE_BIN" "$GOCACHE" "$GOMODCACHE" "$MIRROR"

# --- OpenTofu ---------------------------------------------------------------------------------
v="${TOFU_VERSION#v}"
bin="$SLUICE_BIN/tofu-$v"
if [ -x "$bin" ]; then
  echo "tofu: OpenTofu $v already built at $bin"
else
  need_go "OpenTofu $TOFU_VERSION"
  echo "tofu: building github.com/opentofu/opentofu/cmd/tofu@$TOFU_VERSION with $(go version | cut -d' ' -f3) into $bin (about 5 minutes on 2 cores the first time)"
  start=$(date +%s)
  src="$(module_dir "github.com/opentofu/opentofu@$TOFU_VERSION")"
  (cd "$src" && go build -trimpath -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$bin.tmp" ./cmd/tofu)
  mv "$bin.tmp" "$bin"
  echo "tofu: built OpenTofu $v in $(($(date +%s) - start))s"
fi
ln -sfn "tofu-$v" "$SLUICE_BIN/tofu"

# --- providers (filesystem mirror, unpacked layout) -------------------------------------------
build_provider() { # name module version
  local name="$1" module="$2" version="$3" pv dir exe start src
  pv="${version#v}"
  dir="$MIRROR/registry.opentofu.org/hashicorp/$name/$pv/$PLATFORM"
  exe="$dir/terraform-provider-${name}_v$pv"
  if [ -x "$exe" ]; then
    echo "tofu: provider hashicorp/$name $pv already in the mirror"
    return
  fi
  need_go "the $name provider"
  echo "tofu: building provider hashicorp/$name $pv from $module@$version"
  start=$(date +%s)
  src="$(module_dir "$module@$version")"
  mkdir -p "$dir"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$exe.tmp" .)
  mv "$exe.tmp" "$exe"
  echo "tofu: built provider hashicorp/$name $pv in $(($(date +%s) - start))s"
}
build_provider local github.com/hashicorp/terraform-provider-local "$LOCAL_PROVIDER_VERSION"
# The same providers under Terraform's default registry host (hard links), for users who point
# Sluice at `terraform` (SLUICE_TOFU=terraform) with this CLI configuration.
[ -L "$MIRROR/registry.terraform.io" ] && rm -f "$MIRROR/registry.terraform.io"
(cd "$MIRROR/registry.opentofu.org" && find . -type f -name 'terraform-provider-*') | while read -r f; do
  mkdir -p "$(dirname "$MIRROR/registry.terraform.io/$f")"
  ln -f "$MIRROR/registry.opentofu.org/$f" "$MIRROR/registry.terraform.io/$f"
done

# --- CLI configuration: the mirror only, never the network ------------------------------------
want="# Written by scripts/peers/tofu.sh: providers come from the local mirror only.
provider_installation {
  filesystem_mirror {
    path    = \"$MIRROR\"
    include = [\"registry.opentofu.org/*/*\", \"registry.terraform.io/*/*\"]
  }
  direct {
    exclude = [\"registry.opentofu.org/*/*\", \"registry.terraform.io/*/*\"]
  }
}
disable_checkpoint = true"
if [ ! -f "$RC" ] || [ "$(cat "$RC")" != "$want" ]; then
  printf '%s\n' "$want" >"$RC"
  echo "tofu: wrote $RC (use it with TF_CLI_CONFIG_FILE=$RC)"
else
  echo "tofu: $RC is up to date"
fi
echo "tofu: ready: $(TF_CLI_CONFIG_FILE="$RC" "$SLUICE_BIN/tofu" version 2>/dev/null | head -n1) at $SLUICE_BIN/tofu; providers: $(cd "$MIRROR/registry.opentofu.org" && find . -name 'terraform-provider-*' -type f | sed 's|^\./||; s|/[^/]*/terraform-provider-.*||' | tr '\n' ' ')"
