//! The artifacts users install or read: the generated CRD, the kustomize manifests, the reference
//! examples, and the documented command line.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::backup::validation::check_spec;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn manifests_crd_is_what_the_crd_subcommand_prints() {
    let printed = run(Command::new(BIN).arg("crd"));
    let committed = std::fs::read_to_string(repo("manifests/crd.yaml")).expect("manifests/crd.yaml");
    assert!(printed == committed, "manifests/crd.yaml is stale: run `cargo run -- crd > manifests/crd.yaml`");
}

fn crd_version(crds: &[Value], kind: &str) -> Value {
    let crd = crds.iter().find(|c| c["spec"]["names"]["kind"] == kind).unwrap_or_else(|| panic!("{kind} CRD"));
    let version = crd["spec"]["versions"][0].clone();
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    version
}

fn printer_columns(version: &Value) -> Vec<&str> {
    version["additionalPrinterColumns"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect()
}

#[test]
fn crd_carries_the_cel_rules_and_printer_columns() {
    let crds: Vec<Value> = serde_saphyr::from_multiple(&run(Command::new(BIN).arg("crd"))).expect("CRD YAML");
    assert_eq!(crds.len(), 3);
    let version = crd_version(&crds, "APIManagerBackup");
    assert_eq!(printer_columns(&version), ["Completed", "PVC", "Age"]);
    let destination = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["backupDestination"];
    assert_eq!(destination["x-kubernetes-validations"][0]["reason"], "FieldValueRequired");
    let claim = &destination["properties"]["persistentVolumeClaim"];
    assert_eq!(claim["x-kubernetes-validations"][0]["fieldPath"], ".resources.requests");

    let version = crd_version(&crds, "APIManagerRestore");
    assert_eq!(printer_columns(&version), ["Completed", "APIManager", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["x-kubernetes-validations"][0]["rule"], "self == oldSelf");
    assert_eq!(spec["x-kubernetes-validations"][0]["reason"], "FieldValueForbidden");
    let source = &spec["properties"]["restoreSource"];
    assert_eq!(source["x-kubernetes-validations"][0]["reason"], "FieldValueRequired");
    let claim_source = &source["properties"]["persistentVolumeClaim"]["properties"]["claimSource"];
    assert_eq!(claim_source["required"], serde_json::json!(["claimName"]));
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in [
        "apiManagerToRestoreRef",
        "mainStepsCompleted",
        "completed",
        "startTime",
        "completionTime",
        "conditions",
        "observedGeneration",
    ] {
        assert!(status.get(field).is_some(), "status.{field} missing");
    }

    // The schedule: its columns, every default written in the schema, the template a backup's
    // spec with the backup's CEL rules.
    let version = crd_version(&crds, "APIManagerBackupSchedule");
    assert_eq!(printer_columns(&version), ["Schedule", "Suspended", "Last Success", "Next", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["schedule", "template"]));
    let fields = &spec["properties"];
    assert_eq!(fields["timeZone"]["default"], "UTC");
    assert_eq!(fields["suspend"]["default"], false);
    assert_eq!(fields["concurrencyPolicy"]["default"], "Forbid");
    assert_eq!(fields["concurrencyPolicy"]["enum"], serde_json::json!(["Forbid", "Replace"]));
    assert_eq!(fields["retention"]["default"], serde_json::json!({"keepFailed": 1}));
    assert_eq!(fields["retention"]["properties"]["keepFailed"]["default"], 1);
    let template = &fields["template"]["properties"]["backupDestination"];
    assert_eq!(template["x-kubernetes-validations"][0]["reason"], "FieldValueRequired");
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in
        ["lastScheduleTime", "lastSuccessfulTime", "nextScheduleTime", "active", "conditions", "observedGeneration"]
    {
        assert!(status.get(field).is_some(), "schedule status.{field} missing");
    }
}

#[test]
fn reference_examples_are_accepted() {
    for file in ["tests/fixtures/backup-pvc-size.yaml", "tests/fixtures/backup-pvc-volume-name.yaml"] {
        let text = std::fs::read_to_string(repo(file)).expect("fixture");
        let backup: APIManagerBackup = serde_saphyr::from_str(&text).expect("fixture is an APIManagerBackup");
        let verdict = check_spec(&backup.spec);
        assert!(verdict.errors.is_empty(), "{file}: {:?}", verdict.errors);
    }
}

#[test]
fn kustomize_renders_least_privilege_install_with_strict_webhooks() {
    let rendered = run(Command::new("kubectl").args(["kustomize"]).arg(repo("manifests")));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("rendered YAML");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for doc in docs.iter().filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("WebhookConfiguration"))) {
        for hook in doc["webhooks"].as_array().expect("webhooks") {
            assert_eq!(hook["failurePolicy"], "Fail");
            assert_eq!(hook["sideEffects"], "None");
            assert!(hook["timeoutSeconds"].as_u64().is_some_and(|t| t <= 5));
            assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
            let resource = hook["rules"][0]["resources"][0].as_str().expect("resource");
            assert!(
                ["apimanagerbackups", "apimanagerrestores", "apimanagerbackupschedules"].contains(&resource),
                "{resource}"
            );
            let path = hook["clientConfig"]["service"]["path"].as_str().expect("path");
            assert!(path.ends_with(&format!("-{}", resource.trim_end_matches('s'))), "{path} serves {resource}");
            assert!(hook["clientConfig"]["caBundle"].is_null(), "the operator sets the caBundle");
        }
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let user = apimanager_backup_operator::reconcile::step::JOB_USER;
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert_eq!(pod["securityContext"][field], user, "the Deployment runs as the image's user: {field}");
    }
    let containerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/image/Containerfile"))
            .expect("Containerfile");
    assert!(containerfile.lines().any(|line| line == format!("USER {user}:{user}")), "the image's user is {user}");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["limits"]["memory"].is_string());
    let job_image =
        container["env"].as_array().expect("env").iter().find(|e| e["name"] == "APIMANAGER_BACKUP_JOB_IMAGE");
    assert_eq!(job_image.map(|e| &e["value"]), Some(&container["image"]), "the step Pods run the operator's own image");
    let policy = docs.iter().find(|d| d["kind"] == "ValidatingAdmissionPolicy").expect("admission policy");
    let variable = |name: &str| {
        policy["spec"]["variables"].as_array().expect("variables").iter().find(|v| v["name"] == name).cloned()
    };
    let image = container["image"].as_str().expect("image");
    assert_eq!(
        variable("jobImage").map(|v| v["expression"].clone()),
        Some(Value::String(format!("'{image}'"))),
        "the policy allows the operator's step Pods exactly the operator's image"
    );
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator'"
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let binding = docs.iter().find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding").expect("binding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], serde_json::json!(["Deny"]));
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            let verbs = rule["verbs"].as_array().expect("verbs");
            assert!(!verbs.iter().any(|v| v == "*"), "no wildcard verbs: {rule}");
            assert!(
                !rule["resources"].as_array().expect("resources").iter().any(|r| r == "*"),
                "no wildcard resources"
            );
            let touches_secrets = rule["resources"].as_array().expect("resources").iter().any(|r| r == "secrets");
            let jobs = ["apimanager-backup-job", "apimanager-restore-job"];
            assert!(
                !touches_secrets || jobs.iter().any(|name| role["metadata"]["name"] == *name),
                "only the step Pods touch Secrets"
            );
        }
    }
    let job_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "apimanager-backup-job")
        .expect("job role");
    let names = |resource: &str| -> Vec<String> {
        let rule =
            job_role["rules"].as_array().expect("rules").iter().find(|r| r["resources"][0] == resource).expect("rule");
        rule["resourceNames"].as_array().expect("names").iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()
    };
    assert_eq!(
        names("secrets"),
        apimanager_backup_operator::layout::SECRETS,
        "the step Pods may read exactly the backed-up Secrets"
    );
    assert_eq!(names("configmaps"), apimanager_backup_operator::layout::CONFIG_MAPS);
    let restore_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "apimanager-restore-job")
        .expect("restore job role");
    assert_eq!(
        restore_role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["create"]},
            {"apiGroups": ["apps.3scale.net"], "resources": ["apimanagers"], "verbs": ["create"]}
        ]),
        "the restore step Pods only create, and only what a restore creates"
    );
    let operator_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "apimanager-backup-operator")
        .expect("operator role");
    let rules = operator_role["rules"].as_array().expect("rules");
    assert!(!rules.iter().any(|r| r["apiGroups"][0] == "batch"), "no verb on Jobs: {rules:?}");
    let pods: Vec<&Value> =
        rules.iter().filter(|r| r["resources"].as_array().is_some_and(|r| r.contains(&"pods".into()))).collect();
    assert_eq!(
        pods,
        [
            &serde_json::json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]})
        ],
        "the operator creates, watches and deletes its step Pods, nothing more"
    );
}

fn render_with_components(name: &str, components: &[&str]) -> Vec<Value> {
    serde_saphyr::from_multiple(&support::kustomize::render_with_components(name, components)).expect("rendered YAML")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn env_value<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env");
    env.iter().find(|e| e["name"] == name).map(|e| &e["value"])
}

/// The install provisions its own webhook certificate, and may touch only that Secret (create
/// admitted by the fence for that name only: RBAC cannot name what does not exist yet) and its
/// two webhook configurations.
#[test]
fn the_operator_provisions_its_certificate_with_access_to_its_secret_and_webhook_configurations_only() {
    let docs = render_with_components("self-signed", &[]);
    let deployment = find(&docs, "Deployment", "apimanager-backup-operator").expect("Deployment");
    let secret = "apimanager-backup-operator-tls";
    assert_eq!(env_value(deployment, "APIMANAGER_BACKUP_CERTIFICATE_SECRET"), Some(&Value::from(secret)));
    assert!(deployment["spec"]["template"]["spec"]["volumes"].is_null(), "no Secret is mounted");
    let role = find(&docs, "Role", "apimanager-backup-operator-certificate").expect("Role");
    assert_eq!(role["metadata"]["namespace"], "apimanager-backup-operator");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get", "update"]}
        ])
    );
    let webhooks = find(&docs, "ClusterRole", "apimanager-backup-operator-webhook-ca").expect("ClusterRole");
    assert_eq!(
        webhooks["rules"],
        serde_json::json!([{"apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "resourceNames": ["apimanager-backup-operator"], "verbs": ["get", "patch"]}])
    );
    for (kind, name) in [
        ("RoleBinding", "apimanager-backup-operator-certificate"),
        ("ClusterRoleBinding", "apimanager-backup-operator-webhook-ca"),
    ] {
        let binding = find(&docs, kind, name).expect(kind);
        assert_eq!(binding["subjects"][0]["name"], "apimanager-backup-operator", "{kind}");
    }
    let policy = find(&docs, "ValidatingAdmissionPolicy", "apimanager-backup-operator-fence").expect("policy");
    let variables = policy["spec"]["variables"].as_array().expect("variables");
    let fenced = variables.iter().find(|v| v["name"] == "certificateSecret").expect("certificateSecret");
    assert_eq!(fenced["expression"], format!("'{secret}'"), "the fence admits exactly the Deployment's Secret");
}

/// With the cert-manager component, cert-manager makes the certificate and injects the CA: the
/// replicas mount its Secret, and hold no access to Secrets or webhook configurations.
#[test]
fn the_cert_manager_component_mounts_cert_managers_secret_and_drops_the_certificate_rights() {
    let docs = render_with_components("cert-manager", &["cert-manager"]);
    let deployment = find(&docs, "Deployment", "apimanager-backup-operator").expect("Deployment");
    assert_eq!(env_value(deployment, "APIMANAGER_BACKUP_CERTIFICATE_SECRET"), None);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "apimanager-backup-operator-tls");
    let mount = pod["containers"][0]["volumeMounts"][0]["mountPath"].as_str().expect("mount");
    assert_eq!(env_value(deployment, "APIMANAGER_BACKUP_TLS_CERT"), Some(&Value::from(format!("{mount}/tls.crt"))));
    assert_eq!(env_value(deployment, "APIMANAGER_BACKUP_TLS_KEY"), Some(&Value::from(format!("{mount}/tls.key"))));
    let certificate = find(&docs, "Certificate", "apimanager-backup-operator-serving-cert").expect("Certificate");
    assert_eq!(certificate["spec"]["secretName"], "apimanager-backup-operator-tls");
    let service = find(&docs, "Service", "apimanager-backup-operator").expect("Service");
    let host = format!("apimanager-backup-operator.{}.svc", service["metadata"]["namespace"].as_str().expect("ns"));
    assert!(certificate["spec"]["dnsNames"].as_array().expect("dnsNames").contains(&Value::from(host)));
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        let configuration = find(&docs, kind, "apimanager-backup-operator").expect(kind);
        assert_eq!(
            configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "apimanager-backup-operator/apimanager-backup-operator-serving-cert"
        );
    }
    for (kind, name) in [
        ("Role", "apimanager-backup-operator-certificate"),
        ("RoleBinding", "apimanager-backup-operator-certificate"),
        ("ClusterRole", "apimanager-backup-operator-webhook-ca"),
        ("ClusterRoleBinding", "apimanager-backup-operator-webhook-ca"),
    ] {
        assert!(find(&docs, kind, name).is_none(), "{kind} {name} is not needed with cert-manager");
    }
}

#[test]
fn install_runs_two_replicas_that_never_all_go_down_and_elect_a_leader() {
    let rendered = run(Command::new("kubectl").args(["kustomize"]).arg(repo("manifests")));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("rendered YAML");
    let deployment = find(&docs, "Deployment", "apimanager-backup-operator").expect("Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let anti =
        &spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(anti["podAffinityTerm"]["labelSelector"], spec["selector"]);
    let env = spec["template"]["spec"]["containers"][0]["env"].as_array().expect("env");
    let namespace = env.iter().find(|e| e["name"] == "POD_NAMESPACE").expect("POD_NAMESPACE");
    assert_eq!(namespace["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    let budget = find(&docs, "PodDisruptionBudget", "apimanager-backup-operator").expect("PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(budget["spec"]["selector"], spec["selector"]);
    let role = find(&docs, "Role", "apimanager-backup-operator-leader-election").expect("lease Role");
    assert_eq!(role["metadata"]["namespace"], "apimanager-backup-operator");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["apimanager-backup-operator"], "verbs": ["get", "update"]}
        ])
    );
    let binding = find(&docs, "RoleBinding", "apimanager-backup-operator-leader-election").expect("RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "apimanager-backup-operator");
}

#[test]
fn alerts_component_adds_the_prometheus_rule() {
    let docs = render_with_components("alerts", &["alerts"]);
    let rule = find(&docs, "PrometheusRule", "apimanager-backup-operator").expect("PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "apimanager-backup-operator");
    assert!(find(&docs, "Deployment", "apimanager-backup-operator").is_some(), "the install stays whole");
}

#[test]
fn namespaced_component_grants_and_watches_the_same_namespaces_only() {
    let docs = render_with_components("namespaced", &["namespaced"]);
    assert!(
        find(&docs, "ClusterRoleBinding", "apimanager-backup-operator").is_none(),
        "no cluster-wide grant to the operator"
    );
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" && d["roleRef"]["name"] == "apimanager-backup-operator")
        .collect();
    let granted: Vec<&str> = bindings.iter().filter_map(|b| b["metadata"]["namespace"].as_str()).collect();
    assert_eq!(granted, ["3scale"]);
    for binding in bindings {
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "apimanager-backup-operator",
                                "namespace": "apimanager-backup-operator"}])
        );
    }
    let deployment = find(&docs, "Deployment", "apimanager-backup-operator").expect("Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env");
    let watched =
        env.iter().find(|e| e["name"] == "APIMANAGER_BACKUP_NAMESPACES").expect("APIMANAGER_BACKUP_NAMESPACES");
    assert_eq!(watched["value"].as_str().map(|v| v.split(',').collect::<Vec<_>>()), Some(granted.clone()));
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        let configuration = find(&docs, kind, "apimanager-backup-operator").expect(kind);
        for hook in configuration["webhooks"].as_array().expect("webhooks") {
            assert_eq!(
                hook["namespaceSelector"],
                serde_json::json!({"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": granted}]}),
                "{kind}"
            );
        }
    }
}

#[test]
fn webhooks_only_component_serves_webhooks_with_a_read_only_role_and_leaves_the_crd_to_3scale_operator() {
    let docs = render_with_components("webhooks-only", &["webhooks-only"]);
    let deployment = find(&docs, "Deployment", "apimanager-backup-operator").expect("Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env");
    assert!(env.iter().any(|e| e["name"] == "APIMANAGER_BACKUP_MODE" && e["value"] == "webhooks-only"));
    let role = find(&docs, "ClusterRole", "apimanager-backup-operator").expect("ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": ["apps.3scale.net"], "resources": ["apimanagers", "apimanagerbackups"],
                            "verbs": ["get", "list", "watch"]}])
    );
    for (kind, name) in [
        ("CustomResourceDefinition", "apimanagerbackups.apps.3scale.net"),
        ("ClusterRole", "apimanager-backup-job"),
        ("ClusterRole", "apimanager-restore-job"),
        ("Role", "apimanager-backup-operator-leader-election"),
        ("RoleBinding", "apimanager-backup-operator-leader-election"),
    ] {
        assert!(find(&docs, kind, name).is_none(), "{kind} {name} is not installed beside 3scale-operator");
    }
    assert!(find(&docs, "ValidatingWebhookConfiguration", "apimanager-backup-operator").is_some());
    assert!(find(&docs, "MutatingWebhookConfiguration", "apimanager-backup-operator").is_some());
}

#[test]
fn serve_help_documents_every_flag_and_its_environment_variable() {
    let help = run(Command::new(BIN).args(["serve", "--help"]));
    for (flag, env) in [
        ("--listen", "APIMANAGER_BACKUP_LISTEN"),
        ("--tls-cert", "APIMANAGER_BACKUP_TLS_CERT"),
        ("--tls-key", "APIMANAGER_BACKUP_TLS_KEY"),
        ("--tls-reload-interval", "APIMANAGER_BACKUP_TLS_RELOAD_INTERVAL"),
        ("--max-body-bytes", "APIMANAGER_BACKUP_MAX_BODY_BYTES"),
        ("--admission-buffer-bytes", "APIMANAGER_BACKUP_ADMISSION_BUFFER_BYTES"),
        ("--max-connections", "APIMANAGER_BACKUP_MAX_CONNECTIONS"),
        ("--idle-timeout", "APIMANAGER_BACKUP_IDLE_TIMEOUT"),
        ("--shutdown-grace", "APIMANAGER_BACKUP_SHUTDOWN_GRACE"),
        ("--log-format", "APIMANAGER_BACKUP_LOG_FORMAT"),
        ("--job-image", "APIMANAGER_BACKUP_JOB_IMAGE"),
        ("--job-command", "APIMANAGER_BACKUP_JOB_COMMAND"),
        ("--job-backoff-limit", "APIMANAGER_BACKUP_JOB_BACKOFF_LIMIT"),
        ("--backup-timeout", "APIMANAGER_BACKUP_TIMEOUT"),
        ("--restore-timeout", "APIMANAGER_BACKUP_RESTORE_TIMEOUT"),
        ("--mode", "APIMANAGER_BACKUP_MODE"),
        ("--namespace", "APIMANAGER_BACKUP_NAMESPACES"),
        ("--leader-election-namespace", "POD_NAMESPACE"),
        ("--leader-election-lease-name", "APIMANAGER_BACKUP_LEADER_ELECTION_LEASE_NAME"),
        ("--leader-election-identity", "POD_NAME"),
        ("--leader-election-lease-duration", "APIMANAGER_BACKUP_LEADER_ELECTION_LEASE_DURATION"),
        ("--leader-election-renew-deadline", "APIMANAGER_BACKUP_LEADER_ELECTION_RENEW_DEADLINE"),
        ("--leader-election-retry-period", "APIMANAGER_BACKUP_LEADER_ELECTION_RETRY_PERIOD"),
        ("--certificate-secret", "APIMANAGER_BACKUP_CERTIFICATE_SECRET"),
        ("--certificate-validity", "APIMANAGER_BACKUP_CERTIFICATE_VALIDITY"),
        ("--certificate-name", "APIMANAGER_BACKUP_CERTIFICATE_NAMES"),
        ("--webhook-configuration", "APIMANAGER_BACKUP_WEBHOOK_CONFIGURATION"),
        ("--service-name", "APIMANAGER_BACKUP_SERVICE_NAME"),
    ] {
        assert!(help.contains(flag), "{flag} undocumented:\n{help}");
        assert!(help.contains(&format!("[env: {env}=")), "{env} undocumented:\n{help}");
    }
}

#[test]
fn serve_with_a_missing_certificate_fails_with_a_clear_message() {
    let output = Command::new(BIN)
        .args(["serve", "--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "error: loading the serving certificate (--tls-cert, --tls-key): cannot read /nonexistent/tls.crt: No such file or directory (os error 2)"
    );
}
