//! What `mpbridge local` and `mpbridge remote` share around their proxies:
//! the errors that stop them before they serve, the [`Daemon`] value whose
//! parts are torn down in the order they are declared, and the runtime with
//! the signals that end it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::checks::CheckError;
use crate::control::{Control, ControlError};
use crate::host::sys::SocketError;
use crate::paths::{PathError, PathManager};

/// Why a daemon could not start (router A adds its firewall's errors, see
/// `local::LocalError`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The kernel lacks something the daemon needs (MPTCP...).
    #[error("{0}")]
    Check(#[from] CheckError),
    /// Nothing to serve or manage with what this host offers.
    #[error("{0}")]
    Unavailable(String),
    /// A socket could not be created.
    #[error("{0}")]
    Socket(#[from] SocketError),
    /// A listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The control socket or the metrics endpoint could not be created.
    #[error("{0}")]
    Control(#[from] ControlError),
    /// The path manager could not set the links up.
    #[error("{0}")]
    Paths(#[from] PathError),
}

/// A running daemon's parts. They are fields in teardown order: the
/// control socket goes first (nobody is told of a daemon that is leaving),
/// then the role's own parts `R` (router A: its SIGHUP follower, address
/// follower and interception rules), then the path manager, last, so that
/// the links carry the drain to its end.
///
/// [`Daemon::stop`] tears down in that order and waits for each part;
/// dropping the value without it (a panic, a cancelled future) does the
/// same without waiting for the path manager's removals. Every start-up
/// step adds its part as soon as it exists, so an error at any step undoes
/// exactly the steps before it.
pub struct Daemon<R> {
    control: Option<Control>,
    role: Option<R>,
    paths: Option<PathManager>,
}

impl<R> Default for Daemon<R> {
    fn default() -> Self {
        Daemon {
            control: None,
            role: None,
            paths: None,
        }
    }
}

impl<R> Daemon<R> {
    /// Holds the control socket (serving) until teardown.
    pub fn hold_control(&mut self, control: Control) {
        self.control = Some(control);
    }

    /// Holds the path manager until teardown.
    pub fn hold_paths(&mut self, paths: Option<PathManager>) -> Option<&PathManager> {
        self.paths = paths;
        self.paths.as_ref()
    }

    /// The role's own parts, made on first use.
    pub fn role(&mut self) -> &mut R
    where
        R: Default,
    {
        self.role.get_or_insert_with(R::default)
    }

    /// Tears down in field order, waiting for each part.
    pub async fn stop(mut self) {
        if let Some(control) = self.control.take() {
            control.stop().await;
        }
        drop(self.role.take());
        if let Some(paths) = self.paths.take() {
            paths.stop().await;
        }
    }
}

impl<R> Drop for Daemon<R> {
    fn drop(&mut self) {
        // Fields drop in declaration order after this: control (its tasks
        // aborted), the role's parts, then the path manager (told to stop).
        if self.control.is_some() || self.paths.is_some() {
            tracing::debug!("daemon dropped without stop: tearing down without waiting");
        }
    }
}

/// The daemon's future, given the shutdown signal.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a daemon on a new runtime, handing it the shutdown signal. The
/// signal handlers are installed inside the runtime before the daemon's
/// future is even made, which only this function can get right.
///
/// A process that may run on one CPU only (a single-core router, or one
/// pinned by `taskset`/cgroups) gets a runtime of one thread: a
/// multi-threaded one would still hand every connection's events between
/// the thread that waits on `block_on` and its one worker. Measured with
/// the connection benchmark, both daemons on one core (load 9–28): CPU per
/// connection against the peer's, router A / B, went from 1.03 / 0.94 to
/// 0.89 / 0.89 with one client and from 1.15 / 0.94 to 0.90 / 0.99 with four.
pub fn run_on_runtime<D, F, E>(daemon: D) -> Result<Result<(), E>, std::io::Error>
where
    D: FnOnce(Shutdown) -> F,
    F: Future<Output = Result<(), E>>,
{
    Ok(runtime_builder(available_cpus())
        .enable_all()
        .build()?
        .block_on(async move { daemon(Box::pin(shutdown_signal())).await }))
}

/// CPUs this process may run on (its affinity, as the kernel reports it).
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One thread for one CPU, a worker per CPU beyond. Two CPUs keep two
/// workers for now: one cost fewer wake-ups per short connection (about
/// 10 % less CPU in bench case 8), but its effect on a bulk flow (case 3)
/// is not settled, its two lowest rounds among them; see the README.
fn runtime_builder(cpus: usize) -> tokio::runtime::Builder {
    match cpus {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); the daemon then drains. A
/// second signal ends the process at once, without waiting for the drain.
/// The handlers are installed when this is called (inside the runtime,
/// before the daemon starts): a signal that came after the daemon said it
/// listens but before this future was first polled would otherwise end the
/// process by the default action, skipping the clean-up.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(term), Ok(int)) = handlers else {
            // Without signal handlers the default action (exit) still applies.
            return std::future::pending().await;
        };
        wait_for_signals(term, int).await
    }
}

async fn wait_for_signals(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without waiting for open connections");
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ControlSettings, Role};
    use crate::control::Observed;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    #[test]
    fn one_cpu_gets_a_runtime_of_one_thread() {
        use tokio::runtime::RuntimeFlavor;
        let flavor = |cpus| {
            runtime_builder(cpus)
                .build()
                .unwrap()
                .handle()
                .runtime_flavor()
        };
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
    }

    /// A role's part that records, when torn down, whether the control
    /// socket's file was still there.
    #[derive(Default)]
    struct Part {
        socket: PathBuf,
        saw_socket: Arc<Mutex<Option<bool>>>,
    }

    impl Drop for Part {
        fn drop(&mut self) {
            *self.saw_socket.lock().unwrap() = Some(self.socket.exists());
        }
    }

    #[tokio::test]
    async fn stop_takes_the_control_socket_down_before_the_roles_parts() {
        let dir = std::env::temp_dir().join(format!("mpbridge-daemon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("local.sock");
        let settings = ControlSettings {
            socket: Some(socket.clone()),
            metrics_listen: None,
        };
        let observed = Arc::new(Observed::new(Role::Local, Arc::default(), None, false));
        let mut daemon = Daemon::<Part>::default();
        daemon.hold_control(crate::control::bind(&settings).unwrap().serve(observed));
        let saw_socket = Arc::new(Mutex::new(None));
        *daemon.role() = Part {
            socket: socket.clone(),
            saw_socket: Arc::clone(&saw_socket),
        };
        assert!(daemon.hold_paths(None).is_none());
        assert!(socket.exists());
        daemon.stop().await;
        assert_eq!(
            *saw_socket.lock().unwrap(),
            Some(false),
            "the control socket was gone when the role's parts were torn down"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_daemon_dropped_without_stop_still_closes_its_control_socket() {
        let dir = std::env::temp_dir().join(format!("mpbridge-daemon-drop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("remote.sock");
        let settings = ControlSettings {
            socket: Some(socket.clone()),
            metrics_listen: None,
        };
        let observed = Arc::new(Observed::new(Role::Remote, Arc::default(), None, false));
        let mut daemon = Daemon::<()>::default();
        daemon.hold_control(crate::control::bind(&settings).unwrap().serve(observed));
        assert!(socket.exists());
        // A start-up step failed, or the daemon's future was dropped.
        drop(daemon);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while socket.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!socket.exists(), "the control socket outlived its daemon");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
