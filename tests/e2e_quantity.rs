//! Quantities, differentially against the real API server: for every string of a generated corpus
//! (signs, leading zeros, fractions, every suffix and near misses, exponents up to the int64 and
//! int32 boundaries, white space, huge digit strings), the operator's webhooks admit an
//! APIManagerBackup of that size exactly when the API server admits a PersistentVolumeClaim
//! requesting that much storage (the claim the operator creates with the same string), and the
//! webhook's parser says the same.

mod support;

use apimanager_backup_operator::api::backup::{
    APIManagerBackup, APIManagerBackupSpec, BackupDestination, PersistentVolumeClaimDestination,
    PersistentVolumeClaimResources,
};
use apimanager_backup_operator::api::quantity::{Sign, parse_json_quantity};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use support::cluster::{apimanager_yaml, kubectl_ok, namespace, shared};

/// The corpus: a deterministic sample of sign × digits × fraction × suffix, and hand-picked edges.
fn corpus() -> Vec<String> {
    let signs = ["", "+", "-"];
    let digits = [
        "",
        "0",
        "1",
        "00",
        "007",
        "10",
        "123",
        "999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999999",
    ];
    let fractions = ["", ".", ".0", ".5", ".000000001", ".0000000001", ".123456789012345678", "5."];
    let suffixes = [
        "",
        "n",
        "u",
        "m",
        "k",
        "M",
        "G",
        "T",
        "P",
        "E",
        "Ki",
        "Mi",
        "Gi",
        "Ti",
        "Pi",
        "Ei",
        "K",
        "mi",
        "ki",
        "Gii",
        "KI",
        "i",
        "e",
        "E",
        "e3",
        "E3",
        "e+3",
        "e-3",
        "E-3",
        "e-9",
        "e-10",
        "e0",
        "e05",
        "e+",
        "e-",
        "e18",
        "e19",
        "e308",
        "e1000",
        "e-1000",
        "e9223372036854775807",
        "e9223372036854775808",
        "e-9223372036854775808",
        "e4294967296",
        "e4294967297",
        "e+-3",
        "ee3",
        "Ki1",
        "e3Ki",
        "M5",
        "1",
        "x",
    ];
    let mut corpus = Vec::new();
    let combinations = signs.len() * digits.len() * fractions.len() * suffixes.len();
    // A stride coprime with every dimension walks through all of them evenly.
    let mut index = 0usize;
    for _ in 0..700 {
        index = (index + 7919) % combinations;
        let (rest, suffix) = (index / suffixes.len(), index % suffixes.len());
        let (rest, fraction) = (rest / fractions.len(), rest % fractions.len());
        let (sign, digit) = (rest / digits.len(), rest % digits.len());
        corpus.push(format!("{}{}{}{}", signs[sign], digits[digit], fractions[fraction], suffixes[suffix]));
    }
    for suffix in suffixes {
        corpus.push(format!("1{suffix}"));
        corpus.push(format!("0.5{suffix}"));
        corpus.push(suffix.to_owned());
    }
    let edges = [
        "",
        " ",
        "0",
        "-0",
        "+0",
        "+",
        "-",
        ".",
        "+.",
        "-.",
        "10Gi",
        " 1Gi",
        "1Gi ",
        "\t1Gi",
        "1Gi\n",
        "\r1Gi",
        "\u{a0}1Gi",
        "1Gi\u{3000}",
        "\u{85}1Gi",
        "\u{2028}1Gi",
        "1 Gi",
        "1\u{0}Gi",
        "ten gigs",
        "0x10",
        "1_000",
        "\u{661}",
        "\u{ff11}Gi",
        "1.5.5",
        "--1",
        "+-1",
        "1e20Ei",
        "1e18Pi",
        "8Ei",
        "9Ei",
        "16Ei",
        "0.5Ei",
        ".e-10",
        "e-9",
        "0e-10",
        "00.e-10",
        "Ti",
        "1\"Gi",
        "1\\Gi",
        "1,5Gi",
    ];
    corpus.extend(edges.iter().map(|e| (*e).to_owned()));
    corpus.push(format!("{}Gi", "9".repeat(5000)));
    corpus.push(format!("0.{}1", "0".repeat(5000)));
    corpus.push(format!("{}Ei", "1".repeat(2000)));
    corpus.sort();
    corpus.dedup();
    corpus
}

fn claim(size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("size".to_owned()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.to_owned()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn backup(size: &str) -> APIManagerBackup {
    let destination = PersistentVolumeClaimDestination {
        resources: Some(PersistentVolumeClaimResources { requests: Some(Quantity(size.to_owned())) }),
        ..PersistentVolumeClaimDestination::default()
    };
    let spec = APIManagerBackupSpec {
        api_manager_name: Some("example".to_owned()),
        backup_destination: BackupDestination { persistent_volume_claim: Some(destination), s3: None },
    };
    APIManagerBackup::new("size", spec)
}

/// Whether the API server admitted the dry-run create; a refusal must be a validation answer
/// (400 or 422), anything else fails the test.
fn admitted<T>(result: Result<T, kube::Error>, what: &str, size: &str) -> bool {
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if [400, 422].contains(&status.code) => false,
        Err(error) => panic!("{what} of size {size:?}: unexpected error {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_admits_exactly_the_sizes_a_claim_accepts() {
    let cluster = shared();
    let ns = namespace(cluster, "quantities");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", true));
    let client = cluster.admin_client().await.expect("admin client");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let backups: Api<APIManagerBackup> = Api::namespaced(client, &ns);
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let corpus = corpus();
    let verdicts: Vec<(String, bool, bool, bool)> = futures::stream::iter(corpus.iter())
        .map(|size| {
            let (claims, backups, dry_run) = (claims.clone(), backups.clone(), dry_run.clone());
            async move {
                let claim_ok = admitted(claims.create(&dry_run, &claim(size)).await, "claim", size);
                let backup_ok = admitted(backups.create(&dry_run, &backup(size)).await, "backup", size);
                let parsed_ok = parse_json_quantity(size) == Ok(Sign::Positive);
                (size.clone(), claim_ok, backup_ok, parsed_ok)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let differences: Vec<String> = verdicts
        .iter()
        .filter(|(_, claim, backup, parsed)| claim != backup || claim != parsed)
        .map(|(size, claim, backup, parsed)| format!("{size:?}: claim {claim}, backup {backup}, parser {parsed}"))
        .collect();
    assert!(
        differences.is_empty(),
        "{} of {} sizes differ:\n{}",
        differences.len(),
        corpus.len(),
        differences.join("\n")
    );
    let accepted = verdicts.iter().filter(|(_, claim, _, _)| *claim).count();
    assert!(
        accepted > 100 && accepted < corpus.len() - 100,
        "a corpus with both sides: {accepted} of {}",
        corpus.len()
    );
}
