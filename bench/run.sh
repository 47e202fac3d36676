#!/usr/bin/env bash
# Benchmarks of what a backup spends its time and memory on, each against a baseline measured in
# the same run on the same data (machines here are shared and noisy: read the ratios).
#
#   bench/run.sh [FILES] [FILE_KIB]      default: 2000 files of 64 KiB (~125 MiB) in nested folders
#
# copy-files: `apimanager-backup-operator job copy-files` (copy + sha256 of every file + manifest)
#   baseline: `cp -a`, `sha256sum` of every copied file, then `sync -f` (what a shell Job would do
#   to get the same result: copies, checksums, data on disk before the step reports success).
# Each command runs 5 times; the table shows medians of wall time and peak RSS (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."

files=${1:-2000}
kib=${2:-64}
runs=5
command -v /usr/bin/time >/dev/null || { echo "bench/run.sh needs GNU time (apt-get install time)" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/apimanager-backup-operator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "generating $files files of $kib KiB under $work/source" >&2
for ((i = 0; i < files; i++)); do
  dir="$work/source/uploads/$((i % 40))/$((i % 7))"
  mkdir -p "$dir"
  head -c $((kib * 1024)) /dev/urandom >"$dir/file-$i.bin"
done

# measure NAME COMMAND...: runs COMMAND $runs times on a fresh destination; prints "seconds kib".
measure() {
  local out=$work/$1 samples=()
  shift
  for ((r = 0; r < runs; r++)); do
    rm -rf "$out" && mkdir -p "$out"
    sync
    /usr/bin/time -o "$work/time" -f '%e %M' "$@" >/dev/null 2>&1
    samples+=("$(tail -n 1 "$work/time")")
  done
  printf '%s\n' "${samples[@]}" | sort -n -k1,1 | sed -n "$(((runs + 1) / 2))p"
}

ours=$(measure ours "$bin" job copy-files --source="$work/source" --backup-dir="$work/ours" --termination-log="$work/term")
base=$(measure base bash -c "cp -a '$work/source' '$work/base/system-filestorage-pvc' && find '$work/base' -type f -print0 | xargs -0 sha256sum > '$work/base/sums' && sync -f '$work/base'")

read -r ours_s ours_kib <<<"$ours"
read -r base_s base_kib <<<"$base"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo
echo "| benchmark ($files files x $kib KiB, median of $runs) | ours | baseline | ours / baseline |"
echo "| --- | --- | --- | --- |"
echo "| copy-files wall time (s) | $ours_s | $base_s | $(ratio "$ours_s" "$base_s") |"
echo "| copy-files peak RSS (MiB) | $(awk -v k="$ours_kib" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v k="$base_kib" 'BEGIN { printf "%.1f", k / 1024 }') | $(ratio "$ours_kib" "$base_kib") |"
echo
echo "baseline: cp -a + sha256sum of every file + sync -f; its peak RSS is that of its largest process"
