//! Every subsystem's error, gathered for the one thing only the binary
//! needs: the process exit code (sysexits style), by which procd or
//! systemd tell a bad config from a kernel that lacks something or a
//! crash. Nothing in the library uses this module; each subsystem returns
//! its own error.

use crate::checks::CheckError;
use crate::config::ConfigError;
use crate::control::ControlError;
use crate::daemon::StartError;
use crate::firewall::FirewallError;
use crate::host::sys::SocketError;
use crate::local::LocalError;
use crate::paths::PathError;
use crate::status::client::StatusError;

/// A service is unavailable: the kernel or the host lacks something.
pub const EX_UNAVAILABLE: u8 = 69;
/// An operating system error (a socket, the runtime).
pub const EX_OSERR: u8 = 71;
/// A file could not be created.
pub const EX_CANTCREAT: u8 = 73;
/// Input/output error.
pub const EX_IOERR: u8 = 74;
/// The peer spoke something this build does not understand.
pub const EX_PROTOCOL: u8 = 76;
/// Permission denied.
pub const EX_NOPERM: u8 = 77;
/// The configuration is invalid.
pub const EX_CONFIG: u8 = 78;

/// Why an `mpbridge` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names file, line and field.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A daemon could not start.
    #[error("{0}")]
    Start(#[from] StartError),
    /// Router A's interception rules could not be installed, or would loop.
    #[error("{0}")]
    Firewall(#[from] FirewallError),
    /// `mpbridge status` could not show a status.
    #[error("{0}")]
    Status(#[from] StatusError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// No random source for a new key.
    #[error("no random source: {0}")]
    Random(rustix::io::Errno),
    /// OpenWrt's UCI config has a mistake (`mpbridge uci`).
    #[cfg(feature = "uci")]
    #[error("{0}")]
    Uci(#[from] crate::uci::UciError),
    /// An output file could not be written.
    #[error("cannot write {path}: {1}", path = .0.display())]
    Write(std::path::PathBuf, std::io::Error),
}

impl From<LocalError> for Error {
    fn from(e: LocalError) -> Error {
        match e {
            LocalError::Start(e) => Error::Start(e),
            LocalError::Firewall(e) => Error::Firewall(e),
        }
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => EX_CONFIG,
            Error::Start(e) => start_code(e),
            Error::Firewall(FirewallError::SelfDivert(_)) => EX_CONFIG,
            Error::Firewall(FirewallError::Refused { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                EX_NOPERM
            }
            Error::Firewall(_) => EX_UNAVAILABLE,
            Error::Status(e) => match e {
                StatusError::Config(_) => EX_CONFIG,
                StatusError::NotRunning(_) => EX_UNAVAILABLE,
                StatusError::Permission(_) => EX_NOPERM,
                StatusError::Protocol(_) => EX_PROTOCOL,
                StatusError::Output(_) => EX_IOERR,
            },
            Error::Runtime(_) => EX_OSERR,
            Error::Random(_) => EX_UNAVAILABLE,
            #[cfg(feature = "uci")]
            Error::Uci(_) => EX_CONFIG,
            Error::Write(..) => EX_CANTCREAT,
        }
    }
}

fn start_code(e: &StartError) -> u8 {
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    match e {
        StartError::Check(
            CheckError::MptcpDisabled | CheckError::NoMptcp | CheckError::HostView(_),
        ) => EX_UNAVAILABLE,
        StartError::Check(CheckError::Socket(e)) | StartError::Socket(e) => match e {
            SocketError::NoMptcp(_) => EX_UNAVAILABLE,
            SocketError::Other(_) => EX_OSERR,
        },
        StartError::Unavailable(_) => EX_UNAVAILABLE,
        StartError::Bind(_, e) | StartError::Control(ControlError::Metrics(_, e)) if denied(e) => {
            EX_NOPERM
        }
        StartError::Bind(..) | StartError::Control(ControlError::Metrics(..)) => EX_OSERR,
        StartError::Control(ControlError::Create(_, e)) if denied(e) => EX_NOPERM,
        StartError::Control(_) => EX_CANTCREAT,
        StartError::Paths(PathError::Unavailable(_)) => EX_UNAVAILABLE,
        StartError::Paths(_) => EX_OSERR,
    }
}
