//! The parts both roles share (`[auth]`, `[limits]`, `[log]`), each role's
//! section (`[local]`, `[remote]`), and their control sockets.

use std::path::PathBuf;

use serde::Deserialize;
use tracing::Level;

use super::bounded::{DrainSecs, MaxConnections, PipeSize, RecvBudget, RecvBuffer};
use super::choice::{choose, Choice};
use super::error::ConfigError;
use super::fields::{check_socket_path, cli_addrs, parse_socket_addr, unspecified_on, AddrUse};
use super::interception::InterceptionMode;
use super::policy::DestPolicy;
use super::raw::{section, Field};
use super::settings::{
    Auth, Common, ControlSettings, Limits, LocalSettings, Overrides, RemoteSettings, Role, Warning,
};
use super::{
    ConfigFile, DEFAULT_CONGESTION, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_SECS,
    DEFAULT_FASTOPEN_RCVBUF, DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_LOCAL_CONTROL_SOCKET,
    DEFAULT_LOCAL_PORT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PIPE_SIZE, DEFAULT_RCVBUF_BUDGET,
    DEFAULT_REMOTE_CONTROL_SOCKET, DEFAULT_REMOTE_PORT, DEFAULT_REPLY_TIMEOUT_MS, FLAG_INTERCEPT,
    FLAG_LISTEN, FLAG_LOG_LEVEL, FLAG_REMOTE,
};

/// The sections both roles read the same way, validated once (also when
/// `check` validates both roles).
pub(super) struct Shared {
    pub(super) auth: Auth,
    pub(super) limits: Limits,
    pub(super) log_level: Level,
}

impl ConfigFile {
    pub(super) fn shared(
        &self,
        ov: &Overrides,
        warnings: &mut Vec<Warning>,
    ) -> Result<Shared, ConfigError> {
        let auth = self.auth(ov, warnings)?;

        let (limits, _) = section(&self.raw.limits);
        let limits = Limits {
            max_connections: self
                .bounded::<MaxConnections>(
                    limits.max_connections.as_ref(),
                    "limits.max_connections",
                    DEFAULT_MAX_CONNECTIONS,
                )?
                .get(),
            drain: self
                .bounded::<DrainSecs>(
                    limits.drain_secs.as_ref(),
                    "limits.drain_secs",
                    DEFAULT_DRAIN_SECS,
                )?
                .duration(),
            pipe_size: self
                .bounded::<PipeSize>(
                    limits.pipe_size.as_ref(),
                    "limits.pipe_size",
                    DEFAULT_PIPE_SIZE,
                )?
                .get(),
            rcvbuf_budget: self
                .bounded::<RecvBudget>(
                    limits.rcvbuf_budget.as_ref(),
                    "limits.rcvbuf_budget",
                    DEFAULT_RCVBUF_BUDGET,
                )?
                .get(),
        };

        let (log, _) = section(&self.raw.log);
        let log_level = match &ov.log_level {
            Some(level) => choose::<LogLevel>(level)
                .map_err(|e| ConfigError::command_line(FLAG_LOG_LEVEL, e.into_problem()))?,
            None => self.choice(&log.level, "log.level", LogLevel::Info)?,
        };

        Ok(Shared {
            auth,
            limits,
            log_level: log_level.into(),
        })
    }

    pub(super) fn local_with(
        &self,
        ov: &Overrides,
        shared: &Shared,
        warnings: &mut Vec<Warning>,
    ) -> Result<LocalSettings, ConfigError> {
        let (raw, header) = section(&self.raw.local);
        let listen = match &ov.listen {
            Some(addrs) => cli_addrs(addrs, FLAG_LISTEN, AddrUse::Listen)?,
            None => self.addrs(&raw.listen, "local.listen", AddrUse::Listen)?,
        }
        .unwrap_or_else(|| unspecified_on(DEFAULT_LOCAL_PORT));
        // Read before `remotes`, so a wrong mode is reported first, as it always was.
        let mode = match ov.intercept {
            Some(i) => i,
            None => self.choice(&raw.intercept, "local.intercept", InterceptionMode::Tproxy)?,
        };
        let remotes = match &ov.remotes {
            Some(addrs) => cli_addrs(addrs, FLAG_REMOTE, AddrUse::Connect)?,
            None => self.addrs(&raw.remotes, "local.remotes", AddrUse::Connect)?,
        };
        let Some(remotes) = remotes else {
            return Err(self.missing(
                header,
                "local.remotes",
                "required for `mpbridge local` (expected e.g. remotes = [\"192.0.2.2:4443\"])",
            ));
        };
        let paths = self.paths(remotes[0].port(), Role::Local)?;
        Ok(LocalSettings {
            listen,
            remotes,
            connect_timeout: self.timeout(
                raw.connect_timeout_ms.as_ref(),
                "local.connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            reply_timeout: self.timeout(
                raw.reply_timeout_ms.as_ref(),
                "local.reply_timeout_ms",
                DEFAULT_REPLY_TIMEOUT_MS,
            )?,
            mptcp: raw.mptcp.as_ref().is_none_or(|b| *b.get_ref()),
            fastopen: raw.fastopen.as_ref().is_none_or(|b| *b.get_ref()),
            fastopen_rcvbuf: self
                .bounded::<RecvBuffer>(
                    raw.fastopen_rcvbuf.as_ref(),
                    "local.fastopen_rcvbuf",
                    DEFAULT_FASTOPEN_RCVBUF,
                )?
                .get(),
            sndbuf: self.send_buffer(raw.sndbuf.as_ref(), "local.sndbuf")?,
            congestion: self.congestion(
                raw.congestion.as_ref(),
                "local.congestion",
                DEFAULT_CONGESTION,
            )?,
            interception: self.interception(&raw, mode)?,
            common: Common {
                auth: shared.auth.clone(),
                limits: shared.limits.clone(),
                log_level: shared.log_level,
                paths,
                control: self.control(
                    Role::Local,
                    &raw.control_socket,
                    &raw.metrics_listen,
                    warnings,
                )?,
            },
        })
    }

    pub(super) fn remote_with(
        &self,
        ov: &Overrides,
        shared: &Shared,
        warnings: &mut Vec<Warning>,
    ) -> Result<RemoteSettings, ConfigError> {
        if ov.remotes.is_some() {
            return Err(ConfigError::command_line(
                FLAG_REMOTE,
                "only `mpbridge local` connects to a remote",
            ));
        }
        if ov.intercept.is_some() {
            return Err(ConfigError::command_line(
                FLAG_INTERCEPT,
                "only `mpbridge local` intercepts connections",
            ));
        }
        let (raw, _) = section(&self.raw.remote);
        let listen = match &ov.listen {
            Some(addrs) => cli_addrs(addrs, FLAG_LISTEN, AddrUse::Listen)?,
            None => self.addrs(&raw.listen, "remote.listen", AddrUse::Listen)?,
        }
        .unwrap_or_else(|| unspecified_on(DEFAULT_REMOTE_PORT));
        let allow_loopback = raw.allow_loopback.as_ref().is_some_and(|b| *b.get_ref());
        if allow_loopback {
            warnings.push(Warning(
                "remote.allow_loopback = true: clients of the local side can reach services on this host's loopback and own addresses; use it only for tests".to_owned(),
            ));
        }
        let paths = self.paths(listen[0].port(), Role::Remote)?;
        Ok(RemoteSettings {
            listen,
            header_timeout: self.timeout(
                raw.header_timeout_ms.as_ref(),
                "remote.header_timeout_ms",
                DEFAULT_HEADER_TIMEOUT_MS,
            )?,
            connect_timeout: self.timeout(
                raw.connect_timeout_ms.as_ref(),
                "remote.connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            policy: DestPolicy {
                allow: self.cidrs(&raw.allow, "remote.allow")?,
                deny: self.cidrs(&raw.deny, "remote.deny")?,
                allow_loopback,
            },
            fastopen_rcvbuf: self
                .bounded::<RecvBuffer>(
                    raw.fastopen_rcvbuf.as_ref(),
                    "remote.fastopen_rcvbuf",
                    DEFAULT_FASTOPEN_RCVBUF,
                )?
                .get(),
            sndbuf: self.send_buffer(raw.sndbuf.as_ref(), "remote.sndbuf")?,
            congestion: self.congestion(
                raw.congestion.as_ref(),
                "remote.congestion",
                DEFAULT_CONGESTION,
            )?,
            common: Common {
                auth: shared.auth.clone(),
                limits: shared.limits.clone(),
                log_level: shared.log_level,
                paths,
                control: self.control(
                    Role::Remote,
                    &raw.control_socket,
                    &raw.metrics_listen,
                    warnings,
                )?,
            },
        })
    }

    /// `role`'s control socket: `control_socket` of its section, or the default.
    pub(super) fn control_socket(
        &self,
        role: Role,
        socket: &Field<String>,
    ) -> Result<Option<PathBuf>, ConfigError> {
        match socket {
            None => Ok(Some(PathBuf::from(match role {
                Role::Local => DEFAULT_LOCAL_CONTROL_SOCKET,
                Role::Remote => DEFAULT_REMOTE_CONTROL_SOCKET,
            }))),
            Some(path) => check_socket_path(path.get_ref())
                .map_err(|p| self.invalid(path.span(), format!("{role}.control_socket"), p)),
        }
    }

    /// Both roles' control sockets (`None`: turned off), for `mpbridge
    /// status`; no other field is validated.
    pub fn control_sockets(&self) -> Result<Vec<(Role, Option<PathBuf>)>, ConfigError> {
        let (local, _) = section(&self.raw.local);
        let (remote, _) = section(&self.raw.remote);
        Ok(vec![
            (
                Role::Local,
                self.control_socket(Role::Local, &local.control_socket)?,
            ),
            (
                Role::Remote,
                self.control_socket(Role::Remote, &remote.control_socket)?,
            ),
        ])
    }

    /// `control_socket` and `metrics_listen` of `role`'s section.
    pub(super) fn control(
        &self,
        role: Role,
        socket: &Field<String>,
        metrics: &Field<String>,
        warnings: &mut Vec<Warning>,
    ) -> Result<ControlSettings, ConfigError> {
        let socket = self.control_socket(role, socket)?;
        let metrics_listen = match metrics {
            None => None,
            Some(text) => {
                let field = format!("{role}.metrics_listen");
                if !cfg!(feature = "metrics") {
                    return Err(self.invalid(
                        text.span(),
                        field,
                        "this mpbridge was built without the `metrics` feature (expected no \
                         metrics_listen, or a build with `cargo build --features metrics`)",
                    ));
                }
                let addr = parse_socket_addr(text.get_ref(), AddrUse::Listen)
                    .map_err(|p| self.invalid(text.span(), &field, p))?;
                if !addr.ip().to_canonical().is_loopback() {
                    warnings.push(Warning(format!(
                        "{field} = \"{addr}\": the metrics are served without authentication \
                         to whoever can reach that address; keep it on loopback or a management \
                         network"
                    )));
                }
                Some(addr)
            }
        };
        Ok(ControlSettings {
            socket,
            metrics_listen,
        })
    }
}

/// `log.level` and `--log-level`: the lowest level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Choice for LogLevel {
    const WHAT: &'static str = "a log level";
    const IGNORE_CASE: bool = true;
}

impl From<LogLevel> for Level {
    fn from(level: LogLevel) -> Level {
        match level {
            LogLevel::Error => Level::ERROR,
            LogLevel::Warn => Level::WARN,
            LogLevel::Info => Level::INFO,
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Trace => Level::TRACE,
        }
    }
}
