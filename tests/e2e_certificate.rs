//! The operator's own webhook certificate (`--certificate-secret`) on the real control plane, as
//! the shipped manifests run it: two replicas with the operator's ServiceAccount (its RBAC and
//! the fence of `manifests/`), each certificate valid 30 s so a renewal comes within the test.
//! The Secret is created once; the caBundle of both webhook configurations is set to its CA;
//! the API server's admission goes through a replica with it; both replicas serve the Secret's
//! certificate, and after a renewal the new one, trusted before it is served. A replica told to
//! use a Secret RBAC does not grant serves only its placeholder and its `/readyz` answers `not
//! ready: certificate`; the fence refuses the operator any other Secret. Own control plane: the
//! webhook configurations are this test's.

mod support;

use apimanager_backup_operator::local::OperatorProcess;
use apimanager_backup_operator::local::install::{self, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use apimanager_backup_operator::selfcert::stored::{CA_KEY, CERT_KEY};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::cluster::{client_as, eventually, kubectl_run, start_cluster};
use support::deployed::ca_bundles;
use support::https::{client_config, connect, request};

const SECRET: &str = "apimanager-backup-operator-tls";

fn replica_args(secret: &str) -> Vec<String> {
    [
        "--mode=webhooks-only",
        &format!("--certificate-secret={secret}"),
        "--certificate-validity=30s",
        "--certificate-name=localhost",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

/// The Secret's entry `key`.
async fn secret_entry(secrets: &Api<Secret>, key: &str) -> Option<Vec<u8>> {
    let secret = secrets.get_opt(SECRET).await.expect("read the Secret")?;
    secret.data?.get(key).map(|value| value.0.clone())
}

/// The leaf certificate `address` serves, verified against `bundle` for the name localhost.
async fn served(address: SocketAddr, bundle: &[u8], dir: &std::path::Path) -> Option<Vec<u8>> {
    let file = dir.join("bundle.pem");
    std::fs::write(&file, bundle).expect("bundle file");
    let stream = connect(address, client_config(&[&file])).await.ok()?;
    stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| leaf.to_vec())
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).expect("PEM certificate").to_vec()
}

/// A server-side dry-run create of a zero-sized backup: refused by the validating webhook when the
/// API server reaches the operator; the error otherwise.
async fn admitted_through_the_webhook(admin: &kube::Client) -> Result<(), String> {
    let yaml = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: zero\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: \"0\"\n";
    let backup: apimanager_backup_operator::api::backup::APIManagerBackup =
        serde_saphyr::from_str(yaml).expect("backup");
    let api = Api::namespaced(admin.clone(), "default");
    match api.create(&PostParams { dry_run: true, ..PostParams::default() }, &backup).await {
        Err(kube::Error::Api(status)) if status.message.contains("must be greater than zero") => Ok(()),
        Err(error) => Err(error.to_string()),
        Ok(_) => Err("admitted: the webhook was not called".into()),
    }
}

/// Records the type of each change of the Secret (Added/Modified/Deleted), from a watch.
fn record_secret_changes(secrets: Api<Secret>) -> (Arc<Mutex<Vec<&'static str>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher::watch_object(secrets, SECRET).boxed();
        let mut last: Option<String> = None;
        while let Some(Ok(object)) = events.next().await {
            let version = object.as_ref().and_then(|s| s.metadata.resource_version.clone());
            let change = match (&last, &version) {
                (None, Some(_)) => "Added",
                (Some(_), None) => "Deleted",
                (Some(a), Some(b)) if a != b => "Modified",
                _ => continue,
            };
            record.lock().expect("lock").push(change);
            last = version;
        }
    });
    (seen, task)
}

async fn readyz(address: SocketAddr, bundle: &[u8], dir: &std::path::Path) -> (u16, String) {
    let file = dir.join("readyz-bundle.pem");
    std::fs::write(&file, bundle).expect("bundle file");
    let reply = request(address, client_config(&[&file]), "GET", "/readyz", b"").await;
    (reply.status, reply.body)
}

/// `GET /readyz` of `address` without verifying its certificate, as the kubelet probes.
async fn unverified_readyz(address: SocketAddr) -> (u16, String) {
    let config = apimanager_backup_operator::local::probe::unverified_tls().expect("TLS client");
    let reply = request(address, config, "GET", "/readyz", b"").await;
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_provision_one_certificate_set_the_ca_bundle_and_renew_it_before_it_expires() {
    let (cluster, dir) = start_cluster("certificate");
    let admin = cluster.admin_client().await.expect("admin client");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let (changes, watch) = record_secret_changes(secrets.clone());

    let mut first = cluster.start_replica(&replica_args(SECRET)).expect("first replica");
    let mut second = cluster.start_replica(&replica_args(SECRET)).expect("second replica");
    // The API server calls the first replica; the caBundle it is given trusts nothing yet.
    let url = format!("https://localhost:{}", first.address().port());
    install::register_webhooks(&admin, &url, b"").await.expect("webhooks at the first replica");

    eventually(Duration::from_secs(60), "the Secret holds a certificate", || {
        let secrets = secrets.clone();
        async move { secret_entry(&secrets, CERT_KEY).await.is_some() }
    })
    .await;
    let bundle = secret_entry(&secrets, CA_KEY).await.expect("ca.crt");
    let leaf = der_of(&secret_entry(&secrets, CERT_KEY).await.expect("tls.crt"));
    eventually(Duration::from_secs(20), "both configurations trust the Secret's CA", || {
        let (admin, bundle) = (admin.clone(), bundle.clone());
        async move { ca_bundles(&admin).await.iter().all(|b| b.as_deref() == Some(&bundle[..])) }
    })
    .await;
    let webhooks = install::WEBHOOKS_MANIFEST.matches("admissionReviewVersions").count();
    assert_eq!(ca_bundles(&admin).await.len(), webhooks, "every webhook of both configurations");
    for replica in [&first, &second] {
        eventually(Duration::from_secs(20), "the replica serves the Secret's certificate", || {
            let (bundle, leaf, dir) = (bundle.clone(), leaf.clone(), dir.clone());
            let address = replica.address();
            async move { served(address, &bundle, &dir).await.as_deref() == Some(&leaf[..]) }
        })
        .await;
        assert_eq!(readyz(replica.address(), &bundle, &dir).await, (200, "ok\n".to_owned()));
    }
    eventually(Duration::from_secs(30), "the API server admits through the first replica", || {
        let admin = admin.clone();
        async move { admitted_through_the_webhook(&admin).await.is_ok() }
    })
    .await;

    // Renewal: a third of the 30 s left, one replica writes a new CA and certificate; the bundle
    // keeps the previous CA; both replicas serve the new certificate, and admission goes on.
    eventually(Duration::from_secs(60), "the certificate is renewed", || {
        let (secrets, leaf) = (secrets.clone(), leaf.clone());
        async move { secret_entry(&secrets, CERT_KEY).await.is_some_and(|pem| der_of(&pem) != leaf) }
    })
    .await;
    let renewed_bundle = secret_entry(&secrets, CA_KEY).await.expect("ca.crt");
    let renewed = der_of(&secret_entry(&secrets, CERT_KEY).await.expect("tls.crt"));
    let cas: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&renewed_bundle).map(|c| c.expect("CA").to_vec()).collect();
    assert_eq!(cas.len(), 2, "the new CA and the previous one");
    assert_eq!(cas[1], der_of(&bundle), "the previous CA stays trusted");
    for replica in [&first, &second] {
        eventually(Duration::from_secs(20), "the replica serves the renewed certificate", || {
            let (bundle, leaf, dir) = (renewed_bundle.clone(), renewed.clone(), dir.clone());
            let address = replica.address();
            async move { served(address, &bundle, &dir).await.as_deref() == Some(&leaf[..]) }
        })
        .await;
    }
    assert!(ca_bundles(&admin).await.iter().all(|b| b.is_some()), "every webhook keeps a bundle");
    admitted_through_the_webhook(&admin).await.expect("admission through the renewed certificate");
    let seen = changes.lock().expect("lock").clone();
    assert_eq!(seen.first(), Some(&"Added"), "{seen:?}");
    assert_eq!(seen.iter().filter(|c| **c == "Added").count(), 1, "created once: {seen:?}");
    assert!(!seen.contains(&"Deleted"), "{seen:?}");
    watch.abort();

    // A replica told to keep its certificate in another Secret may not read it (RBAC names the
    // one Secret): it serves only its placeholder and never becomes ready.
    let mut fenced = cluster.start_replica(&replica_args("elsewhere")).expect("fenced replica");
    let log = fenced.log().to_owned();
    eventually(Duration::from_secs(30), "RBAC refuses the other Secret", || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains(r#"secrets \"elsewhere\" is forbidden"#))
        }
    })
    .await;
    assert!(served(fenced.address(), &renewed_bundle, &dir).await.is_none(), "its placeholder is trusted by nothing");
    let readyz = unverified_readyz(fenced.address()).await;
    assert_eq!(readyz, (503, "not ready: certificate\n".to_owned()), "as the kubelet probes it (no verification)");
    // RBAC cannot name a Secret not made yet, so `create` covers any Secret of the namespace: the
    // fence admits the operator's ServiceAccount no other.
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    let as_operator: Api<Secret> = Api::namespaced(client_as(&cluster, &user).await, OPERATOR_NAMESPACE);
    let mut other = Secret::default();
    other.metadata.name = Some("elsewhere".to_owned());
    other.type_ = Some("kubernetes.io/tls".to_owned());
    other.string_data = Some([("tls.crt".to_owned(), String::new()), ("tls.key".to_owned(), String::new())].into());
    match as_operator.create(&PostParams::default(), &other).await {
        Err(kube::Error::Api(status)) => assert_eq!(
            status.message,
            "secrets \"elsewhere\" is forbidden: ValidatingAdmissionPolicy 'apimanager-backup-operator-fence' with \
binding 'apimanager-backup-operator-fence' denied request: the apimanager-backup-operator ServiceAccount may create \
or update only the Secret apimanager-backup-operator-tls (its webhook certificate, of type kubernetes.io/tls)"
        ),
        other => panic!("the fence let the operator create another Secret: {other:?}"),
    }
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    for (verb, resource, expected) in [
        ("get", "secrets/apimanager-backup-operator-tls", "yes"),
        ("get", "secrets/elsewhere", "no"),
        ("list", "secrets", "no"),
        ("patch", "validatingwebhookconfigurations/apimanager-backup-operator", "yes"),
        ("patch", "validatingwebhookconfigurations/other", "no"),
    ] {
        let output =
            kubectl_run(&cluster, &["-n", OPERATOR_NAMESPACE, "auth", "can-i", verb, resource, "--as", &user], "");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected, "{verb} {resource}");
    }
    for replica in [&mut first, &mut second, &mut fenced] {
        stop(replica);
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

fn stop(replica: &mut OperatorProcess) {
    let _ = replica.terminate(Duration::from_secs(5));
}
