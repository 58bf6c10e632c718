//! Start-up checks of the kernel (MPTCP on, TCP Fast Open allowed), each
//! saying exactly what to change, and the bridge from configured keys to the
//! cookie keys of the protocol crate.

use std::net::SocketAddr;

use crate::config::KeySpec;
use crate::host::sys::{self, SocketError, Transport};
use crate::host::Host;

/// `net.ipv4.tcp_fastopen` bit: TFO for outgoing connections.
const TFO_CLIENT: i64 = 0x1;
/// `net.ipv4.tcp_fastopen` bit: TFO for listeners.
const TFO_SERVER: i64 = 0x2;

/// Why this kernel cannot run the bridge.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `net.mptcp.enabled` is 0.
    #[error(
        "MPTCP is disabled: run `sysctl -w net.mptcp.enabled=1` \
         (and set it in /etc/sysctl.conf to keep it)"
    )]
    MptcpDisabled,
    /// No `net.mptcp` sysctls: a kernel built without MPTCP.
    #[error(
        "this kernel has no MPTCP (/proc/sys/net/mptcp/enabled is missing): \
         it needs CONFIG_MPTCP (Linux >= 5.6; on OpenWrt >= 24.10 it is built in \
         except on small-flash targets)"
    )]
    NoMptcp,
    /// The sysctl says yes but no MPTCP socket can be made.
    #[error("{0}")]
    Socket(#[from] SocketError),
    /// This host's links and addresses cannot be read over rtnetlink.
    #[error("cannot read this host's links and addresses over rtnetlink: {0}")]
    HostView(std::io::Error),
}

/// Fails with one clear sentence when this kernel cannot make MPTCP sockets.
pub fn mptcp_available() -> Result<(), CheckError> {
    match sys::read_sysctl("net.mptcp.enabled") {
        Ok(0) => return Err(CheckError::MptcpDisabled),
        Ok(_) => {}
        Err(_) => return Err(CheckError::NoMptcp),
    }
    let probe: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    sys::stream_socket(&probe, Transport::Mptcp)?;
    Ok(())
}

/// Starts following this host's links and addresses ([`Host`]); rtnetlink
/// is in every Linux kernel, so a failure here is a system in trouble.
pub async fn host_view() -> Result<Host, CheckError> {
    Host::start().await.map_err(CheckError::HostView)
}

fn fastopen_bits() -> i64 {
    sys::read_sysctl("net.ipv4.tcp_fastopen").unwrap_or(0)
}

/// Warns when outgoing TCP Fast Open is off (each connection then costs one
/// round trip more); it still works.
pub fn fastopen_client() {
    if fastopen_bits() & TFO_CLIENT == 0 {
        tracing::warn!(
            "TCP Fast Open is off for outgoing connections: every bridged connection costs \
             one more round trip; enable it with `sysctl -w net.ipv4.tcp_fastopen=1` \
             (or 3 on a host that is also a remote)"
        );
    }
}

/// Warns when TCP Fast Open is off for listeners (the remote side).
pub fn fastopen_server() {
    if fastopen_bits() & TFO_SERVER == 0 {
        tracing::warn!(
            "TCP Fast Open is off for listeners: the Convert header cannot ride in the SYN \
             and every bridged connection costs one more round trip; enable it with \
             `sysctl -w net.ipv4.tcp_fastopen=3`"
        );
    }
}

/// The protocol crate's cookie key for a configured key.
pub fn cookie_key(spec: &KeySpec) -> convert::cookie::Key {
    convert::cookie::Key::new(spec.id, spec.secret.expose().to_vec())
        .expect("the config validated the key length")
}
