# Shared by the build scripts of the real parts the tests run (tests/control-plane/build.sh,
# tests/s3-server/build.sh): sourced, not run. Each script pins a version, builds from the Go
# module proxy once, caches the result by version, prints its path on stdout and progress on
# stderr.

# real_part_start LABEL WHAT: from here on stdout (kept as fd 3) is reserved for the final line
# and everything else goes to stderr; log lines are prefixed with [LABEL]; go and flock must be
# there (WHAT says what go is needed for).
real_part_start() {
  real_part_label=$1
  exec 3>&1 1>&2
  # The official Go tarball's default location, in case it is not on PATH.
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
  fi
  command -v go >/dev/null || die "go is not on PATH (needed to build $2)"
  command -v flock >/dev/null || die "flock is not on PATH (util-linux)"
  export GO111MODULE=on GOWORK=off CGO_ENABLED=0
  # An interrupted build leaves no partial binary behind.
  trap '[[ -z ${real_part_tmp:-} ]] || rm -f -- "$real_part_tmp"' EXIT
}

# real_part_cached BINARY LABEL WHAT DIR [RESULT]: prints RESULT (default BINARY) and ends the
# script when BINARY (the last thing the build puts in place) exists; otherwise starts the part's
# build (real_part_start LABEL WHAT), holds DIR's lock, and ends the script the same way if a
# build that held it made BINARY meanwhile.
real_part_cached() {
  local result=${5:-$1}
  if [[ -e $1 ]]; then
    printf '%s\n' "$result"
    exit 0
  fi
  real_part_start "$2" "$3"
  real_part_lock "$4"
  if [[ -e $1 ]]; then
    printf '%s\n' "$result" >&3
    exit 0
  fi
}

log() { printf '[%s] %s\n' "$real_part_label" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# real_part_lock DIR: holds DIR/.lock (fd 9) until the script exits, waiting for another build
# that holds it.
real_part_lock() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  if ! flock -n 9; then
    log "another build holds $1/.lock; waiting for it"
    flock 9
  fi
}

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

# go_build_into OUT NAME PKG LDFLAGS: builds PKG (in the current module) as binary NAME into
# folder OUT, under a temporary name renamed into place, with a progress line every 30 s.
go_build_into() {
  local out=$1 name=$2 pkg=$3 ldflags=$4 tmp start build
  tmp=$out/.$name.tmp.$$
  real_part_tmp=$tmp
  # Leftovers of a build that was killed hard (SIGKILL); safe to remove under the lock.
  rm -f -- "$out/.$name".tmp.*
  start=$SECONDS
  log "building $name from $pkg (a cold build takes several minutes)"
  go build -mod=mod -trimpath -ldflags="$ldflags" -o "$tmp" "$pkg" &
  build=$!
  while ! wait_for "$build" 30; do
    log "still building $name ($((SECONDS - start))s so far)"
  done
  if ! wait "$build"; then
    rm -f -- "$tmp"
    die "go build of $name failed"
  fi
  mv -f -- "$tmp" "$out/$name"
  log "built $name in $((SECONDS - start))s ($(du -h -- "$out/$name" | cut -f1))"
}
