//! The daemon's log: one line per event on stderr (procd and journald
//! store it), levels from the config or `RUST_LOG`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::Targets;

use crate::config::Warning;

/// Whether log lines reach the operator yet (set once logging is set up).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] ran: errors go to the log, else to stderr as they are.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Sets the log up at `level` (from the config)
/// unless `RUST_LOG` says otherwise, then logs the config's `warnings`.
pub fn init(level: tracing::Level, warnings: &[Warning]) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // RUST_LOG may name levels per module ("mpbridge::paths=debug,info");
    // `Targets` reads that without the regex engine EnvFilter would put
    // into the router binary.
    let from_env = std::env::var("RUST_LOG").ok().map(|v| {
        let parsed = v.parse::<Targets>();
        (v, parsed)
    });
    let (filter, env_problem) = match from_env {
        Some((_, Ok(targets))) => (targets, None),
        Some((text, Err(e))) => (
            level_targets(level),
            Some(format!("RUST_LOG={text:?} ignored: {e}")),
        ),
        None => (level_targets(level), None),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // procd and journald store what we print: colour only on a terminal.
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .init();
    if let Some(problem) = env_problem {
        tracing::warn!("{problem}");
    }
    ACTIVE.store(true, Ordering::Relaxed);
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
}

/// Every event at `level` or above.
fn level_targets(level: tracing::Level) -> Targets {
    Targets::new().with_default(level)
}
