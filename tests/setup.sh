#!/usr/bin/env bash
# Makes a fresh machine ready for the tests: installs the Debian packages they need when missing
# (openssl, util-linux for flock and setpriv, iproute2 for the Pod networks of the install tests,
# prometheus for the scrape test and promtool for the alert rules), checks the toolchains, and
# builds the control plane, the S3 server (SeaweedFS), Helm and cert-manager once (cached;
# progress on stderr).
# Extra `command:package` arguments add packages, e.g. `tests/setup.sh buildah:buildah`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in openssl:openssl flock:util-linux setpriv:util-linux ip:iproute2 prometheus:prometheus promtool:prometheus "$@"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  echo "tests/setup.sh: installing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u)
fi
for tool in go cargo kubectl; do
  command -v "$tool" >/dev/null || { echo "tests/setup.sh: $tool is required on this machine" >&2; exit 1; }
done
echo "tests/setup.sh: control plane in $(tests/control-plane/build.sh)" >&2
echo "tests/setup.sh: S3 server in $(tests/s3-server/build.sh)" >&2
echo "tests/setup.sh: helm in $(tests/helm/build.sh)" >&2
echo "tests/setup.sh: cert-manager in $(tests/cert-manager/build.sh)" >&2
