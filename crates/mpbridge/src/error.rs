//! Errors that stop the daemon before it serves, each with the exit code
//! (sysexits style) by which procd or systemd tell a bad config from a
//! kernel that lacks something or a crash.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::firewall::FirewallError;
use crate::sys::SocketError;

/// Why `mpbridge local` or `mpbridge remote` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid; the message names file, line and field.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The kernel lacks something the daemon needs (MPTCP...).
    #[error("{0}")]
    Unavailable(String),
    /// A socket could not be created.
    #[error("{0}")]
    Socket(#[from] SocketError),
    /// A listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The interception rules could not be installed, or would loop.
    #[error("{0}")]
    Firewall(#[from] FirewallError),
    /// The control socket could not be created (or a live daemon holds it).
    #[error("{0}")]
    Control(#[from] crate::control::ControlError),
    /// The path manager could not set the links up.
    #[error("{0}")]
    Paths(#[from] crate::paths::PathError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl StartError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 78,      // EX_CONFIG
            StartError::Unavailable(_) => 69, // EX_UNAVAILABLE
            StartError::Firewall(FirewallError::SelfDivert(_)) => 78,
            StartError::Firewall(FirewallError::Refused { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                77
            }
            StartError::Firewall(_) => 69,
            StartError::Control(e) => e.exit_code(),
            StartError::Paths(crate::paths::PathError::Unavailable(_)) => 69,
            StartError::Paths(_) => 71, // EX_OSERR
            StartError::Socket(SocketError::NoMptcp(_)) => 69,
            StartError::Bind(_, e) if e.kind() == std::io::ErrorKind::PermissionDenied => 77, // EX_NOPERM
            StartError::Socket(_) | StartError::Bind(..) | StartError::Runtime(_) => 71, // EX_OSERR
        }
    }
}
