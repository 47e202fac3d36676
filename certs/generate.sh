#!/usr/bin/env bash
# Makes a development CA and a serving certificate for the operator's HTTPS server.
#
#   certs/generate.sh [OUT_DIR]      (default: certs/out, git-ignored)
#
# Writes ca.crt, ca.key, tls.crt, tls.key. The serving certificate is valid for localhost,
# 127.0.0.1, ::1 and the in-cluster Service names of manifests/ (override the Service with
# SERVICE_NAME and SERVICE_NAMESPACE). An existing CA in OUT_DIR is reused, so re-running renews
# only the serving certificate. For production, use cert-manager (see README.md).
set -euo pipefail

out=${1:-"$(dirname "$0")/out"}
service=${SERVICE_NAME:-apimanager-backup-operator}
namespace=${SERVICE_NAMESPACE:-apimanager-backup-operator}
days=${CERT_DAYS:-365}

command -v openssl >/dev/null || { echo "certs/generate.sh: openssl is required (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077

if [[ ! -s "$out/ca.crt" || ! -s "$out/ca.key" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=apimanager-backup-operator development CA" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi

sans="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:${service},DNS:${service}.${namespace},DNS:${service}.${namespace}.svc,DNS:${service}.${namespace}.svc.cluster.local"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=${service}.${namespace}.svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n' "$sans" >"$tmp/ext"
openssl x509 -req -sha256 -days "$days" -in "$tmp/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
# Move the key first: a reader that sees the new certificate then also sees its key.
mv "$tmp/tls.key" "$out/tls.key.new" && mv "$tmp/tls.crt" "$out/tls.crt.new"
mv "$out/tls.key.new" "$out/tls.key" && mv "$out/tls.crt.new" "$out/tls.crt"
chmod 644 "$out/ca.crt" "$out/tls.crt"
echo "$out"
