//! Running the binary's `job` steps as a backup Pod runs them.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `job copy-files` through `command` (the binary itself, or a wrapper such as `setpriv` that
/// starts it), copying `source` into `backup` with its termination message at `log`.
pub fn copy_files(mut command: Command, source: &Path, backup: &Path, log: &Path) -> Output {
    command
        .args(["job", "copy-files"])
        .arg(format!("--source={}", source.display()))
        .arg(format!("--backup-dir={}", backup.display()))
        .arg(format!("--termination-log={}", log.display()))
        .output()
        .expect("copy-files runs")
}
