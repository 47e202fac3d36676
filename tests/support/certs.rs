//! Serving certificates made by the project's own `certs/generate.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `certs/generate.sh` into `dir` and returns `dir`, which then holds ca.crt, tls.crt, tls.key.
pub fn generate(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/generate.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run certs/generate.sh");
    assert!(status.success(), "certs/generate.sh failed");
    dir.to_owned()
}

/// A fresh temporary directory, removed when the returned guard drops.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/abo-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "abo-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
