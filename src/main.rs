//! Entry point: parses the command line and wires the parts together.

use anyhow::Context;
use apimanager_backup_operator::admission::AdmissionState;
use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::cli::{Cli, Command, DecryptArgs, LocalArgs, Mode, ServeArgs, VerifyArgs};
use apimanager_backup_operator::client;
use apimanager_backup_operator::controllers::{Controllers, SharedWatches};
use apimanager_backup_operator::health::Readiness;
use apimanager_backup_operator::informer::Informer;
use apimanager_backup_operator::job::destination::holds_sealed_layout;
use apimanager_backup_operator::job::destination::offline::{SealedVerification, verify_sealed};
use apimanager_backup_operator::job::verify::{Verification, verify_backup};
use apimanager_backup_operator::leader::{self, Elector, lease::ApiLease};
use apimanager_backup_operator::lookup::ClusterLookup;
use apimanager_backup_operator::lookup::cache::CachedLookup;
use apimanager_backup_operator::metrics::Metrics;
use apimanager_backup_operator::observer::{self, EndRecording};
use apimanager_backup_operator::reconcile::ReconcileSettings;
use apimanager_backup_operator::reconcile::machine::Operation;
use apimanager_backup_operator::reconcile::step::JobSettings;
use apimanager_backup_operator::runtime::{Runtime, stopped_signal};
use apimanager_backup_operator::seal::{self, KeyRing};
use apimanager_backup_operator::selfcert::{self, SelfCertificate};
use apimanager_backup_operator::tls::TlsFiles;
use apimanager_backup_operator::{crd, server, telemetry, trim};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    apimanager_backup_operator::malloc::single_arena();
    let outcome = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(Cli::parse())));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (many messages already quote their
/// cause); never a backtrace for a user error.
fn one_line(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd => print!("{}", crd::crd_yaml()?),
        Command::Verify(args) => return verify(&args).await,
        Command::Decrypt(args) => return decrypt(args).await,
        Command::Serve(args) => serve(*args).await?,
        Command::Local(args) => local(args).await?,
        Command::Job(step) => {
            telemetry::init(telemetry::LogFormat::Text);
            apimanager_backup_operator::job::run(*step).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify DIR`: one line per problem on stdout; exit 0 verified, 1 problems, 2 not verifiable (no
/// manifest), 3 an unfinished backup. A sealed backup is verified (and extracted) by [`verify_sealed`].
async fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let folder = args.folder.as_path();
    if holds_sealed_layout(folder) {
        let context = || format!("verifying the sealed backup in {}", folder.display());
        let verification = verify_sealed(folder, &args.keys, args.extract.as_deref()).await.with_context(context)?;
        return Ok(match verification {
            SealedVerification::Verified(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            SealedVerification::Failed(problems) => {
                println!("{}", problems.join("\n"));
                ExitCode::from(1)
            }
        });
    }
    if !args.keys.is_empty() || args.extract.is_some() {
        anyhow::bail!("--key and --extract are for a sealed backup; {} is in the claim layout", folder.display());
    }
    let verification =
        verify_backup(folder).with_context(|| format!("verifying the backup folder {}", folder.display()))?;
    println!("{verification}");
    Ok(match verification {
        Verification::Verified { .. } => ExitCode::SUCCESS,
        Verification::Failed(_) => ExitCode::from(1),
        Verification::NoManifest => ExitCode::from(2),
        Verification::Unfinished => ExitCode::from(3),
    })
}

/// `decrypt IN OUT`: one line per object that failed, then a count; exit 0 all decrypted, 1 problems.
async fn decrypt(args: DecryptArgs) -> anyhow::Result<ExitCode> {
    let ring = KeyRing::load(&args.keys).context("loading the keys")?;
    let report = seal::offline::decrypt(&ring, &args.objects(), &args.input, &args.output)
        .await
        .with_context(|| format!("decrypting {}", args.input.display()))?;
    println!("{report}");
    Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `serve`: every setting comes from `args` (read once, from the command line and the
/// environment); the [`Runtime`] owns the client, the metrics, the scope and the shutdown, starts
/// every task and joins them all before the process ends.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let metrics = Arc::new(Metrics::new()?);
    let files = TlsFiles { cert: args.tls_cert.clone(), key: args.tls_key.clone() };
    let tls = match args.certificate_secret {
        Some(_) => selfcert::placeholder_config().context("making the placeholder certificate")?,
        None => files.load().context("loading the serving certificate (--tls-cert, --tls-key)")?,
    };
    let identity = args.leader_election.identity();
    let election = match args.mode {
        Mode::Full => {
            let election = args.leader_election.settings(identity.clone());
            election.check()?;
            Some(election)
        }
        Mode::WebhooksOnly => None,
    };
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let client =
        client::connect("operator").await.context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;
    let mut runtime = Runtime::new(client, metrics, args.scope());
    let stop = runtime.stopper();
    let readiness = Readiness::default();
    let (draining, delay) = (readiness.clone(), args.shutdown_delay);
    runtime.until_shutdown("signals", async move {
        apimanager_backup_operator::signals::stop_requested_and_drained(&draining, delay).await;
        stop();
    });
    // One watch per kind for the process's life, shared by whatever reads it (docs/design.md, "Watches and
    // caches"): the webhooks' cache and the controllers read the APIManagers, the observer and the
    // backup controller the backups.
    let (client, namespaces, metrics) =
        (runtime.client().clone(), runtime.namespaces().clone(), runtime.metrics().clone());
    let (apimanagers, apimanager_events) =
        Informer::watch(&client, &namespaces, trim::metadata::<APIManager>, metrics.clone());
    let (backups, backup_events) = Informer::watch(&client, &namespaces, APIManagerBackup::cached, metrics.clone());
    let live = ClusterLookup::new(client.clone());
    let (lookup, fill_cache) =
        CachedLookup::watch(&apimanagers, apimanager_events, namespaces.clone(), live, &readiness);
    runtime.until_shutdown("apimanager-cache", fill_cache);
    let recording = match args.mode {
        Mode::Full => EndRecording::ByController,
        Mode::WebhooksOnly => EndRecording::Observed,
    };
    let shared = SharedWatches { apimanagers, lookup: lookup.clone(), backups: backups.clone() };
    let observed = runtime.shutdown();
    let observer_metrics = metrics.clone();
    runtime.spawn("backup-observer", async move {
        observer::run(&backups, backup_events, observer_metrics, recording, observed).await;
    });
    if let Some(election) = election {
        let lease = ApiLease::new(
            client.clone(),
            &args.leader_election.leader_election_namespace,
            &args.leader_election.leader_election_lease_name,
        );
        let platform = args.platform.resolve(&client).await.context("asking the API's discovery for the platform")?;
        let settings = ReconcileSettings {
            jobs: JobSettings {
                image: args.job_image.clone(),
                command: args.job_command.clone(),
                backoff_limit: args.job_backoff_limit,
                file_storage_group: args.file_storage_group,
                platform,
            },
            backup_timeout: args.backup_timeout,
            restore_timeout: args.restore_timeout,
        };
        let controllers = Controllers {
            client,
            namespaces: namespaces.clone(),
            metrics: metrics.clone(),
            settings,
            shared,
            instance: identity,
        };
        let gauge = metrics.leader_gauge()?;
        let stopped = runtime.stopped();
        let start = {
            let stopped = stopped.clone();
            move || controllers.clone().run(stopped_signal(stopped.clone()))
        };
        runtime.spawn("leader-election", leader::lead(Elector::new(lease, election), gauge, stopped, start));
    }
    match &args.certificate_secret {
        Some(secret) => {
            let namespace = args.leader_election.leader_election_namespace.clone();
            let names = SelfCertificate::service_names(&args.service_name, &namespace, &args.certificate_names);
            let provision = SelfCertificate {
                client: runtime.client().clone(),
                namespace,
                secret: secret.clone(),
                webhook_configuration: args.webhook_configuration.clone(),
                names,
                validity: args.certificate_validity,
                interval: args.tls_reload_interval,
            };
            runtime.until_shutdown("certificate", provision.run(tls.clone(), readiness.clone()));
        }
        None => runtime.until_shutdown("tls-reload", files.reload_on_change(tls.clone(), args.tls_reload_interval)),
    }
    let admission = AdmissionState { lookup, metrics };
    let limits = args.limits();
    let app = server::router(admission, readiness, &limits);
    tracing::info!(listen = %args.listen, version = env!("CARGO_PKG_VERSION"), mode = ?args.mode, namespaces = %namespaces, "serving webhooks, /metrics and probes over HTTPS");
    let served = server::serve(listener, tls, app, &limits, runtime.shutdown(), args.shutdown_grace).await;
    // The server ends at shutdown, or failing: either way every task stops and is waited for.
    runtime.stop();
    let joined = runtime.join().await;
    served.context("HTTPS server")?;
    joined?;
    tracing::info!("stopped");
    Ok(())
}

async fn local(args: LocalArgs) -> anyhow::Result<()> {
    use apimanager_backup_operator::local::faults::FaultSpec;
    let faults = args.faults.as_deref().map(str::parse::<FaultSpec>).transpose().context("--faults")?;
    // Only a folder this command made (it leaves a marker) or an empty one is ever cleared.
    let marker = args.dir.join(apimanager_backup_operator::local::DIR_MARKER);
    let is_ours = marker.exists();
    let is_empty = std::fs::read_dir(&args.dir).map(|mut entries| entries.next().is_none()).unwrap_or(true);
    if !is_ours && !is_empty {
        anyhow::bail!("{} is not empty and was not made by `local`; choose another --dir", args.dir.display());
    }
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    std::fs::write(&marker, b"").with_context(|| format!("creating {}", marker.display()))?;
    let binary = std::env::current_exe().context("locating this binary")?;
    let outcome = apimanager_backup_operator::local::session::run(&binary, &args.dir, faults).await;
    let _ = std::fs::remove_dir_all(&args.dir);
    outcome.context("local control plane")
}
