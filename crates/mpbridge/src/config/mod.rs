//! Configuration: the TOML file plus command-line overrides, read into
//! span-carrying raw structs (`raw`, by `read`), then validated once into
//! [`LocalSettings`] or [`RemoteSettings`] (a [`Common`] part and the
//! role's), whose fields need no further checks. Every [`ConfigError`] is
//! one sentence naming the file, line, column and field, and what is
//! expected.
//!
//! Layout: `settings` the validated types; `raw` the file's layout and
//! `read` what fills it from the parsed document; `error` errors and their
//! positions; `bounded` each numeric key's range and unit; `choice` words
//! read into enums through serde; `auth`, `roles`, `paths` and `fields` the
//! validation pass; `policy` the remote's destination policy;
//! `interception` what `mpbridge local` diverts and how.

mod auth;
mod bounded;
mod choice;
mod error;
mod fields;
mod interception;
mod paths;
mod policy;
mod raw;
mod read;
mod roles;
mod settings;
#[cfg(test)]
mod tests;
mod transport;

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use choice::ChoiceError;
pub use error::{ConfigError, Location};
pub use interception::{FirewallMode, Interception, InterceptionMode, Quic, DEFAULT_LAN_INTERFACE};
pub use policy::{DestPolicy, PolicyRefusal};
pub use settings::{
    Auth, Common, ControlSettings, DownAction, KeySpec, Limits, LinkConfig, LocalSettings,
    Overrides, PathSettings, ProbeConfig, RemoteSettings, Role, RouteSettings, Secret, SlowLinks,
    Sndbuf, SubflowMode, Warning,
};

use auth::io_reason;
use error::{explain, file_location, find_path};
use raw::RawConfig;

/// Where `mpbridge` looks for its config file when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/mpbridge/mpbridge.toml";

/// sysexits.h `EX_CONFIG`: the exit code for any [`ConfigError`].
pub const EX_CONFIG: i32 = 78;

/// The shortest pre-shared key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

// Named defaults, one place for each key (the example config
// `examples-config/mpbridge.toml` repeats them for operators); the accepted
// ranges are the types of `bounded`.
const DEFAULT_KEY_ID: i64 = 1;
const DEFAULT_WINDOW_SECS: i64 = 60;
const DEFAULT_REPLAY_CACHE: i64 = 65_536;
const DEFAULT_LOCAL_PORT: u16 = 12345;
const DEFAULT_REMOTE_PORT: u16 = 4443;
const DEFAULT_CONNECT_TIMEOUT_MS: i64 = 5_000;
const DEFAULT_REPLY_TIMEOUT_MS: i64 = 10_000;
const DEFAULT_HEADER_TIMEOUT_MS: i64 = 5_000;
const DEFAULT_MAX_CONNECTIONS: i64 = 4096;
const DEFAULT_DRAIN_SECS: i64 = 10;
const DEFAULT_PIPE_SIZE: i64 = 262_144;
/// `limits.rcvbuf_budget`: 0, sized from the kernel's `tcp_mem`.
const DEFAULT_RCVBUF_BUDGET: i64 = 0;
const DEFAULT_FASTOPEN_RCVBUF: i64 = 16_777_216;
/// cubic, not the kernel's default: with bbr (this machine's default, and
/// so every namespace's) one flow over 100 + 50 + 20 Mbit/s got 65 % of the
/// links' sum each way, with cubic 97–98 % (bench case 8, Linux 6.18 and
/// 6.12 alike; README "A kernel behaviour worth knowing").
const DEFAULT_CONGESTION: &str = "cubic";
/// A key file is a line of hex; reading stops here so a wrong path (a device,
/// a log) cannot make startup read forever.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

const FLAG_LISTEN: &str = "--listen";
const FLAG_REMOTE: &str = "--remote";
const FLAG_INTERCEPT: &str = "--intercept";
const FLAG_KEY_FILE: &str = "--key-file";
const FLAG_LOG_LEVEL: &str = "--log-level";

const GENKEY_HINT: &str = "generate one with: mpbridge genkey";

// The control socket and metrics (`local.control_socket`, `…metrics_listen`).
/// Where `mpbridge local` serves its control socket unless told otherwise.
pub const DEFAULT_LOCAL_CONTROL_SOCKET: &str = "/run/mpbridge/local.sock";
/// Where `mpbridge remote` serves its control socket unless told otherwise.
pub const DEFAULT_REMOTE_CONTROL_SOCKET: &str = "/run/mpbridge/remote.sock";
/// `mpbridge local`'s control socket on OpenWrt, as `mpbridge uci` renders
/// it: the feed keeps sockets under /var/run (on 24.10 there is no /run;
/// /var links to /tmp). `mpbridge status` looks there when the default is
/// absent.
pub const OPENWRT_LOCAL_CONTROL_SOCKET: &str = "/var/run/mpbridge/local.sock";
/// `mpbridge remote`'s control socket on OpenWrt (see the local's).
pub const OPENWRT_REMOTE_CONTROL_SOCKET: &str = "/var/run/mpbridge/remote.sock";
/// A Unix socket path's limit: `sun_path` holds 108 bytes with the NUL.
const MAX_SOCKET_PATH_LEN: usize = 107;

// Path management (`[[link]]`, `[probe]`, `[paths]`).
/// At most this many links: the kernel's MPTCP subflow limit (MPTCP_PM_ADDR_MAX).
pub const MAX_LINKS: usize = 8;
/// See `ProbeSettings::default` for why 20 ms.
const DEFAULT_PROBE_INTERVAL_MS: i64 = 20;
const DEFAULT_DOWN_AFTER: i64 = 3;
const DEFAULT_UP_AFTER: i64 = 3;
const DEFAULT_TABLE_BASE: i64 = 7700;
const DEFAULT_RULE_PRIORITY: i64 = 7700;
/// The main table, where `ip route add` puts routes.
const DEFAULT_ROUTE_TABLE: i64 = 254;
/// The kernel's table of local addresses: never ours.
const LOCAL_TABLE: i64 = 255;
const DEFAULT_NEXTHOP_BASE: i64 = 7700;
/// `paths.subflows_after_ms`: see the measurement in `paths::subflows`.
const DEFAULT_SUBFLOWS_AFTER_MS: i64 = 200;
/// `paths.slow_links` on router A: "bench", as measured (example config):
/// the policy keeps a sustained flow over a slow lossy link near the best
/// link alone; it judges no load before every link carrying a flow has
/// carried it for 6 s, so short flows, and flows moving from link to link,
/// over healthy links are never tried.
const DEFAULT_SLOW_LINKS: SlowLinks = SlowLinks::Bench;
/// What router A routes over the links when `paths.routes` is not given.
const DEFAULT_LOCAL_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];
/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Reads the file and validates what `mpbridge local` needs. `explicit ==
/// false` means `path` is [`DEFAULT_PATH`]: if it does not exist, the flags
/// must supply everything required.
pub fn load_local(
    path: &Path,
    explicit: bool,
    ov: &Overrides,
) -> Result<(LocalSettings, Vec<Warning>), ConfigError> {
    ConfigFile::read(path, explicit)?.local(ov)
}

/// Reads the file and validates what `mpbridge remote` needs; see [`load_local`].
pub fn load_remote(
    path: &Path,
    explicit: bool,
    ov: &Overrides,
) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
    ConfigFile::read(path, explicit)?.remote(ov)
}

/// Validates every section present (`mpbridge check-config`); returns the
/// roles whose section is present and valid.
pub fn check(path: &Path) -> Result<(Vec<Role>, Vec<Warning>), ConfigError> {
    ConfigFile::read(path, true)?.check()
}

/// Parses TOML text; `origin` names it in errors and anchors relative key_file paths.
pub fn parse_str(text: &str, origin: &Path) -> Result<ConfigFile, ConfigError> {
    let at = |span: Range<usize>| file_location(origin, text, span.start);
    let doc = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        at: at(e.span().unwrap_or(0..0)),
        message: e.message().to_owned(),
    })?;
    let raw = read::config(doc.get_ref()).map_err(|e| {
        let (field, problem) = explain(find_path(doc.get_ref(), &e.span), &e.message);
        ConfigError::Invalid {
            at: at(e.span),
            field,
            problem,
        }
    })?;
    Ok(ConfigFile {
        path: origin.to_owned(),
        text: text.to_owned(),
        exists: true,
        mode: None,
        raw,
    })
}

/// A parsed but not yet validated config file; validate it for a role with
/// [`ConfigFile::local`], [`ConfigFile::remote`] or [`ConfigFile::check`].
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    /// False when the default path does not exist (then `raw` is all defaults).
    exists: bool,
    /// Permission bits of the file, when read from disk.
    mode: Option<u32>,
    raw: RawConfig,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("exists", &self.exists)
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    /// Reads and parses `path`; a missing file is an error only when `explicit`.
    pub fn read(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let read_err = |e: &io::Error| ConfigError::Read {
            path: path.to_owned(),
            reason: io_reason(e),
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => {
                return Ok(ConfigFile {
                    path: path.to_owned(),
                    text: String::new(),
                    exists: false,
                    mode: None,
                    raw: RawConfig::default(),
                });
            }
            Err(e) => return Err(read_err(&e)),
        };
        let mode = file
            .metadata()
            .map_err(|e| read_err(&e))?
            .permissions()
            .mode();
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| read_err(&e))?;
        let mut parsed = parse_str(&text, path)?;
        parsed.mode = Some(mode);
        Ok(parsed)
    }

    /// Validates `[auth]`, `[local]`, `[limits]` and `[log]` with the flags applied.
    pub fn local(&self, ov: &Overrides) -> Result<(LocalSettings, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let shared = self.shared(ov, &mut warnings)?;
        Ok((self.local_with(ov, &shared, &mut warnings)?, warnings))
    }

    /// Validates `[auth]`, `[remote]`, `[limits]` and `[log]` with the flags applied.
    pub fn remote(&self, ov: &Overrides) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let shared = self.shared(ov, &mut warnings)?;
        Ok((self.remote_with(ov, &shared, &mut warnings)?, warnings))
    }

    /// Validates every section present; returns the roles whose section is present.
    pub fn check(&self) -> Result<(Vec<Role>, Vec<Warning>), ConfigError> {
        let ov = Overrides::default();
        let mut warnings = Vec::new();
        let mut roles = Vec::new();
        let shared = self.shared(&ov, &mut warnings)?;
        if self.raw.local.is_some() {
            self.local_with(&ov, &shared, &mut warnings)?;
            roles.push(Role::Local);
        }
        if self.raw.remote.is_some() {
            self.remote_with(&ov, &shared, &mut warnings)?;
            roles.push(Role::Remote);
        }
        if roles.is_empty() {
            warnings.push(Warning(format!(
                "{}: neither [local] nor [remote] is present, so neither `mpbridge local` nor `mpbridge remote` can run with it as it is",
                self.path.display()
            )));
        }
        Ok((roles, warnings))
    }
}
