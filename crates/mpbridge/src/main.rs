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
use tracing_subscriber::filter::Targets;

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
    /// Show the running daemon's links, counters and connections.
    Status {
        /// The daemon's control socket (default: local.control_socket and
        /// remote.control_socket of the config file).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Which daemon: local or remote (default: whichever runs).
        #[arg(long, value_enum, value_name = "MODE")]
        mode: Option<Mode>,
        /// Print JSON (one object per line with --watch).
        #[arg(long)]
        json: bool,
        /// Refresh every second.
        #[arg(short, long)]
        watch: bool,
        /// List every connection (default: the --top fastest).
        #[arg(long)]
        connections: bool,
        /// How many connections to list, fastest first.
        #[arg(long, value_name = "N", default_value_t = 10)]
        top: usize,
    },
    /// Run only the path manager (MPTCP limits, endpoints, policy routing,
    /// probes) of router A (`local`) or router B (`remote`), for another
    /// MPTCP proxy; the config file's `[[link]]`s, `[probe]` and role section.
    Paths {
        #[arg(value_enum)]
        role: Mode,
    },
    /// Validate the config file and exit.
    CheckConfig,
    /// Print a new random pre-shared key (hex) for the key file.
    Genkey,
    /// Render OpenWrt's UCI config into the TOML config, validated; prints
    /// the role and whether it is enabled ("local enabled").
    #[cfg(feature = "uci")]
    Uci {
        /// Where to write the TOML config (mode 0600); nothing is written
        /// when the UCI file has a mistake.
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// The UCI file.
        #[arg(default_value = mpbridge::uci::DEFAULT_PATH)]
        file: PathBuf,
    },
}

/// A daemon `mpbridge status` talks to.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
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
                    mpbridge::limits::apply(settings.limits.max_connections);
                    let reload: mpbridge::local::Reload = Box::new(move || {
                        let (settings, warnings) = config::load_local(&path, explicit, &overrides)?;
                        for w in &warnings {
                            tracing::warn!("{}", w.0);
                        }
                        Ok(settings)
                    });
                    run_daemon(|shutdown| mpbridge::local::run(settings, shutdown, Some(reload)))
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
                    mpbridge::limits::apply(settings.limits.max_connections);
                    run_daemon(|shutdown| mpbridge::remote::run(settings, shutdown))
                })
        }
        Command::Paths { role } => {
            let overrides = Overrides {
                log_level: cli.log_level,
                ..Overrides::default()
            };
            let loaded = match role {
                Mode::Local => config::load_local(&path, explicit, &overrides).map(|(s, w)| {
                    let side = mpbridge::paths::Side::Local { remotes: s.remotes };
                    (s.paths, side, s.auth, s.log_level, w)
                }),
                Mode::Remote => config::load_remote(&path, explicit, &overrides).map(|(s, w)| {
                    (
                        s.paths,
                        mpbridge::paths::Side::Remote,
                        s.auth,
                        s.log_level,
                        w,
                    )
                }),
            };
            loaded
                .map_err(StartError::from)
                .and_then(|(paths, side, auth, level, warnings)| {
                    init_logging(&level, &warnings);
                    run_daemon(|shutdown| async move {
                        mpbridge::paths_only::run(&paths, side, &auth, shutdown).await
                    })
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
        Command::Status {
            socket,
            mode,
            json,
            watch,
            connections,
            top,
        } => {
            let options = mpbridge::control::client::Options {
                socket,
                mode: mode.map(|m| match m {
                    Mode::Local => config::Role::Local,
                    Mode::Remote => config::Role::Remote,
                }),
                config: path,
                config_explicit: explicit,
                json,
                watch,
                limit: (!connections).then_some(top),
            };
            return match mpbridge::control::client::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mpbridge status: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        #[cfg(feature = "uci")]
        Command::Uci { output, file } => return uci(&file, &output),
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

/// `mpbridge uci`: renders, validates, then writes the file in one step.
#[cfg(feature = "uci")]
fn uci(file: &std::path::Path, output: &std::path::Path) -> ExitCode {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let rendered = match mpbridge::uci::load(file, output) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mpbridge: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let tmp = output.with_extension("tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(rendered.toml.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, output));
    if let Err(e) = written {
        eprintln!("mpbridge: cannot write {}: {e}", output.display());
        return ExitCode::from(73); // EX_CANTCREAT
    }
    let state = if rendered.enabled {
        "enabled"
    } else {
        "disabled"
    };
    println!("{} {state}", rendered.role);
    ExitCode::SUCCESS
}

fn init_logging(level: &str, warnings: &[Warning]) {
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
    LOGGING.store(true, Ordering::Relaxed);
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
}

/// Runs a daemon on a new runtime, handing it the shutdown signal. The
/// signal handlers are installed inside the runtime before the daemon's
/// future is even made, which only this function can get right.
/// Every event at `level` (validated by the config: error … trace) or above.
fn level_targets(level: &str) -> Targets {
    let level = level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    Targets::new().with_default(level)
}

fn run_daemon<D, F>(daemon: D) -> Result<(), StartError>
where
    D: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
    F: std::future::Future<Output = Result<(), StartError>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?
        .block_on(async move { daemon(Box::pin(shutdown_signal())).await })
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); the daemon then drains. A
/// second signal ends the process at once, without waiting for the drain.
/// The handlers are installed when this is called (inside the runtime,
/// before the daemon starts): a signal that came after the daemon said it
/// listens but before this future was first polled would otherwise end the
/// process by the default action, skipping the clean-up.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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
