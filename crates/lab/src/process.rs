//! Children started inside a namespace ([`Proc`]): their captured output,
//! waiting for a log line, and stopping them. Only the PID of our own,
//! not yet reaped child is ever signalled, so a recycled PID is never hit.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{kill_process, Pid, Signal};

use crate::wait_until;

/// How long [`Drop`] of a [`Proc`] or a topology gives SIGTERM before SIGKILL.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_millis(500);

/// A process started by [`crate::Topology::spawn`]. Its stdout and stderr go
/// to `NAME.stdout` / `NAME.stderr` in the topology's work dir. Dropping it
/// kills the process if it still runs.
#[derive(Debug)]
pub struct Proc {
    shared: Arc<Shared>,
}

/// What the [`Proc`] and its topology both hold: the topology kills what is
/// still running when it is dropped first.
#[derive(Debug)]
pub(crate) struct Shared {
    name: String,
    pid: u32,
    /// `std`'s handle remembers the exit status once reaped, so holding
    /// this lock while checking `try_wait` makes signalling race-free.
    child: Mutex<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd` (already prefixed by the caller, e.g. with
    /// `ip netns exec`) with output captured under `dir/name.*`.
    pub(crate) fn start(mut cmd: Command, dir: &Path, name: &str) -> anyhow::Result<Proc> {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let create =
            |p: &Path| File::create(p).with_context(|| format!("cannot create {}", p.display()));
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?);
        // Its own process group: a Ctrl-C on the terminal reaches the lab,
        // which stops its children in order, not the children directly.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Proc {
            shared: Arc::new(Shared {
                name: name.to_string(),
                pid: child.id(),
                child: Mutex::new(child),
                stdout,
                stderr,
            }),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The process ID (that of the program itself: `ip netns exec` execs
    /// in place).
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// The name its log files carry.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn stdout_path(&self) -> &Path {
        &self.shared.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.shared.stderr
    }

    /// The exit status if it has ended, without blocking.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.shared.try_status()
    }

    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the process to end on its own.
    pub fn wait_exit(&self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.try_status();
            status.is_some()
        });
        status.with_context(|| {
            format!(
                "{} still running after {timeout:?}\n{}",
                self.name(),
                self.output_text()
            )
        })
    }

    /// SIGTERM, then SIGKILL if it has not ended after `timeout`; returns
    /// how it ended (at once if it already had).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.shared.terminate(timeout)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.shared.terminate(Duration::ZERO);
    }

    /// Captured stderr then stdout, labelled, for test failure messages.
    pub fn output_text(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "--- {} stderr ---\n{}--- {} stdout ---\n{}",
            self.shared.name,
            read(&self.shared.stderr),
            self.shared.name,
            read(&self.shared.stdout)
        )
    }

    /// Waits until `needle` appears in the captured stdout or stderr. Fails
    /// after `timeout`, or as soon as the process has ended without printing
    /// it; the error carries the output.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let contains = |p: &Path| {
            std::fs::read(p)
                .map(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
                .unwrap_or(false)
        };
        let found = || contains(&self.shared.stdout) || contains(&self.shared.stderr);
        let deadline = Instant::now() + timeout;
        loop {
            if found() {
                return Ok(());
            }
            if let Some(status) = self.try_status() {
                // It may have printed the line just before ending.
                if found() {
                    return Ok(());
                }
                anyhow::bail!(
                    "{} ended ({status}) without printing {needle:?}\n{}",
                    self.name(),
                    self.output_text()
                );
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} did not print {needle:?} within {timeout:?}\n{}",
                    self.name(),
                    self.output_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.is_running() {
            self.shared.terminate(Duration::ZERO);
        }
    }
}

impl Shared {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        // A panic elsewhere must not stop us from cleaning up.
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn try_status(&self) -> Option<ExitStatus> {
        match self.lock().try_wait() {
            Ok(status) => status,
            Err(e) => {
                eprintln!("mpbridge-lab: cannot poll {}: {e}", self.name);
                None
            }
        }
    }

    /// Sends `signal` if the child is not yet reaped. Returns false if it
    /// already ended.
    pub(crate) fn signal(&self, signal: Signal) -> bool {
        let mut child = self.lock();
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        // Not reaped, and we hold the lock that reaping needs: the PID is
        // still our child's (running or zombie), never a recycled one.
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        if let Err(e) = kill_process(pid, signal) {
            eprintln!(
                "mpbridge-lab: cannot signal {} ({}): {e}",
                self.name, self.pid
            );
        }
        true
    }

    /// SIGTERM, wait up to `grace`, SIGKILL, reap. `grace` zero means
    /// SIGKILL straight away.
    pub(crate) fn terminate(&self, grace: Duration) -> ExitStatus {
        if !grace.is_zero() && self.signal(Signal::TERM) {
            wait_until(grace, || self.try_status().is_some());
        }
        self.kill_and_reap()
    }

    pub(crate) fn kill_and_reap(&self) -> ExitStatus {
        self.signal(Signal::KILL);
        match self.lock().wait() {
            Ok(status) => status,
            Err(e) => {
                // Only possible if something else reaped our child.
                eprintln!(
                    "mpbridge-lab: cannot reap {} ({}): {e}",
                    self.name, self.pid
                );
                ExitStatus::from_raw(Signal::KILL.as_raw())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proc whose logs live in a directory removed when it is dropped.
    struct Sh {
        proc: Option<Proc>,
        dir: PathBuf,
    }

    impl Drop for Sh {
        fn drop(&mut self) {
            drop(self.proc.take());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl std::ops::Deref for Sh {
        type Target = Proc;
        fn deref(&self) -> &Proc {
            self.proc.as_ref().unwrap()
        }
    }

    impl std::ops::DerefMut for Sh {
        fn deref_mut(&mut self) -> &mut Proc {
            self.proc.as_mut().unwrap()
        }
    }

    fn sh(name: &str, script: &str) -> Sh {
        let dir = std::env::temp_dir().join(format!("mpblab-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Sh {
            proc: Some(Proc::start(cmd, &dir, name).unwrap()),
            dir,
        }
    }

    #[test]
    fn log_line_is_found_in_stdout_or_stderr() {
        let p = sh(
            "log-both",
            "echo out-line; echo err-line >&2; exec sleep 30",
        );
        p.wait_for_log("out-line", Duration::from_secs(5)).unwrap();
        p.wait_for_log("err-line", Duration::from_secs(5)).unwrap();
        let text = p.output_text();
        assert!(
            text.contains("out-line") && text.contains("err-line"),
            "{text}"
        );
    }

    #[test]
    fn waiting_for_a_log_stops_when_the_process_ends() {
        let p = sh("log-ends", "echo bye; exit 3");
        let start = Instant::now();
        let err = p
            .wait_for_log("never", Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            err.contains("bye") && err.contains("exit status: 3"),
            "{err}"
        );
    }

    #[test]
    fn terminate_uses_sigterm_first() {
        let mut p = sh("term", "exec sleep 30");
        let status = p.terminate(Duration::from_secs(5));
        assert_eq!(status.signal(), Some(Signal::TERM.as_raw()));
        // Ended processes are not signalled again.
        assert_eq!(p.terminate(Duration::from_secs(5)), status);
    }

    #[test]
    fn terminate_falls_back_to_sigkill() {
        let mut p = sh(
            "stubborn",
            "trap '' TERM; echo armed; while :; do sleep 0.05; done",
        );
        p.wait_for_log("armed", Duration::from_secs(5)).unwrap();
        let status = p.terminate(Duration::from_millis(100));
        assert_eq!(status.signal(), Some(Signal::KILL.as_raw()));
    }

    #[test]
    fn drop_kills_the_process() {
        let mut p = sh("dropped", "exec sleep 30");
        let pid = p.pid();
        let stat = format!("/proc/{pid}/stat");
        assert!(Path::new(&stat).exists());
        drop(p.proc.take());
        // Reaped by drop, so the PID entry is gone (or reused by another
        // process, which is not our sleep).
        let gone = std::fs::read_to_string(&stat).map_or(true, |s| !s.contains("(sleep)"));
        assert!(gone);
    }
}
