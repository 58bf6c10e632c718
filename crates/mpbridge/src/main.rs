//! The `mpbridge` command: argument parsing and dispatch only. The daemons
//! themselves live in the library (`local::run`, `remote::run`) so that the
//! lab and the tests run exactly what this binary runs.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use mpbridge::config::{self, Intercept, Overrides, Warning};
use mpbridge::error::StartError;

const DEFAULT_CONFIG: &str = config::DEFAULT_PATH;

/// Whether log lines reach the operator yet (set once logging is set up).
static LOGGING: AtomicBool = AtomicBool::new(false);

/// Carries every TCP connection between two routers over all their links at
/// once (RFC 8803 Convert over Multipath TCP).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML).
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (overrides the file).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Router A: accept diverted client TCP and carry it to the remote.
    Local {
        /// Where diverted connections arrive (repeatable).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        /// The remote's address (repeatable; tried in order).
        #[arg(long, value_name = "ADDR:PORT")]
        remote: Vec<SocketAddr>,
        /// How connections are diverted: tproxy or redirect.
        #[arg(long, value_name = "MODE")]
        intercept: Option<Intercept>,
        /// File holding the pre-shared key (hex).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Router B or a server: accept bridged connections and re-emit them.
    Remote {
        /// Where MPTCP connections from the local side arrive (repeatable).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        /// File holding the pre-shared key (hex).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Run only the path manager (MPTCP limits, endpoints, policy routing,
    /// probes) of router A (`local`) or router B (`remote`), for another
    /// MPTCP proxy; the config file's `[[link]]`s, `[probe]` and role section.
    Paths {
        #[arg(value_enum)]
        role: PathsRole,
    },
    /// Validate the config file and exit.
    CheckConfig,
    /// Print a new random pre-shared key (hex) for the key file.
    Genkey,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PathsRole {
    Local,
    Remote,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let non_empty = |v: Vec<SocketAddr>| (!v.is_empty()).then_some(v);
    let result = match cli.command {
        Command::Local {
            listen,
            remote,
            intercept,
            key_file,
        } => {
            let overrides = Overrides {
                listen: non_empty(listen),
                remotes: non_empty(remote),
                intercept,
                key_file,
                log_level: cli.log_level,
            };
            config::load_local(&path, explicit, &overrides)
                .map_err(StartError::from)
                .and_then(|(settings, warnings)| {
                    init_logging(&settings.log_level, &warnings);
                    let reload: mpbridge::local::Reload = Box::new(move || {
                        let (settings, warnings) = config::load_local(&path, explicit, &overrides)?;
                        for w in &warnings {
                            tracing::warn!("{}", w.0);
                        }
                        Ok(settings)
                    });
                    block_on(mpbridge::local::run(
                        settings,
                        shutdown_signal(),
                        Some(reload),
                    ))
                })
        }
        Command::Remote { listen, key_file } => {
            let overrides = Overrides {
                listen: non_empty(listen),
                key_file,
                log_level: cli.log_level,
                ..Overrides::default()
            };
            config::load_remote(&path, explicit, &overrides)
                .map_err(StartError::from)
                .and_then(|(settings, warnings)| {
                    init_logging(&settings.log_level, &warnings);
                    block_on(mpbridge::remote::run(settings, shutdown_signal()))
                })
        }
        Command::Paths { role } => {
            let overrides = Overrides {
                log_level: cli.log_level,
                ..Overrides::default()
            };
            let loaded = match role {
                PathsRole::Local => {
                    config::load_local(&path, explicit, &overrides).map(|(s, w)| {
                        let side = mpbridge::paths::Side::Local { remotes: s.remotes };
                        (s.paths, side, s.auth, s.log_level, w)
                    })
                }
                PathsRole::Remote => {
                    config::load_remote(&path, explicit, &overrides).map(|(s, w)| {
                        (
                            s.paths,
                            mpbridge::paths::Side::Remote,
                            s.auth,
                            s.log_level,
                            w,
                        )
                    })
                }
            };
            loaded
                .map_err(StartError::from)
                .and_then(|(paths, side, auth, level, warnings)| {
                    init_logging(&level, &warnings);
                    block_on(mpbridge::paths_only::run(
                        &paths,
                        side,
                        &auth,
                        shutdown_signal(),
                    ))
                })
        }
        Command::CheckConfig => match config::check(&path) {
            Ok((roles, warnings)) => {
                for w in &warnings {
                    eprintln!("warning: {}", w.0);
                }
                println!("{}: ok ({roles:?})", path.display());
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Command::Genkey => genkey(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if LOGGING.load(Ordering::Relaxed) {
                tracing::error!("{e}");
            } else {
                eprintln!("mpbridge: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn genkey() -> Result<(), StartError> {
    let mut key = [0u8; 32];
    let mut filled = 0;
    while filled < key.len() {
        filled +=
            rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| StartError::Unavailable(format!("no random source: {e}")))?;
    }
    println!("{}", hex::encode(key));
    Ok(())
}

fn init_logging(level: &str, warnings: &[Warning]) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // procd and journald store what we print: colour only on a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    LOGGING.store(true, Ordering::Relaxed);
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
}

fn block_on<F: std::future::Future<Output = Result<(), StartError>>>(
    future: F,
) -> Result<(), StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?
        .block_on(future)
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); the daemon then drains. A
/// second signal ends the process at once, without waiting for the drain.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) still applies.
        return std::future::pending().await;
    };
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
