#!/usr/bin/env bash
# Builds Helm -- the `helm` client the chart tests run -- from its Go module (fetched through the
# Go module proxy) with `go install`, at the version pinned below.
#
# Output: a cache directory outside the repository, keyed by the version:
#   ${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
#     /helm/helm-<HELM_VERSION>/bin/helm
#
# The binary's path is printed on stdout as the only line, so callers can do
#   helm=$(tests/helm/build.sh)
# All progress messages go to stderr. When the binary already exists the script prints nothing
# else and returns at once. Concurrent invocations are serialised with flock; the binary is
# installed into a temporary folder and renamed into place, so an interrupted build never leaves
# a partial binary.
#
# Needs: go (>= the go version of the pinned module), flock.
set -euo pipefail

HELM_VERSION=v4.3.2
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cache_root=${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
out_dir=$cache_root/helm/helm-${HELM_VERSION}
bin_dir=$out_dir/bin
binary=$bin_dir/helm

# shellcheck source=tests/real-part.sh
. "$script_dir/../real-part.sh"
real_part_cached "$binary" helm/build "Helm" "$out_dir"

start=$SECONDS
log "first run: building Helm $HELM_VERSION with go install into $bin_dir (a few minutes on 2 cores)"
tmp=$out_dir/.bin.tmp.$$
rm -rf -- "$out_dir"/.bin.tmp.*
mkdir -p "$tmp"
(cd / && GOBIN=$tmp go install -trimpath -ldflags='-s -w' "helm.sh/helm/v4/cmd/helm@$HELM_VERSION") ||
  { rm -rf -- "$tmp"; die "go install of helm $HELM_VERSION failed"; }
mkdir -p "$bin_dir"
mv -f -- "$tmp/helm" "$binary"
rm -rf -- "$tmp"
log "built helm in $((SECONDS - start))s"
printf '%s\n' "$binary" >&3
