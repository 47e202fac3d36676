//! Child processes of the local control plane: logs to a file, stopped on drop, and killed when
//! this process exits even if nobody dropped them (a shared test fixture in a `static`).

use super::LocalError;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

/// Children still running, killed by the exit hook: pid, and whether it leads a process group of
/// its own (then the whole group is killed).
static LIVE: Mutex<BTreeSet<(i32, bool)>> = Mutex::new(BTreeSet::new());
/// Directories and files removed by the exit hook, after the children are gone.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static EXIT_HOOK: Once = Once::new();

extern "C" fn kill_live_children() {
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    for &(pid, group) in live.iter() {
        // SAFETY: kill(2) with a pid (or the group it leads) this process spawned and has not reaped.
        unsafe { libc::kill(if group { -pid } else { pid }, libc::SIGKILL) };
        // SAFETY: waitpid(2) on that same child, so its files are closed before they are removed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    for path in SCRATCH.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
    }
}

fn install_exit_hook() {
    EXIT_HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function without captured state.
        unsafe { libc::atexit(kill_live_children) };
    });
}

/// Removes `dir` (a folder, or a file) when this process exits, after its children are killed:
/// for fixtures that live in a `static` and are never dropped.
pub fn remove_at_exit(dir: &Path) {
    install_exit_hook();
    SCRATCH.lock().unwrap_or_else(PoisonError::into_inner).push(dir.to_owned());
}

/// A running child process whose output goes to a log file.
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    /// Whether the child leads a process group of its own, signalled as a whole.
    group: bool,
}

impl Supervised {
    /// Starts `command` with its output appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, command: Command, log_dir: &Path) -> Result<Self, LocalError> {
        Self::start(name, command, log_dir, false)
    }

    /// [`spawn`](Self::spawn) in a new process group, which stopping or killing signals as a
    /// whole, so nothing the child starts outlives it.
    pub fn spawn_group(name: &str, mut command: Command, log_dir: &Path) -> Result<Self, LocalError> {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Self::start(name, command, log_dir, true)
    }

    fn start(name: &str, mut command: Command, log_dir: &Path, group: bool) -> Result<Self, LocalError> {
        install_exit_hook();
        let log = log_dir.join(format!("{name}.log"));
        let file = File::create(&log)
            .map_err(|source| LocalError::Io { what: format!("creating {}", log.display()), source })?;
        let err =
            file.try_clone().map_err(|source| LocalError::Io { what: "duplicating a log file".into(), source })?;
        command.stdin(Stdio::null()).stdout(file).stderr(err);
        let child = command.spawn().map_err(|source| LocalError::Io { what: format!("starting {name}"), source })?;
        if let Ok(pid) = i32::try_from(child.id()) {
            LIVE.lock().unwrap_or_else(PoisonError::into_inner).insert((pid, group));
        }
        Ok(Self { name: name.to_owned(), child, log, group })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the child's output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// An error naming the child and the end of its log when it has exited.
    pub fn check_running(&mut self) -> Result<(), LocalError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(LocalError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: tail(&self.log),
            }),
            Err(source) => Err(LocalError::Io { what: format!("checking {}", self.name), source }),
        }
    }

    /// Sends `signal` to the child, or to its whole group, unless it was reaped already.
    fn signal(&mut self, signal: i32) {
        if let (Ok(None), Ok(pid)) = (self.child.try_wait(), i32::try_from(self.child.id())) {
            // SAFETY: kill(2) on our own unreaped child, or the process group it leads.
            unsafe { libc::kill(if self.group { -pid } else { pid }, signal) };
        }
    }

    /// SIGKILL at once (to the whole group for [`spawn_group`](Self::spawn_group)); reaps the
    /// child.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(pid) = i32::try_from(self.child.id()) {
            LIVE.lock().unwrap_or_else(PoisonError::into_inner).remove(&(pid, self.group));
        }
    }

    /// SIGTERM, then SIGKILL after `grace` (each to the whole group for
    /// [`spawn_group`](Self::spawn_group)); reaps the child and returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.signal(libc::SIGKILL);
        }
        let status = self.child.wait().ok();
        if let Ok(pid) = i32::try_from(self.child.id()) {
            LIVE.lock().unwrap_or_else(PoisonError::into_inner).remove(&(pid, self.group));
        }
        status
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
