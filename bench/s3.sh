#!/usr/bin/env bash
# Backup into an S3 bucket against `aws s3 cp --recursive` of the same tree to the same server (a
# real SeaweedFS on loopback, started here), in one run on the same machine (read the ratios).
#
#   bench/s3.sh [SMALL_FILES] [SMALL_KIB] [LARGE_FILES] [LARGE_MIB]
#       default: 2000 files of 64 KiB (~125 MiB) and 4 files of 64 MiB (256 MiB)
#   TREES="small large" (default): the trees measured; `mixed` is one tree of both kinds of files
#       (a FileStorage of many small and a few large files), e.g. for the 4 GiB run:
#       TREES=mixed RUNS=1 bench/s3.sh 16384 64 3 1024   (1 GiB of small files + 3 GiB of large ones)
#   RUNS=3 (default): runs of each command, the medians shown.
#   BIN=path: measure this release binary instead of building one.
#
# ours:     `apimanager-backup-operator job copy-files` into the bucket, sealed (XChaCha20-Poly1305,
#           a key Secret's folder), each file named by its keyed content hash, the sealed manifest
#           and manifest.json committed; a fresh prefix each run, so nothing is deduplicated.
# baseline: `aws s3 cp --recursive` of the tree (awscli, in clear, no manifest).
# again:    a second backup of the unchanged tree under the first one's prefix: its wall time and
#           the bytes it uploaded (its BackupWritten report) against the first's.
# Each command runs RUNS times; the table shows medians of wall time and peak RSS (GNU time).
#
# Needs: GNU time, awscli, the S3 server binary (tests/s3-server/build.sh, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

small=${1:-2000}
small_kib=${2:-64}
large=${3:-4}
large_mib=${4:-64}
runs=${RUNS:-3}
trees=${TREES:-small large}
command -v /usr/bin/time >/dev/null || { echo "bench/s3.sh needs GNU time (apt-get install time)" >&2; exit 1; }
command -v aws >/dev/null || { echo "bench/s3.sh needs awscli (pip install awscli)" >&2; exit 1; }

weed=$(tests/s3-server/build.sh)
bin=${BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --quiet --bin apimanager-backup-operator
  bin=$PWD/target/release/apimanager-backup-operator
fi
work=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The server: path-style S3 on loopback, one identity, its own ports.
base_port=$((20000 + RANDOM % 20000))
s3_port=$((base_port + 4))
key_id=AKBENCH$RANDOM$RANDOM
secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
mkdir -p "$work/data" "$work/credentials" "$work/keys"
printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Read","Write","List","Admin"]}]}' \
  "$key_id" "$secret" >"$work/identities.json"
(cd "$work" && exec "$weed" server -dir="$work/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=$base_port -master.port.grpc=$((base_port + 10)) -master.telemetry=false \
  -master.volumeSizeLimitMB=256 -volume.port=$((base_port + 1)) -volume.port.grpc=$((base_port + 11)) \
  -volume.max=100 -volume.minFreeSpace=256MiB -filer -filer.port=$((base_port + 2)) \
  -filer.port.grpc=$((base_port + 12)) -s3 -s3.port=$s3_port -s3.port.grpc=$((base_port + 14)) \
  -s3.config="$work/identities.json" -s3.autoCreateBucket=false -s3.iam=false -s3.port.iceberg=0 \
  -s3.port.lance=0 >"$work/weed.log" 2>&1) &
server_pid=$!
endpoint=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=$key_id AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1
s3api() { aws --endpoint-url "$endpoint" "$@"; }
for ((i = 0; i < 120; i++)); do
  s3api s3 mb s3://bench >/dev/null 2>&1 && break
  sleep 1
done
s3api s3 ls s3://bench >/dev/null || { echo "the S3 server did not start: $work/weed.log" >&2; exit 1; }
for key in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do printf '%s' "${!key}" >"$work/credentials/$key"; done
head -c 32 /dev/urandom | base64 >"$work/keys/bench"

# tree NAME COUNT KIB KIND: COUNT random files of KIB KiB in nested folders under $work/NAME.
tree() {
  for ((i = 0; i < $2; i++)); do
    local dir="$work/$1/uploads/$((i % 40))/$((i % 7))"
    mkdir -p "$dir"
    head -c $(($3 * 1024)) /dev/urandom >"$dir/$4-$i.bin"
  done
}
echo "generating $small files of $small_kib KiB and $large files of $large_mib MiB (trees: $trees) under $work" >&2
for name in $trees; do
  case $name in
    small) tree small "$small" "$small_kib" file ;;
    large) tree large "$large" $((large_mib * 1024)) file ;;
    mixed) tree mixed "$small" "$small_kib" small && tree mixed "$large" $((large_mib * 1024)) large ;;
    *) echo "unknown tree $name (small, large, mixed)" >&2 && exit 1 ;;
  esac
done

run_id=0
# ours TREE PREFIX: one backup of $work/TREE under PREFIX (its own folder each time); prints the
# seconds, the peak KiB and the bytes it uploaded.
ours() {
  run_id=$((run_id + 1))
  /usr/bin/time -o "$work/time" -f '%e %M' "$bin" job copy-files --source="$work/$1" --last-step \
    --termination-log="$work/term" --s3-bucket=bench --s3-prefix="$2" --s3-backup="bench/run-$run_id-u$run_id" \
    --s3-backup-uid="u$run_id" --s3-region=us-east-1 --s3-endpoint="$endpoint" --s3-force-path-style=true \
    --s3-allow-http=true --s3-credentials="$work/credentials" --encryption-keys="$work/keys" >/dev/null 2>&1 ||
    { echo "copy-files failed: $(cat "$work/term")" >&2; exit 1; }
  local bytes
  bytes=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' "$work/term")
  echo "$(tail -n 1 "$work/time") $bytes"
}
baseline() {
  run_id=$((run_id + 1))
  /usr/bin/time -o "$work/time" -f '%e %M' aws --endpoint-url "$endpoint" s3 cp --recursive --quiet \
    "$work/$1" "s3://bench/aws-$run_id/" >/dev/null 2>&1 || { echo "aws s3 cp failed" >&2; exit 1; }
  tail -n 1 "$work/time"
}
median() { sort -n -k1,1 | sed -n "$(((runs + 1) / 2))p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f %%", 100 * a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "| tree (median of $runs) | ours (sealed) | aws s3 cp | throughput ours / aws | ours peak RSS | aws peak RSS | again: time / first | again: bytes / first |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for name in $trees; do
  first=() base=() again=()
  for ((r = 0; r < runs; r++)); do
    first+=("$(ours "$name" "p$name$r")")
    again+=("$(ours "$name" "p$name$r")")
    base+=("$(baseline "$name")")
  done
  read -r o_s o_kib o_bytes <<<"$(printf '%s\n' "${first[@]}" | median)"
  read -r a_s a_kib a_bytes <<<"$(printf '%s\n' "${again[@]}" | median)"
  read -r b_s b_kib <<<"$(printf '%s\n' "${base[@]}" | median)"
  echo "| $name | $o_s s | $b_s s | $(ratio "$b_s" "$o_s") | $(mib "$o_kib") MiB | $(mib "$b_kib") MiB | $(percent "$a_s" "$o_s") ($a_s s) | $(percent "$a_bytes" "$o_bytes") ($a_bytes of $o_bytes B) |"
done
echo
echo "throughput ratio > 1: ours moved the tree faster than aws s3 cp; again: a second backup of the unchanged tree"
