//! The alerts of the optional kustomize component `manifests/components/alerts`, unit-tested with
//! `promtool test rules` (Debian's `prometheus` package; `.ci/run` installs it) against the
//! PrometheusRule exactly as it ships.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool(args: &[&Path]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (Debian's prometheus package; .ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn every_alert_rule_passes_its_promtool_unit_tests() {
    let text = std::fs::read_to_string(repo("manifests/components/alerts/prometheusrule.yaml")).expect("rule file");
    let rule: Value = serde_saphyr::from_str(&text).expect("PrometheusRule YAML");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let tests = std::fs::read_to_string(repo("tests/alerts/rules_test.yaml")).expect("promtool tests");
    for alert in &alerts {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no promtool test");
    }
    assert_eq!(alerts.len(), 8, "{alerts:?}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let rules = dir.join("rules.json");
    std::fs::write(&rules, serde_json::to_vec(&rule["spec"]).expect("rules JSON")).expect("rules.json");
    let test_file = dir.join("rules_test.yaml");
    std::fs::write(&test_file, tests).expect("test file");
    promtool(&[Path::new("check"), Path::new("rules"), &rules]);
    let outcome = promtool(&[Path::new("test"), Path::new("rules"), &test_file]);
    assert!(outcome.contains("SUCCESS"), "{outcome}");
    let _ = std::fs::remove_dir_all(dir);
}
