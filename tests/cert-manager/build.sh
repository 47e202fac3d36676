#!/usr/bin/env bash
# Builds real cert-manager -- its controller and its CA injector, the two processes the
# cert-manager tests run -- at the version pinned below, from the entry points kept next to this
# script (controller/, cainjector/: upstream's cmd modules, see ORIGIN.md) and cert-manager's main
# module fetched through the Go module proxy; copies the main module's CRDs beside them.
#
# Output: a cache directory outside the repository, keyed by the version:
#   ${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
#     /cert-manager/cert-manager-<CERT_MANAGER_VERSION>/
#       bin/cert-manager-controller  bin/cert-manager-cainjector  crds/*.yaml
#
# That directory is printed on stdout as the only line, so callers can do
#   dir=$(tests/cert-manager/build.sh)
# All progress messages go to stderr. When both binaries and the CRDs exist the script prints
# nothing else and returns at once. Concurrent invocations are serialised with flock; binaries
# are built under a temporary name and renamed into place and the CRDs are copied last, so an
# interrupted build never leaves a partial result that looks complete.
#
# Needs: go (>= 1.25, the go version of the entry points' go.mod), flock, sed.
set -euo pipefail

CERT_MANAGER_VERSION=v1.20.3
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
module=github.com/cert-manager/cert-manager
cache_root=${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
out_dir=$cache_root/cert-manager/cert-manager-${CERT_MANAGER_VERSION}
bin_dir=$out_dir/bin
crd_dir=$out_dir/crds
done_marker=$crd_dir/.complete

# shellcheck source=tests/real-part.sh
. "$script_dir/../real-part.sh"
real_part_cached "$done_marker" cert-manager/build "cert-manager" "$out_dir" "$out_dir"

total_start=$SECONDS
log "first run: building cert-manager $CERT_MANAGER_VERSION (controller, cainjector) into $bin_dir"
log "this takes a few minutes on 2 cores (plus the module download); later runs reuse it"

# The entry points' go.mod pins the main module; build in a writable copy, as `-mod=mod` may
# complete go.sum.
work=$out_dir/work
rm -rf -- "$work"
mkdir -p "$work" "$bin_dir"
for part in controller cainjector; do
  cp -R -- "$script_dir/$part" "$work/$part"
done
chmod -R u+w -- "$work"
(cd "$work/controller" && go_build_into "$bin_dir" cert-manager-controller . '-s -w')
(cd "$work/cainjector" && go_build_into "$bin_dir" cert-manager-cainjector . '-s -w')

log "copying the CRDs of $module@$CERT_MANAGER_VERSION"
info=$(cd / && go mod download -json "$module@$CERT_MANAGER_VERSION")
module_dir=$(json_field Dir <<<"$info")
[[ -d $module_dir/deploy/crds ]] || die "no deploy/crds in $module@$CERT_MANAGER_VERSION: $info"
rm -rf -- "$crd_dir"
mkdir -p "$crd_dir"
cp -- "$module_dir"/deploy/crds/*.yaml "$crd_dir/"
chmod u+w -- "$crd_dir"/*.yaml
touch -- "$done_marker"
rm -rf -- "$work"
log "done in $((SECONDS - total_start))s"
printf '%s\n' "$out_dir" >&3
