//! Running the binary's `job` steps as a backup Pod runs them.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `job copy-files` through `command` (the binary itself, or a wrapper such as `setpriv` that
/// starts it), copying `source` into `backup` with its termination message at `log`, as the backup's
/// last step (it marks the manifest complete).
pub fn copy_files(mut command: Command, source: &Path, backup: &Path, log: &Path) -> Output {
    command
        .args(["job", "copy-files", "--last-step"])
        .arg(format!("--source={}", source.display()))
        .arg(format!("--backup-dir={}", backup.display()))
        .arg(format!("--termination-log={}", log.display()))
        .output()
        .expect("copy-files runs")
}

/// Runs `job <step> <args>` of the binary under test with its termination message at `log`;
/// returns whether it succeeded and the message.
pub fn job_step(step: &str, args: &[String], log: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_apimanager-backup-operator"))
        .args(["job", step])
        .args(args)
        .arg(format!("--termination-log={}", log.display()))
        .output()
        .expect("job step runs");
    (output.status.success(), std::fs::read_to_string(log).unwrap_or_default())
}
