//! The `mpbridge` command: argument parsing and dispatch only. The daemons
//! themselves live in the library (`local::run`, `remote::run`) so that the
//! lab and the tests run exactly what this binary runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use mpbridge::config::{self, Intercept, Overrides, Role};
use mpbridge::error::Error;
use mpbridge::{daemon, logging};

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
        #[arg(long, value_name = "MODE", value_parser = role())]
        mode: Option<Role>,
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
        #[arg(value_parser = role())]
        role: Role,
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

/// `local` or `remote`, as a [`Role`].
fn role() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new(["local", "remote"]).map(|s| match s.as_str() {
        "local" => Role::Local,
        _ => Role::Remote,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = cli.config.unwrap_or_else(|| config::DEFAULT_PATH.into());
    let non_empty = |v: Vec<SocketAddr>| (!v.is_empty()).then_some(v);
    let mut overrides = Overrides {
        log_level: cli.log_level,
        ..Overrides::default()
    };
    let result = match cli.command {
        Command::Local {
            listen,
            remote,
            intercept,
            key_file,
        } => {
            overrides = Overrides {
                listen: non_empty(listen),
                remotes: non_empty(remote),
                intercept,
                key_file,
                ..overrides
            };
            local(path, explicit, overrides)
        }
        Command::Remote { listen, key_file } => {
            overrides = Overrides {
                listen: non_empty(listen),
                key_file,
                ..overrides
            };
            config::load_remote(&path, explicit, &overrides)
                .map_err(Error::from)
                .and_then(|(settings, warnings)| {
                    logging::init(&settings.log_level, &warnings);
                    on_runtime(|shutdown| mpbridge::remote::run(settings, shutdown))
                })
        }
        Command::Paths { role } => paths(role, &path, explicit, &overrides),
        Command::CheckConfig => {
            config::check(&path)
                .map_err(Error::from)
                .map(|(roles, warnings)| {
                    for w in &warnings {
                        eprintln!("warning: {}", w.0);
                    }
                    println!("{}: ok ({roles:?})", path.display());
                })
        }
        Command::Genkey => genkey(),
        Command::Status {
            socket,
            mode,
            json,
            watch,
            connections,
            top,
        } => {
            let options = mpbridge::status::client::Options {
                socket,
                mode,
                config: path,
                config_explicit: explicit,
                json,
                watch,
                limit: (!connections).then_some(top),
            };
            mpbridge::status::client::run(&options).map_err(Error::from)
        }
        #[cfg(feature = "uci")]
        Command::Uci { output, file } => mpbridge::uci::load(&file, &output)
            .map_err(Error::from)
            .and_then(|rendered| {
                mpbridge::uci::write(&output, &rendered).map_err(|e| Error::Write(output, e))?;
                let state = if rendered.enabled {
                    "enabled"
                } else {
                    "disabled"
                };
                println!("{} {state}", rendered.role);
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logging::active() {
                tracing::error!("{e}");
            } else if let Error::Status(e) = &e {
                eprintln!("mpbridge status: {e}");
            } else {
                eprintln!("mpbridge: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// `mpbridge local`; SIGHUP rereads the same file with the same overrides.
fn local(path: PathBuf, explicit: bool, overrides: Overrides) -> Result<(), Error> {
    let (settings, warnings) = config::load_local(&path, explicit, &overrides)?;
    logging::init(&settings.log_level, &warnings);
    let reload: mpbridge::local::Reload = Box::new(move || {
        let (settings, warnings) = config::load_local(&path, explicit, &overrides)?;
        for w in &warnings {
            tracing::warn!("{}", w.0);
        }
        Ok(settings)
    });
    on_runtime(|shutdown| mpbridge::local::run(settings, shutdown, Some(reload)))
}

/// `mpbridge paths ROLE`: the role's links, probes and auth.
fn paths(
    role: Role,
    path: &std::path::Path,
    explicit: bool,
    overrides: &Overrides,
) -> Result<(), Error> {
    use mpbridge::paths::Side;
    let (paths, side, auth, level, warnings) = match role {
        Role::Local => config::load_local(path, explicit, overrides).map(|(s, w)| {
            (
                s.paths,
                Side::Local { remotes: s.remotes },
                s.auth,
                s.log_level,
                w,
            )
        })?,
        Role::Remote => config::load_remote(path, explicit, overrides)
            .map(|(s, w)| (s.paths, Side::Remote, s.auth, s.log_level, w))?,
    };
    logging::init(&level, &warnings);
    on_runtime(
        |shutdown| async move { mpbridge::paths_only::run(&paths, side, &auth, shutdown).await },
    )
}

/// Runs a daemon on its runtime, its errors gathered for the exit code.
fn on_runtime<D, F, E>(daemon: D) -> Result<(), Error>
where
    D: FnOnce(daemon::Shutdown) -> F,
    F: std::future::Future<Output = Result<(), E>>,
    Error: From<E>,
{
    Ok(daemon::run_on_runtime(daemon).map_err(Error::Runtime)??)
}

fn genkey() -> Result<(), Error> {
    let mut key = [0u8; 32];
    let mut filled = 0;
    while filled < key.len() {
        filled +=
            rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(Error::Random)?;
    }
    println!("{}", hex::encode(key));
    Ok(())
}
