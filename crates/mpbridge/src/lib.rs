//! mpbridge carries every TCP connection of the devices behind router A over
//! all the links to router B at once, as Multipath TCP, and keeps them alive
//! when a link dies. The devices change nothing.
//!
//! ```text
//!  client ──TCP──▶ mpbridge local ══ MPTCP, one subflow per link ══▶ mpbridge remote ──TCP──▶ server
//! ```
//!
//! The original destination travels in an RFC 8803 Convert header sent in
//! the SYN (TCP Fast Open), authenticated by an HMAC cookie.
//!
//! # Layout
//!
//! - [`config`]: the TOML config: types, defaults, validation into settings.
//! - [`local`]: router A: accept diverted TCP, dial the remote, relay.
//! - [`remote`]: router B: accept MPTCP, check the header, dial, relay.
//! - [`header`]: reading one Convert message off a socket.
//! - [`intercept`]: transparent listeners and original destinations.
//! - [`firewall`]: the owned nftables table and TPROXY routing that divert client TCP.
//! - [`relay`]: splice relay with half-close, resets and counters.
//! - [`host`]: this host as the kernel shows it (links, addresses) and the
//!   calls below the safe crates: netlink, socket options, syscalls.
//! - [`paths`]: the path manager: MPTCP endpoints, policy routing, probes.
//! - [`control`]: the daemon's control socket, its protocol, metrics.
//! - [`status`]: `mpbridge status`, the control socket's client.
//! - [`daemon`]: start-up errors, teardown in order, runtime and signals.
//! - [`paths_only`]: `mpbridge paths`, the path manager without a proxy.
//! - [`server`]: the accept loop: connection cap, back-off, drain.
//! - [`stats`]: counters and the registry of live connections (a leaf).
//! - [`checks`]: start-up checks of the kernel; configured keys to cookie keys.
//! - [`ratelimit`]: rate-limited logging of refusals.
//! - [`logging`]: the log on stderr, its levels.
//! - [`commands`]: each subcommand once parsed: config, log, runtime, exit code.
//! - [`error`]: every subsystem's error gathered for the exit code (for
//!   `commands` only).
//! - `uci` (feature `uci`): OpenWrt's `/etc/config/mpbridge` rendered into
//!   the TOML config, mistakes named by UCI section and option.

pub mod checks;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod firewall;
pub mod header;
pub mod host;
pub mod intercept;
pub mod limits;
pub mod local;
pub mod logging;
pub mod paths;
pub mod paths_only;
pub mod ratelimit;
pub mod relay;
pub mod remote;
pub mod server;
pub mod stats;
pub mod status;
#[cfg(feature = "uci")]
pub mod uci;

// The old paths of two modules now in `host`, for the modules that other
// work rewrites in parallel (paths/, server.rs, control/): they move onto
// `host::` when that work lands, and these aliases go.
pub(crate) use host::netlink;
pub use host::sys;
