//! Command line of the one binary: `serve`, `crd`.

use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
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
    Serve(ServeArgs),
    /// Print the APIManagerBackup CustomResourceDefinition as YAML.
    Crd,
    /// Development: start a local control plane with the operator, its webhooks and a sample
    /// backup, and run until Ctrl-C. Needs Go, openssl and this source tree.
    Local(LocalArgs),
    /// What the backup Jobs run (not for direct use).
    #[command(subcommand)]
    Job(crate::job::JobCommand),
}

/// Settings of `local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Working directory for certificates, etcd data, logs and kubeconfigs; removed on exit. It must
    /// be empty or made by an earlier `local`.
    #[arg(long, env = "APIMANAGER_BACKUP_LOCAL_DIR", default_value = "/tmp/apimanager-backup-operator-local")]
    pub dir: PathBuf,
}

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
    /// How often the certificate files are checked for a change (e.g. 10s, 1m).
    #[arg(long, env = "APIMANAGER_BACKUP_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Largest request body accepted, in bytes; larger ones get HTTP 413.
    #[arg(long, env = "APIMANAGER_BACKUP_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM before the server closes them.
    #[arg(long, env = "APIMANAGER_BACKUP_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Container image of the backup Jobs (this binary's image).
    #[arg(long, env = "APIMANAGER_BACKUP_JOB_IMAGE", default_value = concat!("apimanager-backup-operator:", env!("CARGO_PKG_VERSION")))]
    pub job_image: String,
    /// Path (or name on PATH) of this binary inside the Job image.
    #[arg(long, env = "APIMANAGER_BACKUP_JOB_COMMAND", default_value = "apimanager-backup-operator")]
    pub job_command: String,
    /// Retries of a failed backup Pod before its Job, and so the backup, fails.
    #[arg(long, env = "APIMANAGER_BACKUP_JOB_BACKOFF_LIMIT", default_value_t = 2)]
    pub job_backoff_limit: i32,
    /// A backup not finished this long after it started ends Failed (e.g. 6h, 90m).
    #[arg(long, env = "APIMANAGER_BACKUP_TIMEOUT", default_value = "6h", value_parser = humantime::parse_duration)]
    pub backup_timeout: Duration,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "APIMANAGER_BACKUP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}
