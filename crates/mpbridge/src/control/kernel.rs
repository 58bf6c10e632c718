//! What the kernel says about an MPTCP connection between the routers: its
//! subflows (addresses, TCP state, RTT, bytes) from MPTCP_FULL_INFO, or
//! MPTCP_SUBFLOW_ADDRS and MPTCP_TCPINFO before Linux 6.5, and whether it
//! fell back to plain TCP, and which link each subflow uses. The byte
//! layouts are parsed here; the calls are in [`crate::host::sys`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use portable_atomic::Ordering;

use crate::host::sys::{self, MptcpOption, Transport};
use crate::host::HostView;
use crate::paths::regain::{ConnLook, Looker};
use crate::stats::registry::Turns;
use crate::stats::Stats;

/// Subflows read per connection at most: the kernel allows 8 extra
/// subflows (MPTCP_PM_ADDR_MAX) besides the first.
const MAX_SUBFLOWS: u32 = 16;
/// `struct mptcp_subflow_info` asked for: a u32 id, then two
/// `sockaddr_storage` aligned to a pointer (264 bytes on 64-bit kernels,
/// 260 on 32-bit ones; the kernel says which).
const SUBFLOW_INFO_LEN: u32 = 8 + 2 * SOCKADDR_STORAGE_LEN as u32;
const SOCKADDR_STORAGE_LEN: usize = 128;
/// `struct tcp_info` asked for: more than the fields read below need.
const TCP_INFO_LEN: u32 = 256;
/// `struct mptcp_info` of Linux 6.10 is 96 bytes; older ones are shorter.
const MPTCP_INFO_LEN: usize = 128;
/// `struct mptcp_subflow_data`, the header of MPTCP_SUBFLOW_ADDRS and
/// MPTCP_TCPINFO answers.
const SUBFLOW_DATA_LEN: usize = 16;

// Offsets in `struct tcp_info` (linux/tcp.h).
const TCPI_STATE: usize = 0;
const TCPI_RTT: usize = 68;
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;

/// One subflow as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSubflow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// TCP state (linux/tcp_states.h), when tcp_info was read.
    pub state: Option<u8>,
    pub rtt: Option<Duration>,
    /// Bytes sent and acknowledged (the kernel's count less the SYN it
    /// counts too), and bytes received.
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
}

/// What one look at a connection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// An MPTCP connection and its subflows.
    Subflows(Vec<KernelSubflow>),
    /// The connection fell back to plain TCP.
    Fallback,
}

/// Hidden switch for the tests: behave as under qemu-user, where the
/// SOL_MPTCP getsockopt options fail.
const NO_MPTCP_INFO_ENV: &str = "MPBRIDGE_TEST_NO_MPTCP_INFO";

/// Whether this system lets a process read MPTCP connection info: `Err`
/// says why not (a kernel before 5.16, or qemu-user, which refuses the
/// SOL_MPTCP options). Asked once, of a fresh MPTCP socket.
pub fn support() -> Result<(), &'static str> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    let support = SUPPORT.get_or_init(|| {
        if std::env::var_os(NO_MPTCP_INFO_ENV).is_some() {
            return Err(format!(
                "the kernel refused MPTCP_INFO (as under qemu-user: {NO_MPTCP_INFO_ENV} is set)"
            ));
        }
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::MPTCP),
        )
        .map_err(|e| format!("no MPTCP socket ({e})"))?;
        let mut buf = [0u8; MPTCP_INFO_LEN];
        sys::mptcp_sockopt(socket.as_raw_fd(), MptcpOption::Info, &mut buf)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "the kernel refused MPTCP_INFO ({e}): reading subflows needs Linux >= \
                         5.16 and does not work under qemu-user"
                )
            })
    });
    match support {
        Ok(()) => Ok(()),
        Err(why) => Err(why.as_str()),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT))
}

/// Reads the subflows of the MPTCP socket `fd` (see [`support`] first:
/// where it fails, this says every connection fell back).
pub fn read(fd: RawFd) -> io::Result<Reading> {
    match sys::mptcp_full_info(fd, MAX_SUBFLOWS, SUBFLOW_INFO_LEN, TCP_INFO_LEN) {
        Ok(info) => parse_full_info(&info).map(Reading::Subflows),
        // A kernel before 6.5, or a connection that fell back: then the
        // kernel hands SOL_MPTCP options to the TCP socket, which refuses
        // them all, MPTCP_INFO too.
        Err(e) if unsupported(&e) => {
            let mut buf = [0u8; MPTCP_INFO_LEN];
            match sys::mptcp_sockopt(fd, MptcpOption::Info, &mut buf) {
                Ok(_) => read_legacy(fd).map(Reading::Subflows),
                Err(e) if unsupported(&e) => Ok(Reading::Fallback),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A `sockaddr_in` or `sockaddr_in6` at the start of `b`.
fn sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32_at(b, 24)?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}

/// The two addresses of a `struct mptcp_subflow_addrs` at the start of `b`.
fn subflow_addrs(b: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let local = sockaddr(b.get(..SOCKADDR_STORAGE_LEN)?)?;
    let remote = sockaddr(b.get(SOCKADDR_STORAGE_LEN..2 * SOCKADDR_STORAGE_LEN)?)?;
    Some((local, remote))
}

/// What a `struct tcp_info` prefix holds: state, RTT, bytes both ways.
type TcpFields = (Option<u8>, Option<Duration>, Option<u64>, Option<u64>);

fn tcp_fields(b: &[u8]) -> TcpFields {
    (
        b.get(TCPI_STATE).copied(),
        u32_at(b, TCPI_RTT).map(|us| Duration::from_micros(u64::from(us))),
        u64_at(b, TCPI_BYTES_ACKED).map(|n| n.saturating_sub(1)),
        u64_at(b, TCPI_BYTES_RECEIVED),
    )
}

fn subflow(addrs: (SocketAddr, SocketAddr), tcp: Option<TcpFields>) -> KernelSubflow {
    let (state, rtt, bytes_acked, bytes_received) = tcp.unwrap_or((None, None, None, None));
    KernelSubflow {
        local: addrs.0,
        remote: addrs.1,
        state,
        rtt,
        bytes_acked,
        bytes_received,
    }
}

/// Parses what MPTCP_FULL_INFO wrote (`struct mptcp_full_info` and the
/// arrays it points at).
pub fn parse_full_info(info: &sys::FullInfo) -> io::Result<Vec<KernelSubflow>> {
    let h = &info.header;
    if h.len() < sys::FULL_INFO_HEADER_LEN {
        return Err(malformed("MPTCP_FULL_INFO answer shorter than its header"));
    }
    let field = |at| u32_at(h, at).unwrap_or(0) as usize;
    let (tcp_len, sf_kernel, sf_len, count) = (field(4), field(8), field(12), field(16));
    // The addresses follow the u32 id at the alignment of a pointer of the
    // kernel's: what its structure's size says (u32 + padding + 256).
    let addrs_at = sf_kernel
        .checked_sub(2 * SOCKADDR_STORAGE_LEN)
        .filter(|at| (4..=8).contains(at))
        .ok_or_else(|| malformed("unexpected size of struct mptcp_subflow_info"))?;
    if sf_len < addrs_at + 2 * SOCKADDR_STORAGE_LEN {
        return Err(malformed("subflow entries too short for their addresses"));
    }
    let asked = info.subflows.len() / SUBFLOW_INFO_LEN as usize;
    let mut out = Vec::new();
    for i in 0..count.min(asked) {
        let entry = info
            .subflows
            .get(i * sf_len..(i + 1) * sf_len)
            .ok_or_else(|| malformed("subflow entries beyond the buffer"))?;
        // An entry the kernel filled always has addresses; skip any other.
        let Some(addrs) = subflow_addrs(&entry[addrs_at..]) else {
            continue;
        };
        let tcp = (tcp_len > 0)
            .then(|| info.tcp_info.get(i * tcp_len..(i + 1) * tcp_len))
            .flatten()
            .map(tcp_fields);
        out.push(subflow(addrs, tcp));
    }
    Ok(out)
}

/// A `struct mptcp_subflow_data` header asking for entries of `size` bytes.
fn subflow_data_request(entries: usize, size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; SUBFLOW_DATA_LEN + entries * size];
    buf[0..4].copy_from_slice(&(SUBFLOW_DATA_LEN as u32).to_ne_bytes());
    buf[12..16].copy_from_slice(&(size as u32).to_ne_bytes());
    buf
}

/// The entries of an MPTCP_SUBFLOW_ADDRS or MPTCP_TCPINFO answer: the
/// subflow count, and the entries the buffer holds.
pub fn parse_subflow_data(buf: &[u8]) -> io::Result<(usize, Vec<&[u8]>)> {
    let header = |at| u32_at(buf, at).map(|v| v as usize);
    let (Some(header_len), Some(count), Some(size)) = (header(0), header(4), header(12)) else {
        return Err(malformed("subflow data shorter than its header"));
    };
    if header_len < SUBFLOW_DATA_LEN || size == 0 {
        return Err(malformed("subflow data header"));
    }
    let entries = buf
        .get(header_len..)
        .unwrap_or(&[])
        .chunks_exact(size)
        .take(count)
        .collect();
    Ok((count, entries))
}

/// Subflows before Linux 6.5: addresses, then tcp_info, in two calls that
/// walk the same list; tcp_info is dropped if a subflow came or went between.
fn read_legacy(fd: RawFd) -> io::Result<Vec<KernelSubflow>> {
    let max = MAX_SUBFLOWS as usize;
    let mut addrs = subflow_data_request(max, 2 * SOCKADDR_STORAGE_LEN);
    let n = sys::mptcp_sockopt(fd, MptcpOption::SubflowAddrs, &mut addrs)?;
    let (count, entries) = parse_subflow_data(&addrs[..n])?;
    let mut tcp = subflow_data_request(max, TCP_INFO_LEN as usize);
    let tcp_entries = match sys::mptcp_sockopt(fd, MptcpOption::TcpInfo, &mut tcp) {
        Ok(n) => match parse_subflow_data(&tcp[..n]) {
            Ok((tcp_count, e)) if tcp_count == count => Some(e),
            _ => None,
        },
        Err(_) => None,
    };
    Ok(entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let a = subflow_addrs(entry)?;
            let t = tcp_entries
                .as_ref()
                .and_then(|t| t.get(i))
                .map(|e| tcp_fields(e));
            Some(subflow(a, t))
        })
        .collect())
}

/// Which link a subflow uses: the interface the kernel routes its packets
/// by (`ip route get REMOTE from LOCAL`, asked of `route`), else the one
/// holding its local address. Router B answers every subflow from the
/// address router A dialled, whatever link it came over: there the address
/// alone would name the wrong link. One lookup per pair of addresses.
pub struct LinkFinder<'a, R> {
    host: &'a HostView,
    route: R,
    found: HashMap<(IpAddr, IpAddr), Option<String>>,
}

impl<'a, R: FnMut(IpAddr, IpAddr) -> Option<u32>> LinkFinder<'a, R> {
    /// `route(local, remote)` gives the index of the interface the kernel
    /// routes by, when it has a route.
    pub fn new(host: &'a HostView, route: R) -> LinkFinder<'a, R> {
        LinkFinder {
            host,
            route,
            found: HashMap::new(),
        }
    }

    /// The name of the link of the subflow from `local` to `remote`.
    pub fn link(&mut self, local: IpAddr, remote: IpAddr) -> Option<String> {
        let (local, remote) = (local.to_canonical(), remote.to_canonical());
        if let Some(found) = self.found.get(&(local, remote)) {
            return found.clone();
        }
        let routed = (self.route)(local, remote)
            .and_then(|index| self.host.link(index))
            .map(|link| link.name.clone());
        let found = routed.or_else(|| self.host.interface_of(local).map(str::to_owned));
        self.found.insert((local, remote), found.clone());
        found
    }
}

/// Connections looked at per look at most (one getsockopt each); more
/// are taken in turn at the following looks.
const LOOK_MAX: usize = 256;
/// A connection idle this long is left out of the looks: it loses
/// nothing to a missing subflow, and a router holding thousands of idle
/// connections pays nothing for them. A connection stalled because it
/// lacks links is not idle yet.
const LOOK_IDLE: Duration = Duration::from_secs(30);

/// Router A's connections for [`crate::paths::regain`]: those that moved
/// bytes within [`LOOK_IDLE`], with their working (established) subflows'
/// local addresses, read from the kernel. Connections that fell back to
/// TCP, or whose subflows cannot be read, are left out.
pub fn looker(stats: Arc<Stats>) -> Looker {
    looker_idle_after(stats, LOOK_IDLE)
}

fn looker_idle_after(stats: Arc<Stats>, idle: Duration) -> Looker {
    // Per connection: its byte counters and when they last moved.
    let mut moved: HashMap<u64, (u64, Instant)> = HashMap::new();
    let mut turns = Turns::default();
    Box::new(move || {
        let now = Instant::now();
        let live = stats.live.look(&stats);
        let mut active = Vec::new();
        let mut seen = HashMap::with_capacity(live.connections.len());
        for conn in &live.connections {
            let bytes = conn.counters.up.load(Ordering::Relaxed)
                + conn.counters.down.load(Ordering::Relaxed);
            let last = match moved.get(&conn.id) {
                Some(&(before, at)) if before == bytes => at,
                _ => now,
            };
            seen.insert(conn.id, (bytes, last));
            if conn.transport == Transport::Mptcp && now.duration_since(last) < idle {
                active.push(conn);
            }
        }
        moved = seen;
        // The others at the following looks.
        turns.take(&mut active, LOOK_MAX, |c| c.id);
        active
            .iter()
            .filter_map(|conn| {
                let reading = conn.with_socket(read)?.ok()?;
                let Reading::Subflows(subflows) = reading else {
                    return None;
                };
                let v6 = subflows.first()?.remote.ip().to_canonical().is_ipv6();
                let working = subflows
                    .iter()
                    .filter(|s| s.state.is_none_or(|st| st == TCP_ESTABLISHED))
                    .map(|s| s.local.ip().to_canonical())
                    .collect();
                Some(ConnLook {
                    id: conn.id,
                    v6,
                    working,
                })
            })
            .collect()
    })
}

/// linux/tcp_states.h
const TCP_ESTABLISHED: u8 = 1;

/// `ss`'s name of a TCP state (linux/tcp_states.h).
pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-recv",
        4 => "fin-wait-1",
        5 => "fin-wait-2",
        6 => "time-wait",
        7 => "closed",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// An MPTCP listener on loopback, or `None` where the kernel has none.
    fn mptcp_listener() -> Option<TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).ok()?;
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .ok()?;
        s.listen(4).ok()?;
        Some(s.into())
    }

    fn mptcp_connect(to: SocketAddr) -> std::net::TcpStream {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).unwrap();
        s.connect(&to.into()).unwrap();
        s.into()
    }

    #[test]
    fn a_loopback_mptcp_connection_shows_its_one_subflow_both_ways_of_reading() {
        let Some(listener) = mptcp_listener() else {
            return; // a kernel without MPTCP
        };
        if support().is_err() {
            return;
        }
        let to = listener.local_addr().unwrap();
        let mut client = mptcp_connect(to);
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"pong!").unwrap();
        client.read_exact(&mut [0u8; 5]).unwrap();

        let Reading::Subflows(full) = read(client.as_raw_fd()).unwrap() else {
            panic!("an MPTCP connection read as a fallback");
        };
        assert_eq!(full.len(), 1, "{full:?}");
        let sf = &full[0];
        assert_eq!(sf.local, client.local_addr().unwrap());
        assert_eq!(sf.remote, to);
        assert_eq!(sf.state, Some(1), "established");
        assert!(sf.rtt.is_some());
        assert_eq!(sf.bytes_received, Some(5));
        assert_eq!(sf.bytes_acked, Some(4));

        // The calls of kernels before 6.5 say the same.
        let legacy = read_legacy(client.as_raw_fd()).unwrap();
        assert_eq!(legacy.len(), 1);
        assert_eq!((legacy[0].local, legacy[0].remote), (sf.local, sf.remote));
        assert_eq!(legacy[0].bytes_received, Some(5));
    }

    #[test]
    fn the_looker_gives_active_mptcp_connections_with_their_working_subflows() {
        let Some(listener) = mptcp_listener() else {
            return; // a kernel without MPTCP
        };
        if support().is_err() {
            return;
        }
        let to = listener.local_addr().unwrap();
        let client = mptcp_connect(to);
        let (_server, _) = listener.accept().unwrap();
        let plain = std::net::TcpStream::connect(to).unwrap();
        let stats = Arc::new(Stats::default());
        let peer: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let mptcp = stats.register(peer, peer, &client, Transport::Mptcp);
        let _tcp = stats.register(peer, peer, &plain, Transport::Tcp);
        let idle = stats.register(peer, peer, &client, Transport::Mptcp);
        let idle_after = Duration::from_millis(200);
        let mut look = looker_idle_after(Arc::clone(&stats), idle_after);
        let conn = |id| ConnLook {
            id,
            v6: false,
            working: vec![client.local_addr().unwrap().ip()],
        };
        // New ones count as active; the one that fell back to TCP never.
        assert_eq!(look(), [conn(0), conn(2)]);
        std::thread::sleep(idle_after);
        mptcp.counters().up.fetch_add(4, Ordering::Relaxed);
        assert_eq!(look(), [conn(0)], "the idle one left out");
        assert_eq!(look(), [conn(0)], "moved within the idle time");
        drop(idle);
    }

    #[test]
    fn a_plain_tcp_client_makes_the_accepted_mptcp_socket_a_fallback() {
        let Some(listener) = mptcp_listener() else {
            return;
        };
        if support().is_err() {
            return;
        }
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(read(server.as_raw_fd()).unwrap(), Reading::Fallback);
    }

    /// An MPTCP_FULL_INFO answer as a kernel of pointer size `ptr` writes it.
    fn full_info(ptr: usize, subflows: &[(SocketAddr, SocketAddr, u8, u32, u64)]) -> sys::FullInfo {
        let sf_kernel = ptr.max(4) + 2 * SOCKADDR_STORAGE_LEN;
        let tcp_len = 232usize;
        let mut header = vec![0u8; sys::FULL_INFO_HEADER_LEN + 96];
        header[0..4].copy_from_slice(&(tcp_len as u32).to_ne_bytes());
        header[4..8].copy_from_slice(&(tcp_len as u32).to_ne_bytes());
        header[8..12].copy_from_slice(&(sf_kernel as u32).to_ne_bytes());
        header[12..16].copy_from_slice(&(sf_kernel as u32).to_ne_bytes());
        header[16..20].copy_from_slice(&(subflows.len() as u32).to_ne_bytes());
        let mut sf = vec![0u8; MAX_SUBFLOWS as usize * SUBFLOW_INFO_LEN as usize];
        let mut tcp = vec![0u8; MAX_SUBFLOWS as usize * TCP_INFO_LEN as usize];
        let put_addr = |b: &mut [u8], a: SocketAddr| match a {
            SocketAddr::V4(v4) => {
                b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&v4.port().to_be_bytes());
                b[4..8].copy_from_slice(&v4.ip().octets());
            }
            SocketAddr::V6(v6) => {
                b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&v6.port().to_be_bytes());
                b[8..24].copy_from_slice(&v6.ip().octets());
            }
        };
        for (i, (local, remote, state, rtt, acked)) in subflows.iter().enumerate() {
            let e = &mut sf[i * sf_kernel..(i + 1) * sf_kernel];
            e[0..4].copy_from_slice(&(i as u32 + 1).to_ne_bytes());
            let at = sf_kernel - 2 * SOCKADDR_STORAGE_LEN;
            put_addr(&mut e[at..], *local);
            put_addr(&mut e[at + SOCKADDR_STORAGE_LEN..], *remote);
            let t = &mut tcp[i * tcp_len..(i + 1) * tcp_len];
            t[TCPI_STATE] = *state;
            t[TCPI_RTT..TCPI_RTT + 4].copy_from_slice(&rtt.to_ne_bytes());
            t[TCPI_BYTES_ACKED..TCPI_BYTES_ACKED + 8].copy_from_slice(&acked.to_ne_bytes());
        }
        sys::FullInfo {
            header,
            subflows: sf,
            tcp_info: tcp,
        }
    }

    #[test]
    fn a_subflow_is_on_the_link_it_is_routed_by_else_on_its_address() {
        use crate::host::view::{Address, AddressScope, Link};
        let link = |index, name: &str| Link {
            index,
            name: name.into(),
            up: true,
            lower_up: true,
        };
        let host = HostView::new(
            vec![link(2, "wan0"), link(3, "wan1")],
            vec![Address {
                index: 2,
                addr: "10.20.0.2".parse().unwrap(),
                prefix_len: 24,
                scope: AddressScope::Universe,
                tentative: false,
            }],
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut asked = 0;
        let mut links = LinkFinder::new(&host, |_, remote| {
            asked += 1;
            (remote == ip("10.20.1.1")).then_some(3)
        });
        // Router B's answer from the dialled address, routed by wan1.
        assert_eq!(
            links.link(ip("10.20.0.2"), ip("10.20.1.1")).as_deref(),
            Some("wan1")
        );
        // No route: the link holding the address, IPv4-mapped or not.
        assert_eq!(
            links
                .link(ip("::ffff:10.20.0.2"), ip("10.20.0.1"))
                .as_deref(),
            Some("wan0")
        );
        assert_eq!(links.link(ip("10.9.9.9"), ip("10.20.0.1")), None);
        // Asked again: from what was found, not the kernel.
        assert_eq!(
            links.link(ip("10.20.0.2"), ip("10.20.1.1")).as_deref(),
            Some("wan1")
        );
        drop(links);
        assert_eq!(asked, 3);
    }

    #[test]
    fn full_info_parses_on_64_and_32_bit_kernels_and_ipv6() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let flows = [
            (a("10.20.0.1:40000"), a("10.20.0.2:4443"), 1, 500, 1000),
            (a("[fd00:20:1::1]:40001"), a("[fd00:20::2]:4443"), 2, 0, 0),
        ];
        for ptr in [8, 4] {
            let got = parse_full_info(&full_info(ptr, &flows)).unwrap();
            assert_eq!(got.len(), 2, "pointer size {ptr}");
            assert_eq!((got[0].local, got[0].remote), (flows[0].0, flows[0].1));
            assert_eq!(got[0].rtt, Some(Duration::from_micros(500)));
            assert_eq!(got[0].bytes_acked, Some(999), "the SYN taken off");
            assert_eq!((got[1].local, got[1].remote), (flows[1].0, flows[1].1));
            assert_eq!(got[1].state, Some(2));
            assert_eq!(state_name(got[1].state.unwrap()), "syn-sent");
        }
    }

    #[test]
    fn a_short_or_odd_full_info_answer_is_an_error_not_a_panic() {
        let mut info = full_info(8, &[]);
        info.header.truncate(20);
        assert!(parse_full_info(&info).is_err());
        let mut info = full_info(8, &[]);
        info.header[8..12].copy_from_slice(&7u32.to_ne_bytes()); // absurd size
        assert!(parse_full_info(&info).is_err());
        // More subflows than were asked for: only those read are returned.
        let a = "10.0.0.1:1".parse::<SocketAddr>().unwrap();
        let many = vec![(a, a, 1, 1, 1); MAX_SUBFLOWS as usize];
        let mut info = full_info(8, &many);
        info.header[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse_full_info(&info).unwrap().len(), MAX_SUBFLOWS as usize);
        assert!(parse_subflow_data(&[1, 2, 3]).is_err());
    }
}
