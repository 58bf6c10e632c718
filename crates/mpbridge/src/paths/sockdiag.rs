//! This host's MPTCP subflows as the kernel's socket diagnostics list them
//! (NETLINK_SOCK_DIAG, `ss -tni`'s source), and closing one of them
//! (SOCK_DESTROY, `ss -K`; needs CONFIG_INET_DIAG_DESTROY).
//!
//! Router B uses it to close the subflows over a link that fell silent
//! ([`super::planner::Action::CloseSubflows`]): router B accepts subflows,
//! so it has no endpoint of its own per link whose removal would close
//! them, and the in-kernel path manager offers no other way.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Instant;

use crate::host::netlink::{self as nl, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::host::rtnetlink::Rtnl;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// `idiag_ext` bit asking for `tcp_info`, which also brings the ULP's.
const EXT_INFO: u8 = 1 << (2 - 1);
/// TCP states a subflow may hold data to send in: ESTABLISHED, FIN_WAIT1,
/// CLOSE_WAIT, LAST_ACK, CLOSING.
const STATES: u32 = 1 << 1 | 1 << 4 | 1 << 8 | 1 << 9 | 1 << 11;
/// `struct inet_diag_msg`, before its attributes.
const MSG_LEN: usize = 72;
/// `struct inet_diag_sockid`.
const SOCKID_LEN: usize = 48;
const INET_DIAG_ULP_INFO: u16 = 19;
/// The request's attribute holding a filter program, and its operations.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const BC_NOP: u8 = 0;
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const INET_ULP_INFO_NAME: u16 = 1;
const INET_ULP_INFO_MPTCP: u16 = 3;
const MPTCP_SUBFLOW_ATTR_TOKEN_REM: u16 = 1;
const MPTCP_SUBFLOW_ATTR_TOKEN_LOC: u16 = 2;
const MPTCP_SUBFLOW_ATTR_FLAGS: u16 = 8;
/// `MPTCP_SUBFLOW_FLAG_BKUP_REM | MPTCP_SUBFLOW_FLAG_BKUP_LOC`: either end
/// asked that the subflow be a backup.
const SUBFLOW_BACKUP: u32 = 1 << 4 | 1 << 5;
/// The attribute holding `struct tcp_info`, and where in it
/// `tcpi_unacked` and `tcpi_notsent_bytes` sit.
const INET_DIAG_INFO: u16 = 2;
const TCPI_UNACKED: usize = 24;
const TCPI_NOTSENT_BYTES: usize = 144;

/// One MPTCP subflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subflow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Its connection: the local and the remote token.
    pub connection: (u32, u32),
    /// A backup (either end asked) with nothing unacknowledged and nothing
    /// waiting to be sent: what closing it would save is nothing.
    pub idle_backup: bool,
    /// The kernel's `inet_diag_sockid`, as it was listed: what names the
    /// socket to close.
    sockid: [u8; SOCKID_LEN],
    family: u8,
}

/// A socket-diagnostics netlink socket.
#[derive(Debug)]
pub struct SockDiag {
    sock: nl::Socket,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            sock: nl::Socket::open(Some(rustix::net::netlink::SOCK_DIAG), 0)?,
        })
    }

    /// The MPTCP subflows, of both families, whose local port is one of
    /// `ports`.
    pub fn subflows(&mut self, ports: &[u16]) -> io::Result<Vec<Subflow>> {
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = self.listed(&port_filter(ports))?;
        out.retain(|s| ports.contains(&s.local.port()));
        Ok(out)
    }

    /// The MPTCP subflows, of both families, that the kernel lists through
    /// `filter` (a [`port_filter`]; empty: every socket).
    fn listed(&mut self, filter: &[u8]) -> io::Result<Vec<Subflow>> {
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let seq = self.sock.next_seq();
            let req = request(family, EXT_INFO, STATES, &[0; SOCKID_LEN]);
            let mut w = nl::Writer::default();
            w.begin(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq);
            w.raw(&req);
            if !filter.is_empty() {
                w.attr(INET_DIAG_REQ_BYTECODE, filter);
            }
            w.end();
            for (kind, payload) in self.sock.dump(&w.buf)? {
                if kind != SOCK_DIAG_BY_FAMILY {
                    continue;
                }
                out.extend(parse(&payload));
            }
        }
        Ok(out)
    }

    /// Whether this kernel closes sockets on request: it lists them (else
    /// the error), and a request to close one that does not exist is
    /// refused as missing (ENOENT), not as unsupported (EOPNOTSUPP: no
    /// CONFIG_INET_DIAG_DESTROY).
    pub fn can_destroy(&mut self) -> io::Result<bool> {
        // Port 0 is no socket's local port: the kernel walks its sockets
        // but fills and copies none, a cheap check at start.
        self.listed(&port_filter(&[0]))?;
        let nobody = Subflow {
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            remote: SocketAddr::from(([0, 0, 0, 0], 0)),
            connection: (0, 0),
            idle_backup: false,
            sockid: [0; SOCKID_LEN],
            family: AF_INET,
        };
        match self.destroy(&nobody) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(e),
            // Nothing to close matched nothing: taken as able.
            Ok(()) => Ok(true),
        }
    }

    /// Closes `subflow` (the kernel aborts it, as `ss -K` would): its
    /// connection sends its data again over the others. EOPNOTSUPP: the
    /// kernel lacks CONFIG_INET_DIAG_DESTROY; ENOENT: it is gone already.
    pub fn destroy(&mut self, subflow: &Subflow) -> io::Result<()> {
        let seq = self.sock.next_seq();
        let req = request(subflow.family, 0, u32::MAX, &subflow.sockid);
        let mut w = nl::Writer::default();
        w.begin(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq);
        w.raw(&req);
        w.end();
        self.sock.transact(&w.buf, &[seq]).map_err(|(_, e)| e)
    }
}

/// The kernel's filter program (`inet_diag_bc_op`s, `ss`'s `sport = :P`)
/// that keeps the sockets whose local port is one of `ports`, so that the
/// others (router B's upstream connection for each bridged one, anything
/// else on the host) are neither filled with their tcp_info nor copied;
/// empty for no ports.
///
/// Per port, `sport >= P` then `sport <= P` (the oldest operations, in
/// every kernel with socket diagnostics); a port that matches runs into a
/// jump to the end, which accepts, one that does not jumps to the next
/// port's test, past the last one's end, which refuses. The kernel accepts
/// a program only if each jump lands on the chain of "yes" steps or 4
/// bytes past the end: these do.
fn port_filter(ports: &[u16]) -> Vec<u8> {
    const PER_PORT: usize = 16;
    const JMP_LEN: usize = 4;
    let op = |code: u8, yes: u8, no: u16| {
        let mut b = vec![code, yes];
        b.extend_from_slice(&no.to_ne_bytes());
        b
    };
    let total = (ports.len() * (PER_PORT + JMP_LEN)).saturating_sub(JMP_LEN);
    let mut bc = Vec::with_capacity(total);
    for &port in ports {
        // `no` counts from the operation's own start: past this port's
        // test and the jump after it (or, for the last, 4 past the end).
        bc.extend(op(BC_S_GE, 8, (PER_PORT + JMP_LEN) as u16));
        bc.extend(op(BC_NOP, 0, port));
        bc.extend(op(BC_S_LE, 8, (PER_PORT - 8 + JMP_LEN) as u16));
        bc.extend(op(BC_NOP, 0, port));
        if bc.len() < total {
            // Matched: to the very end.
            let to_end = total - bc.len();
            bc.extend(op(BC_JMP, JMP_LEN as u8, to_end as u16));
        }
    }
    bc
}

/// `struct inet_diag_req_v2` for TCP.
fn request(family: u8, ext: u8, states: u32, sockid: &[u8; SOCKID_LEN]) -> Vec<u8> {
    let mut req = vec![family, IPPROTO_TCP, ext, 0];
    req.extend_from_slice(&states.to_ne_bytes());
    req.extend_from_slice(sockid);
    req
}

/// One `inet_diag_msg` with its attributes; `None` unless it is an MPTCP
/// subflow with its tokens.
fn parse(payload: &[u8]) -> Option<Subflow> {
    let head = payload.get(..MSG_LEN)?;
    let family = head[0];
    let sockid: [u8; SOCKID_LEN] = head[4..4 + SOCKID_LEN].try_into().ok()?;
    let sport = u16::from_be_bytes([sockid[0], sockid[1]]);
    let dport = u16::from_be_bytes([sockid[2], sockid[3]]);
    let addr = |bytes: &[u8]| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&bytes[..4]).ok()?,
            ))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(bytes).ok()?,
            ))),
            _ => None,
        }
    };
    let local = SocketAddr::new(addr(&sockid[4..20])?, sport);
    let remote = SocketAddr::new(addr(&sockid[20..36])?, dport);
    let mut ulp = None;
    // Nothing in flight and nothing queued; unknown (no `tcp_info`): not.
    let mut idle = false;
    for (kind, value) in nl::attributes(&payload[MSG_LEN..]) {
        match kind {
            INET_DIAG_ULP_INFO => ulp = Some(value),
            INET_DIAG_INFO => {
                let word = |at: usize| {
                    value
                        .get(at..at + 4)
                        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
                };
                // `tcpi_notsent_bytes` came with Linux 4.6: absent, zero.
                idle = word(TCPI_UNACKED) == Some(0) && word(TCPI_NOTSENT_BYTES).unwrap_or(0) == 0;
            }
            _ => {}
        }
    }
    let ulp = ulp?;
    let mut mptcp = false;
    let (mut loc, mut rem) = (None, None);
    let mut flags = 0;
    for (kind, value) in nl::attributes(ulp) {
        match kind {
            INET_ULP_INFO_NAME => mptcp = value.split(|b| *b == 0).next() == Some(b"mptcp"),
            INET_ULP_INFO_MPTCP => {
                for (kind, value) in nl::attributes(value) {
                    let token = value
                        .get(..4)
                        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    match kind {
                        MPTCP_SUBFLOW_ATTR_TOKEN_LOC => loc = token,
                        MPTCP_SUBFLOW_ATTR_TOKEN_REM => rem = token,
                        MPTCP_SUBFLOW_ATTR_FLAGS => flags = token.unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Subflow {
        local,
        remote,
        connection: (loc?, rem?),
        idle_backup: idle && flags & SUBFLOW_BACKUP != 0,
        sockid,
        family,
    })
    .filter(|_| mptcp)
}

/// Of `subflows` (with the interface each leaves by), those to close for
/// interface `dead`: the ones that leave by it and whose connection has a
/// subflow leaving by another, but not idle backups.
///
/// An idle backup (router A benched the link, or configured it so) holds
/// nothing to send again, and the kernel sends no new data on it while
/// another subflow can; closing it anyway makes the kernel send its
/// connection's whole unacknowledged window again over the others
/// (`__mptcp_retransmit_pending_data` re-injects the MPTCP-level
/// retransmit queue whenever a subflow is closed), and the flow stalls
/// while they carry the copies: 0.3 s at every flap of a lossy benched
/// link beside a 20 Mbit/s one (lab VM, Linux 6.12).
pub fn to_close(subflows: &[(Subflow, Option<u32>)], dead: u32) -> Vec<&Subflow> {
    // The connections with a subflow leaving by another interface: one
    // pass, for router B may hold thousands.
    let elsewhere: HashSet<(u32, u32)> = subflows
        .iter()
        .filter(|(_, out)| out.is_some_and(|i| i != dead))
        .map(|(s, _)| s.connection)
        .collect();
    subflows
        .iter()
        .filter(|(s, out)| {
            *out == Some(dead) && !s.idle_backup && elsewhere.contains(&s.connection)
        })
        .map(|(s, _)| s)
        .collect()
}

/// Said once, at start, where the kernel cannot close router B's subflows.
pub const CANNOT_CLOSE: &str = "this kernel cannot close sockets from outside (it lacks \
     CONFIG_INET_DIAG_DESTROY): router B leaves the subflows over a failed link with their \
     data until router A's REMOVE_ADDR arrives over another link (probe.close_subflows = \
     false says the same without this warning)";

/// Router B's closing of its subflows over a failed link, on a thread of
/// its own. Listing the host's TCP sockets took 28–32 ms for 19,200 of
/// them on the dev VM's x86 cores, 10–15 ms with the [`port_filter`] where
/// a quarter matched (the kernel still walks them all), several times that
/// on a router's; meanwhile the daemon's runtime (one thread on a one-core
/// router) must go on relaying and answering router A's probes.
#[derive(Debug)]
pub struct Closer {
    jobs: mpsc::Sender<(String, u32)>,
}

impl Closer {
    /// Starts the thread, with `diag` (found able to close) and the
    /// listening ports whose subflows it closes; it ends with the closer.
    pub fn spawn(diag: SockDiag, ports: Vec<u16>) -> io::Result<Closer> {
        let rt = Rtnl::open()?;
        let (jobs, todo) = mpsc::channel::<(String, u32)>();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("mpbridge-close".into())
            .spawn(move || {
                let _entered = span.enter();
                let mut work = Work { diag, rt, ports };
                for (link, ifindex) in todo {
                    let started = Instant::now();
                    match work.close(ifindex) {
                        Ok(0) => tracing::debug!(%link, "no MPTCP subflow to close over the failed link"),
                        Ok(closed) => {
                            let took_ms = started.elapsed().as_millis() as u64;
                            tracing::info!(%link, subflows = closed, took_ms, "closed the MPTCP subflows over the failed link: their connections send what they had in flight again over the others");
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                            tracing::warn!("{CANNOT_CLOSE}");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(%link, "cannot close the MPTCP subflows over the failed link: {e}")
                        }
                    }
                }
            })?;
        Ok(Closer { jobs })
    }

    /// Closes, soon, the subflows that leave by interface `ifindex` (of
    /// link `link`) where their connection has a subflow leaving by another.
    pub fn close(&self, link: String, ifindex: u32) {
        // Only a thread that ended (the kernel cannot close) refuses.
        let _ = self.jobs.send((link, ifindex));
    }
}

/// What the closing thread holds.
struct Work {
    diag: SockDiag,
    rt: Rtnl,
    ports: Vec<u16>,
}

impl Work {
    /// Closes the subflows of [`Work::ports`] that leave by interface
    /// `ifindex`, where their connection has a subflow leaving by another;
    /// returns how many.
    fn close(&mut self, ifindex: u32) -> io::Result<usize> {
        let subflows = self.diag.subflows(&self.ports)?;
        // Which interface each leaves by: as the kernel routes its peer
        // (one lookup per pair of addresses).
        let mut routed: HashMap<(IpAddr, IpAddr), Option<u32>> = HashMap::new();
        let mut listed = Vec::with_capacity(subflows.len());
        for s in subflows {
            let key = (s.remote.ip(), s.local.ip());
            let out = match routed.get(&key) {
                Some(&out) => out,
                None => {
                    let out = self.rt.route_interface(key.0, Some(key.1))?;
                    routed.insert(key, out);
                    out
                }
            };
            listed.push((s, out));
        }
        let mut closed = 0;
        for s in to_close(&listed, ifindex) {
            match self.diag.destroy(s) {
                Ok(()) => closed += 1,
                // Closed meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `inet_diag_msg` as the kernel writes it, with the ULP's
    /// attributes when `ulp` names one.
    fn message(
        local: SocketAddr,
        remote: SocketAddr,
        ulp: Option<&str>,
        tokens: (u32, u32),
    ) -> Vec<u8> {
        message_with(local, remote, ulp, tokens, 0x42, None)
    }

    /// The same with the subflow's MPTCP flags and, when given, a
    /// `tcp_info` of `len` bytes with `tcpi_unacked` and
    /// `tcpi_notsent_bytes` set.
    fn message_with(
        local: SocketAddr,
        remote: SocketAddr,
        ulp: Option<&str>,
        tokens: (u32, u32),
        flags: u32,
        info: Option<(usize, u32, u32)>,
    ) -> Vec<u8> {
        let family = if local.is_ipv6() { AF_INET6 } else { AF_INET };
        let mut m = vec![family, 1, 0, 0];
        m.extend_from_slice(&local.port().to_be_bytes());
        m.extend_from_slice(&remote.port().to_be_bytes());
        for a in [local.ip(), remote.ip()] {
            let mut bytes = [0u8; 16];
            match a {
                IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => bytes.copy_from_slice(&v6.octets()),
            }
            m.extend_from_slice(&bytes);
        }
        m.extend_from_slice(&3u32.to_ne_bytes()); // if
        m.extend_from_slice(&[7; 8]); // cookie
        m.extend_from_slice(&[0; 20]);
        assert_eq!(m.len(), MSG_LEN);
        let mut w = nl::Writer::default();
        w.attr(8, &[0; 16]); // INET_DIAG_SHUTDOWN-like noise first
        if let Some((len, unacked, notsent)) = info {
            let mut tcp = vec![0u8; len];
            if len >= TCPI_UNACKED + 4 {
                tcp[TCPI_UNACKED..TCPI_UNACKED + 4].copy_from_slice(&unacked.to_ne_bytes());
            }
            if len >= TCPI_NOTSENT_BYTES + 4 {
                tcp[TCPI_NOTSENT_BYTES..TCPI_NOTSENT_BYTES + 4]
                    .copy_from_slice(&notsent.to_ne_bytes());
            }
            w.attr(INET_DIAG_INFO, &tcp);
        }
        if let Some(name) = ulp {
            w.nested(INET_DIAG_ULP_INFO);
            w.attr_str(INET_ULP_INFO_NAME, name);
            w.nested(INET_ULP_INFO_MPTCP);
            w.attr(MPTCP_SUBFLOW_ATTR_TOKEN_REM, &tokens.1.to_ne_bytes());
            w.attr(MPTCP_SUBFLOW_ATTR_TOKEN_LOC, &tokens.0.to_ne_bytes());
            w.attr(MPTCP_SUBFLOW_ATTR_FLAGS, &flags.to_ne_bytes());
            w.end_nested();
            w.end_nested();
        }
        m.extend_from_slice(&w.buf);
        m
    }

    #[test]
    fn a_subflow_is_read_with_its_addresses_tokens_and_sockid() {
        let local: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        let remote: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        let s = parse(&message(local, remote, Some("mptcp"), (11, 22))).unwrap();
        assert_eq!((s.local, s.remote, s.connection), (local, remote, (11, 22)));
        assert_eq!(s.family, AF_INET);
        // The request to close it names the socket as it was listed.
        let req = request(s.family, 0, u32::MAX, &s.sockid);
        assert_eq!(req.len(), 56);
        assert_eq!(&req[..2], &[AF_INET, IPPROTO_TCP]);
        assert_eq!(&req[8..], &message(local, remote, None, (0, 0))[4..52]);

        let local: SocketAddr = "[fd00::2]:7000".parse().unwrap();
        let remote: SocketAddr = "[fd01::1]:40000".parse().unwrap();
        let s = parse(&message(local, remote, Some("mptcp"), (5, 6))).unwrap();
        assert_eq!((s.local, s.remote, s.connection), (local, remote, (5, 6)));
    }

    #[test]
    fn a_backup_with_nothing_in_flight_or_queued_is_an_idle_backup() {
        let local: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        let remote: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        let idle = |flags: u32, info: Option<(usize, u32, u32)>| {
            let m = message_with(local, remote, Some("mptcp"), (1, 2), flags, info);
            parse(&m).unwrap().idle_backup
        };
        // Linux 6.x's tcp_info is 280 bytes or more; 4.x's shorter.
        let (full, old) = (280, 104);
        // The peer asked for a backup (router A benched the link), or this
        // end did.
        assert!(idle(0x42 | 1 << 4, Some((full, 0, 0))));
        assert!(idle(0x42 | 1 << 5, Some((full, 0, 0))));
        assert!(idle(0x42 | 1 << 4, Some((old, 0, 0))));
        // Data in flight, or queued: closing it has them sent again.
        assert!(!idle(0x42 | 1 << 4, Some((full, 3, 0))));
        assert!(!idle(0x42 | 1 << 4, Some((full, 0, 1448))));
        // Not a backup, or nothing known of its data.
        assert!(!idle(0x42, Some((full, 0, 0))));
        assert!(!idle(0x42 | 1 << 4, None));
        assert!(!idle(0x42 | 1 << 4, Some((20, 0, 0))));
    }

    #[test]
    fn plain_tcp_another_ulp_and_short_messages_are_no_subflows() {
        let local: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        let remote: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        assert_eq!(parse(&message(local, remote, None, (1, 2))), None);
        assert_eq!(parse(&message(local, remote, Some("tls"), (1, 2))), None);
        let m = message(local, remote, Some("mptcp"), (1, 2));
        assert_eq!(parse(&m[..MSG_LEN - 1]), None);
        // Attributes cut short: no tokens, no subflow, no panic.
        for cut in MSG_LEN..m.len() {
            let _ = parse(&m[..cut]);
        }
    }

    #[test]
    fn only_subflows_whose_connection_keeps_another_link_are_closed() {
        let sub = |port: u16, conn: u32| Subflow {
            local: "10.0.0.2:7000".parse().unwrap(),
            remote: SocketAddr::new("10.1.0.1".parse().unwrap(), port),
            connection: (conn, conn + 100),
            idle_backup: false,
            sockid: [0; SOCKID_LEN],
            family: AF_INET,
        };
        let idle_backup = |port: u16, conn: u32| Subflow {
            idle_backup: true,
            ..sub(port, conn)
        };
        let listed = vec![
            (sub(1, 1), Some(5)), // connection 1: on 5 and 6
            (sub(2, 1), Some(6)),
            (sub(3, 2), Some(5)), // connection 2: on 5 only
            (sub(4, 3), Some(6)), // connection 3: on 6 only
            (sub(5, 4), Some(5)), // connection 4: on 5, and unknown
            (sub(6, 4), None),
            (idle_backup(7, 5), Some(5)), // connection 5: an idle backup on 5
            (sub(8, 5), Some(6)),
        ];
        let closed: Vec<u16> = to_close(&listed, 5)
            .iter()
            .map(|s| s.remote.port())
            .collect();
        // Connection 5's idle backup stays: nothing of it to send again.
        assert_eq!(closed, vec![1]);
        let closed: Vec<u16> = to_close(&listed, 6)
            .iter()
            .map(|s| s.remote.port())
            .collect();
        // Connection 5 goes on over its backup, which the kernel then uses.
        assert_eq!(closed, vec![2, 8]);
    }

    /// The kernel's check of a filter program (`inet_diag_bc_audit` for
    /// the operations used here): every jump a multiple of 4, at least the
    /// operation's length, at most 4 past the end, and each "no" landing
    /// on the chain of "yes" steps (`valid_cc`).
    fn audit(bc: &[u8]) -> bool {
        let on_yes_chain = |target: usize| {
            let mut at = 0;
            while at < bc.len() {
                if at == target {
                    return true;
                }
                at += bc[at + 1] as usize;
            }
            at == target
        };
        let mut at = 0;
        while at < bc.len() {
            let len = bc.len() - at;
            let (code, yes) = (bc[at], bc[at + 1] as usize);
            let no = u16::from_ne_bytes([bc[at + 2], bc[at + 3]]) as usize;
            let min = match code {
                BC_S_GE | BC_S_LE => 8,
                BC_JMP => 4,
                _ => return false,
            };
            if no < min || no > len + 4 || no % 4 != 0 {
                return false;
            }
            if no < len && !on_yes_chain(at + no) {
                return false;
            }
            if yes < min || yes > len + 4 || yes % 4 != 0 {
                return false;
            }
            at += yes;
        }
        at == bc.len()
    }

    /// The kernel's run of a filter program on a socket's local port
    /// (`inet_diag_bc_run`): accepted when it ends exactly at the end.
    fn run(bc: &[u8], sport: u16) -> bool {
        let mut at = 0;
        while at < bc.len() {
            let (code, yes) = (bc[at], bc[at + 1] as usize);
            let no = u16::from_ne_bytes([bc[at + 2], bc[at + 3]]) as usize;
            let arg = || u16::from_ne_bytes([bc[at + 6], bc[at + 7]]);
            let taken = match code {
                BC_S_GE => sport >= arg(),
                BC_S_LE => sport <= arg(),
                _ => false, // the jump
            };
            at += if taken { yes } else { no };
        }
        at == bc.len()
    }

    #[test]
    fn the_port_filter_keeps_exactly_the_ports_given_and_passes_the_kernels_check() {
        assert!(port_filter(&[]).is_empty());
        let sets: [&[u16]; 5] = [
            &[4443],
            &[1, 65535],
            &[4443, 4444, 8080],
            &[80, 443, 4443, 5201, 8388],
            &[65535, 0, 32768],
        ];
        for ports in sets {
            let bc = port_filter(ports);
            assert!(audit(&bc), "{ports:?}: refused by the kernel's check");
            for sport in (0..=u16::MAX).step_by(97).chain(
                ports
                    .iter()
                    .flat_map(|&p| [p.wrapping_sub(1), p, p.wrapping_add(1)]),
            ) {
                assert_eq!(
                    run(&bc, sport),
                    ports.contains(&sport),
                    "{ports:?}: port {sport}"
                );
            }
        }
    }

    /// The real kernel takes the program and lists only the sockets of
    /// the ports given, where it lists both ends of two loopback MPTCP
    /// connections without it (in a namespace of the test's own).
    #[test]
    fn the_kernel_lists_only_the_subflows_of_the_ports_given() {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let found = crate::paths::in_fresh_netns(|| {
            let mut keep = Vec::new();
            for (port, proto) in [
                (4443, Some(Protocol::MPTCP)),
                (4444, Some(Protocol::MPTCP)),
                (4445, None),
            ] {
                let at = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port)));
                let listen = Socket::new(Domain::IPV4, Type::STREAM, proto).unwrap();
                listen.bind(&at).unwrap();
                listen.listen(8).unwrap();
                let client = Socket::new(Domain::IPV4, Type::STREAM, proto).unwrap();
                client.connect(&at).unwrap();
                keep.push(listen.accept().unwrap().0);
                keep.extend([listen, client]);
            }
            let mut diag = SockDiag::open().unwrap();
            assert_eq!(diag.listed(&[]).unwrap().len(), 4, "both ends of both");
            let mut ports = |ports: &[u16]| -> Vec<u16> {
                let mut p: Vec<u16> = diag
                    .listed(&port_filter(ports))
                    .unwrap()
                    .iter()
                    .map(|s| s.local.port())
                    .collect();
                p.sort();
                p
            };
            (ports(&[4443]), ports(&[4443, 4444]), ports(&[4445]))
        });
        assert_eq!(found.0, vec![4443]);
        assert_eq!(found.1, vec![4443, 4444]);
        // The plain TCP connection's sockets pass the filter, not the
        // MPTCP test.
        assert_eq!(found.2, Vec::<u16>::new());
    }
}
