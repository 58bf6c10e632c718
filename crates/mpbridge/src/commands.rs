//! What each `mpbridge` subcommand does once its arguments are parsed:
//! read the config, set the log up, run the daemon on its runtime, and
//! turn whatever failed into one line and an exit code ([`exit`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Overrides, Role};
use crate::error::Error;
use crate::paths::Side;
use crate::{daemon, logging};

/// The config file, and whether the command line named it (a missing
/// default file means the defaults; a missing named one is an error).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub explicit: bool,
}

impl ConfigFile {
    /// `--config`, else [`config::DEFAULT_PATH`].
    pub fn new(given: Option<PathBuf>) -> ConfigFile {
        ConfigFile {
            explicit: given.is_some(),
            path: given.unwrap_or_else(|| config::DEFAULT_PATH.into()),
        }
    }
}

/// The exit code of a command's result; a failure is said on stderr (or
/// logged, once the log is set up).
pub fn exit(result: Result<(), Error>) -> ExitCode {
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    if logging::active() {
        tracing::error!("{e}");
    } else if let Error::Status(e) = &e {
        eprintln!("mpbridge status: {e}");
    } else {
        eprintln!("mpbridge: {e}");
    }
    ExitCode::from(e.exit_code())
}

/// `mpbridge local`; SIGHUP rereads the same file with the same overrides.
pub fn local(file: ConfigFile, overrides: Overrides) -> Result<(), Error> {
    let (settings, warnings) = config::load_local(&file.path, file.explicit, &overrides)?;
    logging::init(settings.common.log_level, &warnings);
    crate::limits::apply(settings.common.limits.max_connections);
    let reload: crate::local::Reload = Box::new(move || {
        let (settings, warnings) = config::load_local(&file.path, file.explicit, &overrides)?;
        for w in &warnings {
            tracing::warn!("{}", w.0);
        }
        Ok(settings)
    });
    on_runtime(|shutdown| crate::local::run(settings, shutdown, Some(reload)))
}

/// `mpbridge remote`.
pub fn remote(file: &ConfigFile, overrides: &Overrides) -> Result<(), Error> {
    let (settings, warnings) = config::load_remote(&file.path, file.explicit, overrides)?;
    logging::init(settings.common.log_level, &warnings);
    crate::limits::apply(settings.common.limits.max_connections);
    on_runtime(|shutdown| crate::remote::run(settings, shutdown))
}

/// `mpbridge paths ROLE`: the role's links, probes and auth.
pub fn paths(role: Role, file: &ConfigFile, overrides: &Overrides) -> Result<(), Error> {
    let (path, explicit) = (&file.path, file.explicit);
    let (common, side, warnings) = match role {
        Role::Local => config::load_local(path, explicit, overrides).map(|(s, w)| {
            let side = Side::Local { remotes: s.remotes };
            (s.common, side, w)
        })?,
        Role::Remote => config::load_remote(path, explicit, overrides)
            .map(|(s, w)| (s.common, Side::Remote, w))?,
    };
    logging::init(common.log_level, &warnings);
    on_runtime(|shutdown| async move {
        crate::paths_only::run(&common.paths, side, &common.auth, shutdown).await
    })
}

/// `mpbridge check-config`.
pub fn check_config(file: &ConfigFile) -> Result<(), Error> {
    let (roles, warnings) = config::check(&file.path)?;
    for w in &warnings {
        eprintln!("warning: {}", w.0);
    }
    println!("{}: ok ({roles:?})", file.path.display());
    Ok(())
}

/// `mpbridge status`.
pub fn status(options: crate::status::client::Options) -> Result<(), Error> {
    Ok(crate::status::client::run(&options)?)
}

/// `mpbridge genkey`: a new random pre-shared key, in hex.
pub fn genkey() -> Result<(), Error> {
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

/// `mpbridge uci`: renders and validates, then writes the file in one
/// step; prints the role and whether it is enabled.
#[cfg(feature = "uci")]
pub fn uci(file: &std::path::Path, output: &std::path::Path) -> Result<(), Error> {
    let rendered = crate::uci::load(file, output)?;
    crate::uci::write(output, &rendered).map_err(|e| Error::Write(output.to_owned(), e))?;
    let state = if rendered.enabled {
        "enabled"
    } else {
        "disabled"
    };
    println!("{} {state}", rendered.role);
    Ok(())
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
