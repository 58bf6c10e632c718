//! Configuration: the TOML file plus command-line overrides, deserialized into
//! span-carrying raw structs, then validated once into [`LocalSettings`] or
//! [`RemoteSettings`], whose fields need no further checks. Every [`ConfigError`]
//! is one sentence naming the file, line, column and field, and what is expected.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where `mpbridge` looks for its config file when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/mpbridge/mpbridge.toml";

/// sysexits.h `EX_CONFIG`: the exit code for any [`ConfigError`].
pub const EX_CONFIG: i32 = 78;

/// The shortest pre-shared key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

// Named defaults and accepted ranges, one place for each key (the example
// config `examples-config/mpbridge.toml` repeats them for operators).
const DEFAULT_KEY_ID: i64 = 1;
const KEY_ID_RANGE: RangeInclusive<i64> = 0..=255;
const DEFAULT_WINDOW_SECS: i64 = 60;
const WINDOW_SECS_RANGE: RangeInclusive<i64> = 1..=3600;
const DEFAULT_REPLAY_CACHE: i64 = 65_536;
const REPLAY_CACHE_RANGE: RangeInclusive<i64> = 1..=10_000_000;
const DEFAULT_LOCAL_PORT: u16 = 12345;
const DEFAULT_REMOTE_PORT: u16 = 4443;
const DEFAULT_CONNECT_TIMEOUT_MS: i64 = 5_000;
const DEFAULT_REPLY_TIMEOUT_MS: i64 = 10_000;
const DEFAULT_HEADER_TIMEOUT_MS: i64 = 5_000;
const TIMEOUT_MS_RANGE: RangeInclusive<i64> = 100..=120_000;
const DEFAULT_MAX_CONNECTIONS: i64 = 4096;
const MAX_CONNECTIONS_RANGE: RangeInclusive<i64> = 1..=1_000_000;
const DEFAULT_DRAIN_SECS: i64 = 10;
const DRAIN_SECS_RANGE: RangeInclusive<i64> = 0..=3600;
const DEFAULT_PIPE_SIZE: i64 = 262_144;
const DEFAULT_FASTOPEN_RCVBUF: i64 = 16_777_216;
const FASTOPEN_RCVBUF_RANGE: RangeInclusive<i64> = 0..=268_435_456;
const PIPE_SIZE_RANGE: RangeInclusive<i64> = 4096..=16_777_216;
const DEFAULT_LOG_LEVEL: &str = "info";
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
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
/// A Unix socket path's limit: `sun_path` holds 108 bytes with the NUL.
const MAX_SOCKET_PATH_LEN: usize = 107;

// Path management (`[[link]]`, `[probe]`, `[paths]`).
/// At most this many links: the kernel's MPTCP subflow limit (MPTCP_PM_ADDR_MAX).
pub const MAX_LINKS: usize = 8;
const DEFAULT_PROBE_INTERVAL_MS: i64 = 100;
const PROBE_INTERVAL_MS_RANGE: RangeInclusive<i64> = 10..=10_000;
const DEFAULT_DOWN_AFTER: i64 = 3;
const DEFAULT_UP_AFTER: i64 = 3;
const PROBE_COUNT_RANGE: RangeInclusive<i64> = 1..=100;
const PORT_RANGE: RangeInclusive<i64> = 1..=65_535;
const DEFAULT_TABLE_BASE: i64 = 7700;
/// Table ids below 256 include the kernel's own (253..=255); the top leaves
/// room for `MAX_LINKS` tables.
const TABLE_BASE_RANGE: RangeInclusive<i64> = 256..=2_000_000_000;
const DEFAULT_RULE_PRIORITY: i64 = 7700;
const RULE_PRIORITY_RANGE: RangeInclusive<i64> = 1..=32_000;
/// The main table, where `ip route add` puts routes.
const DEFAULT_ROUTE_TABLE: i64 = 254;
const ROUTE_TABLE_RANGE: RangeInclusive<i64> = 1..=2_000_000_000;
/// The kernel's table of local addresses: never ours.
const LOCAL_TABLE: i64 = 255;
const ROUTE_METRIC_RANGE: RangeInclusive<i64> = 0..=2_000_000_000;
const DEFAULT_NEXTHOP_BASE: i64 = 7700;
/// The top leaves room for the ids of `MAX_LINKS` links and the groups.
const NEXTHOP_BASE_RANGE: RangeInclusive<i64> = 1..=2_000_000_000;
const RATE_MBIT_RANGE: RangeInclusive<i64> = 1..=1_000_000;
/// What router A routes over the links when `paths.routes` is not given.
const DEFAULT_LOCAL_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];
/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

// ---------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------

/// Key material. `Debug` and `Display` print `MASKED`, so settings can be logged.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The key bytes, for the code that computes cookies.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// One pre-shared key and the id that names it in cookies.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub id: u8,
    pub secret: Secret,
}

/// How connections between the two routers are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No cookie is sent or checked (interop tests only).
    None,
    /// Every connection carries a cookie made with a pre-shared key.
    Psk {
        /// The key this side signs with (`auth.key_id` + `auth.key`/`auth.key_file`).
        send: KeySpec,
        /// Keys accepted from the peer: the send key first, then `[[auth.accept]]`.
        accept: Vec<KeySpec>,
        /// How far a cookie's timestamp may be from this host's clock, in seconds.
        window_secs: u64,
        /// How many nonces are remembered to refuse replays.
        replay_capacity: usize,
    },
}

/// How diverted client connections reach `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intercept {
    /// iptables/nft `TPROXY`: the socket's local address is the original destination.
    Tproxy,
    /// `REDIRECT`/DNAT: the original destination comes from `SO_ORIGINAL_DST`.
    Redirect,
}

/// `FromStr` error for [`Intercept`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an interception mode (expected \"tproxy\" or \"redirect\")")]
pub struct ParseInterceptError(pub String);

impl FromStr for Intercept {
    type Err = ParseInterceptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tproxy" => Ok(Intercept::Tproxy),
            "redirect" => Ok(Intercept::Redirect),
            _ => Err(ParseInterceptError(s.to_owned())),
        }
    }
}

impl fmt::Display for Intercept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Intercept::Tproxy => "tproxy",
            Intercept::Redirect => "redirect",
        })
    }
}

/// Resource bounds shared by both roles (`[limits]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent relayed connections; new ones beyond it are reset. Bounds
    /// memory: each holds two pipes of `pipe_size` bytes.
    pub max_connections: usize,
    /// How long open connections may finish after SIGTERM.
    pub drain: Duration,
    /// Splice pipe capacity per direction, in bytes (two pipes per connection;
    /// the kernel rounds up to a power-of-two number of pages).
    pub pipe_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            drain: Duration::from_secs(DEFAULT_DRAIN_SECS as u64),
            pipe_size: DEFAULT_PIPE_SIZE as usize,
        }
    }
}

/// One `[[link]]`: an interface whose addresses become MPTCP paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// The interface name (at most 15 bytes, as the kernel requires).
    pub interface: String,
    /// The next hop on this link, at most one per family; a family without
    /// one is learned from the link's routes (else a device route is used).
    pub peers: Vec<IpAddr>,
    /// Used only when no regular link is up (MPTCP backup).
    pub backup: bool,
    /// The link's rate in Mbit/s, which weighs its share of the flows of
    /// the multipath routes; set on every link or on none (equal shares).
    pub rate_mbit: Option<u32>,
}

/// What the path manager does to a link its probes declare down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownAction {
    /// Remove the link's MPTCP endpoints (the kernel closes its subflows).
    Remove,
    /// Mark the endpoints backup (MP_PRIO): subflows stay, idle.
    Backup,
}

/// Link probing (`[probe]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `false`: no probes; links follow only the kernel's link state.
    pub enabled: bool,
    pub interval: Duration,
    /// Missed probes in a row that declare a link down.
    pub down_after: u32,
    /// Answered probes in a row that declare it up again.
    pub up_after: u32,
    /// UDP port the remote answers probes on.
    pub port: u16,
    pub down_action: DownAction,
}

/// Path management: links, probing and the kernel ids used for routing.
/// No links means the daemon leaves MPTCP endpoints and routing alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSettings {
    pub links: Vec<LinkConfig>,
    pub probe: ProbeConfig,
    /// Link i's routing table is `table_base + i`.
    pub table_base: u32,
    /// Priority of the `from <link address>` rules.
    pub rule_priority: u32,
    pub routes: RouteSettings,
}

/// The multipath routes of the traffic that is not bridged (`[paths]`
/// `routes`, `route_table`, `route_metric`, `nexthop_base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Routed over the links in service; empty with `routes = "none"`.
    pub prefixes: Vec<IpNet>,
    pub table: u32,
    /// `None`: the kernel's default (IPv4 0, IPv6 1024), and any other
    /// route to a prefix in `table` is a conflict; `Some`: only one with
    /// this same metric is.
    pub metric: Option<u32>,
    /// Nexthop ids used: `nexthop_base` up to [`RouteSettings::nexthop_ids`].
    pub nexthop_base: u32,
}

impl RouteSettings {
    /// How many nexthop ids from `nexthop_base` on are the daemon's: one
    /// per link and family, then one group per family.
    pub const fn nexthop_ids() -> u32 {
        2 * MAX_LINKS as u32 + 2
    }
}

/// The daemon's control socket and metrics endpoint (`control_socket`,
/// `metrics_listen` in its section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// The Unix socket `mpbridge status` reads; `None` when turned off
    /// (`control_socket = ""`).
    pub socket: Option<PathBuf>,
    /// Where Prometheus metrics are served over HTTP; off by default, and
    /// only in builds with the `metrics` feature.
    pub metrics_listen: Option<SocketAddr>,
}

/// Everything `mpbridge local` needs, validated.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Where diverted client TCP arrives.
    pub listen: Vec<SocketAddr>,
    pub intercept: Intercept,
    /// `mpbridge remote` addresses, tried in order; never empty.
    pub remotes: Vec<SocketAddr>,
    /// Dialing the remote.
    pub connect_timeout: Duration,
    /// Waiting for the remote's Convert reply.
    pub reply_timeout: Duration,
    /// `false`: plain TCP to the remote (kernels without MPTCP).
    pub mptcp: bool,
    /// Send the Convert header in the SYN (TCP Fast Open).
    pub fastopen: bool,
    /// Fixed receive buffer (bytes) of connections opened with TCP Fast
    /// Open; 0 leaves it to the kernel's autotuning (see the example config
    /// for the kernel behaviour this works around).
    pub fastopen_rcvbuf: usize,
    /// Who installs the rules that divert client TCP, and which.
    pub interception: Interception,
    pub auth: Auth,
    pub limits: Limits,
    pub paths: PathSettings,
    pub control: ControlSettings,
    /// One of error, warn, info, debug, trace.
    pub log_level: String,
}

/// Which destinations `mpbridge remote` may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestPolicy {
    /// If non-empty, a destination must be inside one of these.
    pub allow: Vec<IpNet>,
    /// Always refused, checked before `allow`.
    pub deny: Vec<IpNet>,
    /// Lift the refusal of loopback and this host's own addresses (tests).
    pub allow_loopback: bool,
}

/// Why [`DestPolicy::check`] refused a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// 127.0.0.0/8 or ::1.
    #[error("loopback address")]
    Loopback,
    /// 169.254.0.0/16 or fe80::/10.
    #[error("link-local address")]
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    #[error("multicast address")]
    Multicast,
    /// 0.0.0.0/8 or ::.
    #[error("unspecified address")]
    Unspecified,
    /// 255.255.255.255.
    #[error("broadcast address")]
    Broadcast,
    /// One of this host's own addresses.
    #[error("an address of this host")]
    OwnAddress,
    /// Inside this `remote.deny` prefix.
    #[error("inside remote.deny prefix {0}")]
    Denied(IpNet),
    /// `remote.allow` is non-empty and no prefix of it holds the destination.
    #[error("outside every remote.allow prefix")]
    NotAllowed,
}

impl DestPolicy {
    /// Decides whether `mpbridge remote` may connect to `dest`; `own` are the
    /// host's addresses. IPv4-mapped IPv6 addresses are judged as IPv4.
    pub fn check(&self, dest: IpAddr, own: &[IpAddr]) -> Result<(), PolicyRefusal> {
        let dest = dest.to_canonical();
        match dest {
            IpAddr::V4(v4) => {
                if v4.octets()[0] == 0 {
                    return Err(PolicyRefusal::Unspecified);
                }
                if v4.is_multicast() {
                    return Err(PolicyRefusal::Multicast);
                }
                if v4.is_broadcast() {
                    return Err(PolicyRefusal::Broadcast);
                }
                if v4.is_link_local() {
                    return Err(PolicyRefusal::LinkLocal);
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_unspecified() {
                    return Err(PolicyRefusal::Unspecified);
                }
                if v6.is_multicast() {
                    return Err(PolicyRefusal::Multicast);
                }
                if v6.segments()[0] & 0xffc0 == 0xfe80 {
                    return Err(PolicyRefusal::LinkLocal);
                }
            }
        }
        if !self.allow_loopback {
            if dest.is_loopback() {
                return Err(PolicyRefusal::Loopback);
            }
            if own.iter().any(|a| a.to_canonical() == dest) {
                return Err(PolicyRefusal::OwnAddress);
            }
        }
        if let Some(net) = self.deny.iter().find(|n| n.contains(&dest)) {
            return Err(PolicyRefusal::Denied(*net));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&dest)) {
            return Err(PolicyRefusal::NotAllowed);
        }
        Ok(())
    }
}

/// Everything `mpbridge remote` needs, validated.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Where `mpbridge local` connects.
    pub listen: Vec<SocketAddr>,
    /// The whole Convert header must arrive within this, and the client's
    /// handshake complete (a header in the SYN arrives before its last ACK).
    pub header_timeout: Duration,
    /// Dialing the destination.
    pub connect_timeout: Duration,
    pub policy: DestPolicy,
    /// Fixed receive buffer (bytes) of the accepted MPTCP connections; 0
    /// leaves it to the kernel's autotuning (see the example config).
    pub fastopen_rcvbuf: usize,
    pub auth: Auth,
    pub limits: Limits,
    pub paths: PathSettings,
    pub control: ControlSettings,
    /// One of error, warn, info, debug, trace.
    pub log_level: String,
}

/// Command-line flags that override the file. Errors name them as
/// `--listen`, `--remote`, `--intercept`, `--key-file` and `--log-level`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `local.listen` or `remote.listen` (whichever role is loaded).
    pub listen: Option<Vec<SocketAddr>>,
    /// Replaces `local.remotes` (local only).
    pub remotes: Option<Vec<SocketAddr>>,
    /// Replaces `local.intercept` (local only).
    pub intercept: Option<Intercept>,
    /// Replaces `auth.key` / `auth.key_file` (the send key).
    pub key_file: Option<PathBuf>,
    /// Replaces `log.level`.
    pub log_level: Option<String>,
}

/// A section of the file, and the subcommand that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Local,
    Remote,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Local => "local",
            Role::Remote => "remote",
        })
    }
}

/// Something valid but risky, for the caller to log at `warn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Where a config problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A place in the config file; line and column start at 1, the column counts characters.
    File {
        path: PathBuf,
        line: usize,
        col: usize,
    },
    /// A whole file: a key file, or a default config file that does not exist.
    Path(PathBuf),
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the configuration cannot be used. Displayed as one sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read: missing although named explicitly,
    /// unreadable, or not UTF-8.
    #[error("{}: cannot read config file: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML (unclosed bracket or string, duplicate key, …).
    #[error("{at}: invalid TOML: {message}")]
    Syntax { at: Location, message: String },
    /// A field is unknown, missing, of the wrong type or out of range; a key
    /// file cannot be read or holds no usable key; or a command-line value is
    /// invalid. `field` is the dotted path (`remote.allow[1]`) or the flag.
    #[error("{at}: {field}: {problem}")]
    Invalid {
        at: Location,
        field: String,
        problem: String,
    },
}

impl ConfigError {
    /// The process exit code for a config error: 78 (`EX_CONFIG`).
    pub fn exit_code(&self) -> i32 {
        EX_CONFIG
    }

    fn command_line(flag: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            at: Location::CommandLine,
            field: flag.to_owned(),
            problem: problem.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw file layout (what serde sees)
// ---------------------------------------------------------------------------

type Field<T> = Option<Spanned<T>>;
type List = Field<Vec<Spanned<String>>>;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    auth: Field<RawAuth>,
    local: Field<RawLocal>,
    remote: Field<RawRemote>,
    limits: Field<RawLimits>,
    log: Field<RawLog>,
    // Path management.
    link: Field<Vec<Spanned<RawLink>>>,
    probe: Field<RawProbe>,
    paths: Field<RawPaths>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawLink {
    interface: Spanned<String>,
    /// A string or an array of strings (one address per family).
    peer: Field<toml::Value>,
    backup: Field<bool>,
    rate_mbit: Field<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    enabled: Field<bool>,
    interval_ms: Field<i64>,
    down_after: Field<i64>,
    up_after: Field<i64>,
    port: Field<i64>,
    down_action: Field<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    table_base: Field<i64>,
    rule_priority: Field<i64>,
    /// An array of prefixes, or "none".
    routes: Field<toml::Value>,
    route_table: Field<i64>,
    route_metric: Field<i64>,
    nexthop_base: Field<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Field<String>,
    key_id: Field<i64>,
    key: Field<String>,
    key_file: Field<String>,
    window_secs: Field<i64>,
    replay_cache: Field<i64>,
    accept: Field<Vec<Spanned<RawAcceptKey>>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawAcceptKey {
    id: Spanned<i64>,
    key: Field<String>,
    key_file: Field<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    listen: List,
    intercept: Field<String>,
    remotes: List,
    connect_timeout_ms: Field<i64>,
    reply_timeout_ms: Field<i64>,
    mptcp: Field<bool>,
    fastopen: Field<bool>,
    fastopen_rcvbuf: Field<i64>,
    // Interception (see "Interception rules" below).
    firewall: Field<String>,
    lan_interfaces: List,
    bypass: List,
    control_socket: Field<String>,
    metrics_listen: Field<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    listen: List,
    header_timeout_ms: Field<i64>,
    connect_timeout_ms: Field<i64>,
    allow: List,
    deny: List,
    allow_loopback: Field<bool>,
    control_socket: Field<String>,
    metrics_listen: Field<String>,
    fastopen_rcvbuf: Field<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Field<i64>,
    drain_secs: Field<i64>,
    pipe_size: Field<i64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Field<String>,
}

/// A section's fields (or all defaults when absent) and the span of its header.
fn section<T: Default + Clone>(field: &Field<T>) -> (Cow<'_, T>, Option<Range<usize>>) {
    match field {
        Some(s) => (Cow::Borrowed(s.get_ref()), Some(s.span())),
        None => (Cow::Owned(T::default()), None),
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

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
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (field, problem) = explain(find_path(doc.get_ref(), &span), e.message());
        ConfigError::Invalid {
            at: at(span),
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

/// Validated parts both roles share.
struct Common {
    auth: Auth,
    limits: Limits,
    log_level: String,
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
        let common = self.common(ov, &mut warnings)?;
        Ok((self.local_with(ov, &common, &mut warnings)?, warnings))
    }

    /// Validates `[auth]`, `[remote]`, `[limits]` and `[log]` with the flags applied.
    pub fn remote(&self, ov: &Overrides) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let common = self.common(ov, &mut warnings)?;
        Ok((self.remote_with(ov, &common, &mut warnings)?, warnings))
    }

    /// Validates every section present; returns the roles whose section is present.
    pub fn check(&self) -> Result<(Vec<Role>, Vec<Warning>), ConfigError> {
        let ov = Overrides::default();
        let mut warnings = Vec::new();
        let mut roles = Vec::new();
        let common = self.common(&ov, &mut warnings)?;
        if self.raw.local.is_some() {
            self.local_with(&ov, &common, &mut warnings)?;
            roles.push(Role::Local);
        }
        if self.raw.remote.is_some() {
            self.remote_with(&ov, &common, &mut warnings)?;
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

    fn common(&self, ov: &Overrides, warnings: &mut Vec<Warning>) -> Result<Common, ConfigError> {
        let auth = self.auth(ov, warnings)?;

        let (limits, _) = section(&self.raw.limits);
        let limits = Limits {
            max_connections: self.int(
                limits.max_connections.as_ref(),
                "limits.max_connections",
                MAX_CONNECTIONS_RANGE,
                DEFAULT_MAX_CONNECTIONS,
                " connections",
            )?,
            drain: Duration::from_secs(self.int(
                limits.drain_secs.as_ref(),
                "limits.drain_secs",
                DRAIN_SECS_RANGE,
                DEFAULT_DRAIN_SECS,
                " seconds",
            )?),
            pipe_size: self.int(
                limits.pipe_size.as_ref(),
                "limits.pipe_size",
                PIPE_SIZE_RANGE,
                DEFAULT_PIPE_SIZE,
                " bytes",
            )?,
        };

        let (log, _) = section(&self.raw.log);
        let log_level = match (&ov.log_level, &log.level) {
            (Some(level), _) => {
                parse_log_level(level).map_err(|p| ConfigError::command_line(FLAG_LOG_LEVEL, p))?
            }
            (None, Some(level)) => parse_log_level(level.get_ref())
                .map_err(|p| self.invalid(level.span(), "log.level", p))?,
            (None, None) => DEFAULT_LOG_LEVEL.to_owned(),
        };

        Ok(Common {
            auth,
            limits,
            log_level,
        })
    }

    fn auth(&self, ov: &Overrides, warnings: &mut Vec<Warning>) -> Result<Auth, ConfigError> {
        let (raw, header) = section(&self.raw.auth);
        let key_id: u8 = self.int(
            raw.key_id.as_ref(),
            "auth.key_id",
            KEY_ID_RANGE,
            DEFAULT_KEY_ID,
            "",
        )?;
        let window_secs: u64 = self.int(
            raw.window_secs.as_ref(),
            "auth.window_secs",
            WINDOW_SECS_RANGE,
            DEFAULT_WINDOW_SECS,
            " seconds",
        )?;
        let replay_capacity: usize = self.int(
            raw.replay_cache.as_ref(),
            "auth.replay_cache",
            REPLAY_CACHE_RANGE,
            DEFAULT_REPLAY_CACHE,
            " nonces",
        )?;

        let psk = match &raw.mode {
            None => true,
            Some(mode) => match mode.get_ref().as_str() {
                "psk" => true,
                "none" => false,
                other => {
                    return Err(self.invalid(
                        mode.span(),
                        "auth.mode",
                        format!("\"{other}\" is not an auth mode (expected \"psk\" or \"none\")"),
                    ))
                }
            },
        };
        if !psk {
            if ov.key_file.is_some() {
                return Err(ConfigError::command_line(
                    FLAG_KEY_FILE,
                    format!(
                        "cannot be used with auth.mode = \"none\" in {} (expected mode = \"psk\")",
                        self.path.display()
                    ),
                ));
            }
            let ignored = raw.key.is_some() || raw.key_file.is_some() || raw.accept.is_some();
            warnings.push(Warning(format!(
                "auth.mode = \"none\": connections are neither authenticated nor protected against replay; use it only for interop tests{}",
                if ignored { " (auth.key, auth.key_file and auth.accept are ignored)" } else { "" }
            )));
            return Ok(Auth::None);
        }

        let send_secret = match &ov.key_file {
            Some(path) => read_key_file(path, FLAG_KEY_FILE, warnings)?,
            None => self.key_material("auth", &raw.key, &raw.key_file, header, warnings)?,
        };
        let send = KeySpec {
            id: key_id,
            secret: send_secret,
        };

        let mut accept = vec![send.clone()];
        let mut used: HashMap<u8, String> = HashMap::from([(key_id, "auth.key_id".to_owned())]);
        for (i, entry) in raw.accept.iter().flat_map(|a| a.get_ref()).enumerate() {
            let prefix = format!("auth.accept[{i}]");
            let e = entry.get_ref();
            let id: u8 = self.int(Some(&e.id), &format!("{prefix}.id"), KEY_ID_RANGE, 0, "")?;
            if let Some(other) = used.get(&id) {
                return Err(self.invalid(
                    e.id.span(),
                    format!("{prefix}.id"),
                    format!("key id {id} is already used by {other} (expected a different id for each key)"),
                ));
            }
            used.insert(id, format!("{prefix}.id"));
            let secret =
                self.key_material(&prefix, &e.key, &e.key_file, Some(entry.span()), warnings)?;
            accept.push(KeySpec { id, secret });
        }

        Ok(Auth::Psk {
            send,
            accept,
            window_secs,
            replay_capacity,
        })
    }

    /// One key written as `key` (inline hex) or `key_file`, under `prefix`.
    fn key_material(
        &self,
        prefix: &str,
        key: &Field<String>,
        key_file: &Field<String>,
        header: Option<Range<usize>>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Secret, ConfigError> {
        match (key, key_file) {
            (Some(_), Some(file)) => Err(self.invalid(
                file.span(),
                format!("{prefix}.key_file"),
                format!("is set together with {prefix}.key (expected exactly one of key and key_file)"),
            )),
            (None, None) => Err(self.missing(
                header,
                format!("{prefix}.key"),
                format!(
                    "required when auth.mode = \"psk\" (expected key = \"<64 hex digits>\" or key_file = \"/etc/mpbridge/key\"; {GENKEY_HINT})"
                ),
            )),
            (Some(key), None) => {
                let bytes = decode_key(key.get_ref())
                    .map_err(|p| self.invalid(key.span(), format!("{prefix}.key"), p))?;
                if let Some(mode) = self.mode.filter(|m| m & 0o077 != 0) {
                    let warning = Warning(format!(
                        "{0} holds a key inline and is readable by others (mode {1:04o}); run chmod 600 {0}, or move the key into a key_file",
                        self.path.display(),
                        mode & 0o7777
                    ));
                    if !warnings.contains(&warning) {
                        warnings.push(warning);
                    }
                }
                Ok(Secret::new(bytes))
            }
            (None, Some(file)) => {
                let field = format!("{prefix}.key_file");
                if file.get_ref().is_empty() {
                    return Err(self.invalid(
                        file.span(),
                        field,
                        "is empty (expected a path, e.g. \"/etc/mpbridge/key\")",
                    ));
                }
                // Relative key files are relative to the config file's directory.
                let base = self.path.parent().unwrap_or(Path::new(""));
                read_key_file(&base.join(file.get_ref()), &field, warnings)
            }
        }
    }

    fn local_with(
        &self,
        ov: &Overrides,
        common: &Common,
        warnings: &mut Vec<Warning>,
    ) -> Result<LocalSettings, ConfigError> {
        let (raw, header) = section(&self.raw.local);
        let listen = match &ov.listen {
            Some(addrs) => cli_addrs(addrs, FLAG_LISTEN, AddrUse::Listen)?,
            None => self.addrs(&raw.listen, "local.listen", AddrUse::Listen)?,
        }
        .unwrap_or_else(|| unspecified_on(DEFAULT_LOCAL_PORT));
        let intercept = match (ov.intercept, &raw.intercept) {
            (Some(i), _) => i,
            (None, Some(s)) => s.get_ref().parse().map_err(|e: ParseInterceptError| {
                self.invalid(s.span(), "local.intercept", e.to_string())
            })?,
            (None, None) => Intercept::Tproxy,
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
            intercept,
            remotes,
            connect_timeout: self.millis(
                &raw.connect_timeout_ms,
                "local.connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            reply_timeout: self.millis(
                &raw.reply_timeout_ms,
                "local.reply_timeout_ms",
                DEFAULT_REPLY_TIMEOUT_MS,
            )?,
            mptcp: raw.mptcp.as_ref().is_none_or(|b| *b.get_ref()),
            fastopen: raw.fastopen.as_ref().is_none_or(|b| *b.get_ref()),
            fastopen_rcvbuf: self.int(
                raw.fastopen_rcvbuf.as_ref(),
                "local.fastopen_rcvbuf",
                FASTOPEN_RCVBUF_RANGE,
                DEFAULT_FASTOPEN_RCVBUF,
                " bytes",
            )?,
            interception: self.interception(&raw)?,
            auth: common.auth.clone(),
            limits: common.limits.clone(),
            paths,
            control: self.control(
                Role::Local,
                &raw.control_socket,
                &raw.metrics_listen,
                warnings,
            )?,
            log_level: common.log_level.clone(),
        })
    }

    fn remote_with(
        &self,
        ov: &Overrides,
        common: &Common,
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
            header_timeout: self.millis(
                &raw.header_timeout_ms,
                "remote.header_timeout_ms",
                DEFAULT_HEADER_TIMEOUT_MS,
            )?,
            connect_timeout: self.millis(
                &raw.connect_timeout_ms,
                "remote.connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            policy: DestPolicy {
                allow: self.cidrs(&raw.allow, "remote.allow")?,
                deny: self.cidrs(&raw.deny, "remote.deny")?,
                allow_loopback,
            },
            fastopen_rcvbuf: self.int(
                raw.fastopen_rcvbuf.as_ref(),
                "remote.fastopen_rcvbuf",
                FASTOPEN_RCVBUF_RANGE,
                DEFAULT_FASTOPEN_RCVBUF,
                " bytes",
            )?,
            auth: common.auth.clone(),
            limits: common.limits.clone(),
            paths,
            control: self.control(
                Role::Remote,
                &raw.control_socket,
                &raw.metrics_listen,
                warnings,
            )?,
            log_level: common.log_level.clone(),
        })
    }

    /// `[[link]]`, `[probe]` and `[paths]`; `default_port` is the remote's
    /// TCP port, where probes go unless `probe.port` says otherwise; `role`
    /// chooses the default of `paths.routes`.
    fn paths(&self, default_port: u16, role: Role) -> Result<PathSettings, ConfigError> {
        let mut links: Vec<LinkConfig> = Vec::new();
        let raw_links = self.raw.link.as_ref();
        if let Some(list) = raw_links {
            if list.get_ref().len() > MAX_LINKS {
                return Err(self.invalid(
                    list.get_ref()[MAX_LINKS].span(),
                    format!("link[{MAX_LINKS}]"),
                    format!("too many links (expected at most {MAX_LINKS}, the kernel's MPTCP subflow limit)"),
                ));
            }
        }
        for (i, entry) in raw_links.iter().flat_map(|l| l.get_ref()).enumerate() {
            let raw = entry.get_ref();
            let name = raw.interface.get_ref();
            let field = format!("link[{i}].interface");
            check_ifname(name).map_err(|p| self.invalid(raw.interface.span(), &field, p))?;
            if let Some(j) = links.iter().position(|l| &l.interface == name) {
                return Err(self.invalid(
                    raw.interface.span(),
                    field,
                    format!("\"{name}\" is already link[{j}] (expected each interface once)"),
                ));
            }
            let peers = match &raw.peer {
                None => Vec::new(),
                Some(v) => parse_peers(v.get_ref())
                    .map_err(|p| self.invalid(v.span(), format!("link[{i}].peer"), p))?,
            };
            let rate_mbit = match &raw.rate_mbit {
                None => None,
                Some(r) => Some(self.int(
                    Some(r),
                    &format!("link[{i}].rate_mbit"),
                    RATE_MBIT_RANGE,
                    0,
                    " Mbit/s",
                )?),
            };
            links.push(LinkConfig {
                interface: name.clone(),
                peers,
                backup: raw.backup.as_ref().is_some_and(|b| *b.get_ref()),
                rate_mbit,
            });
        }
        // Weights compare rates: a link without one has nothing to compare.
        if let Some(rated) = links.iter().position(|l| l.rate_mbit.is_some()) {
            if let Some(i) = links.iter().position(|l| l.rate_mbit.is_none()) {
                let entry = &raw_links.expect("links were read").get_ref()[i];
                return Err(self.invalid(
                    entry.span(),
                    format!("link[{i}].rate_mbit"),
                    format!(
                        "required because link[{rated}] sets one (expected a rate on every link, \
                         so the routes can weigh them, or on none for equal shares)"
                    ),
                ));
            }
        }

        let (probe, _) = section(&self.raw.probe);
        let down_action = match &probe.down_action {
            None => DownAction::Remove,
            Some(s) => match s.get_ref().as_str() {
                "remove" => DownAction::Remove,
                "backup" => DownAction::Backup,
                other => {
                    return Err(self.invalid(
                        s.span(),
                        "probe.down_action",
                        format!(
                            "\"{other}\" is not a down action (expected \"remove\" or \"backup\")"
                        ),
                    ))
                }
            },
        };
        let probe = ProbeConfig {
            enabled: probe.enabled.as_ref().is_none_or(|b| *b.get_ref()),
            interval: Duration::from_millis(self.int(
                probe.interval_ms.as_ref(),
                "probe.interval_ms",
                PROBE_INTERVAL_MS_RANGE,
                DEFAULT_PROBE_INTERVAL_MS,
                " milliseconds",
            )?),
            down_after: self.int(
                probe.down_after.as_ref(),
                "probe.down_after",
                PROBE_COUNT_RANGE,
                DEFAULT_DOWN_AFTER,
                " probes",
            )?,
            up_after: self.int(
                probe.up_after.as_ref(),
                "probe.up_after",
                PROBE_COUNT_RANGE,
                DEFAULT_UP_AFTER,
                " probes",
            )?,
            port: self.int(
                probe.port.as_ref(),
                "probe.port",
                PORT_RANGE,
                i64::from(default_port.max(1)),
                "",
            )?,
            down_action,
        };
        let (paths, _) = section(&self.raw.paths);
        let routes = self.routes(&paths, role)?;
        Ok(PathSettings {
            links,
            probe,
            table_base: self.int(
                paths.table_base.as_ref(),
                "paths.table_base",
                TABLE_BASE_RANGE,
                DEFAULT_TABLE_BASE,
                "",
            )?,
            rule_priority: self.int(
                paths.rule_priority.as_ref(),
                "paths.rule_priority",
                RULE_PRIORITY_RANGE,
                DEFAULT_RULE_PRIORITY,
                "",
            )?,
            routes,
        })
    }

    /// `paths.routes`, `route_table`, `route_metric` and `nexthop_base`.
    fn routes(&self, raw: &RawPaths, role: Role) -> Result<RouteSettings, ConfigError> {
        let prefixes = match &raw.routes {
            None => match role {
                Role::Local => DEFAULT_LOCAL_ROUTES
                    .iter()
                    .map(|p| p.parse().expect("a valid default prefix"))
                    .collect(),
                Role::Remote => Vec::new(),
            },
            Some(v) => {
                parse_routes(v.get_ref()).map_err(|(field, p)| self.invalid(v.span(), field, p))?
            }
        };
        let table: u32 = self.int(
            raw.route_table.as_ref(),
            "paths.route_table",
            ROUTE_TABLE_RANGE,
            DEFAULT_ROUTE_TABLE,
            "",
        )?;
        if i64::from(table) == LOCAL_TABLE {
            let span = raw.route_table.as_ref().map_or(0..0, |t| t.span());
            return Err(self.invalid(
                span,
                "paths.route_table",
                "255 is the kernel's table of local addresses (expected e.g. 254, the main table)",
            ));
        }
        let metric = match &raw.route_metric {
            None => None,
            Some(m) => Some(self.int(Some(m), "paths.route_metric", ROUTE_METRIC_RANGE, 0, "")?),
        };
        Ok(RouteSettings {
            prefixes,
            table,
            metric,
            nexthop_base: self.int(
                raw.nexthop_base.as_ref(),
                "paths.nexthop_base",
                NEXTHOP_BASE_RANGE,
                DEFAULT_NEXTHOP_BASE,
                "",
            )?,
        })
    }

    /// `role`'s control socket: `control_socket` of its section, or the default.
    fn control_socket(
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
    fn control(
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

    // --- field helpers -----------------------------------------------------

    fn location(&self, span: Range<usize>) -> Location {
        if self.exists {
            file_location(&self.path, &self.text, span.start)
        } else {
            Location::Path(self.path.clone())
        }
    }

    fn invalid(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            at: self.location(span),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A required value with nothing to point at: the section header, else line 1.
    fn missing(
        &self,
        header: Option<Range<usize>>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        let mut problem = problem.into();
        if !self.exists {
            problem.push_str(
                "; this file does not exist: create it or give the value on the command line",
            );
        }
        self.invalid(header.unwrap_or(0..0), field, problem)
    }

    /// An integer within `range`, converted to the type the settings use.
    fn int<T: TryFrom<i64>>(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        range: RangeInclusive<i64>,
        default: i64,
        unit: &str,
    ) -> Result<T, ConfigError> {
        let (n, span) = value.map_or((default, 0..0), |v| (*v.get_ref(), v.span()));
        match T::try_from(n) {
            Ok(t) if range.contains(&n) => Ok(t),
            _ => Err(self.invalid(
                span,
                field,
                format!(
                    "{n} is out of range (expected {}..={}{unit})",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn millis(
        &self,
        value: &Field<i64>,
        field: &str,
        default: i64,
    ) -> Result<Duration, ConfigError> {
        let ms: u64 = self.int(
            value.as_ref(),
            field,
            TIMEOUT_MS_RANGE,
            default,
            " milliseconds",
        )?;
        Ok(Duration::from_millis(ms))
    }

    /// A non-empty address list, or `None` when the key is absent.
    fn addrs(
        &self,
        list: &List,
        field: &str,
        usage: AddrUse,
    ) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
        let Some(list) = list else { return Ok(None) };
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                field,
                format!(
                    "is empty (expected at least one address, e.g. [\"{}\"])",
                    usage.example()
                ),
            ));
        }
        let addrs = list
            .get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_socket_addr(s.get_ref(), usage)
                    .map_err(|p| self.invalid(s.span(), format!("{field}[{i}]"), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(addrs))
    }

    fn cidrs(&self, list: &List, field: &str) -> Result<Vec<IpNet>, ConfigError> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        list.get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_cidr(s.get_ref())
                    .map_err(|p| self.invalid(s.span(), format!("{field}[{i}]"), p))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Value parsers (each returns the problem text on failure)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum AddrUse {
    /// A local address to bind: any IP, port 0 allowed.
    Listen,
    /// A peer to dial: a unicast IP and a non-zero port.
    Connect,
}

impl AddrUse {
    fn example(self) -> &'static str {
        match self {
            AddrUse::Listen => "0.0.0.0:4443",
            AddrUse::Connect => "192.0.2.2:4443",
        }
    }
}

fn unspecified_on(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    ]
}

fn check_socket_addr(addr: SocketAddr, usage: AddrUse) -> Result<SocketAddr, String> {
    if let AddrUse::Connect = usage {
        if addr.port() == 0 {
            return Err(format!(
                "{addr} has port 0 (expected the remote's port, e.g. \"192.0.2.2:4443\")"
            ));
        }
        let ip = addr.ip().to_canonical();
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{addr} cannot be connected to (expected a unicast address, e.g. \"192.0.2.2:4443\")"));
        }
    }
    Ok(addr)
}

fn parse_socket_addr(s: &str, usage: AddrUse) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return check_socket_addr(addr, usage);
    }
    let example = usage.example();
    let hint = if s.parse::<IpAddr>().is_ok() {
        if s.contains(':') {
            "is an IPv6 address without brackets and port"
        } else {
            "has no port"
        }
    } else {
        "is not an IP address and port; host names are not resolved"
    };
    Err(format!(
        "\"{s}\" {hint} (expected e.g. \"{example}\" or \"[2001:db8::2]:4443\")"
    ))
}

fn cli_addrs(
    addrs: &[SocketAddr],
    flag: &str,
    usage: AddrUse,
) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
    if addrs.is_empty() {
        return Err(ConfigError::command_line(
            flag,
            format!(
                "no address given (expected e.g. {flag} {})",
                usage.example()
            ),
        ));
    }
    addrs
        .iter()
        .map(|a| check_socket_addr(*a, usage).map_err(|p| ConfigError::command_line(flag, p)))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A CIDR prefix, or a bare address meaning that one host. IPv4-mapped IPv6
/// prefixes become IPv4 ones, since destinations are judged as IPv4.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net = match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
        (Ok(net), _) => net,
        (_, Ok(ip)) => IpNet::from(ip),
        _ => {
            return Err(format!(
                "\"{s}\" is not a CIDR prefix (expected e.g. \"10.0.0.0/8\" or \"fd00::/8\")"
            ))
        }
    };
    if net.trunc() != net {
        return Err(format!(
            "\"{s}\" has bits set after the prefix length (expected \"{}\")",
            net.trunc()
        ));
    }
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.network().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(mapped) = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96) {
                return Ok(mapped);
            }
        }
    }
    Ok(net)
}

/// A control socket path: absolute and short enough for `sun_path`, or
/// empty (no control socket).
fn check_socket_path(path: &str) -> Result<Option<PathBuf>, String> {
    if path.is_empty() {
        return Ok(None);
    }
    if !path.starts_with('/') {
        return Err(format!(
            "\"{path}\" is not an absolute path (expected e.g. \"/run/mpbridge/local.sock\", or \
             \"\" for no control socket)"
        ));
    }
    if path.contains('\0') {
        return Err("contains a NUL character (expected a path)".to_owned());
    }
    if path.len() > MAX_SOCKET_PATH_LEN {
        return Err(format!(
            "\"{path}\" is {} bytes long (expected at most {MAX_SOCKET_PATH_LEN}, the limit of a \
             Unix socket path)",
            path.len()
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

/// An interface name the kernel would accept.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "is empty (expected an interface name, e.g. \"wan0\" or \"br-lan\")".to_owned(),
        );
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "\"{name}\" is {} bytes long (expected at most {MAX_IFNAME_LEN})",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "\"{name}\" is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// `peer`: one address, or an array of at most one address per family.
fn parse_peers(value: &toml::Value) -> Result<Vec<IpAddr>, String> {
    const EXPECTED: &str =
        "expected an address, e.g. \"10.20.0.2\", or one per family, e.g. [\"10.20.0.2\", \"fd00:20::2\"]";
    let items: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut peers: Vec<IpAddr> = Vec::new();
    for item in items {
        let Some(text) = item.as_str() else {
            return Err(format!("found {} ({EXPECTED})", item.type_str()));
        };
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address ({EXPECTED})"))?;
        let ip = ip.to_canonical();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(format!("\"{text}\" cannot be a next hop ({EXPECTED})"));
        }
        if peers.iter().any(|p| p.is_ipv4() == ip.is_ipv4()) {
            return Err(format!(
                "\"{text}\": two peers of one family (expected at most one IPv4 and one IPv6 address)"
            ));
        }
        peers.push(ip);
    }
    if peers.is_empty() {
        return Err(format!("is empty ({EXPECTED})"));
    }
    Ok(peers)
}

/// `paths.routes`: an array of prefixes, or "none". The error names the
/// field (`paths.routes[1]`) and the problem.
fn parse_routes(value: &toml::Value) -> Result<Vec<IpNet>, (String, String)> {
    const EXPECTED: &str = "expected prefixes, e.g. [\"0.0.0.0/0\", \"::/0\"], or \"none\"";
    let field = "paths.routes";
    let items = match value {
        toml::Value::String(s) if s == "none" => return Ok(Vec::new()),
        toml::Value::Array(items) => items,
        toml::Value::String(s) => {
            return Err((field.into(), format!("\"{s}\" is not a list ({EXPECTED})")))
        }
        other => {
            return Err((
                field.into(),
                format!("found {} ({EXPECTED})", other.type_str()),
            ))
        }
    };
    if items.is_empty() {
        return Err((field.into(), format!("is empty ({EXPECTED})")));
    }
    let mut prefixes: Vec<IpNet> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(text) = item.as_str() else {
            return Err((at, format!("found {} ({EXPECTED})", item.type_str())));
        };
        let net = parse_cidr(text).map_err(|p| (at.clone(), p))?;
        let addr = net.addr();
        if addr.is_multicast() || (addr.is_loopback() && net.prefix_len() > 0) {
            return Err((
                at,
                format!("\"{text}\" cannot be routed to a peer ({EXPECTED})"),
            ));
        }
        if prefixes.contains(&net) {
            return Err((at, format!("\"{text}\" is listed twice")));
        }
        prefixes.push(net);
    }
    Ok(prefixes)
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!(
            "\"{s}\" is not a log level (expected one of {})",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// Hex text to key bytes. The problem text never quotes the key.
fn decode_key(hex_text: &str) -> Result<Vec<u8>, String> {
    if hex_text.is_empty() {
        return Err(format!(
            "key is empty (expected at least {} hex digits; {GENKEY_HINT})",
            2 * MIN_KEY_LEN
        ));
    }
    if let Some(i) = hex_text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "key is not hex: character {} is not 0-9 or a-f (expected at least {} hex digits; {GENKEY_HINT})",
            i + 1,
            2 * MIN_KEY_LEN
        ));
    }
    let bytes = hex::decode(hex_text).map_err(|_| {
        format!(
            "key has an odd number of hex digits ({}) (expected two per byte; {GENKEY_HINT})",
            hex_text.len()
        )
    })?;
    if bytes.len() < MIN_KEY_LEN {
        return Err(format!(
            "key is {} bytes, at least {MIN_KEY_LEN} are needed ({GENKEY_HINT})",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Reads a file holding a hex key; warns when group or others may open it.
fn read_key_file(
    path: &Path,
    field: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Secret, ConfigError> {
    let fail = |problem: String| ConfigError::Invalid {
        at: Location::Path(path.to_owned()),
        field: field.to_owned(),
        problem,
    };
    let cannot_read = |e: io::Error| fail(format!("cannot read: {}", io_reason(&e)));
    let file = File::open(path).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    if !meta.is_file() {
        return Err(fail(
            "is not a regular file (expected a file holding the key as hex)".to_owned(),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = if mode & 0o044 != 0 {
            "readable"
        } else {
            "accessible"
        };
        warnings.push(Warning(format!(
            "{0} is {what} by others (mode {mode:04o}); run chmod 600 {0}",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(cannot_read)?;
    decode_key(text.trim()).map(Secret::new).map_err(fail)
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Positions and serde messages
// ---------------------------------------------------------------------------

fn file_location(path: &Path, text: &str, offset: usize) -> Location {
    let (line, col) = line_col(text, offset);
    Location::File {
        path: path.to_owned(),
        line,
        col,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The dotted path (`auth.accept[1].id`) of the smallest key or value whose
/// span holds `target`; toml's errors carry a span but not the path.
fn find_path(doc: &DeTable<'_>, target: &Range<usize>) -> Option<String> {
    let mut best = None;
    walk_table(doc, "", target, &mut best);
    best.map(|(_, path)| path)
}

fn consider(
    span: Range<usize>,
    path: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    if span.start <= target.start && target.end <= span.end {
        let len = span.end - span.start;
        let better = match best {
            Some((best_len, best_path)) => {
                len < *best_len || (len == *best_len && path.len() > best_path.len())
            }
            None => true,
        };
        if better {
            *best = Some((len, path.to_owned()));
        }
    }
}

fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), &path, target, best);
        walk_value(value, &path, target, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), path, target, best);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, target, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), target, best);
            }
        }
        _ => {}
    }
}

/// Turns a serde message into (field, problem) in the house style.
fn explain(path: Option<String>, message: &str) -> (String, String) {
    let backticked =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = backticked(tail);
        let problem = if expected.is_empty() {
            "unknown field".to_owned()
        } else {
            format!("unknown field (expected one of {})", expected.join(", "))
        };
        return (path.unwrap_or_else(|| name.to_owned()), problem);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let field = match path {
            Some(p) => format!("{p}.{name}"),
            None => name.to_owned(),
        };
        let example = if name == "interface" { "\"wan0\"" } else { "2" };
        return (
            field,
            format!("required (expected e.g. {name} = {example})"),
        );
    }
    let field = path.unwrap_or_else(|| "(document)".to_owned());
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        let found = match found {
            "map" => "a table",
            "sequence" => "an array",
            other => other,
        };
        let expected = match expected {
            "i64" | "u64" | "i32" | "u32" | "u8" | "usize" => "an integer".to_owned(),
            "a sequence"
                if found == "a table" && (field.ends_with("accept") || field == "link") =>
            {
                format!("an array of tables: write [[{field}]]")
            }
            "a sequence" => "an array".to_owned(),
            e if e.starts_with("struct ") => "a table".to_owned(),
            e => e.to_owned(),
        };
        return (field, format!("found {found} (expected {expected})"));
    }
    (field, message.to_owned())
}

// ---------------------------------------------------------------------------
// Interception rules ([local] firewall, lan_interfaces, bypass)
// ---------------------------------------------------------------------------

/// The LAN interface intercepted when `local.lan_interfaces` is absent:
/// OpenWrt's LAN bridge.
pub const DEFAULT_LAN_INTERFACE: &str = "br-lan";

/// Who manages the rules that divert client TCP to `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallMode {
    /// The daemon's own nftables table `inet mpbridge` (and, for TPROXY,
    /// its fwmark rule and local route), gone when the daemon is.
    Nftables,
    /// The system's firewall (e.g. OpenWrt fw4 includes); see docs/FIREWALL.md.
    None,
}

/// What `mpbridge local` diverts, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interception {
    pub firewall: FirewallMode,
    /// TCP arriving on these interfaces is diverted; never empty with
    /// [`FirewallMode::Nftables`].
    pub lan_interfaces: Vec<String>,
    /// Destinations never diverted (besides the remotes and this host's
    /// own addresses and subnets). Reread on SIGHUP.
    pub bypass: Vec<IpNet>,
}

impl Default for Interception {
    fn default() -> Self {
        Interception {
            firewall: FirewallMode::Nftables,
            lan_interfaces: vec![DEFAULT_LAN_INTERFACE.to_owned()],
            bypass: Vec::new(),
        }
    }
}

impl ConfigFile {
    fn interception(&self, raw: &RawLocal) -> Result<Interception, ConfigError> {
        let firewall = match &raw.firewall {
            None => FirewallMode::Nftables,
            Some(s) => match s.get_ref().as_str() {
                "nftables" => FirewallMode::Nftables,
                "none" => FirewallMode::None,
                other => {
                    return Err(self.invalid(
                        s.span(),
                        "local.firewall",
                        format!(
                            "\"{other}\" is not a firewall mode (expected \"nftables\" or \"none\")"
                        ),
                    ))
                }
            },
        };
        let lan_interfaces = match &raw.lan_interfaces {
            None => vec![DEFAULT_LAN_INTERFACE.to_owned()],
            Some(list) => {
                if list.get_ref().is_empty() && firewall == FirewallMode::Nftables {
                    return Err(self.invalid(
                        list.span(),
                        "local.lan_interfaces",
                        "is empty (expected the interfaces whose TCP is diverted, e.g. [\"br-lan\"], \
                         or firewall = \"none\")",
                    ));
                }
                let mut names: Vec<String> = Vec::new();
                for (i, name) in list.get_ref().iter().enumerate() {
                    let field = format!("local.lan_interfaces[{i}]");
                    check_ifname(name.get_ref())
                        .map_err(|p| self.invalid(name.span(), &field, p))?;
                    if names.contains(name.get_ref()) {
                        return Err(self.invalid(
                            name.span(),
                            field,
                            format!("\"{}\" is listed twice", name.get_ref()),
                        ));
                    }
                    names.push(name.get_ref().clone());
                }
                names
            }
        };
        Ok(Interception {
            firewall,
            lan_interfaces,
            bypass: self.cidrs(&raw.bypass, "local.bypass")?,
        })
    }
}

#[cfg(test)]
mod interception_tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn local(extra: &str) -> Result<LocalSettings, ConfigError> {
        let text =
            format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n{extra}\n");
        parse_str(&text, Path::new("/etc/mpbridge/mpbridge.toml"))?
            .local(&Overrides::default())
            .map(|(s, _)| s)
    }

    #[test]
    fn defaults_are_our_own_table_on_br_lan_without_bypass() {
        let s = local("").unwrap();
        assert_eq!(s.interception, Interception::default());
        assert_eq!(s.interception.lan_interfaces, vec!["br-lan".to_owned()]);
        assert_eq!(s.interception.firewall, FirewallMode::Nftables);
    }

    #[test]
    fn values_are_read() {
        let s = local(
            "firewall = \"none\"\nlan_interfaces = [\"lan0\", \"wlan0\"]\n\
             bypass = [\"10.30.0.0/24\", \"fd00:30::/64\", \"192.0.2.7\"]",
        )
        .unwrap();
        let i = s.interception;
        assert_eq!(i.firewall, FirewallMode::None);
        assert_eq!(i.lan_interfaces, vec!["lan0", "wlan0"]);
        assert_eq!(
            i.bypass,
            vec![
                "10.30.0.0/24".parse::<IpNet>().unwrap(),
                "fd00:30::/64".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        // With the system's firewall, no LAN interface is needed.
        assert!(local("firewall = \"none\"\nlan_interfaces = []").is_ok());
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases = [
            (
                "firewall = \"iptables\"",
                "/etc/mpbridge/mpbridge.toml:5:12: local.firewall: ",
                "(expected \"nftables\" or \"none\")",
            ),
            (
                "lan_interfaces = []",
                "/etc/mpbridge/mpbridge.toml:5:18: local.lan_interfaces: ",
                "is empty",
            ),
            (
                "lan_interfaces = [\"lan0\", \"a-very-long-interface\"]",
                "/etc/mpbridge/mpbridge.toml:5:27: local.lan_interfaces[1]: ",
                "at most 15",
            ),
            (
                "lan_interfaces = [\"lan 0\"]",
                "/etc/mpbridge/mpbridge.toml:5:19: local.lan_interfaces[0]: ",
                "not a valid interface name",
            ),
            (
                "lan_interfaces = [\"lan0\", \"lan0\"]",
                "/etc/mpbridge/mpbridge.toml:5:27: local.lan_interfaces[1]: ",
                "listed twice",
            ),
            (
                "bypass = [\"10.0.0.0/33\"]",
                "/etc/mpbridge/mpbridge.toml:5:11: local.bypass[0]: ",
                "not a CIDR prefix",
            ),
            (
                "bypass = [\"10.0.0.1/8\"]",
                "/etc/mpbridge/mpbridge.toml:5:11: local.bypass[0]: ",
                "(expected \"10.0.0.0/8\")",
            ),
            (
                "bypass = \"10.0.0.0/8\"",
                "/etc/mpbridge/mpbridge.toml:5:10: local.bypass: ",
                "expected an array",
            ),
        ];
        for (extra, prefix, problem) in cases {
            let e = local(extra).expect_err(extra).to_string();
            assert!(
                e.starts_with(prefix),
                "{extra}: {e:?} should start with {prefix:?}"
            );
            assert!(
                e.contains(problem),
                "{extra}: {e:?} should contain {problem:?}"
            );
            assert_eq!(local(extra).unwrap_err().exit_code(), EX_CONFIG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ORIGIN: &str = "/etc/mpbridge/mpbridge.toml";
    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const KEY2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        parse_str(text, Path::new(ORIGIN))
    }

    fn local(text: &str) -> Result<(LocalSettings, Vec<Warning>), ConfigError> {
        parse(text)?.local(&Overrides::default())
    }

    fn remote(text: &str) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
        parse(text)?.remote(&Overrides::default())
    }

    fn error_text<T>(r: Result<T, ConfigError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    /// A file under the temp dir with a unique name, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str, mode: u32) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "mpbridge-config-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn psk(auth: &Auth) -> (&KeySpec, &[KeySpec], u64, usize) {
        match auth {
            Auth::Psk {
                send,
                accept,
                window_secs,
                replay_capacity,
            } => (send, accept, *window_secs, *replay_capacity),
            Auth::None => panic!("expected psk"),
        }
    }

    #[test]
    fn minimal_local_config_parses_with_defaults() {
        let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
        let (s, warnings) = local(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.listen, unspecified_on(12345));
        assert_eq!(s.intercept, Intercept::Tproxy);
        assert_eq!(s.remotes, vec!["192.0.2.2:4443".parse().unwrap()]);
        assert_eq!(s.connect_timeout, Duration::from_millis(5000));
        assert_eq!(s.reply_timeout, Duration::from_millis(10000));
        assert!(s.mptcp && s.fastopen);
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.limits.max_connections, 4096);
        assert_eq!(s.limits.drain, Duration::from_secs(10));
        assert_eq!(s.limits.pipe_size, 262_144);
        assert_eq!(s.log_level, "info");
        assert_eq!(
            s.control,
            ControlSettings {
                socket: Some(PathBuf::from("/run/mpbridge/local.sock")),
                metrics_listen: None,
            }
        );
        let (send, accept, window, replay) = psk(&s.auth);
        assert_eq!(send.id, 1);
        assert_eq!(hex::encode(send.secret.expose()), KEY);
        assert_eq!(accept.len(), 1);
        assert_eq!(accept[0].id, 1);
        assert_eq!((window, replay), (60, 65536));
    }

    #[test]
    fn minimal_remote_config_parses_with_defaults() {
        let text = format!("[auth]\nkey = \"{KEY}\"\n");
        let (s, warnings) = remote(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.listen, unspecified_on(4443));
        assert_eq!(s.header_timeout, Duration::from_millis(5000));
        assert_eq!(s.connect_timeout, Duration::from_millis(5000));
        assert_eq!(s.policy, DestPolicy::default());
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.log_level, "info");
        assert_eq!(
            s.control.socket,
            Some(PathBuf::from("/run/mpbridge/remote.sock"))
        );
        assert_eq!(s.control.metrics_listen, None);
        psk(&s.auth);
    }

    #[test]
    fn control_sockets_are_read_per_role_and_can_be_turned_off() {
        let text = format!(
            "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n\
             control_socket = \"/tmp/a/l.sock\"\n[remote]\ncontrol_socket = \"\"\n"
        );
        let (l, _) = local(&text).unwrap();
        assert_eq!(l.control.socket, Some(PathBuf::from("/tmp/a/l.sock")));
        let (r, _) = remote(&text).unwrap();
        assert_eq!(r.control.socket, None);
        // `mpbridge status` reads both without the rest being valid.
        let sockets = parse("[local]\ncontrol_socket = \"/x.sock\"\n[auth]\nkey_id = 1\n")
            .unwrap()
            .control_sockets()
            .unwrap();
        assert_eq!(
            sockets,
            vec![
                (Role::Local, Some(PathBuf::from("/x.sock"))),
                (
                    Role::Remote,
                    Some(PathBuf::from("/run/mpbridge/remote.sock"))
                ),
            ]
        );
    }

    #[test]
    fn metrics_listen_needs_the_metrics_feature() {
        let text =
            format!("[auth]\nkey = \"{KEY}\"\n[remote]\nmetrics_listen = \"127.0.0.1:9410\"\n");
        if cfg!(feature = "metrics") {
            let (r, warnings) = remote(&text).unwrap();
            assert_eq!(
                r.control.metrics_listen,
                Some("127.0.0.1:9410".parse().unwrap())
            );
            assert!(warnings.is_empty(), "{warnings:?}");
            let open = text.replace("127.0.0.1", "0.0.0.0");
            let (_, warnings) = remote(&open).unwrap();
            assert!(
                warnings
                    .iter()
                    .any(|w| w.0.contains("without authentication")),
                "{warnings:?}"
            );
        } else {
            let message = error_text(remote(&text));
            assert!(
                message.starts_with(&format!("{ORIGIN}:4:18: remote.metrics_listen: ")),
                "{message}"
            );
            assert!(
                message.contains("without the `metrics` feature"),
                "{message}"
            );
        }
    }

    #[test]
    fn every_value_in_the_file_is_used() {
        let text = format!(
            "[auth]\nkey_id = 7\nkey = \"{KEY}\"\nwindow_secs = 30\nreplay_cache = 100\n\
             [[auth.accept]]\nid = 8\nkey = \"{KEY2}\"\n\
             [local]\nlisten = [\"127.0.0.1:0\"]\nintercept = \"redirect\"\n\
             remotes = [\"192.0.2.2:4443\", \"[2001:db8::2]:4443\"]\nconnect_timeout_ms = 100\n\
             reply_timeout_ms = 200\nmptcp = false\nfastopen = false\n\
             [remote]\nlisten = [\"[::1]:0\"]\nheader_timeout_ms = 300\nconnect_timeout_ms = 400\n\
             allow = [\"10.0.0.0/8\", \"192.0.2.1\"]\ndeny = [\"::ffff:10.1.0.0/112\"]\nallow_loopback = false\n\
             [limits]\nmax_connections = 5\ndrain_secs = 0\npipe_size = 4096\n[log]\nlevel = \"DEBUG\"\n"
        );
        let (l, _) = local(&text).unwrap();
        assert_eq!(l.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(l.intercept, Intercept::Redirect);
        assert_eq!(l.remotes.len(), 2);
        assert_eq!(l.connect_timeout, Duration::from_millis(100));
        assert_eq!(l.reply_timeout, Duration::from_millis(200));
        assert!(!l.mptcp && !l.fastopen);
        assert_eq!(
            l.limits,
            Limits {
                max_connections: 5,
                drain: Duration::ZERO,
                pipe_size: 4096
            }
        );
        assert_eq!(l.log_level, "debug");
        let (send, accept, window, replay) = psk(&l.auth);
        assert_eq!(send.id, 7);
        assert_eq!(accept.iter().map(|k| k.id).collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(hex::encode(accept[1].secret.expose()), KEY2);
        assert_eq!((window, replay), (30, 100));

        let (r, _) = remote(&text).unwrap();
        assert_eq!(r.listen, vec!["[::1]:0".parse().unwrap()]);
        assert_eq!(r.header_timeout, Duration::from_millis(300));
        assert_eq!(r.connect_timeout, Duration::from_millis(400));
        assert_eq!(
            r.policy.allow,
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.1/32".parse().unwrap()
            ]
        );
        assert_eq!(r.policy.deny, vec!["10.1.0.0/16".parse().unwrap()]);
    }

    /// (what, file text, role, exact "file:line:col: field:" prefix, text the problem contains)
    type ErrorCase = (&'static str, String, Role, &'static str, &'static str);

    fn error_cases() -> Vec<ErrorCase> {
        let key = format!("[auth]\nkey = \"{KEY}\"\n");
        vec![
            (
                "relative control socket",
                format!("{key}[remote]\ncontrol_socket = \"run/r.sock\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:18: remote.control_socket: ",
                "\"run/r.sock\" is not an absolute path",
            ),
            (
                "control socket path too long",
                format!(
                    "{key}[local]\nremotes = [\"192.0.2.2:4443\"]\ncontrol_socket = \"/{}\"\n",
                    "s".repeat(107)
                ),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:5:18: local.control_socket: ",
                "is 108 bytes long (expected at most 107",
            ),
            (
                "unknown field",
                format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n\n\n\n[auth.x]\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:8:7: auth.x: ",
                "unknown field (expected one of mode, key_id, key, key_file, window_secs, replay_cache, accept)",
            ),
            (
                "unknown field in a section",
                format!("{key}\n\n\n\ncolour = 1\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:7:1: auth.colour: ",
                "unknown field (expected one of mode, key_id",
            ),
            (
                "unknown section",
                format!("{key}[remtoe]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:2: remtoe: ",
                "unknown field (expected one of auth, local, remote, limits, log, link, probe, paths)",
            ),
            (
                "wrong type",
                format!("{key}key_id = \"one\"\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:3:10: auth.key_id: ",
                "found string \"one\" (expected an integer)",
            ),
            (
                "table where an array of tables belongs",
                format!("{key}[auth.accept]\nid = 2\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:1: auth.accept: ",
                "write [[auth.accept]]",
            ),
            (
                "missing id in an accept entry",
                format!("{key}[[auth.accept]]\nid = 2\nkey = \"{KEY2}\"\n[[auth.accept]]\nkey = \"{KEY2}\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:6:1: auth.accept[1].id: ",
                "required",
            ),
            (
                "syntax error",
                format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:4:28: invalid TOML: ",
                "unclosed array",
            ),
            (
                "bad CIDR",
                format!("{key}[remote]\nallow = [\"10.0.0.0/8\", \"10.0.0/8\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:24: remote.allow[1]: ",
                "\"10.0.0/8\" is not a CIDR prefix (expected e.g. \"10.0.0.0/8\" or \"fd00::/8\")",
            ),
            (
                "CIDR with host bits",
                format!("{key}[remote]\ndeny = [\"10.1.2.3/8\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:9: remote.deny[0]: ",
                "(expected \"10.0.0.0/8\")",
            ),
            (
                "remotes missing, header present",
                format!("{key}[local]\nmptcp = true\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:3:1: local.remotes: ",
                "required for `mpbridge local` (expected e.g. remotes = [\"192.0.2.2:4443\"])",
            ),
            (
                "remotes missing, no section",
                key.clone(),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:1:1: local.remotes: ",
                "required for `mpbridge local`",
            ),
            (
                "remotes empty",
                format!("{key}[local]\nremotes = []\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:4:11: local.remotes: ",
                "is empty",
            ),
            (
                "host name instead of address",
                format!("{key}[local]\nremotes = [\"router-b:4443\"]\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:4:12: local.remotes[0]: ",
                "host names are not resolved",
            ),
            (
                "remote with port 0",
                format!("{key}[local]\nremotes = [\"192.0.2.2:0\"]\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:4:12: local.remotes[0]: ",
                "port 0",
            ),
            (
                "listen address without port",
                format!("{key}[remote]\nlisten = [\"::1\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:11: remote.listen[0]: ",
                "is an IPv6 address without brackets and port",
            ),
            (
                "bad intercept",
                format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\nintercept = \"dnat\"\n"),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:5:13: local.intercept: ",
                "\"dnat\" is not an interception mode (expected \"tproxy\" or \"redirect\")",
            ),
            (
                "timeout out of range",
                format!("{key}[remote]\nheader_timeout_ms = 5\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:21: remote.header_timeout_ms: ",
                "5 is out of range (expected 100..=120000 milliseconds)",
            ),
            (
                "window out of range",
                format!("{key}window_secs = 0\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:15: auth.window_secs: ",
                "0 is out of range (expected 1..=3600 seconds)",
            ),
            (
                "negative limit",
                format!("{key}[limits]\nmax_connections = -1\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:19: limits.max_connections: ",
                "-1 is out of range (expected 1..=1000000 connections)",
            ),
            (
                "pipe too small",
                format!("{key}[limits]\npipe_size = 100\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:13: limits.pipe_size: ",
                "(expected 4096..=16777216 bytes)",
            ),
            (
                "bad log level",
                format!("{key}[log]\nlevel = \"loud\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:9: log.level: ",
                "\"loud\" is not a log level (expected one of error, warn, info, debug, trace)",
            ),
            (
                "bad auth mode",
                format!("{key}mode = \"hmac\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:8: auth.mode: ",
                "(expected \"psk\" or \"none\")",
            ),
            (
                "key and key_file both",
                format!("{key}key_file = \"/etc/mpbridge/key\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:12: auth.key_file: ",
                "expected exactly one of key and key_file",
            ),
            (
                "neither key nor key_file",
                "\n[auth]\nkey_id = 2\n".to_owned(),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:2:1: auth.key: ",
                "required when auth.mode = \"psk\"",
            ),
            (
                "no auth at all",
                "[remote]\n".to_owned(),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:1:1: auth.key: ",
                "mpbridge genkey",
            ),
            (
                "invalid hex",
                "[auth]\nkey = \"00112233445566778899aabbccddeefg\"\n".to_owned(),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
                "key is not hex: character 32 is not 0-9 or a-f",
            ),
            (
                "odd hex length",
                "[auth]\nkey = \"001\"\n".to_owned(),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
                "odd number of hex digits (3)",
            ),
            (
                "short key",
                "[auth]\nkey = \"0011223344556677\"\n".to_owned(),
                Role::Local,
                "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
                "key is 8 bytes, at least 16 are needed (generate one with: mpbridge genkey)",
            ),
            (
                "accept id equal to key_id",
                format!("{key}[[auth.accept]]\nid = 1\nkey = \"{KEY2}\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:6: auth.accept[0].id: ",
                "key id 1 is already used by auth.key_id",
            ),
            (
                "two accept entries with one id",
                format!("{key}[[auth.accept]]\nid = 3\nkey = \"{KEY2}\"\n[[auth.accept]]\nid = 3\nkey = \"{KEY2}\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:7:6: auth.accept[1].id: ",
                "key id 3 is already used by auth.accept[0].id",
            ),
            (
                "accept entry without key",
                format!("{key}[[auth.accept]]\nid = 3\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:1: auth.accept[0].key: ",
                "required",
            ),
            (
                "link interface name too long",
                format!("{key}[[link]]\ninterface = \"wan0\"\n[[link]]\ninterface = \"averyveryverylongname\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:6:13: link[1].interface: ",
                "is 21 bytes long (expected at most 15)",
            ),
            (
                "link interface twice",
                format!("{key}[[link]]\ninterface = \"wan0\"\n[[link]]\ninterface = \"wan0\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:6:13: link[1].interface: ",
                "\"wan0\" is already link[0]",
            ),
            (
                "link without interface",
                format!("{key}[[link]]\nbackup = true\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:1: link[0].interface: ",
                "required (expected e.g. interface = \"wan0\")",
            ),
            (
                "link as a plain table",
                format!("{key}[link]\ninterface = \"wan0\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:1: link: ",
                "write [[link]]",
            ),
            (
                "peer not an address",
                format!("{key}[[link]]\ninterface = \"wan0\"\npeer = \"router-b\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:5:8: link[0].peer: ",
                "\"router-b\" is not an IP address",
            ),
            (
                "two peers of one family",
                format!("{key}[[link]]\ninterface = \"wan0\"\npeer = [\"10.0.0.1\", \"10.0.0.2\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:5:8: link[0].peer: ",
                "two peers of one family",
            ),
            (
                "too many links",
                format!("{key}{}", (0..9).map(|i| format!("[[link]]\ninterface = \"wan{i}\"\n")).collect::<String>()),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:19:1: link[8]: ",
                "too many links (expected at most 8",
            ),
            (
                "probe interval out of range",
                format!("{key}[probe]\ninterval_ms = 5\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:15: probe.interval_ms: ",
                "5 is out of range (expected 10..=10000 milliseconds)",
            ),
            (
                "bad down action",
                format!("{key}[probe]\ndown_action = \"drop\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:15: probe.down_action: ",
                "(expected \"remove\" or \"backup\")",
            ),
            (
                "a rate on some links only",
                format!("{key}[[link]]\ninterface = \"wan0\"\nrate_mbit = 50\n[[link]]\ninterface = \"wan1\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:6:1: link[1].rate_mbit: ",
                "required because link[0] sets one",
            ),
            (
                "a rate of zero",
                format!("{key}[[link]]\ninterface = \"wan0\"\nrate_mbit = 0\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:5:13: link[0].rate_mbit: ",
                "0 is out of range (expected 1..=1000000 Mbit/s)",
            ),
            (
                "routes that are not prefixes",
                format!("{key}[paths]\nroutes = [\"0.0.0.0/0\", \"lan\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:10: paths.routes[1]: ",
                "\"lan\" is not a CIDR prefix",
            ),
            (
                "routes as a word other than none",
                format!("{key}[paths]\nroutes = \"all\"\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:10: paths.routes: ",
                "or \"none\"",
            ),
            (
                "routes listed twice",
                format!("{key}[paths]\nroutes = [\"10.10.0.0/24\", \"10.10.0.0/24\"]\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:10: paths.routes[1]: ",
                "listed twice",
            ),
            (
                "no routes in an empty list",
                format!("{key}[paths]\nroutes = []\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:10: paths.routes: ",
                "is empty",
            ),
            (
                "routes into the local table",
                format!("{key}[paths]\nroute_table = 255\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:15: paths.route_table: ",
                "the kernel's table of local addresses",
            ),
            (
                "table base among the kernel's tables",
                format!("{key}[paths]\ntable_base = 254\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:4:14: paths.table_base: ",
                "254 is out of range (expected 256..=2000000000)",
            ),
            (
                "key id beyond a byte",
                format!("{key}key_id = 256\n"),
                Role::Remote,
                "/etc/mpbridge/mpbridge.toml:3:10: auth.key_id: ",
                "256 is out of range (expected 0..=255)",
            ),
        ]
    }

    #[test]
    fn links_probe_and_paths_parse_with_defaults() {
        let text = format!(
            "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:5000\"]\n\
             [[link]]\ninterface = \"wan0\"\npeer = \"10.20.0.2\"\n\
             [[link]]\ninterface = \"wan1\"\npeer = [\"10.20.1.2\", \"fd00:20:1::2\"]\nbackup = true\n\
             [[link]]\ninterface = \"lte0\"\n"
        );
        let (l, _) = local(&text).unwrap();
        let p = &l.paths;
        assert_eq!(p.links.len(), 3);
        assert_eq!(p.links[0].interface, "wan0");
        assert_eq!(p.links[0].peers, vec![ip("10.20.0.2")]);
        assert!(!p.links[0].backup);
        assert_eq!(p.links[1].peers, vec![ip("10.20.1.2"), ip("fd00:20:1::2")]);
        assert!(p.links[1].backup);
        assert!(p.links[2].peers.is_empty());
        assert!(p.probe.enabled);
        assert_eq!(p.probe.interval, Duration::from_millis(100));
        assert_eq!((p.probe.down_after, p.probe.up_after), (3, 3));
        // Probes go to the remote's port unless told otherwise.
        assert_eq!(p.probe.port, 5000);
        assert_eq!(p.probe.down_action, DownAction::Remove);
        assert_eq!((p.table_base, p.rule_priority), (7700, 7700));
        // Router A routes the default route over the links; router B,
        // which cannot guess router A's LAN, nothing unless told.
        let defaults: Vec<IpNet> = vec![net("0.0.0.0/0"), net("::/0")];
        assert_eq!(p.routes.prefixes, defaults);
        assert_eq!((p.routes.table, p.routes.metric), (254, None));
        assert_eq!(p.routes.nexthop_base, 7700);
        assert!(p.links.iter().all(|l| l.rate_mbit.is_none()));
        // The remote answers on its own listen port.
        let (r, _) = remote(&text).unwrap();
        assert_eq!(r.paths.probe.port, 4443);
        assert_eq!(r.paths.links, p.links);
        assert!(r.paths.routes.prefixes.is_empty());
    }

    #[test]
    fn every_probe_and_paths_value_is_used() {
        let text = format!(
            "[auth]\nkey = \"{KEY}\"\n[probe]\nenabled = false\ninterval_ms = 50\ndown_after = 2\n\
             up_after = 5\nport = 9000\ndown_action = \"backup\"\n[paths]\ntable_base = 300\nrule_priority = 99\n\
             routes = [\"10.10.0.0/24\", \"fd00:10::/64\"]\nroute_table = 100\nroute_metric = 50\n\
             nexthop_base = 900\n[[link]]\ninterface = \"wan0\"\nrate_mbit = 100\n\
             [[link]]\ninterface = \"wan1\"\nrate_mbit = 20\n"
        );
        let (r, _) = remote(&text).unwrap();
        let rates: Vec<Option<u32>> = r.paths.links.iter().map(|l| l.rate_mbit).collect();
        assert_eq!(rates, vec![Some(100), Some(20)]);
        assert_eq!(
            r.paths.probe,
            ProbeConfig {
                enabled: false,
                interval: Duration::from_millis(50),
                down_after: 2,
                up_after: 5,
                port: 9000,
                down_action: DownAction::Backup,
            }
        );
        assert_eq!((r.paths.table_base, r.paths.rule_priority), (300, 99));
        assert_eq!(
            r.paths.routes,
            RouteSettings {
                prefixes: vec![net("10.10.0.0/24"), net("fd00:10::/64")],
                table: 100,
                metric: Some(50),
                nexthop_base: 900,
            }
        );
        // "none" leaves routing to the system, on router A too.
        let none = format!(
            "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\nroutes = \"none\"\n"
        );
        assert!(local(&none).unwrap().0.paths.routes.prefixes.is_empty());
    }

    #[test]
    fn every_error_names_file_line_column_and_field() {
        let cases = error_cases();
        assert!(!cases.is_empty());
        for (what, text, role, prefix, problem) in cases {
            let message = match role {
                Role::Local => error_text(local(&text)),
                Role::Remote => error_text(remote(&text)),
            };
            assert!(
                message.starts_with(prefix),
                "{what}: {message:?} should start with {prefix:?}"
            );
            assert!(
                message.contains(problem),
                "{what}: {message:?} should contain {problem:?}"
            );
            assert!(!message.contains(KEY), "{what}: leaks the key: {message}");
        }
    }

    #[test]
    fn every_file_error_exits_with_ex_config() {
        for (_, text, _, _, _) in error_cases() {
            if let Err(e) = local(&text) {
                assert_eq!(e.exit_code(), 78);
            }
        }
    }

    #[test]
    fn check_validates_every_section_present() {
        let key = format!("[auth]\nkey = \"{KEY}\"\n");
        let both = format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[remote]\n");
        let (roles, _) = parse(&both).unwrap().check().unwrap();
        assert_eq!(roles, vec![Role::Local, Role::Remote]);

        let bad_remote =
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[remote]\ndeny = [\"x\"]\n");
        let message = error_text(parse(&bad_remote).unwrap().check());
        assert!(
            message.starts_with(&format!("{ORIGIN}:6:9: remote.deny[0]: ")),
            "{message}"
        );

        let (roles, warnings) = parse(&key).unwrap().check().unwrap();
        assert!(roles.is_empty());
        assert!(
            warnings[0].0.contains("neither [local] nor [remote]"),
            "{warnings:?}"
        );
    }

    #[test]
    fn overrides_win_over_the_file() {
        let key_file = TempFile::new(&format!("{KEY2}\n"), 0o600);
        let text = format!(
            "[auth]\nkey = \"{KEY}\"\n[local]\nlisten = [\"0.0.0.0:1\"]\nremotes = [\"192.0.2.2:4443\"]\n\
             intercept = \"tproxy\"\n[log]\nlevel = \"warn\"\n"
        );
        let ov = Overrides {
            listen: Some(vec!["127.0.0.1:9".parse().unwrap()]),
            remotes: Some(vec!["198.51.100.1:4443".parse().unwrap()]),
            intercept: Some(Intercept::Redirect),
            key_file: Some(key_file.0.clone()),
            log_level: Some("trace".to_owned()),
        };
        let (s, warnings) = parse(&text).unwrap().local(&ov).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.listen, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(s.remotes, vec!["198.51.100.1:4443".parse().unwrap()]);
        assert_eq!(s.intercept, Intercept::Redirect);
        assert_eq!(s.log_level, "trace");
        assert_eq!(hex::encode(psk(&s.auth).0.secret.expose()), KEY2);
    }

    #[test]
    fn invalid_overrides_are_blamed_on_the_command_line() {
        let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
        let file = parse(&text).unwrap();
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    listen: Some(vec![]),
                    ..Default::default()
                },
                "command line: --listen: no address given",
            ),
            (
                Overrides {
                    remotes: Some(vec!["192.0.2.2:0".parse().unwrap()]),
                    ..Default::default()
                },
                "command line: --remote: 192.0.2.2:0 has port 0",
            ),
            (
                Overrides {
                    log_level: Some("chatty".to_owned()),
                    ..Default::default()
                },
                "command line: --log-level: \"chatty\" is not a log level",
            ),
            (
                Overrides {
                    key_file: Some(PathBuf::from("/nonexistent/mpbridge-key")),
                    ..Default::default()
                },
                "/nonexistent/mpbridge-key: --key-file: cannot read: no such file",
            ),
        ];
        assert!(!cases.is_empty());
        for (ov, expected) in cases {
            let message = error_text(file.local(&ov));
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
        let message = error_text(file.remote(&Overrides {
            intercept: Some(Intercept::Tproxy),
            ..Default::default()
        }));
        assert!(
            message.starts_with("command line: --intercept: "),
            "{message}"
        );
    }

    #[test]
    fn missing_default_path_is_an_empty_config() {
        let key_file = TempFile::new(KEY, 0o600);
        let path =
            std::env::temp_dir().join(format!("mpbridge-absent-{}.toml", std::process::id()));
        let ov = Overrides {
            remotes: Some(vec!["192.0.2.2:4443".parse().unwrap()]),
            key_file: Some(key_file.0.clone()),
            ..Default::default()
        };
        let (s, _) = load_local(&path, false, &ov).unwrap();
        assert_eq!(s.remotes, vec!["192.0.2.2:4443".parse().unwrap()]);
        assert_eq!(s.listen, unspecified_on(12345));

        let message = error_text(load_local(&path, false, &Overrides::default()));
        assert!(
            message.starts_with(&format!("{}: auth.key: required", path.display())),
            "{message}"
        );
        assert!(message.contains("this file does not exist"), "{message}");
    }

    #[test]
    fn missing_explicit_path_is_an_error_naming_the_file() {
        let path =
            std::env::temp_dir().join(format!("mpbridge-absent-{}.toml", std::process::id()));
        let e = load_remote(&path, true, &Overrides::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: cannot read config file: no such file", path.display())
        );
        assert_eq!(e.exit_code(), EX_CONFIG);
        assert!(check(&path).is_err());
    }

    #[test]
    fn load_reads_the_file_from_disk() {
        let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n[remote]\n"), 0o600);
        let (s, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        psk(&s.auth);
        let (roles, _) = check(&config.0).unwrap();
        assert_eq!(roles, vec![Role::Remote]);
    }

    #[test]
    fn inline_key_in_world_readable_config_gives_a_warning() {
        let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n"), 0o644);
        let (_, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].0.contains("readable by others (mode 0644)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn world_readable_key_file_gives_a_warning() {
        let key_file = TempFile::new(&format!("  {KEY}\n"), 0o644);
        let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
        let (s, warnings) = remote(&text).unwrap();
        assert_eq!(hex::encode(psk(&s.auth).0.secret.expose()), KEY);
        let expected = format!(
            "{0} is readable by others (mode 0644); run chmod 600 {0}",
            key_file.0.display()
        );
        assert_eq!(warnings, vec![Warning(expected)]);
    }

    #[test]
    fn private_key_file_gives_no_warning() {
        let key_file = TempFile::new(KEY, 0o600);
        let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
        let (_, warnings) = remote(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn relative_key_file_is_found_beside_the_config_file() {
        let key_file = TempFile::new(KEY, 0o600);
        let name = key_file.0.file_name().unwrap().to_str().unwrap();
        let origin = std::env::temp_dir().join("mpbridge.toml");
        let text = format!("[auth]\nkey_file = \"{name}\"\n");
        let (s, _) = parse_str(&text, &origin)
            .unwrap()
            .remote(&Overrides::default())
            .unwrap();
        assert_eq!(hex::encode(psk(&s.auth).0.secret.expose()), KEY);
    }

    #[test]
    fn key_file_problems_name_the_key_file() {
        let short = TempFile::new("0011223344556677\n", 0o600);
        let not_hex = TempFile::new("not a key\n", 0o600);
        let cases = [
            (
                PathBuf::from("/nonexistent/mpbridge-key"),
                "cannot read: no such file",
            ),
            (
                short.0.clone(),
                "key is 8 bytes, at least 16 are needed (generate one with: mpbridge genkey)",
            ),
            (not_hex.0.clone(), "key is not hex"),
            (std::env::temp_dir(), "is not a regular file"),
        ];
        assert!(!cases.is_empty());
        for (path, problem) in cases {
            let text = format!("[auth]\nkey_file = \"{}\"\n", path.display());
            let message = error_text(remote(&text));
            let expected = format!("{}: auth.key_file: {problem}", path.display());
            assert!(
                message.starts_with(&expected),
                "{message:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn auth_mode_none_gives_a_warning_and_no_keys() {
        let (s, warnings) = remote("[auth]\nmode = \"none\"\n").unwrap();
        assert!(matches!(s.auth, Auth::None));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].0.contains("auth.mode = \"none\""),
            "{warnings:?}"
        );
        let with_key = parse("[auth]\nmode = \"none\"\n")
            .unwrap()
            .remote(&Overrides {
                key_file: Some(PathBuf::from("/etc/mpbridge/key")),
                ..Default::default()
            });
        assert!(error_text(with_key).starts_with("command line: --key-file: "));
    }

    #[test]
    fn allow_loopback_gives_a_warning() {
        let text = format!("[auth]\nkey = \"{KEY}\"\n[remote]\nallow_loopback = true\n");
        let (s, warnings) = remote(&text).unwrap();
        assert!(s.policy.allow_loopback);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
        let (s, _) = local(&text).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("MASKED"));
        assert!(
            !shown.contains(KEY) && !shown.contains("[0, 17, 34"),
            "{shown}"
        );
        assert_eq!(Secret::new(vec![1]).to_string(), "MASKED");
    }

    #[test]
    fn intercept_parses_and_displays_its_names() {
        for mode in [Intercept::Tproxy, Intercept::Redirect] {
            assert_eq!(mode.to_string().parse::<Intercept>(), Ok(mode));
        }
        assert_eq!("TPROXY".parse::<Intercept>(), Ok(Intercept::Tproxy));
        assert!("dnat".parse::<Intercept>().is_err());
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn default_policy_refuses_special_addresses() {
        let own = [ip("192.0.2.7"), ip("2001:db8::7")];
        let cases = [
            ("127.0.0.1", Err(PolicyRefusal::Loopback)),
            ("127.1.2.3", Err(PolicyRefusal::Loopback)),
            ("::1", Err(PolicyRefusal::Loopback)),
            ("169.254.1.1", Err(PolicyRefusal::LinkLocal)),
            ("fe80::1", Err(PolicyRefusal::LinkLocal)),
            ("224.0.0.1", Err(PolicyRefusal::Multicast)),
            ("ff02::1", Err(PolicyRefusal::Multicast)),
            ("0.0.0.0", Err(PolicyRefusal::Unspecified)),
            ("::", Err(PolicyRefusal::Unspecified)),
            ("255.255.255.255", Err(PolicyRefusal::Broadcast)),
            ("192.0.2.7", Err(PolicyRefusal::OwnAddress)),
            ("2001:db8::7", Err(PolicyRefusal::OwnAddress)),
            ("::ffff:127.0.0.1", Err(PolicyRefusal::Loopback)),
            ("::ffff:169.254.0.9", Err(PolicyRefusal::LinkLocal)),
            ("::ffff:192.0.2.7", Err(PolicyRefusal::OwnAddress)),
            ("198.51.100.1", Ok(())),
            ("2001:db8::8", Ok(())),
            ("::ffff:198.51.100.1", Ok(())),
        ];
        assert!(!cases.is_empty());
        let policy = DestPolicy::default();
        for (dest, expected) in cases {
            assert_eq!(policy.check(ip(dest), &own), expected, "{dest}");
        }
    }

    #[test]
    fn allow_loopback_lifts_only_loopback_and_own_addresses() {
        let own = [ip("192.0.2.7")];
        let policy = DestPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert_eq!(policy.check(ip("127.0.0.1"), &own), Ok(()));
        assert_eq!(policy.check(ip("192.0.2.7"), &own), Ok(()));
        assert_eq!(
            policy.check(ip("169.254.1.1"), &own),
            Err(PolicyRefusal::LinkLocal)
        );
        assert_eq!(
            policy.check(ip("0.0.0.0"), &own),
            Err(PolicyRefusal::Unspecified)
        );
    }

    #[test]
    fn deny_beats_allow_and_allow_restricts() {
        let policy = DestPolicy {
            allow: vec![net("10.0.0.0/8"), net("2001:db8::/32")],
            deny: vec![net("10.1.0.0/16")],
            allow_loopback: false,
        };
        let cases = [
            ("10.2.3.4", Ok(())),
            ("::ffff:10.2.3.4", Ok(())),
            ("2001:db8::1", Ok(())),
            ("10.1.2.3", Err(PolicyRefusal::Denied(net("10.1.0.0/16")))),
            (
                "::ffff:10.1.2.3",
                Err(PolicyRefusal::Denied(net("10.1.0.0/16"))),
            ),
            ("192.0.2.1", Err(PolicyRefusal::NotAllowed)),
            ("2001:db9::1", Err(PolicyRefusal::NotAllowed)),
        ];
        assert!(!cases.is_empty());
        for (dest, expected) in cases {
            assert_eq!(policy.check(ip(dest), &[]), expected, "{dest}");
        }
    }

    const EXAMPLE: &str = include_str!("../examples-config/mpbridge.toml");

    #[test]
    fn example_config_parses_for_both_roles() {
        let key_file = TempFile::new(KEY, 0o600);
        let origin = Path::new("examples-config/mpbridge.toml");
        let file = parse_str(EXAMPLE, origin).unwrap();
        let ov = Overrides {
            key_file: Some(key_file.0.clone()),
            ..Default::default()
        };
        let (l, _) = file.local(&ov).unwrap();
        let (r, _) = file.remote(&ov).unwrap();
        // The example shows the defaults: an empty [local] would give the same.
        let remotes = format!("[local]\nremotes = [\"{}\"]\n[remote]\n", l.remotes[0]);
        let defaults = parse(&remotes).unwrap();
        let (dl, _) = defaults.local(&ov).unwrap();
        let (dr, _) = defaults.remote(&ov).unwrap();
        assert_eq!(format!("{l:?}"), format!("{dl:?}"));
        assert_eq!(format!("{r:?}"), format!("{dr:?}"));
    }

    /// The names serde knows for a section, read from its unknown-field message.
    fn known_keys(section: &str) -> Vec<String> {
        let text = if section.is_empty() {
            "zzz_unknown = 1\n".to_owned()
        } else if section == "link" {
            "[[link]]\ninterface = \"wan0\"\nzzz_unknown = 1\n".to_owned()
        } else {
            format!("[{section}]\nzzz_unknown = 1\n")
        };
        let message = error_text(parse(&text));
        let list = message.split("expected one of ").nth(1).unwrap_or("");
        list.trim_end_matches(')')
            .split(", ")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn example_config_mentions_every_key() {
        let sections = [
            "", "auth", "local", "remote", "limits", "log", "link", "probe", "paths",
        ];
        let mut checked = 0;
        for section in sections {
            let keys = known_keys(section);
            assert!(!keys.is_empty(), "no keys found for [{section}]");
            for key in keys {
                let mentioned = if section.is_empty() {
                    EXAMPLE.contains(&format!("[{key}]"))
                } else {
                    EXAMPLE.contains(&format!("{key} = "))
                        || EXAMPLE.contains(&format!("[[{section}.{key}]]"))
                };
                assert!(mentioned, "example config does not mention {section}.{key}");
                checked += 1;
            }
        }
        assert!(checked > 20);
    }
}
