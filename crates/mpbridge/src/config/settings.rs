//! The validated settings: what `mpbridge local` and `mpbridge remote` run
//! with. Every field holds a checked value; nothing here parses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::choice::Choice;
use super::interception::{Interception, InterceptionMode};
use super::policy::DestPolicy;
use super::{
    DEFAULT_DRAIN_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_PIPE_SIZE, DEFAULT_RCVBUF_BUDGET,
    MAX_LINKS,
};

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
    /// Bytes of fixed receive buffers (`fastopen_rcvbuf`) granted in all
    /// before connections get less; 0: a quarter of the kernel's TCP
    /// memory pressure threshold (`host::rcvbuf`).
    pub rcvbuf_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            drain: Duration::from_secs(DEFAULT_DRAIN_SECS as u64),
            pipe_size: DEFAULT_PIPE_SIZE as usize,
            rcvbuf_budget: DEFAULT_RCVBUF_BUDGET as usize,
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

/// What the path manager does to a link its probes declare down (`probe.down_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownAction {
    /// Remove the link's MPTCP endpoints (the kernel closes its subflows).
    Remove,
    /// Mark the endpoints backup (MP_PRIO): subflows stay, idle.
    Backup,
}

impl Choice for DownAction {
    const WHAT: &'static str = "a down action";
}

/// Who opens a connection's extra subflows (`paths.subflows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubflowWord {
    Kernel,
    OnDemand,
}

impl Choice for SubflowWord {
    const WHAT: &'static str = "a subflow mode";
}

/// What router A does with a link that slows the bridge down
/// (`paths.slow_links`, default `bench` on router A, `use` on router B; see
/// [`crate::paths::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowLinks {
    /// Every link in service carries data.
    Use,
    /// Tried without, under load; kept as a backup while the links' total
    /// is not lower without it, and tried again later.
    Bench,
}

impl Choice for SlowLinks {
    const WHAT: &'static str = "a slow-links policy";
}

/// Who opens a connection's extra subflows, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubflowMode {
    /// The kernel's path manager: one per link as soon as the connection is
    /// established.
    Kernel,
    /// The daemon, through the userspace path manager: once the connection
    /// has lived `after`, or at once when a link failure leaves it without
    /// a working subflow.
    OnDemand { after: Duration },
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
    /// Router A reads each link interface's received-packet counter while
    /// probes are unanswered: one that stands still names a black hole
    /// sooner than the probes' loss windows, one that moves holds their
    /// verdict. `false`: the probes alone. Router B reads it while router
    /// A's probes are overdue.
    pub interface_counter: bool,
    /// Router B closes its MPTCP subflows over a link whose interface fell
    /// silent (needs `interface_counter`) or lost its carrier (needs a
    /// kernel with CONFIG_INET_DIAG_DESTROY), so their data is sent again
    /// over the other links at once. `false`: it waits for router A's
    /// REMOVE_ADDR.
    pub close_subflows: bool,
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
    pub subflows: SubflowMode,
    pub slow_links: SlowLinks,
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

/// What both daemons run with: `[auth]`, `[limits]`, `[log]`, the path
/// manager (`[[link]]`, `[probe]`, `[paths]`) and the control socket and
/// metrics of the role's section. `mpbridge paths` needs only this.
#[derive(Debug, Clone)]
pub struct Common {
    pub auth: Auth,
    pub limits: Limits,
    pub paths: PathSettings,
    pub control: ControlSettings,
    /// The lowest level logged (`log.level`, `--log-level`).
    pub log_level: tracing::Level,
}

/// Everything `mpbridge local` needs, validated: the common part and `[local]`.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub common: Common,
    /// Where diverted client TCP arrives.
    pub listen: Vec<SocketAddr>,
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
    /// Send buffer of the MPTCP connections to the remote (uploads leave
    /// through them).
    pub sndbuf: Sndbuf,
    /// The congestion control of those connections' subflows
    /// (TCP_CONGESTION); `None`: the kernel's default.
    pub congestion: Option<String>,
    /// How client TCP is diverted to the listeners, and who installs the
    /// rules that divert it.
    pub interception: Interception,
}

/// The send buffer of the daemons' MPTCP connections (`sndbuf`).
///
/// When a subflow dies, Linux sends everything the connection has not had
/// acknowledged again over the others, so a buffer far beyond what the
/// links hold in flight stalls the flow for as long as the survivors take
/// to carry it (README, "A kernel behaviour worth knowing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sndbuf {
    /// Sized per connection from what it carries ([`crate::control::sndbuf`]).
    Auto,
    /// The kernel's autotuning, capped by `net.ipv4.tcp_wmem`.
    Kernel,
    /// Fixed (SO_SNDBUF bytes; past `net.core.wmem_max` with CAP_NET_ADMIN).
    Fixed(usize),
}

/// Everything `mpbridge remote` needs, validated: the common part and `[remote]`.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub common: Common,
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
    /// Send buffer of the accepted MPTCP connections, the side that sends
    /// a download over the links.
    pub sndbuf: Sndbuf,
    /// The congestion control of the accepted connections' subflows;
    /// `None`: the kernel's default.
    pub congestion: Option<String>,
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
    pub intercept: Option<InterceptionMode>,
    /// Replaces `auth.key` / `auth.key_file` (the send key).
    pub key_file: Option<PathBuf>,
    /// Replaces `log.level`.
    pub log_level: Option<String>,
}

/// Which of the two daemons: the subcommand, and the file section it reads.
/// The one name for this idea (the path manager takes it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Router A, `mpbridge local`, `[local]`.
    Local,
    /// Router B, `mpbridge remote`, `[remote]`.
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
