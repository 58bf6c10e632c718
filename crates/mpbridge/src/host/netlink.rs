//! The daemon's one netlink layer, shared by the firewall (nf_tables,
//! routing) and the path manager (rtnetlink, generic netlink `mptcp_pm`):
//! a socket that sends requests, collects acknowledgements and dumps, and
//! the byte-level helpers (headers, attributes) messages are written with.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use netlink_packet_core::Emitable;
use rustix::buffer::spare_capacity;
use rustix::net::{self, netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// `struct nlmsghdr` is 16 bytes.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
/// Marks an attribute whose payload is more attributes.
pub const NLA_F_NESTED: u16 = 0x8000;

// rtnetlink message types (include/uapi/linux/rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

/// Room for one datagram from the kernel.
const RECV_ROOM: usize = 64 * 1024;

/// How long the kernel may take to answer a request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A netlink socket to the kernel, closed on drop.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// Opens a socket of `protocol` (`None` is NETLINK_ROUTE) subscribed to
    /// the multicast `groups` (0 for none).
    pub fn open(protocol: Option<net::Protocol>, groups: u32) -> io::Result<Socket> {
        let fd = net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            protocol,
        )?;
        net::bind(&fd, &netlink::SocketAddrNetlink::new(0, groups))?;
        net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, Some(REPLY_TIMEOUT))?;
        Ok(Socket { fd, seq: 1 })
    }

    /// Joins the multicast group `group` (an id above 31, as generic
    /// netlink families' groups are, cannot be given to `bind`). The kernel
    /// may ask for CAP_NET_ADMIN (`mptcp_pm_events` does).
    pub fn join_group(&self, group: u32) -> io::Result<()> {
        const SOL_NETLINK: libc::c_int = 270;
        const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
        // SAFETY: the fd is an open netlink socket owned by `self`; the
        // option's value is a u32 read by the kernel for the given length.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A socket of events rather than requests: reads never block (for an
    /// async reactor) and its receive queue holds `bytes` (SO_RCVBUFFORCE
    /// as root, else as much as `rmem_max` allows), so a burst of events
    /// is not lost (ENOBUFS) while the reader is busy.
    pub fn into_event_socket(self, bytes: usize) -> io::Result<Socket> {
        rustix::io::ioctl_fionbio(&self.fd, true)?;
        if net::sockopt::set_socket_recv_buffer_size_force(&self.fd, bytes).is_err() {
            net::sockopt::set_socket_recv_buffer_size(&self.fd, bytes)?;
        }
        Ok(self)
    }

    /// This socket watched by the tokio reactor (in a runtime only).
    pub fn into_async(self) -> io::Result<tokio::io::unix::AsyncFd<Socket>> {
        // SAFETY: a `Socket` owns its fd (an `OwnedFd` never replaced)
        // until it is dropped, so the fd stays open and the same for the
        // `AsyncFd`'s whole life.
        unsafe { tokio::io::unix::AsyncFd::register(self) }.map_err(|e| e.into_parts().1)
    }

    /// The next sequence number for a message.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one datagram of messages.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let n = net::send(&self.fd, bytes, SendFlags::empty())?;
        if n != bytes.len() {
            return Err(io::Error::other("netlink message truncated on send"));
        }
        Ok(())
    }

    /// Receives one datagram (several messages, possibly).
    pub fn recv(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.recv_with(buf, RecvFlags::empty()).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer")
            } else {
                e
            }
        })
    }

    /// Receives one datagram if one is queued, else fails with WouldBlock.
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.recv_with(buf, RecvFlags::DONTWAIT)
    }

    /// One datagram into `buf`'s spare room, replacing its contents. The
    /// room is not zeroed first: a router reads a link's counter every 20
    /// ms, and zeroing 64 KiB a time cost more than the exchange (in a
    /// debug build, 0.5 ms each).
    fn recv_with(&self, buf: &mut Vec<u8>, flags: RecvFlags) -> io::Result<()> {
        buf.clear();
        buf.reserve(RECV_ROOM);
        net::recv(&self.fd, spare_capacity(buf), flags)?;
        Ok(())
    }

    /// Sends `bytes` and waits until the kernel has acknowledged every
    /// sequence number in `seqs` (each sent with NLM_F_ACK). The first
    /// error the kernel reports is returned with the index, in `seqs`, of
    /// the message it concerns.
    pub fn transact(&self, bytes: &[u8], seqs: &[u32]) -> Result<(), (Option<usize>, io::Error)> {
        self.send(bytes).map_err(|e| (None, e))?;
        let mut pending: Vec<u32> = seqs.to_vec();
        let mut first_error = None;
        let mut buf = Vec::new();
        while !pending.is_empty() {
            self.recv(&mut buf).map_err(|e| (None, e))?;
            for msg in messages(&buf) {
                if msg.kind != NLMSG_ERROR || msg.payload.len() < 4 {
                    continue;
                }
                let code = i32::from_ne_bytes(msg.payload[..4].try_into().expect("4 bytes"));
                pending.retain(|s| *s != msg.seq);
                if code != 0 && first_error.is_none() {
                    let index = seqs.iter().position(|s| *s == msg.seq);
                    first_error = Some((index, io::Error::from_raw_os_error(-code)));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One request of type `kind` for `body`, which the kernel must
    /// acknowledge (NLM_F_ACK is added); a refusal comes back as its errno.
    pub fn request(&mut self, kind: u16, body: &impl Emitable, flags: u16) -> io::Result<()> {
        let seq = self.next_seq();
        let bytes = encode(kind, body, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        self.transact(&bytes, &[seq]).map_err(|(_, e)| e)
    }

    /// Sends a dump request (or one request with NLM_F_ACK) and returns
    /// the payloads (after the netlink header) of every message of the
    /// answer. Messages of another sequence number (the late answer to a
    /// request that timed out) are skipped.
    pub fn dump(&self, bytes: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = messages(bytes).next().map(|m| m.seq);
        self.send(bytes)?;
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            self.recv(&mut buf)?;
            for msg in messages(&buf).filter(|m| Some(m.seq) == seq) {
                match msg.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = msg
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    kind => out.push((kind, msg.payload.to_vec())),
                }
            }
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One request: a netlink header around a body the rust-netlink crates
/// emit (one of netlink-packet-route's message types, say).
pub fn encode(kind: u16, body: &impl Emitable, flags: u16, seq: u32) -> Vec<u8> {
    let mut bytes = vec![0; body.buffer_len()];
    body.emit(&mut bytes);
    let mut w = Writer::default();
    w.begin(kind, flags, seq);
    w.raw(&bytes);
    w.end();
    w.buf
}

/// One message read back from the kernel.
#[derive(Debug)]
pub struct Message<'a> {
    /// Where the message starts in the datagram.
    #[cfg(test)]
    pub offset: usize,
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// The messages of a datagram; stops at the first truncated one.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = buf;
    #[cfg(test)]
    let total = buf.len();
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let msg = Message {
            #[cfg(test)]
            offset: total - rest.len(),
            kind: u16::from_ne_bytes(rest[4..6].try_into().ok()?),
            seq: u32::from_ne_bytes(rest[8..12].try_into().ok()?),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = &rest[align(len).min(rest.len())..];
        Some(msg)
    })
}

/// The attributes (type without flags, payload) of a message body; stops
/// at the first truncated one.
pub fn attributes(mut rest: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED & 0x7fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = &rest[align(len).min(rest.len())..];
        Some((kind, payload))
    })
}

/// Netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Writes netlink messages and their attributes into one buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
    /// Start offsets of the open messages and nested attributes.
    open: Vec<usize>,
}

impl Writer {
    /// Starts a message; close it with [`Writer::end`].
    pub fn begin(&mut self, kind: u16, flags: u16, seq: u32) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end()
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    }

    /// Ends the innermost open message.
    pub fn end(&mut self) {
        let start = self.open.pop().expect("a message is open");
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Raw bytes (a fixed header such as `nfgenmsg`).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    /// One attribute.
    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes);
    }

    /// A big-endian u32 attribute (nf_tables' numbers are big-endian).
    pub fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    /// Starts a nested attribute; close it with [`Writer::end_nested`].
    pub fn nested(&mut self, kind: u16) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// Ends the innermost nested attribute.
    pub fn end_nested(&mut self) {
        let start = self.open.pop().expect("a nested attribute is open");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_message_reads_back_with_its_attributes() {
        let mut w = Writer::default();
        w.begin(0x0a00, NLM_F_REQUEST, 7);
        w.raw(&[2, 0, 0, 0]);
        w.attr_str(1, "abc");
        w.nested(2);
        w.attr_be32(1, 0x0102_0304);
        w.end_nested();
        w.end();
        let msgs: Vec<_> = messages(&w.buf).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].kind, msgs[0].seq), (0x0a00, 7));
        let attrs: Vec<_> = attributes(&msgs[0].payload[4..]).collect();
        assert_eq!(attrs[0], (1, &b"abc\0"[..]));
        assert_eq!(attrs[1].0, 2);
        let inner: Vec<_> = attributes(attrs[1].1).collect();
        assert_eq!(inner, vec![(1, &[1u8, 2, 3, 4][..])]);
        assert_eq!(w.buf.len() % 4, 0);
    }

    #[test]
    fn truncated_input_yields_no_message() {
        let mut w = Writer::default();
        w.begin(1, 0, 1);
        w.attr(1, &[0; 8]);
        w.end();
        let cut = &w.buf[..w.buf.len() - 2];
        assert_eq!(messages(cut).count(), 0);
    }
}
