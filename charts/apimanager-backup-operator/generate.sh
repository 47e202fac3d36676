#!/usr/bin/env bash
# Writes the chart's files/ from manifests/, so the objects the chart takes whole are never kept by
# hand: the three CRDs, the admission policy (the fence and its binding) and the ServiceAccount and
# RBAC (files/rbac/<kind>-<name>.yaml; the operator's ClusterRole of the webhooks-only component in
# files/rbac/webhooks-only/) as `kubectl kustomize` renders them, and the cert-manager and alerts
# components' objects as they are. The templates read them with .Files.Get, keep each where its
# install option does, and put in the release's namespace and image. Run it after
# changing those manifests: `charts/apimanager-backup-operator/generate.sh`; tests/helm_chart.rs
# fails while files/ differs from what it writes. An argument writes into another folder.
#
# Needs: kubectl (its kustomize), awk.
set -euo pipefail

chart=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$chart/../.." && pwd)
manifests=$repo/manifests
out=${1:-$chart/files}
rm -rf -- "$out/rbac"
mkdir -p -- "$out/rbac/webhooks-only"
rendered=$(kubectl kustomize "$manifests")
# The webhooks-only component, from a scratch kustomization next to manifests/ (kustomize takes
# neither an overlay inside its base nor an absolute base).
overlay=$(mktemp -d "$repo/.chart-render.XXXXXX")
trap 'rm -rf -- "$overlay"' EXIT
printf 'resources:\n  - ../manifests\ncomponents:\n  - ../manifests/components/webhooks-only\n' >"$overlay/kustomization.yaml"
webhooks_only=$(kubectl kustomize "$overlay")

# document KIND NAME [RENDERED]: the object of that kind and name in RENDERED (default: the base)
# (kustomize writes metadata.name as the only two-space-indented `name:` key of an object).
document() {
  local found
  found=$(awk -v kind="$1" -v name="$2" 'BEGIN { RS = "\n---\n" }
    $0 ~ ("(^|\n)kind: " kind "\n") && $0 ~ ("\n  name: " name "(\n|$)") { print; exit }' <<<"${3:-$rendered}")
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
for object in ServiceAccount/apimanager-backup-operator \
  Role/apimanager-backup-operator-certificate Role/apimanager-backup-operator-leader-election \
  ClusterRole/apimanager-backup-job ClusterRole/apimanager-backup-operator \
  ClusterRole/apimanager-backup-operator-webhook-ca ClusterRole/apimanager-restore-job \
  RoleBinding/apimanager-backup-operator-certificate RoleBinding/apimanager-backup-operator-leader-election \
  ClusterRoleBinding/apimanager-backup-operator ClusterRoleBinding/apimanager-backup-operator-webhook-ca; do
  kind=${object%%/*} name=${object#*/}
  document "$kind" "$name" >"$out/rbac/${kind,,}-$name.yaml"
done
document ClusterRole apimanager-backup-operator "$webhooks_only" \
  >"$out/rbac/webhooks-only/clusterrole-apimanager-backup-operator.yaml"
cp -- "$manifests/components/cert-manager/certificate.yaml" "$out/certificate.yaml"
cp -- "$manifests/components/alerts/prometheusrule.yaml" "$out/prometheusrule.yaml"
