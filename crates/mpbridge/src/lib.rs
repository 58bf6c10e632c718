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
//! - `netlink`: the daemon's one netlink socket: requests, acknowledgements,
//!   dumps, multicast, and the writer of messages and attributes.
//! - [`paths`]: the path manager: MPTCP endpoints, policy routing, probes.
//! - [`control`]: the control socket, `mpbridge status`, metrics.
//! - [`paths_only`]: `mpbridge paths`, the path manager without a proxy.
//! - [`server`]: the accept loop: connection cap, back-off, drain.
//! - [`checks`]: start-up checks of the kernel; configured keys to cookie keys.
//! - [`sys`]: socket options and syscalls the safe crates lack.
//! - [`ratelimit`]: rate-limited logging of refusals.
//! - [`error`]: start-up errors and their exit codes.
//! - `uci` (feature `uci`): OpenWrt's `/etc/config/mpbridge` rendered into
//!   the TOML config, mistakes named by UCI section and option.

pub mod checks;
pub mod config;
pub mod control;
pub mod error;
pub mod firewall;
pub mod header;
pub mod intercept;
pub mod limits;
pub mod local;
mod netlink;
pub mod paths;
pub mod paths_only;
pub mod ratelimit;
pub mod relay;
pub mod remote;
pub mod server;
pub mod sys;
#[cfg(feature = "uci")]
pub mod uci;
