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

# From here on stdout is reserved for the final line; everything else
# (including go's own output) goes to stderr.
exec 3>&1 1>&2

log() { printf '[s3-server/build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The official Go tarball's default location, in case it is not on PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || die "go is not on PATH (needed to build the S3 server)"
command -v flock >/dev/null || die "flock is not on PATH (util-linux)"

mkdir -p "$bin_dir"
exec 9>"$out_dir/.lock"
if ! flock -n 9; then
  log "another build holds $out_dir/.lock; waiting for it"
  flock 9
fi
# Another invocation may have finished the job while we waited.
if [[ -x $binary ]]; then
  printf '%s\n' "$binary" >&3
  exit 0
fi

# Leftovers of a build that was killed hard (SIGKILL); safe to remove under the lock.
rm -f -- "$bin_dir"/.*.tmp.*

tmp=$bin_dir/.weed.tmp.$$
trap 'rm -f -- "$tmp"' EXIT

export GO111MODULE=on GOWORK=off CGO_ENABLED=0

# json_field FIELD: value of a top-level string field of `go ... -json` output on stdin.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" | head -n 1; }

# wait_for PID SECONDS: true once process PID has ended, false if it still runs after SECONDS.
wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

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

start=$SECONDS
log "building weed (a cold build takes about 3 minutes)"
go build -mod=mod -trimpath -ldflags='-s -w' -o "$tmp" ./weed &
build=$!
# A line every 30 s, so a long build never looks like a hang.
while ! wait_for "$build" 30; do
  log "still building weed ($((SECONDS - start))s so far)"
done
wait "$build" || die "go build of weed failed"
mv -f -- "$tmp" "$binary"
rm -rf -- "$out_dir/work"
log "built weed in $((SECONDS - start))s ($(du -h -- "$binary" | cut -f1)); done in $((SECONDS - total_start))s"
printf '%s\n' "$binary" >&3
