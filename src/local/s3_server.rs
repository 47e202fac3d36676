//! A real S3 server on loopback: SeaweedFS (`weed server`: master, volume, filer and S3 gateway
//! in one process), built from source by `tests/s3-server/build.sh`, verifying SigV4 signatures
//! against one generated access key, over http and over https (a certificate of a development
//! CA). Ready once a signed write and read go through; stopped (its whole process group) when
//! dropped.

use super::LocalError;
use super::control_plane::{
    create_private_dir, free_port, generate_certs, random_token, run_build_script, write_credential,
};
use super::process::Supervised;
use crate::s3::{Addressing, ClientOptions, Credentials, Endpoint, ObjectMetadata, RetryPolicy, S3Client};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The region the local server's clients sign for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";
/// Bucket the readiness probe writes to.
const PROBE_BUCKET: &str = "harness-ready";
/// How long the server may take to accept a signed write.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds (or finds in the cache) SeaweedFS's `weed`; returns its path.
pub fn build_binary(repo: &Path) -> Result<PathBuf, LocalError> {
    run_build_script(repo, "tests/s3-server/build.sh", "building the S3 server")
}

/// The loopback ports of one server.
#[derive(Clone, Copy)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_https: u16,
    s3_grpc: u16,
}

impl Ports {
    fn free() -> Result<Self, LocalError> {
        Ok(Self {
            master: free_port()?,
            master_grpc: free_port()?,
            volume: free_port()?,
            volume_grpc: free_port()?,
            filer: free_port()?,
            filer_grpc: free_port()?,
            s3: free_port()?,
            s3_https: free_port()?,
            s3_grpc: free_port()?,
        })
    }

    /// The Unix sockets SeaweedFS makes in /tmp for its gRPC ports (not configurable).
    fn grpc_sockets(self) -> [PathBuf; 4] {
        [("master", self.master_grpc), ("volume", self.volume_grpc), ("filer", self.filer_grpc), ("s3", self.s3_grpc)]
            .map(|(name, port)| PathBuf::from(format!("/tmp/seaweedfs-{name}-grpc-{port}.sock")))
    }
}

/// A running SeaweedFS with its S3 gateway at [`endpoint`](Self::endpoint).
pub struct S3Server {
    process: Supervised,
    ports: Ports,
    /// `credentials/s3.env` under the server's folder: [`secret_keys`](Self::secret_keys) as an
    /// env file (mode 0600), for `kubectl create secret generic --from-env-file`.
    pub env_file: PathBuf,
    /// `http://127.0.0.1:<port>` of the S3 API.
    pub endpoint: String,
    /// `https://127.0.0.1:<port>` of the same API, serving a certificate of the development CA
    /// [`ca_cert`](Self::ca_cert) made by `certs/generate.sh` (for 127.0.0.1 and localhost).
    pub https_endpoint: String,
    /// The CA certificate (PEM) the HTTPS endpoint's certificate chains to.
    pub ca_cert: PathBuf,
    /// The access key id the server knows.
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: String,
}

impl S3Server {
    /// Builds what is missing and starts a server keeping its data, logs and credentials under
    /// `dir`; returns once a signed write and read succeed. Started again (up to three times) when
    /// it exits at start, as a port it was given can be taken before it binds it.
    pub async fn start(repo: &Path, dir: &Path) -> Result<Self, LocalError> {
        let weed = build_binary(repo)?;
        let mut attempt = 1;
        loop {
            match Self::start_once(repo, &weed, dir).await {
                Err(error @ LocalError::Exited { .. }) if attempt < 3 => {
                    eprintln!("S3 server attempt {attempt} failed, retrying: {error}");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_once(repo: &Path, weed: &Path, dir: &Path) -> Result<Self, LocalError> {
        let io = |what: String| move |source| LocalError::Io { what, source };
        let data = dir.join("data");
        let logs = dir.join("logs");
        let credentials = dir.join("credentials");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
        std::fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
        create_private_dir(&credentials)?;
        let certs = dir.join("certs");
        create_private_dir(&certs)?;
        generate_certs(repo, &certs)?;
        let (access_key_id, secret_access_key) = (format!("AK{}", &random_token()?[..18]), random_token()?);
        let identities = credentials.join("identities.json");
        write_credential(
            &identities,
            &serde_json::json!({"identities": [{
                "name": "apimanager-backup-operator",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": ["Read", "Write", "List", "Tagging", "Admin"],
            }]})
            .to_string(),
        )?;
        // SeaweedFS gives each bucket a collection of its own and grows 7 volumes at once for it;
        // one at a time lets a test make many buckets on one small volume server.
        let growth = "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n";
        std::fs::write(dir.join("master.toml"), growth)
            .map_err(io(format!("writing {}/master.toml", dir.display())))?;
        let ports = Ports::free()?;
        let mut command = Command::new(weed);
        command
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", ports.master))
            .arg(format!("-master.port.grpc={}", ports.master_grpc))
            // Nothing leaves the machine: no usage reports.
            .arg("-master.telemetry=false")
            .arg("-master.volumeSizeLimitMB=256")
            .arg(format!("-volume.port={}", ports.volume))
            .arg("-volume.max=500")
            .arg(format!("-volume.port.grpc={}", ports.volume_grpc))
            .arg("-volume.preStopSeconds=0")
            // The tests store megabytes: a volume server on a nearly full disk (SeaweedFS's floor
            // is 1 % free, 2.5 GB of a 250 GB disk) must still take them, not turn read-only.
            .arg("-volume.minFreeSpace=256MiB")
            .arg("-filer")
            .arg(format!("-filer.port={}", ports.filer))
            .arg(format!("-filer.port.grpc={}", ports.filer_grpc))
            .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()))
            .arg("-s3")
            .arg(format!("-s3.port={}", ports.s3))
            .arg(format!("-s3.port.https={}", ports.s3_https))
            .arg(format!("-s3.cert.file={}", certs.join("tls.crt").display()))
            .arg(format!("-s3.key.file={}", certs.join("tls.key").display()))
            .arg(format!("-s3.port.grpc={}", ports.s3_grpc))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .arg(format!("-s3.config={}", identities.display()))
            // A missing bucket stays missing (NoSuchBucket), as on AWS; no side services.
            .args(["-s3.autoCreateBucket=false", "-s3.iam=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            // master.toml is read from the working directory.
            .current_dir(dir);
        let process = Supervised::spawn_group("seaweedfs", command, &logs)?;
        for socket in ports.grpc_sockets() {
            super::process::remove_at_exit(&socket);
        }
        let mut server = Self {
            process,
            ports,
            env_file: credentials.join("s3.env"),
            endpoint: format!("http://127.0.0.1:{}", ports.s3),
            https_endpoint: format!("https://127.0.0.1:{}", ports.s3_https),
            ca_cert: certs.join("ca.crt"),
            access_key_id,
            secret_access_key,
        };
        server.wait_until_ready().await?;
        let lines: String = server.secret_keys().iter().map(|(key, value)| format!("{key}={value}\n")).collect();
        write_credential(&server.env_file, &lines)?;
        Ok(server)
    }

    /// Waits until a signed bucket creation, write and read succeed (the volume server has
    /// registered with the master), or fails at once when the process exits.
    async fn wait_until_ready(&mut self) -> Result<(), LocalError> {
        let options = ClientOptions {
            retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        };
        let client = self.client(options)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.process.check_running()?;
            let probe = async {
                client.create_bucket(PROBE_BUCKET).await?;
                client.put_object(PROBE_BUCKET, "probe", "ready".into(), &ObjectMetadata::default()).await?;
                let mut read = Vec::new();
                client.download(PROBE_BUCKET, "probe", &mut read).await?;
                Ok::<_, crate::s3::S3Error>(read)
            };
            let last = match probe.await {
                Ok(read) if read == b"ready" => return Ok(()),
                Ok(_) => "the probe object read back different".to_owned(),
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                return Err(LocalError::NotReady(format!("S3 server (log: {}): {last}", self.log().display())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The endpoint's connection settings (plain http on loopback, path-style addressing).
    pub fn connection(&self) -> Result<Endpoint, LocalError> {
        Ok(Endpoint::new(&self.endpoint, REGION, Addressing::Path, true)?)
    }

    /// The HTTPS endpoint's connection settings (path-style), trusting [`ca_cert`](Self::ca_cert).
    pub fn https_connection(&self) -> Result<Endpoint, LocalError> {
        let ca = std::fs::read(&self.ca_cert)
            .map_err(|source| LocalError::Io { what: format!("reading {}", self.ca_cert.display()), source })?;
        Ok(Endpoint::new(&self.https_endpoint, REGION, Addressing::Path, false)?.with_ca_bundle(&ca)?)
    }

    /// The keys of 3scale's S3 Secret (System FileStorage's `configurationSecretRef`) that
    /// reach this server: credentials, region, host, `http`, path style.
    pub fn secret_keys(&self) -> Vec<(&'static str, String)> {
        use crate::s3::config::keys;
        vec![
            (keys::ACCESS_KEY_ID, self.access_key_id.clone()),
            (keys::SECRET_ACCESS_KEY, self.secret_access_key.clone()),
            (keys::REGION, REGION.to_owned()),
            (keys::HOSTNAME, format!("127.0.0.1:{}", self.ports.s3)),
            (keys::PROTOCOL, "http".to_owned()),
            (keys::PATH_STYLE, "true".to_owned()),
        ]
    }

    /// The server's key pair.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(&self.access_key_id, &self.secret_access_key, None)
    }

    /// A client of this server with `options`. Make one per Tokio runtime: its connections
    /// belong to the runtime they were opened on.
    pub fn client(&self, options: ClientOptions) -> Result<S3Client, LocalError> {
        Ok(S3Client::new(self.connection()?, &self.credentials(), options)?)
    }

    /// Creates bucket `name` (an existing one of ours is fine).
    pub async fn create_bucket(&self, name: &str) -> Result<(), LocalError> {
        Ok(self.client(ClientOptions::default())?.create_bucket(name).await?)
    }

    /// Kills the server at once (SIGKILL to its process group), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.stop(Duration::from_secs(2));
        for socket in self.ports.grpc_sockets() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
