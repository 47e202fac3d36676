//! Command line of the one binary: `serve`, `crd`, `verify`, `decrypt`, `local`, `job`.

use crate::platform::PlatformChoice;
use crate::scope::Namespaces;
use crate::server;
use crate::telemetry::LogFormat;
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Backs up 3scale APIManager installations: APIManagerBackup webhooks and reconciler.
#[derive(Debug, Parser)]
#[command(name = "apimanager-backup-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: the HTTPS server (webhooks, /metrics, probes) until SIGTERM.
    Serve(Box<ServeArgs>),
    /// Print the APIManagerBackup and APIManagerRestore CustomResourceDefinitions as YAML.
    Crd,
    /// Check a backup folder (copied out of its claim) against its manifest.json: every file's
    /// size and sha256, every link, nothing missing or unlisted. A sealed backup (a sealed claim's
    /// root, or a backup's folder downloaded from a bucket with its prefix): without --key every
    /// object's stored digest, with it every object opened and compared; --extract then writes
    /// its plaintext in the claim layout. Exit status 0 verified, 1 problems (one line each), 2
    /// no manifest.json (3scale-operator's layout, not verifiable), 3 an unfinished backup.
    Verify(VerifyArgs),
    /// Decrypt sealed backup objects with the key alone (docs/encryption.md): one object (INPUT a
    /// file, OUTPUT a file) or every object of a downloaded folder (INPUT a folder, the same paths
    /// under OUTPUT). Nothing is overwritten; an object that fails to open leaves nothing behind.
    /// Exit status 0 all decrypted, 1 problems (one line each).
    Decrypt(DecryptArgs),
    /// Development: start a local control plane with the operator, its webhooks and a sample
    /// backup, and run until Ctrl-C. Needs Go, openssl and this source tree.
    Local(LocalArgs),
    /// What the backup and restore step Pods run (not for direct use).
    #[command(subcommand)]
    Job(Box<crate::job::JobCommand>),
}

/// Settings of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup folder: the root of a backup claim, holding manifest.json.
    pub folder: PathBuf,
    /// A key file, named by its key id, or a folder of them (the key Secret's entries), opening a
    /// sealed backup; repeatable.
    #[arg(long = "key", value_name = "PATH")]
    pub keys: Vec<PathBuf>,
    /// Write the plaintext of a verified sealed backup into this new folder, in the claim layout
    /// (needs --key when the backup is encrypted).
    #[arg(long, value_name = "FOLDER")]
    pub extract: Option<PathBuf>,
}

/// Settings of `decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// A key file, named by its key id, or a folder of them (the key Secret's entries); repeatable.
    #[arg(long = "key", value_name = "PATH", required = true)]
    pub keys: Vec<PathBuf>,
    /// The objects belong to the backup of this UID (the end of its folder's name).
    #[arg(long, value_name = "UID", required_unless_present = "content", conflicts_with = "content")]
    pub backup_uid: Option<String>,
    /// With a single object of a backup: its path under the backup's folder.
    #[arg(long, requires = "backup_uid")]
    pub path: Option<String>,
    /// The objects are content objects, each file named by its content name.
    #[arg(long)]
    pub content: bool,
    /// A sealed object, or a folder of them.
    pub input: PathBuf,
    /// Where the plaintext goes: a file, or a folder for a folder.
    pub output: PathBuf,
}

impl DecryptArgs {
    /// What the objects are bound to.
    pub fn objects(&self) -> crate::seal::offline::Objects {
        match &self.backup_uid {
            Some(backup_uid) => {
                crate::seal::offline::Objects::Backup { backup_uid: backup_uid.clone(), path: self.path.clone() }
            }
            None => crate::seal::offline::Objects::Content,
        }
    }
}

/// Settings of `local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Working directory for certificates, etcd data, logs and kubeconfigs; removed on exit. It must
    /// be empty or made by an earlier `local`.
    #[arg(long, env = "APIMANAGER_BACKUP_LOCAL_DIR", default_value = "/tmp/apimanager-backup-operator-local")]
    pub dir: PathBuf,
    /// Run the operator behind a fault-injecting proxy between it and the API server, e.g.
    /// `errors=10%,kinds=429+500+503+reset+stall+lost,delay=50ms,drop-watches=10s,gone=5%,seed=7`,
    /// or one kind of request failing every time: `errors=100%,kinds=500,on=create:pods`
    /// (docs/faults.md).
    #[arg(long, env = "APIMANAGER_BACKUP_LOCAL_FAULTS", value_parser = NonEmptyStringValueParser::new())]
    pub faults: Option<String>,
}

/// Environment variable of `--job-image`.
pub const JOB_IMAGE_ENV: &str = "APIMANAGER_BACKUP_JOB_IMAGE";
/// The step Pods' image unless `--job-image` says otherwise.
pub const DEFAULT_JOB_IMAGE: &str = concat!("apimanager-backup-operator:", env!("CARGO_PKG_VERSION"));

/// Settings of `serve`; each flag falls back to the environment variable named in its help.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port of the HTTPS server.
    #[arg(long, env = "APIMANAGER_BACKUP_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain served by the HTTPS server; reloaded when it changes.
    #[arg(long, env = "APIMANAGER_BACKUP_TLS_CERT", default_value = "/etc/apimanager-backup-operator/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of the certificate; reloaded when it changes.
    #[arg(long, env = "APIMANAGER_BACKUP_TLS_KEY", default_value = "/etc/apimanager-backup-operator/tls/tls.key")]
    pub tls_key: PathBuf,
    /// Provision the webhook certificate in this Secret of the operator's namespace (POD_NAMESPACE)
    /// instead of reading --tls-cert and --tls-key: a CA and a serving certificate for the
    /// Service's names, renewed when a third of --certificate-validity is left, the CA set as
    /// the caBundle of both webhook configurations (--webhook-configuration). Unset: the files.
    #[arg(long, env = "APIMANAGER_BACKUP_CERTIFICATE_SECRET", value_parser = NonEmptyStringValueParser::new())]
    pub certificate_secret: Option<String>,
    /// How long each provisioned certificate (CA and serving) is valid (e.g. 8760h, 90d).
    #[arg(long, env = "APIMANAGER_BACKUP_CERTIFICATE_VALIDITY", default_value = "8760h", value_parser = positive_duration)]
    pub certificate_validity: Duration,
    /// Name of the Mutating- and the ValidatingWebhookConfiguration whose caBundle a provisioned
    /// certificate sets.
    #[arg(long, env = "APIMANAGER_BACKUP_WEBHOOK_CONFIGURATION", default_value = "apimanager-backup-operator", value_parser = NonEmptyStringValueParser::new())]
    pub webhook_configuration: String,
    /// The operator's Service: a provisioned certificate is for <service>.<namespace>.svc (and
    /// its shorter and .cluster.local forms).
    #[arg(long, env = "APIMANAGER_BACKUP_SERVICE_NAME", default_value = "apimanager-backup-operator", value_parser = NonEmptyStringValueParser::new())]
    pub service_name: String,
    /// A further DNS name or IP address of a provisioned certificate (repeatable; comma-separated
    /// in the environment variable).
    #[arg(long = "certificate-name", env = "APIMANAGER_BACKUP_CERTIFICATE_NAMES", value_delimiter = ',', value_parser = NonEmptyStringValueParser::new())]
    pub certificate_names: Vec<String>,
    /// How often the certificate files (or the certificate Secret) are checked for a change (e.g.
    /// 10s, 1m).
    #[arg(long, env = "APIMANAGER_BACKUP_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    pub tls_reload_interval: Duration,
    /// Largest admission request body accepted, in bytes; larger ones get HTTP 413. The default is
    /// two objects of the API server's 3 MiB request limit (object and oldObject) plus 1 MiB.
    #[arg(long, env = "APIMANAGER_BACKUP_MAX_BODY_BYTES", default_value_t = server::DEFAULT_MAX_BODY_BYTES, value_parser = positive_size)]
    pub max_body_bytes: usize,
    /// Memory for admission request bodies held at once, in bytes (each counts its length, at least
    /// 16 KiB); requests wait up to 2 s for room, then get HTTP 429. At least --max-body-bytes.
    #[arg(long, env = "APIMANAGER_BACKUP_ADMISSION_BUFFER_BYTES", default_value_t = server::DEFAULT_ADMISSION_BUFFER_BYTES, value_parser = positive_size)]
    pub admission_buffer_bytes: usize,
    /// Open connections at most; further connections are closed at once.
    #[arg(long, env = "APIMANAGER_BACKUP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A connection without a request in progress for this long is closed (e.g. 20s).
    #[arg(long, env = "APIMANAGER_BACKUP_IDLE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// How long the server keeps accepting requests after SIGTERM, `/readyz` answering `not
    /// ready: shutdown` meanwhile, so the Service's endpoints drop this replica before it stops
    /// listening (the API server learns of a terminating Pod a moment after its SIGTERM).
    #[arg(long, env = "APIMANAGER_BACKUP_SHUTDOWN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may run after SIGTERM before the server closes them.
    #[arg(long, env = "APIMANAGER_BACKUP_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Container image of the step Pods (this binary's image).
    #[arg(long, env = JOB_IMAGE_ENV, default_value = DEFAULT_JOB_IMAGE, value_parser = NonEmptyStringValueParser::new())]
    pub job_image: String,
    /// Path (or name on PATH) of this binary inside the step Pods' image.
    #[arg(long, env = "APIMANAGER_BACKUP_JOB_COMMAND", default_value = "apimanager-backup-operator", value_parser = NonEmptyStringValueParser::new())]
    pub job_command: String,
    /// Group (numeric) owning the System FileStorage files, e.g. the System app Pods' fsGroup; the
    /// copy and restore Pods get it as a supplemental group. Unset: each backup finds it (the group
    /// owning the claim's root) and each restore takes the backup's.
    #[arg(long, env = "APIMANAGER_BACKUP_FILE_STORAGE_GROUP", value_parser = clap::value_parser!(i64).range(0..=2_147_483_647))]
    pub file_storage_group: Option<i64>,
    /// Where the step Pods run: `openshift` (the platform assigns their user and groups), `kubernetes`
    /// (they run as 65532), or `auto`: OpenShift when the API serves security.openshift.io.
    #[arg(long, env = "APIMANAGER_BACKUP_PLATFORM", value_enum, default_value_t = PlatformChoice::Auto)]
    pub platform: PlatformChoice,
    /// Retries of a failed backup or restore step Pod (each a new Pod, after a back-off) before the
    /// backup or restore fails.
    #[arg(long, env = "APIMANAGER_BACKUP_JOB_BACKOFF_LIMIT", default_value_t = 2, value_parser = clap::value_parser!(i32).range(0..))]
    pub job_backoff_limit: i32,
    /// A backup not finished this long after it started ends Failed (e.g. 6h, 90m).
    #[arg(long, env = "APIMANAGER_BACKUP_TIMEOUT", default_value = "6h", value_parser = positive_duration)]
    pub backup_timeout: Duration,
    /// A restore not finished this long after it started (the restored APIManager available) ends
    /// Failed (e.g. 6h, 90m).
    #[arg(long, env = "APIMANAGER_BACKUP_RESTORE_TIMEOUT", default_value = "6h", value_parser = positive_duration)]
    pub restore_timeout: Duration,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "APIMANAGER_BACKUP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What runs besides the webhooks and /metrics.
    #[arg(long, env = "APIMANAGER_BACKUP_MODE", value_enum, default_value = "full")]
    pub mode: Mode,
    /// A namespace the operator manages (repeatable; comma-separated in the environment variable);
    /// none: every namespace. Only these are watched, and backups elsewhere are refused.
    #[arg(long = "namespace", env = "APIMANAGER_BACKUP_NAMESPACES", value_delimiter = ',', value_parser = namespace_name)]
    pub namespaces: Vec<String>,
    /// Leader election of the replicas (mode `full`).
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

/// What a replica runs besides the webhooks, `/metrics` and the probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The backup controller too, on the replica that holds the leader Lease.
    Full,
    /// Nothing else: beside 3scale-operator, which runs the backups; the metrics observe them.
    WebhooksOnly,
}

/// Where the leader Lease is and how long it lasts (controller-runtime's default timings).
#[derive(Debug, Args)]
pub struct LeaderElectionArgs {
    /// Namespace of the leader Lease: the operator's own (the Deployment sets POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "apimanager-backup-operator")]
    pub leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "APIMANAGER_BACKUP_LEADER_ELECTION_LEASE_NAME", default_value = "apimanager-backup-operator")]
    pub leader_election_lease_name: String,
    /// This replica's identity: its name in the leader Lease and the reporting instance of its
    /// events (the Deployment sets POD_NAME); default: host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
    /// How long the Lease holds after its last renewal before a standby may take it.
    #[arg(long, env = "APIMANAGER_BACKUP_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = positive_duration)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal; then its controller stops.
    #[arg(long, env = "APIMANAGER_BACKUP_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = positive_duration)]
    pub leader_election_renew_deadline: Duration,
    /// How often the leader renews the Lease and a standby tries to take it.
    #[arg(long, env = "APIMANAGER_BACKUP_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = positive_duration)]
    pub leader_election_retry_period: Duration,
}

impl LeaderElectionArgs {
    /// This replica's identity: `--leader-election-identity` (POD_NAME), else
    /// `<host name>-<process id>`.
    pub fn identity(&self) -> String {
        self.leader_election_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    /// The election settings of this replica, known as `identity` ([`Self::identity`]).
    pub fn settings(&self, identity: String) -> crate::leader::ElectionSettings {
        crate::leader::ElectionSettings {
            identity,
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        }
    }
}

impl ServeArgs {
    /// The namespaces the operator manages.
    pub fn scope(&self) -> Namespaces {
        Namespaces::from_names(self.namespaces.iter().cloned())
    }

    /// The bounds of the HTTPS server.
    pub fn limits(&self) -> server::Limits {
        server::Limits {
            max_body_bytes: self.max_body_bytes,
            admission_buffer_bytes: self.admission_buffer_bytes.max(self.max_body_bytes),
            max_connections: self.max_connections as usize,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// Why a flag's value is refused (clap prints it after the flag and the value).
#[derive(Debug, thiserror::Error)]
pub enum InvalidValue {
    /// A duration of zero.
    #[error("must be greater than zero, for example 10s")]
    ZeroDuration,
    /// Not a duration.
    #[error("{0}; expected a duration such as 10s, 5m or 6h")]
    Duration(#[from] humantime::DurationError),
    /// A size of zero.
    #[error("must be greater than zero")]
    ZeroSize,
    /// Not a number of bytes.
    #[error("{0}; expected a number of bytes such as 8388608")]
    Size(#[from] std::num::ParseIntError),
    /// Not the name of a namespace.
    #[error(
        "must be a namespace name: at most 63 lower case alphanumeric characters or '-', starting and ending with \
an alphanumeric character"
    )]
    Namespace,
}

/// A duration above zero, such as `10s` or `1m`.
fn positive_duration(value: &str) -> Result<Duration, InvalidValue> {
    match humantime::parse_duration(value)? {
        duration if duration.is_zero() => Err(InvalidValue::ZeroDuration),
        duration => Ok(duration),
    }
}

/// A byte count above zero.
fn positive_size(value: &str) -> Result<usize, InvalidValue> {
    match value.parse::<usize>()? {
        0 => Err(InvalidValue::ZeroSize),
        bytes => Ok(bytes),
    }
}

/// The name of a namespace (an RFC 1123 label).
fn namespace_name(value: &str) -> Result<String, InvalidValue> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = (1..=63).contains(&value.len())
        && value.chars().all(|c| alphanumeric(c) || c == '-')
        && value.starts_with(alphanumeric)
        && value.ends_with(alphanumeric);
    if valid { Ok(value.to_owned()) } else { Err(InvalidValue::Namespace) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_error(args: &[&str]) -> String {
        let argv = ["apimanager-backup-operator", "serve"].iter().chain(args);
        Cli::try_parse_from(argv).expect_err("refused").to_string()
    }

    #[test]
    fn invalid_flags_are_refused_with_what_is_expected() {
        let cases = [
            (
                &["--tls-reload-interval", "0s"][..],
                "invalid value '0s' for '--tls-reload-interval <TLS_RELOAD_INTERVAL>': must be greater than zero, \
for example 10s",
            ),
            (
                &["--backup-timeout", "0s"],
                "invalid value '0s' for '--backup-timeout <BACKUP_TIMEOUT>': must be greater than zero, for example 10s",
            ),
            (
                &["--restore-timeout", "0s"],
                "invalid value '0s' for '--restore-timeout <RESTORE_TIMEOUT>': must be greater than zero, for example 10s",
            ),
            (
                &["--backup-timeout", "soon"],
                "invalid value 'soon' for '--backup-timeout <BACKUP_TIMEOUT>': expected number at 0; expected a \
duration such as 10s, 5m or 6h",
            ),
            (
                &["--job-backoff-limit=-1"],
                "invalid value '-1' for '--job-backoff-limit <JOB_BACKOFF_LIMIT>': -1 is not in 0..=2147483647",
            ),
            (
                &["--max-body-bytes", "0"],
                "invalid value '0' for '--max-body-bytes <MAX_BODY_BYTES>': must be greater than zero",
            ),
            (
                &["--max-connections", "0"],
                "invalid value '0' for '--max-connections <MAX_CONNECTIONS>': 0 is not in 1..=4294967295",
            ),
            (
                &["--namespace", "3Scale"],
                "invalid value '3Scale' for '--namespace <NAMESPACES>': must be a namespace name: at most 63 lower case \
alphanumeric characters or '-', starting and ending with an alphanumeric character",
            ),
            (&["--job-image", ""], "a value is required for '--job-image <JOB_IMAGE>' but none was supplied"),
        ];
        for (args, expected) in cases {
            let error = serve_error(args);
            assert!(error.starts_with(&format!("error: {expected}")), "{args:?}: {error}");
        }
    }

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["apimanager-backup-operator", "serve"]).expect("defaults are valid");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.tls_reload_interval, Duration::from_secs(10));
        assert_eq!(args.job_backoff_limit, 2);
        assert_eq!(args.scope(), Namespaces::All);
    }

    #[test]
    fn namespaces_repeat_or_come_comma_separated() {
        let parse = |argv: &[&str]| {
            let cli = Cli::try_parse_from(["apimanager-backup-operator", "serve"].iter().chain(argv)).expect("valid");
            let Command::Serve(args) = cli.command else { panic!("serve") };
            args.scope()
        };
        let both = Namespaces::from_names(["3scale".to_owned(), "team-b".to_owned()]);
        assert_eq!(parse(&["--namespace", "3scale", "--namespace", "team-b"]), both);
        assert_eq!(parse(&["--namespace=team-b,3scale"]), both);
    }
}
