//! The small room where socket options and syscalls that the safe crates do
//! not cover live: MPTCP socket creation, TCP Fast Open options, MPTCP
//! connection info, kernel sysctls. Its `unsafe` blocks are the calls
//! neither socket2 nor rustix wraps (TCP_FASTOPEN_NO_COOKIE, TCP_INFO's
//! state, the SOL_MPTCP getsockopts), each with its `SAFETY:` note.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// `TCP_FASTOPEN_NO_COOKIE` (linux/tcp.h): accept or send data in the very
/// first SYN without a TFO cookie. The Convert Cookie TLV authenticates instead.
const TCP_FASTOPEN_NO_COOKIE: libc::c_int = 34;

/// Whether a socket carries MPTCP or plain TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Mptcp,
    Tcp,
}

/// Why a stream socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The kernel refused `IPPROTO_MPTCP`: built without MPTCP or disabled.
    #[error(
        "the kernel refused an MPTCP socket ({0}): MPTCP is not built in or is disabled \
         (check `sysctl net.mptcp.enabled`, set it to 1; on OpenWrt MPTCP needs a kernel \
         with CONFIG_MPTCP)"
    )]
    NoMptcp(io::Error),
    /// Any other failure to create the socket (out of file descriptors...).
    #[error("cannot create a socket: {0}")]
    Other(io::Error),
}

/// Creates a non-blocking stream socket for `addr`'s family.
pub fn stream_socket(addr: &SocketAddr, transport: Transport) -> Result<Socket, SocketError> {
    let domain = Domain::for_address(*addr);
    let protocol = match transport {
        Transport::Mptcp => Some(Protocol::MPTCP),
        Transport::Tcp => None,
    };
    let socket = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), protocol).map_err(
        |e| match (transport, e.raw_os_error()) {
            (Transport::Mptcp, Some(libc::EPROTONOSUPPORT | libc::EINVAL | libc::ENOPROTOOPT)) => {
                SocketError::NoMptcp(e)
            }
            _ => SocketError::Other(e),
        },
    )?;
    Ok(socket)
}

/// An integer option that neither socket2 nor rustix sets (the TCP Fast
/// Open ones).
fn set_int_opt(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is a live socket borrowed for the call; the option value
    // is a c_int on the stack whose size we pass exactly.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Server-side TCP Fast Open on a listener: a queue of `qlen` pending TFO
/// requests, and data accepted in a cookieless first SYN.
pub fn enable_fastopen_listener(socket: &impl AsRawFd, qlen: i32) -> io::Result<()> {
    set_int_opt(socket, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, qlen)?;
    set_int_opt(socket, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
}

/// Client-side: send data in the first SYN without waiting for a TFO cookie.
pub fn enable_fastopen_no_cookie(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_opt(socket, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
}

/// Leaves the choice of a bound socket's port to connect(2), which may
/// then reuse a port held towards other destinations (IP_BIND_ADDRESS_NO_PORT).
/// On an MPTCP socket the kernel copies it to every subflow it makes (since
/// Linux 6.8), so the in-kernel path manager's joins, which bind their
/// link's address with port 0, no longer hold a port of the range each.
pub fn set_bind_address_no_port(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_opt(socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// Fixes a socket's receive buffer at `bytes`, past `net.core.rmem_max`
/// where we hold CAP_NET_ADMIN (SO_RCVBUFFORCE), else up to that cap.
pub fn set_recv_buffer(socket: &Socket, bytes: usize) {
    let value = bytes.min(libc::c_int::MAX as usize);
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, value).is_err() {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

/// Fixes a socket's send buffer at `bytes`, past `net.core.wmem_max` where
/// we hold CAP_NET_ADMIN (SO_SNDBUFFORCE), else up to that cap. On an MPTCP
/// socket it sets (and locks) the connection's buffer, which the kernel
/// also gives its subflows.
pub fn set_send_buffer(socket: &impl AsFd, bytes: usize) {
    use rustix::net::sockopt;
    let value = bytes.min(libc::c_int::MAX as usize);
    if sockopt::set_socket_send_buffer_size_force(socket, value).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(socket, value);
    }
}

/// [`set_send_buffer`] on a descriptor the caller holds open meanwhile
/// (the connection registry's, under its lock).
pub fn set_send_buffer_of(fd: RawFd, bytes: usize) {
    // SAFETY: the caller keeps `fd` open for the call.
    set_send_buffer(&unsafe { BorrowedFd::borrow_raw(fd) }, bytes);
}

/// Sets a socket's congestion control (TCP_CONGESTION; on an MPTCP socket
/// the kernel gives it to every subflow, those joined later too). A
/// process with CAP_NET_ADMIN may pick any algorithm the kernel has, not
/// only those `net.ipv4.tcp_allowed_congestion_control` lists. The first
/// failure is logged once, as the same setting fails for every connection.
pub fn set_congestion(socket: &Socket, name: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = rustix::net::sockopt::set_tcp_congestion(socket, name) {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "cannot use the congestion control {name:?} ({e}): the connections keep the \
                 kernel's default (net.ipv4.tcp_available_congestion_control lists what this \
                 kernel has)"
            );
        }
    }
}

/// Starts a connection whose SYN carries `data` (TCP Fast Open). Returns how
/// many bytes the kernel queued; `Ok(0)` when it could not take any.
pub fn sendto_fastopen(socket: &Socket, data: &[u8], dest: SocketAddr) -> io::Result<usize> {
    match socket.send_to_with_flags(data, &dest.into(), libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL) {
        Ok(n) => Ok(n),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(0),
        Err(e) => Err(e),
    }
}

/// `TCP_SYN_RECV` (linux/tcp_states.h), as TCP_INFO's `tcpi_state` says it.
const TCP_SYN_RECV: u8 = 3;

/// Whether an accepted connection still waits for the last ACK of its
/// handshake (state SYN_RECV). Only a connection whose SYN carried data
/// (TCP Fast Open) is accepted that early. For an MPTCP socket the kernel
/// answers for its first subflow (or the TCP socket it fell back to).
pub fn handshake_pending(socket: &impl AsRawFd) -> io::Result<bool> {
    // `tcpi_state` is the first byte of `struct tcp_info`; the kernel
    // copies no more than the buffer holds.
    let mut info = [0u8; 8];
    // SAFETY: TCP_INFO writes only into `info`, at most its length.
    let written = unsafe {
        getsockopt_raw(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info,
        )?
    };
    if written == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP_INFO returned nothing",
        ));
    }
    Ok(info[0] == TCP_SYN_RECV)
}

/// TCP keepalive of relayed connections: a peer that vanished without a
/// FIN or RST (a router rebooted, a NAT forgot the flow) is found after
/// about `KEEPALIVE_IDLE + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL` (4 min) of
/// silence, so its connection does not hold a `max_connections` slot for
/// ever. Live but idle connections only exchange a probe every 2 minutes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_COUNT: u32 = 4;

/// Turns on keepalive (the timings above) on a relayed socket. A kernel that
/// refuses (old MPTCP) only loses the dead-peer detection.
pub fn enable_keepalive<'a>(socket: impl Into<SockRef<'a>>) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_COUNT);
    let _ = socket.into().set_tcp_keepalive(&params);
}

/// Sets on a proxy's listener what its accepted sockets inherit, so that it
/// costs no syscall per connection: keepalive (see [`enable_keepalive`]) and
/// TCP_NODELAY (a relay forwards each read at once; Nagle would hold the
/// reply behind the 4-byte Convert header until its ACK).
pub fn set_inherited_options<'a>(listener: impl Into<SockRef<'a>>) {
    let listener = listener.into();
    enable_keepalive(&*listener);
    let _ = listener.set_tcp_nodelay(true);
}

/// Makes the next close of this socket send RST instead of FIN.
pub fn arm_reset<'a>(socket: impl Into<SockRef<'a>>) {
    // Failure here only means a FIN instead of a RST; nothing better to do.
    let _ = socket.into().set_linger(Some(Duration::ZERO));
}

/// Reads an integer sysctl such as `net.mptcp.enabled`.
pub fn read_sysctl(name: &str) -> io::Result<i64> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))
}

/// Whether this process holds CAP_NET_ADMIN (from /proc/self/status).
pub fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Marks a socket's packets (SO_MARK; needs CAP_NET_ADMIN).
pub fn set_mark<'a>(socket: impl Into<SockRef<'a>>, mark: u32) -> io::Result<()> {
    socket.into().set_mark(mark)
}

/// What this kernel's MPTCP sockets support of the options the daemons use
/// that older kernels lack, probed once at start ([`probe_mptcp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MptcpSupport {
    /// `TCP_FASTOPEN` on an MPTCP socket, for the remote's listener
    /// (Linux >= 6.2).
    pub fastopen_listener: bool,
    /// `TCP_FASTOPEN_NO_COOKIE` on an MPTCP socket, for the local's data in
    /// the SYN (Linux >= 6.2).
    pub fastopen_no_cookie: bool,
    /// `MPTCP_INFO` (Linux >= 5.16), for the connections' subflows in
    /// `mpbridge status`.
    pub info: bool,
}

/// Probes an unbound, unconnected MPTCP socket for [`MptcpSupport`]. Older
/// kernels answer EOPNOTSUPP for what they lack; any failure counts as
/// lacking. `None` when no MPTCP socket can be made at all.
pub fn probe_mptcp() -> Option<MptcpSupport> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let fresh = || stream_socket(&any, Transport::Mptcp).ok();
    // A fresh socket per option: a refused option must not leave the
    // socket half-configured for the next probe.
    let fastopen_listener =
        set_int_opt(&fresh()?, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, 1).is_ok();
    let fastopen_no_cookie =
        set_int_opt(&fresh()?, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1).is_ok();
    let mut buf = [0u8; 256];
    let info = mptcp_sockopt(fresh()?.as_raw_fd(), MptcpOption::Info, &mut buf).is_ok();
    Some(MptcpSupport {
        fastopen_listener,
        fastopen_no_cookie,
        info,
    })
}

/// The running kernel's release (`uname -r`), for messages.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `SOL_MPTCP` (linux/socket.h).
const SOL_MPTCP: libc::c_int = 284;

/// The MPTCP getsockopt options whose input holds sizes only (linux/mptcp.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MptcpOption {
    /// `struct mptcp_info` of the connection (Linux >= 5.16).
    Info = 1,
    /// Each subflow's `struct tcp_info` (Linux >= 5.16).
    TcpInfo = 2,
    /// Each subflow's local and remote address (Linux >= 5.16).
    SubflowAddrs = 3,
}

/// MPTCP_FULL_INFO (Linux >= 6.5): the three in one consistent call.
const MPTCP_FULL_INFO: libc::c_int = 4;

/// getsockopt(2) into `buf`, which goes in as the option's input too;
/// returns how many bytes the kernel wrote.
///
/// # Safety
/// The option must not make the kernel write outside `buf`: an option
/// whose input carries addresses (MPTCP_FULL_INFO) must point them at live
/// buffers at least as large as the sizes it gives.
unsafe fn getsockopt_raw(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is valid for writes of `len` bytes for the whole call
    // and the kernel writes at most `len` bytes there; `len` is a live
    // socklen_t; what else the option writes is the caller's promise.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc == 0 {
        Ok((len as usize).min(buf.len()))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an MPTCP socket option into `buf` (prepared with the sizes the
/// option expects); returns how many bytes the kernel wrote.
pub fn mptcp_sockopt(fd: RawFd, option: MptcpOption, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: these options write into `buf` only; their input holds sizes,
    // never addresses.
    unsafe { getsockopt_raw(fd, SOL_MPTCP, option as libc::c_int, buf) }
}

/// `struct mptcp_full_info` up to and without its `mptcp_info` (the
/// kernel's MIN_FULL_INFO_OPTLEN_SIZE).
pub const FULL_INFO_HEADER_LEN: usize = 40;

/// What MPTCP_FULL_INFO wrote: the header (with the kernel's sizes and
/// subflow count, then `mptcp_info`) and the two arrays it filled, one
/// entry per subflow, at most the `max` subflows asked for.
#[derive(Debug, Clone)]
pub struct FullInfo {
    pub header: Vec<u8>,
    pub subflows: Vec<u8>,
    pub tcp_info: Vec<u8>,
}

/// Reads MPTCP_FULL_INFO of an MPTCP socket: `max` entries of
/// `subflow_size` bytes (`struct mptcp_subflow_info`) and of `tcp_size`
/// bytes (`struct tcp_info`); the kernel fills at most its own sizes.
pub fn mptcp_full_info(
    fd: RawFd,
    max: u32,
    subflow_size: u32,
    tcp_size: u32,
) -> io::Result<FullInfo> {
    let mut subflows = vec![0u8; max as usize * subflow_size as usize];
    let mut tcp_info = vec![0u8; max as usize * tcp_size as usize];
    // The header plus room for the kernel's `mptcp_info` (96 bytes today).
    let mut header = vec![0u8; FULL_INFO_HEADER_LEN + 256];
    header[4..8].copy_from_slice(&tcp_size.to_ne_bytes());
    header[12..16].copy_from_slice(&subflow_size.to_ne_bytes());
    header[20..24].copy_from_slice(&max.to_ne_bytes());
    header[24..32].copy_from_slice(&(subflows.as_mut_ptr() as u64).to_ne_bytes());
    header[32..40].copy_from_slice(&(tcp_info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: besides `header`, the kernel writes only into `subflows` and
    // `tcp_info`, through the two addresses in the header, at most `max`
    // entries of at most the sizes given: what they hold. Neither vector is
    // touched, moved or dropped until the call returns.
    let written = unsafe { getsockopt_raw(fd, SOL_MPTCP, MPTCP_FULL_INFO, &mut header)? };
    header.truncate(written);
    Ok(FullInfo {
        header,
        subflows,
        tcp_info,
    })
}

/// Makes a socket's file mode `mode` before it is bound, so that a Unix
/// socket's file is created with it (no window with looser permissions).
pub fn fchmod(socket: &impl AsFd, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(socket, rustix::fs::Mode::from_raw_mode(mode)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_applies_to_tcp_and_mptcp_sockets() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for transport in [Transport::Tcp, Transport::Mptcp] {
            let Ok(socket) = stream_socket(&addr, transport) else {
                continue; // kernel without MPTCP
            };
            enable_keepalive(&socket);
            assert!(socket.keepalive().unwrap(), "{transport:?}");
            assert_eq!(
                socket.tcp_keepalive_time().unwrap(),
                KEEPALIVE_IDLE,
                "{transport:?}"
            );
        }
    }

    /// The proxies set keepalive and TCP_NODELAY once on their listeners
    /// (see `server::serve`): an accepted socket, TCP or MPTCP, must
    /// inherit them.
    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for transport in [Transport::Tcp, Transport::Mptcp] {
            let Ok(listener) = stream_socket(&addr, transport) else {
                continue; // kernel without MPTCP
            };
            listener.bind(&addr.into()).unwrap();
            set_inherited_options(&listener);
            listener.listen(1).unwrap();
            let to = listener.local_addr().unwrap().as_socket().unwrap();
            let _client = std::net::TcpStream::connect(to).unwrap();
            listener.set_nonblocking(false).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert!(accepted.keepalive().unwrap(), "{transport:?}");
            assert!(accepted.tcp_nodelay().unwrap(), "{transport:?}");
            assert_eq!(
                accepted.tcp_keepalive_time().unwrap(),
                KEEPALIVE_IDLE,
                "{transport:?}"
            );
            assert_eq!(
                accepted.tcp_keepalive_interval().unwrap(),
                KEEPALIVE_INTERVAL,
                "{transport:?}"
            );
            assert_eq!(
                accepted.tcp_keepalive_retries().unwrap(),
                KEEPALIVE_COUNT,
                "{transport:?}"
            );
        }
    }

    #[test]
    fn fchmod_sets_a_sockets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mpbridge-fchmod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        fchmod(&socket, 0o600).unwrap();
        socket
            .bind(&socket2::SockAddr::unix(&path).unwrap())
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn sysctl_reads_an_integer() {
        assert!(read_sysctl("net.ipv4.ip_forward").is_ok());
        assert!(read_sysctl("net.no.such.thing").is_err());
    }

    #[test]
    fn an_established_connection_waits_for_no_handshake() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for transport in [Transport::Tcp, Transport::Mptcp] {
            let Ok(listener) = stream_socket(&addr, transport) else {
                continue; // kernel without MPTCP
            };
            listener.bind(&addr.into()).unwrap();
            listener.listen(1).unwrap();
            let to = listener.local_addr().unwrap().as_socket().unwrap();
            let client = std::net::TcpStream::connect(to).unwrap();
            listener.set_nonblocking(false).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert!(!handshake_pending(&accepted).unwrap(), "{transport:?}");
            assert!(!handshake_pending(&client).unwrap(), "{transport:?}");
        }
    }

    #[test]
    fn fastopen_options_apply_to_an_mptcp_listener() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let socket = match stream_socket(&addr, Transport::Mptcp) {
            Ok(s) => s,
            Err(SocketError::NoMptcp(_)) => return, // kernel without MPTCP
            Err(e) => panic!("{e}"),
        };
        socket.bind(&addr.into()).unwrap();
        enable_fastopen_listener(&socket, 16).unwrap();
        socket.listen(16).unwrap();
    }

    /// The kernel this test runs on is >= 6.2 with MPTCP, or has none: the
    /// probe must then find everything (a probe that wrongly says "lacking"
    /// would degrade every router on a new kernel).
    #[test]
    fn the_probe_finds_what_a_current_kernel_has() {
        let Some(support) = probe_mptcp() else {
            return; // kernel without MPTCP
        };
        let release = kernel_release();
        let mut parts = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if version >= (6, 2) {
            assert_eq!(
                support,
                MptcpSupport {
                    fastopen_listener: true,
                    fastopen_no_cookie: true,
                    info: true,
                },
                "on {release}"
            );
        }
    }

    #[test]
    fn the_kernel_release_is_read() {
        assert!(kernel_release().contains('.'), "{}", kernel_release());
    }
}
