//! Receiving a datagram together with the address it was sent to and the
//! interface it came in on, and answering from that same address. The
//! safe crates stop short of this: socket2 passes control messages as raw
//! bytes and neither it nor tokio decodes IP_PKTINFO / IPV6_PKTINFO, so the
//! few `cmsg` lines live here.

use std::io::{self, IoSlice};
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{MaybeUninitSlice, MsgHdr, MsgHdrMut, SockAddr, SockAddrStorage, Socket};

/// Where a datagram came from, which of our addresses it was sent to,
/// and on which interface it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub to: IpAddr,
    pub ifindex: u32,
}

/// Asks the kernel to report destination address and interface of every
/// datagram received on `socket`.
pub fn enable(socket: &Socket, v6: bool) -> io::Result<()> {
    let one: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: a valid fd, and an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Control buffer large enough for one IPv4 or IPv6 packet-info message.
const CONTROL_LEN: usize = 64;

/// One `recvmsg` (non-blocking socket: `WouldBlock` when empty).
pub fn recv(socket: &Socket, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [MaybeUninit::<u8>::uninit(); CONTROL_LEN];
    let storage = SockAddrStorage::zeroed();
    let len = storage.size_of();
    // SAFETY: an all-zero storage of its full size is a valid (unspecified)
    // address; recvmsg fills it in.
    let mut from = unsafe { SockAddr::new(storage, len) };
    let mut bufs = [MaybeUninitSlice::new(
        // SAFETY: initialised bytes viewed as maybe-uninitialised ones.
        unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) },
    )];
    let mut msg = MsgHdrMut::new()
        .with_addr(&mut from)
        .with_buffers(&mut bufs)
        .with_control(&mut control);
    let len = socket.recvmsg(&mut msg, 0)?;
    let control_len = msg.control_len();
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram from a non-IP address"))?;
    // SAFETY: the kernel initialised the first `control_len` bytes.
    let control: &[u8] =
        unsafe { std::slice::from_raw_parts(control.as_ptr().cast(), control_len) };
    let (to, ifindex) =
        parse_control(control).ok_or_else(|| io::Error::other("datagram without packet info"))?;
    Ok(Received {
        len,
        // No IPv4-mapped sources: the IPv6 responder socket is IPv6-only.
        from,
        to,
        ifindex,
    })
}

/// Sends `data` to `to` from our address `from`.
pub fn send_from(socket: &Socket, data: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<()> {
    let mut control = [0u8; CONTROL_LEN];
    let control_len = match from {
        IpAddr::V4(a) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            write_cmsg(&mut control, libc::IPPROTO_IP, libc::IP_PKTINFO, &info)
        }
        IpAddr::V6(a) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                ipi6_ifindex: 0,
            };
            write_cmsg(&mut control, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info)
        }
    };
    let to = SockAddr::from(to);
    let bufs = [IoSlice::new(data)];
    let msg = MsgHdr::new()
        .with_addr(&to)
        .with_buffers(&bufs)
        .with_control(&control[..control_len]);
    socket.sendmsg(&msg, 0).map(drop)
}

/// Writes one control message holding `value`; returns the bytes used.
fn write_cmsg<T: Copy>(buf: &mut [u8; CONTROL_LEN], level: i32, kind: i32, value: &T) -> usize {
    // SAFETY: CMSG_SPACE of the value fits in the 8-aligned-enough buffer
    // (checked below); the header and data are written unaligned.
    unsafe {
        let space = libc::CMSG_SPACE(mem::size_of::<T>() as u32) as usize;
        assert!(space <= CONTROL_LEN, "control buffer too small");
        // Zeroed then filled: musl's cmsghdr has private padding fields.
        let mut header: libc::cmsghdr = mem::zeroed();
        header.cmsg_len = libc::CMSG_LEN(mem::size_of::<T>() as u32) as _;
        header.cmsg_level = level;
        header.cmsg_type = kind;
        std::ptr::write_unaligned(buf.as_mut_ptr().cast::<libc::cmsghdr>(), header);
        let data = buf.as_mut_ptr().add(libc::CMSG_LEN(0) as usize);
        std::ptr::write_unaligned(data.cast::<T>(), *value);
        space
    }
}

/// The destination address and interface from the control messages.
fn parse_control(control: &[u8]) -> Option<(IpAddr, u32)> {
    let header_len = mem::size_of::<libc::cmsghdr>();
    // SAFETY: CMSG_LEN only computes a length; it reads and writes no
    // memory, though libc declares it unsafe.
    let data_at = unsafe { libc::CMSG_LEN(0) } as usize;
    let mut at = 0;
    while at + header_len <= control.len() {
        // SAFETY: `header_len` bytes are in bounds; read unaligned.
        let header: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control[at..].as_ptr().cast()) };
        let len = header.cmsg_len as usize;
        if len < data_at || at + len > control.len() {
            return None;
        }
        let data = &control[at + data_at..at + len];
        match (header.cmsg_level, header.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO)
                if data.len() >= mem::size_of::<libc::in_pktinfo>() =>
            {
                // SAFETY: length checked; read unaligned.
                let info: libc::in_pktinfo =
                    unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                let addr = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                return Some((IpAddr::V4(addr), info.ipi_ifindex as u32));
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                if data.len() >= mem::size_of::<libc::in6_pktinfo>() =>
            {
                // SAFETY: length checked; read unaligned.
                let info: libc::in6_pktinfo =
                    unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                let addr = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                return Some((IpAddr::V6(addr), info.ipi6_ifindex));
            }
            _ => {}
        }
        // SAFETY: pure arithmetic on the message length.
        at += unsafe { libc::CMSG_SPACE((len - data_at) as u32) } as usize;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Type};

    fn udp(v6: bool) -> Socket {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        if v6 {
            s.set_only_v6(true).unwrap();
        }
        s
    }

    #[test]
    fn the_destination_address_and_interface_come_with_the_datagram() {
        for (v6, any, lo) in [(false, "0.0.0.0:0", "127.0.0.1"), (true, "[::]:0", "::1")] {
            let server = udp(v6);
            if server
                .bind(&any.parse::<SocketAddr>().unwrap().into())
                .is_err()
            {
                continue; // no IPv6 on this host
            }
            enable(&server, v6).unwrap();
            let port = server.local_addr().unwrap().as_socket().unwrap().port();
            let client =
                std::net::UdpSocket::bind(SocketAddr::new(lo.parse().unwrap(), 0)).unwrap();
            let target = SocketAddr::new(lo.parse().unwrap(), port);
            client.send_to(b"ping", target).unwrap();
            let mut buf = [0u8; 64];
            let got = recv(&server, &mut buf).unwrap();
            assert_eq!(&buf[..got.len], b"ping");
            assert_eq!(got.to, target.ip());
            assert_eq!(got.from, client.local_addr().unwrap());
            assert!(got.ifindex > 0);
            send_from(&server, b"pong", got.from, got.to).unwrap();
            let (n, peer) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"pong");
            assert_eq!(peer, target);
        }
    }

    #[test]
    fn truncated_or_foreign_control_data_is_not_trusted() {
        assert_eq!(parse_control(&[]), None);
        assert_eq!(parse_control(&[0xff; 7]), None);
        // A header claiming more bytes than there are.
        let mut bogus = [0u8; 32];
        bogus[0] = 200;
        assert_eq!(parse_control(&bogus), None);
    }
}
