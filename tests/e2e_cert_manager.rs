//! The install with cert-manager, for real: real cert-manager (controller and CA injector,
//! v1.20.3, built from source by `tests/cert-manager/build.sh`) runs against the real control
//! plane, and `kubectl apply -k` of a kustomization adding `manifests/components/cert-manager`
//! to `manifests/` (`tests/fixtures/install-cert-manager`) installs the operator, whose Pods the
//! Node runs (see `tests/e2e_install.rs`). cert-manager's self-signed Issuer makes the
//! Certificate Ready, its CA injector sets every webhook's `caBundle` to the Secret's CA, the
//! replicas serve the mounted Secret, and the API server's admission goes through them: a bad
//! backup is refused with the webhook's exact message, a good one is defaulted. Own control
//! plane.

mod support;

use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::time::Duration;
use support::cluster::eventually;
use support::deployed::{assert_admission, ca_bundles, kubectl_ok, start, wait_for_rollout};

const CERTIFICATE: &str = "apimanager-backup-operator-serving-cert";
const SECRET: &str = "apimanager-backup-operator-tls";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_issues_the_certificate_injects_the_ca_and_admission_works_through_it() {
    let cluster = start("cert-manager", true).await;
    let install = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/install-cert-manager");
    kubectl_ok(&cluster, &["apply", "-k", install], "");
    kubectl_ok(
        &cluster,
        &[
            "-n",
            OPERATOR_NAMESPACE,
            "wait",
            "--for=condition=Ready",
            &format!("certificate/{CERTIFICATE}"),
            "--timeout=120s",
        ],
        "",
    );

    let admin = cluster.plane.admin_client().await.expect("admin client");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let secret = secrets.get(SECRET).await.expect("the Certificate's Secret");
    let data = secret.data.expect("Secret data");
    let ca = data.get("ca.crt").expect("ca.crt").0.clone();
    assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"), "a serving certificate and key");
    eventually(Duration::from_secs(60), "the CA injector sets every webhook's caBundle to the Secret's CA", || {
        let (admin, ca) = (admin.clone(), ca.clone());
        async move { ca_bundles(&admin).await.iter().all(|bundle| bundle.as_deref() == Some(&ca[..])) }
    })
    .await;
    let webhooks =
        apimanager_backup_operator::local::install::WEBHOOKS_MANIFEST.matches("admissionReviewVersions").count();
    assert_eq!(ca_bundles(&admin).await.len(), webhooks, "every webhook of both configurations");

    wait_for_rollout(&cluster);
    assert_admission(&cluster, "cert-manager").await;
}
