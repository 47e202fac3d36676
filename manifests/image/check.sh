#!/usr/bin/env bash
# Checks the image that build.sh made (CI runs this): the binary runs from the image and prints
# the CRD of manifests/crd.yaml, the image runs as a numeric non-root user, and the image name is
# the one manifests/kustomization.yaml deploys. Prints the binary's path extracted from the image
# on stdout, so end-to-end tests can run backup Pods from it (APIMANAGER_BACKUP_JOB_BINARY).
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
{ read -r image; read -r archive; } < <(manifests/image/build.sh)
out=$(dirname -- "$archive")
storage=(--root "$out/containers/check" --runroot "$out/containers/check-run" --storage-driver vfs)
fail() { printf '[image/check] FAILED: %s\n' "$*" >&2; exit 1; }
ok() { printf '[image/check] ok: %s\n' "$*" >&2; }

container=$(buildah "${storage[@]}" from --quiet "oci-archive:$archive")
trap 'buildah "${storage[@]}" rm "$container" >/dev/null' EXIT

crd=$(buildah "${storage[@]}" run --isolation chroot "$container" -- apimanager-backup-operator crd)
diff <(printf '%s\n' "$crd") manifests/crd.yaml >&2 || fail "the image's binary prints another CRD than manifests/crd.yaml"
ok "the binary run from the image prints manifests/crd.yaml"

user=$(buildah "${storage[@]}" inspect --format '{{.OCIv1.Config.User}}' "$container")
[[ $user =~ ^([0-9]+)(:[0-9]+)?$ && ${BASH_REMATCH[1]} -ne 0 ]] || fail "image user '$user' is not a numeric non-root user"
ok "image user $user"

deployed=$(kubectl kustomize manifests/ | sed -n 's/^ *image: *//p' | sort -u)
[[ $deployed == "$image" ]] || fail "manifests/ deploy image '$deployed', build.sh tags '$image'"
ok "manifests/ deploy $image"

binary=$out/image-binary
mount=$(buildah "${storage[@]}" mount "$container")
cp -- "$mount/usr/local/bin/apimanager-backup-operator" "$binary.tmp"
buildah "${storage[@]}" umount "$container" >/dev/null
mv -f -- "$binary.tmp" "$binary"
printf '%s\n' "$binary"
