//! The `mpbridge` command: argument parsing and dispatch only. Each
//! command lives in the library (`commands`, and below it `local::run`,
//! `remote::run`...) so that the lab and the tests run exactly what this
//! binary runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use mpbridge::commands::{self, ConfigFile};
use mpbridge::config::{InterceptionMode, Overrides, Role};

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
        intercept: Option<InterceptionMode>,
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
    let config = ConfigFile::new(cli.config);
    let non_empty = |v: Vec<SocketAddr>| (!v.is_empty()).then_some(v);
    let overrides = Overrides {
        log_level: cli.log_level,
        ..Overrides::default()
    };
    commands::exit(match cli.command {
        Command::Local {
            listen,
            remote,
            intercept,
            key_file,
        } => {
            let listen = non_empty(listen);
            let remotes = non_empty(remote);
            let o = Overrides {
                listen,
                remotes,
                intercept,
                key_file,
                ..overrides
            };
            commands::local(config, o)
        }
        Command::Remote { listen, key_file } => {
            let listen = non_empty(listen);
            commands::remote(
                &config,
                &Overrides {
                    listen,
                    key_file,
                    ..overrides
                },
            )
        }
        Command::Paths { role } => commands::paths(role, &config, &overrides),
        Command::CheckConfig => commands::check_config(&config),
        Command::Genkey => commands::genkey(),
        Command::Status {
            socket,
            mode,
            json,
            watch,
            connections,
            top,
        } => commands::status(mpbridge::status::client::Options {
            socket,
            mode,
            config: config.path,
            config_explicit: config.explicit,
            json,
            watch,
            limit: (!connections).then_some(top),
        }),
        #[cfg(feature = "uci")]
        Command::Uci { output, file } => commands::uci(&file, &output),
    })
}
