#!/usr/bin/env bash
# Builds the operator's container image with Debian's buildah (chroot isolation, vfs storage: no
# daemon, no privileges beyond root) into an OCI archive, ready for
#   skopeo copy oci-archive:<archive> docker://<registry>/apimanager-backup-operator:<tag>
#
# The binary is a release build statically linked against glibc (x86_64-unknown-linux-gnu with
# +crt-static: the musl target cannot be installed offline), so it runs on `scratch`.
# The archive is cached by a hash of the sources: an unchanged tree builds nothing.
#
# Output (stdout, two lines): the image name, then the archive path. Progress goes to stderr.
# Environment: APIMANAGER_BACKUP_IMAGE_DIR (default <repo>/target/image) holds the archives,
# buildah's storage and the binary's build tree.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
name=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
image=$name:$version
out=${APIMANAGER_BACKUP_IMAGE_DIR:-$repo/target/image}
target=x86_64-unknown-linux-gnu
log() { printf '[image/build] %s\n' "$*" >&2; }

hash=$(
  {
    git ls-files -z --cached --others --exclude-standard -- Cargo.toml Cargo.lock src crates manifests/image/Containerfile |
      sort -z | xargs -0 sha256sum
    rustc --version
  } | sha256sum | cut -c1-16
)
archive=$out/$name-$version-$hash.oci.tar
if [[ -f $archive ]]; then
  log "cached: $archive"
  printf '%s\n%s\n' "$image" "$archive"
  exit 0
fi

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
start=$SECONDS
log "building the static release binary (a cold build takes several minutes)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" \
  --target-dir "$out/cargo" >&2
binary=$out/cargo/$target/release/$name
if readelf --program-headers "$binary" | grep -q INTERP; then
  log "error: $binary is dynamically linked (it names a program interpreter)"
  exit 1
fi

context=$(mktemp -d "$out/context.XXXXXX")
trap 'rm -rf -- "$context"' EXIT
cp -- "$binary" "$context/$name"
cp -- manifests/image/Containerfile "$context/Containerfile"
storage=(--root "$out/containers/storage" --runroot "$out/containers/run" --storage-driver vfs)
log "building $image with buildah"
buildah "${storage[@]}" bud --quiet --isolation chroot --layers=false \
  --label "org.opencontainers.image.version=$version" --tag "$image" -f "$context/Containerfile" "$context" >&2
rm -f -- "$out/$name-$version"-*.oci.tar
buildah "${storage[@]}" push --quiet "$image" "oci-archive:$archive.tmp:$image" >&2
mv -f -- "$archive.tmp" "$archive"
log "built $archive in $((SECONDS - start))s"
printf '%s\n%s\n' "$image" "$archive"
