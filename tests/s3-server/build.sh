#!/usr/bin/env bash
# Builds the real S3 server used by the integration tests and by `local` -- SeaweedFS's `weed`
# binary -- from its Go module (fetched through the Go module proxy), at the version pinned in
# versions.env next to this script.
#
# `go install` refuses the module (its go.mod has replace directives), so the module is downloaded,
# copied to a writable work directory and built from inside it, where those directives apply.
#
# Output: a cache directory outside the repository, keyed by the version:
#   ${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
#     /s3-server/seaweedfs-<SEAWEEDFS_VERSION>/bin/weed
#
# The binary's path is printed on stdout as the only line, so callers can do
#   weed=$(tests/s3-server/build.sh)
# All progress messages go to stderr. When the binary already exists the script prints nothing
# else and returns at once. Concurrent invocations are serialised with flock; the binary is built
# under a temporary name and renamed into place, so an interrupted build never leaves a partial
# binary.
#
# Needs: go (>= the go version of the pinned module), flock, sed.
set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/s3-server/versions.env
. "$script_dir/versions.env"
: "${SEAWEEDFS_VERSION:?SEAWEEDFS_VERSION missing from versions.env}"

module=github.com/seaweedfs/seaweedfs
cache_root=${APIMANAGER_BACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apimanager-backup-operator}
out_dir=$cache_root/s3-server/seaweedfs-${SEAWEEDFS_VERSION}
bin_dir=$out_dir/bin
binary=$bin_dir/weed

# Fast path: the binary is there already.
if [[ -x $binary ]]; then
  printf '%s\n' "$binary"
  exit 0
fi

# shellcheck source=tests/real-part.sh
. "$script_dir/../real-part.sh"
real_part_start s3-server/build "the S3 server"
real_part_lock "$out_dir"
# Another invocation may have finished the job while we waited.
if [[ -x $binary ]]; then
  printf '%s\n' "$binary" >&3
  exit 0
fi

total_start=$SECONDS
log "first run: building SeaweedFS $SEAWEEDFS_VERSION (weed) from source into $bin_dir"
log "this takes about 3 minutes on 2 cores (plus the module download); later runs reuse it"

log "fetching $module@$SEAWEEDFS_VERSION"
info=$(cd / && go mod download -json "$module@$SEAWEEDFS_VERSION")
module_dir=$(json_field Dir <<<"$info")
[[ -f $module_dir/go.mod ]] || die "could not download $module@$SEAWEEDFS_VERSION: $info"

# The module cache is read-only; build in a writable copy of it.
src=$out_dir/work/seaweedfs
rm -rf -- "$src"
mkdir -p "$src"
cp -R -- "$module_dir/." "$src/"
chmod -R u+w -- "$src"
cd "$src"

mkdir -p "$bin_dir"
go_build_into "$bin_dir" weed ./weed '-s -w'
rm -rf -- "$out_dir/work"
log "done in $((SECONDS - total_start))s"
printf '%s\n' "$binary" >&3
