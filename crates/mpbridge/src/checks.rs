//! Start-up checks of the kernel (MPTCP on, TCP Fast Open allowed), each
//! saying exactly what to change, and the bridge from configured keys to the
//! cookie keys of the protocol crate.

use std::net::SocketAddr;

use crate::config::KeySpec;
use crate::host::sys::{self, MptcpSupport, SocketError, Transport};
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

/// Something the daemons use that an older kernel lacks, each said once at
/// start with what the bridge loses; the daemon runs on without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack {
    /// No `TCP_FASTOPEN` on an MPTCP listener (before Linux 6.2).
    FastopenListener,
    /// No `TCP_FASTOPEN_NO_COOKIE` on an MPTCP socket (before Linux 6.2).
    FastopenConnect,
    /// No `MPTCP_INFO` (before Linux 5.16).
    Info,
}

impl Lack {
    /// The one log line: what is missing, since which kernel, what is lost.
    pub fn message(self) -> &'static str {
        match self {
            Lack::FastopenListener => {
                "degraded: this kernel has no TCP Fast Open on MPTCP listeners (Linux >= 6.2): \
                 the Convert header arrives in the first data segment instead of the SYN, \
                 one round trip more per bridged connection"
            }
            Lack::FastopenConnect => {
                "degraded: this kernel has no TCP Fast Open on MPTCP sockets (Linux >= 6.2): \
                 the Convert header goes in the first data segment instead of the SYN, \
                 one round trip more per bridged connection"
            }
            Lack::Info => {
                "degraded: this kernel has no MPTCP_INFO (Linux >= 5.16): \
                 `mpbridge status` shows no subflows per connection"
            }
        }
    }
}

/// What the remote (an MPTCP listener) lacks on a kernel with `support`.
pub fn remote_lacks(support: MptcpSupport) -> Vec<Lack> {
    let mut lacks = Vec::new();
    if !support.fastopen_listener {
        lacks.push(Lack::FastopenListener);
    }
    if !support.info {
        lacks.push(Lack::Info);
    }
    lacks
}

/// What the local side lacks on a kernel with `support`, given whether it
/// dials MPTCP with TCP Fast Open (plain TCP has TFO on every kernel).
pub fn local_lacks(support: MptcpSupport, mptcp: bool, fastopen: bool) -> Vec<Lack> {
    let mut lacks = Vec::new();
    if mptcp && fastopen && !support.fastopen_no_cookie {
        lacks.push(Lack::FastopenConnect);
    }
    if mptcp && !support.info {
        lacks.push(Lack::Info);
    }
    lacks
}

/// Probes this kernel's MPTCP and logs one line per [`Lack`] that `lacks`
/// picks from it; returns them so the caller leaves those options alone.
pub fn report_lacks(lacks: impl FnOnce(MptcpSupport) -> Vec<Lack>) -> Vec<Lack> {
    let Some(support) = sys::probe_mptcp() else {
        // No MPTCP socket at all: `mptcp_available` has said why.
        return Vec::new();
    };
    let lacks = lacks(support);
    if !lacks.is_empty() {
        let kernel = sys::kernel_release();
        for lack in &lacks {
            tracing::warn!(%kernel, "{}", lack.message());
        }
    }
    lacks
}

/// The protocol crate's cookie key for a configured key.
pub fn cookie_key(spec: &KeySpec) -> convert::cookie::Key {
    convert::cookie::Key::new(spec.id, spec.secret.expose().to_vec())
        .expect("the config validated the key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: MptcpSupport = MptcpSupport {
        fastopen_listener: true,
        fastopen_no_cookie: true,
        info: true,
    };
    /// What Linux 6.1 (OpenWrt 23.05's successor kernels, Debian bookworm) has.
    const LINUX_6_1: MptcpSupport = MptcpSupport {
        fastopen_listener: false,
        fastopen_no_cookie: false,
        info: true,
    };
    /// What Linux 5.15 (OpenWrt 23.05) has.
    const LINUX_5_15: MptcpSupport = MptcpSupport {
        fastopen_listener: false,
        fastopen_no_cookie: false,
        info: false,
    };

    #[test]
    fn a_current_kernel_lacks_nothing() {
        assert!(remote_lacks(ALL).is_empty());
        assert!(local_lacks(ALL, true, true).is_empty());
    }

    #[test]
    fn linux_6_1_loses_fast_open_on_both_sides_only() {
        assert_eq!(remote_lacks(LINUX_6_1), [Lack::FastopenListener]);
        assert_eq!(local_lacks(LINUX_6_1, true, true), [Lack::FastopenConnect]);
    }

    #[test]
    fn linux_5_15_also_loses_the_subflow_view() {
        assert_eq!(
            remote_lacks(LINUX_5_15),
            [Lack::FastopenListener, Lack::Info]
        );
        assert_eq!(
            local_lacks(LINUX_5_15, true, true),
            [Lack::FastopenConnect, Lack::Info]
        );
    }

    #[test]
    fn what_the_config_turned_off_is_not_reported_as_lost() {
        // fastopen = false: nothing of TFO to lose.
        assert_eq!(local_lacks(LINUX_6_1, true, false), []);
        // mptcp = false: plain TCP keeps TFO and has no MPTCP_INFO to show.
        assert_eq!(local_lacks(LINUX_5_15, false, true), []);
    }

    #[test]
    fn each_message_names_the_kernel_and_what_is_lost() {
        for lack in [Lack::FastopenListener, Lack::FastopenConnect, Lack::Info] {
            let m = lack.message();
            assert!(m.starts_with("degraded: "), "{m}");
            assert!(m.contains("(Linux >= "), "{m}");
        }
        assert!(Lack::FastopenConnect
            .message()
            .contains("one round trip more"));
        assert!(Lack::FastopenListener
            .message()
            .contains("one round trip more"));
    }
}
