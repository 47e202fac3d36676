#!/usr/bin/env bash
# Builds the real control-plane binaries used by the integration tests --
# kube-apiserver, kube-controller-manager and etcd -- from their Go modules
# (fetched through the Go module proxy), at the versions pinned in
# versions.env next to this script.
#
# Output: a cache directory outside the repository, keyed by the versions:
#   ${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
#     /control-plane/k8s-<KUBERNETES_VERSION>-etcd-<ETCD_VERSION>/bin/
#       kube-apiserver kube-controller-manager etcd
#
# The bin directory is printed on stdout as the only line, so callers can do
#   bin=$(tests/control-plane/build.sh)
# All progress messages go to stderr. When all three binaries already exist
# the script prints nothing else and returns at once. Concurrent invocations
# are serialised with flock; binaries are built under a temporary name and
# renamed into place, so an interrupted build never leaves a partial binary.
#
# Needs: go (>= the go version of the pinned modules), flock, sed.
set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/control-plane/versions.env
. "$script_dir/versions.env"
: "${KUBERNETES_VERSION:?KUBERNETES_VERSION missing from versions.env}"
: "${ETCD_VERSION:?ETCD_VERSION missing from versions.env}"

cache_root=${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
out_dir=$cache_root/control-plane/k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}
bin_dir=$out_dir/bin
binaries=(kube-apiserver kube-controller-manager etcd)

missing_binaries() {
  local b
  for b in "${binaries[@]}"; do
    [[ -x $bin_dir/$b ]] || printf '%s\n' "$b"
  done
}

# Fast path: everything is there already.
if [[ -z $(missing_binaries) ]]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

# shellcheck source=tests/real-part.sh
. "$script_dir/../real-part.sh"
real_part_start control-plane/build "the control plane"
real_part_lock "$out_dir"
mkdir -p "$bin_dir"
# Another invocation may have finished the job while we waited.
if [[ -z $(missing_binaries) ]]; then
  printf '%s\n' "$bin_dir" >&3
  exit 0
fi

work_root=$out_dir/work

# go_build NAME PKG LDFLAGS: build PKG (in the current module) into $bin_dir/NAME atomically.
go_build() { go_build_into "$bin_dir" "$@"; }

build_kubernetes() {
  local dir=$work_root/kubernetes
  rm -rf -- "$dir"
  mkdir -p "$dir"
  cd "$dir"

  log "fetching k8s.io/kubernetes@$KUBERNETES_VERSION"
  local info gomod infofile build_date
  info=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION")
  gomod=$(json_field GoMod <<<"$info")
  infofile=$(json_field Info <<<"$info")
  [[ -f $gomod ]] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION: $info"

  # k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...)
  # at v0.0.0 and replaces them with ./staging/src/...; that replace is ignored
  # for a dependency, so point each one at its published twin instead
  # (v1.X.Y -> v0.X.Y). The list comes from kubernetes' own go.mod.
  local staging_version=v0.${KUBERNETES_VERSION#v1.}
  local staging required m
  staging=$(sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\./staging/.*#\2#p' "$gomod")
  required=$(sed -n 's#^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}v0\.0\.0\([[:space:]].*\)\{0,1\}$#\2#p' "$gomod")
  [[ -n $staging ]] || die "found no ./staging replace directives in $gomod"

  # Mirror kubernetes' go and godebug lines: they set the default GODEBUG
  # behaviour of the binaries, as in the official builds.
  local go_version godebug
  go_version=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][^[:space:]]*\).*/\1/p' "$gomod" | head -n 1)
  godebug=$(sed -n -e '/^godebug[[:space:]]*(/,/^)/p' -e '/^godebug[[:space:]]\{1,\}[^([:space:]]/p' "$gomod")

  {
    printf 'module apimanager-backup-operator/control-plane/kubernetes\n\n'
    printf 'go %s\n\n' "${go_version:-1.24.0}"
    [[ -z $godebug ]] || printf '%s\n\n' "$godebug"
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    for m in $staging; do
      if grep -qxF -- "$m" <<<"$required"; then
        printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"
      fi
    done
    printf ')\n'
  } >go.mod

  # Same version stamping as kubernetes' hack/lib/version.sh, so that
  # `--version` and the /version endpoint report the real release.
  local v=${KUBERNETES_VERSION#v} major minor
  major=${v%%.*}
  minor=${v#*.}
  minor=${minor%%.*}
  # Reproducible build date: the release's publication time from the proxy.
  build_date=$(sed -n 's/.*"Time":[[:space:]]*"\([^"]*\)".*/\1/p' "$infofile" 2>/dev/null | head -n 1 || true)
  local ldflags='-s -w' pkg key val
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
      case $key in
        gitVersion) val=$KUBERNETES_VERSION ;;
        gitMajor) val=$major ;;
        gitMinor) val=$minor ;;
        gitTreeState) val=clean ;;
        buildDate) val=${build_date:-1970-01-01T00:00:00Z} ;;
      esac
      ldflags+=" -X $pkg.$key=$val"
    done
  done

  local name
  for name in kube-apiserver kube-controller-manager; do
    [[ -x $bin_dir/$name ]] || go_build "$name" "k8s.io/kubernetes/cmd/$name" "$ldflags"
  done
}

build_etcd() {
  local dir=$work_root/etcd
  rm -rf -- "$dir"
  mkdir -p "$dir"
  cd "$dir"

  log "fetching go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  local info gomod go_version
  info=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  gomod=$(json_field GoMod <<<"$info")
  [[ -f $gomod ]] || die "could not download go.etcd.io/etcd/server/v3@$ETCD_VERSION: $info"
  go_version=$(sed -n 's/^go[[:space:]]\{1,\}\([0-9][^[:space:]]*\).*/\1/p' "$gomod" | head -n 1)

  # etcd's sibling modules (api/v3, client/v3, pkg/v3, raft/v3, ...) are
  # required by server/v3's go.mod at the same release, so MVS picks them up.
  printf 'module apimanager-backup-operator/control-plane/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "${go_version:-1.23.0}" "$ETCD_VERSION" >go.mod
  cat >main.go <<'EOF'
// Command etcd is the upstream etcd server (same as etcd's server/main.go).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  go_build etcd . '-s -w'
}

total_start=$SECONDS
log "first run: building the control plane (k8s $KUBERNETES_VERSION kube-apiserver and kube-controller-manager, etcd $ETCD_VERSION) from source into $bin_dir"
log "this takes about 7 minutes on 2 cores (plus the module download); later runs reuse it"
missing=$(missing_binaries)
if grep -qx etcd <<<"$missing"; then build_etcd; fi
if grep -q '^kube-' <<<"$missing"; then build_kubernetes; fi
[[ -z $(missing_binaries) ]] || die "binaries still missing after build: $(missing_binaries | tr '\n' ' ')"
log "done in $((SECONDS - total_start))s"
printf '%s\n' "$bin_dir" >&3
