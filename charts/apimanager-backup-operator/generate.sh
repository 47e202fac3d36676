#!/usr/bin/env bash
# Writes the chart's files/ from manifests/, so the objects the chart takes whole are never kept by
# hand: the three CRDs and the admission policy (the fence and its binding) as `kubectl kustomize
# manifests/` renders them, and the cert-manager and alerts components' objects as they are. The
# templates read them with .Files.Get and put in the release's namespace and image. Run it after
# changing those manifests: `charts/apimanager-backup-operator/generate.sh`; tests/helm_chart.rs
# fails while files/ differs from what it writes. An argument writes into another folder.
#
# Needs: kubectl (its kustomize), awk.
set -euo pipefail

chart=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
manifests=$chart/../../manifests
out=${1:-$chart/files}
mkdir -p -- "$out"
rendered=$(kubectl kustomize "$manifests")

# document KIND NAME: the rendered object of that kind and name (kustomize writes metadata.name
# as the only two-space-indented `name:` key of an object).
document() {
  local found
  found=$(awk -v kind="$1" -v name="$2" 'BEGIN { RS = "\n---\n" }
    $0 ~ ("(^|\n)kind: " kind "\n") && $0 ~ ("\n  name: " name "(\n|$)") { print; exit }' <<<"$rendered")
  [[ -n $found ]] || { printf 'generate.sh: no %s %s in kubectl kustomize manifests/\n' "$1" "$2" >&2; exit 1; }
  printf '%s\n' "$found"
}

for crd in apimanagerbackups apimanagerbackupschedules apimanagerrestores; do
  document CustomResourceDefinition "$crd.apps.3scale.net" >"$out/$crd.yaml"
done
{
  document ValidatingAdmissionPolicy apimanager-backup-operator-fence
  printf -- '---\n'
  document ValidatingAdmissionPolicyBinding apimanager-backup-operator-fence
} >"$out/admission-policy.yaml"
cp -- "$manifests/components/cert-manager/certificate.yaml" "$out/certificate.yaml"
cp -- "$manifests/components/alerts/prometheusrule.yaml" "$out/prometheusrule.yaml"
