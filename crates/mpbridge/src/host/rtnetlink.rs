//! Plain rtnetlink on the daemon's netlink socket: the dumps of this host's
//! links and addresses that [`super::view`] is built from, the interface a
//! destination is routed through (`ip route get`), and requests whose
//! message the caller builds (the firewall's rule and route).
//!
//! The calls block, but never wait: the kernel handles an rtnetlink
//! request inside the `send` and queues the whole answer (or the next part
//! of a dump, inside `recv`) before the call returns. Even so they run off
//! the async workers: on the view's own thread, or in `spawn_blocking`.

// netlink-packet-route's message types are used one by one, never its
// `RouteNetlinkMessage` enum or `LinkMessage` (whose attribute parser covers
// every kind of link): those parsers cost hundreds of KB in the router
// binary. A link is read from its fixed header and its name attribute only.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;

use super::netlink::{
    self as nl, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE,
    RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE,
};
use super::view::{Address, Link};

// include/uapi/linux/if_link.h
const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;

/// The address family of `v6` or IPv4.
pub fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// A socket for rtnetlink requests. Kernel errors come back as
/// `io::Error`s carrying the errno (EEXIST, ENOENT, …).
#[derive(Debug)]
pub struct Rtnl {
    sock: nl::Socket,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        Ok(Rtnl {
            sock: nl::Socket::open(None, 0)?,
        })
    }

    /// One request of type `kind` for `body`, acknowledged by the kernel; a
    /// refusal comes back as its errno.
    pub fn request(&mut self, kind: u16, body: &impl Emitable, flags: u16) -> io::Result<()> {
        self.sock.request(kind, body, flags)
    }

    /// The bodies of the messages of type `kind` in the answer to a dump
    /// request of type `request` for `body`.
    fn dump(&mut self, request: u16, body: &impl Emitable, kind: u16) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.sock.next_seq();
        let bytes = nl::encode(request, body, NLM_F_REQUEST | NLM_F_DUMP, seq);
        Ok(self
            .sock
            .dump(&bytes)?
            .into_iter()
            .filter_map(|(k, payload)| (k == kind).then_some(payload))
            .collect())
    }

    /// Every interface of the namespace (`ip link show`).
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let answer = self.dump(RTM_GETLINK, &LinkHeader::default(), RTM_NEWLINK)?;
        Ok(answer.iter().filter_map(|p| parse_link(p)).collect())
    }

    /// Every address of every interface, of every scope (`ip addr show`).
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Unspec;
        let answer = self.dump(RTM_GETADDR, &query, RTM_NEWADDR)?;
        Ok(answer.iter().filter_map(|p| parse_address(p)).collect())
    }

    /// The interface a packet to `dst` (from `src`, if given) leaves by, as
    /// the kernel routes it (`ip route get DST [from SRC]`: policy rules
    /// included), or `None` when there is no route.
    pub fn route_interface(&mut self, dst: IpAddr, src: Option<IpAddr>) -> io::Result<Option<u32>> {
        let dst = dst.to_canonical();
        let src = src.map(|s| s.to_canonical());
        if src.is_some_and(|s| s.is_ipv6() != dst.is_ipv6()) {
            return Ok(None);
        }
        let host = if dst.is_ipv6() { 128 } else { 32 };
        let mut query = RouteMessage::default();
        query.header.address_family = family(dst.is_ipv6());
        query.header.destination_prefix_length = host;
        query
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        if let Some(src) = src {
            query.header.source_prefix_length = host;
            query
                .attributes
                .push(RouteAttribute::Source(RouteAddress::from(src)));
        }
        let seq = self.sock.next_seq();
        let bytes = nl::encode(RTM_GETROUTE, &query, NLM_F_REQUEST | NLM_F_ACK, seq);
        let answer = match self.sock.dump(&bytes) {
            Ok(answer) => answer,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Ok(answer
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWROUTE)
            .filter_map(|(_, payload)| RouteMessage::parse(&payload[..]).ok())
            .flat_map(|route| route.attributes)
            .find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(index),
                _ => None,
            }))
    }

    /// Interface `name`'s byte counters `(rx_bytes, tx_bytes)` from its
    /// IFLA_STATS64, or `None` if there is no such interface.
    pub fn link_bytes(&mut self, name: &str) -> io::Result<Option<(u64, u64)>> {
        // `ip link show dev NAME`: a bare ifinfomsg and IFLA_IFNAME; the
        // answer is one RTM_NEWLINK, then the acknowledgement.
        let seq = self.sock.next_seq();
        let header = LinkHeader::default();
        let mut body = vec![0; header.buffer_len()];
        header.emit(&mut body);
        let mut w = nl::Writer::default();
        w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        w.raw(&body);
        w.attr_str(IFLA_IFNAME, name);
        w.end();
        let answer = match self.sock.dump(&w.buf) {
            Ok(answer) => answer,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some((_, payload)) = answer.into_iter().find(|(k, _)| *k == RTM_NEWLINK) else {
            return Ok(None);
        };
        let stats = payload
            .get(header.buffer_len()..)
            .into_iter()
            .flat_map(nl::attributes)
            .find(|(kind, _)| *kind == IFLA_STATS64)
            .map(|(_, value)| value);
        // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, …
        let counter = |at: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(stats?.get(at..at + 8)?.try_into().ok()?))
        };
        Ok(counter(16).zip(counter(24)))
    }

    /// The index of interface `name` (SIOCGIFINDEX), `None` if there is none.
    pub fn interface_index(&self, name: &str) -> Option<u32> {
        rustix::net::netdevice::name_to_index(&self.sock, name).ok()
    }
}

/// A link from an RTM_NEWLINK body: its fixed header and IFLA_IFNAME.
pub fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = LinkHeader::parse(payload).ok()?;
    let name = payload
        .get(header.buffer_len()..)
        .into_iter()
        .flat_map(nl::attributes)
        .find(|(kind, _)| *kind == IFLA_IFNAME)
        .map(|(_, value)| {
            let value = value.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(value).into_owned()
        })?;
    Some(Link {
        index: header.index,
        name,
        up: header.flags.contains(LinkFlags::Up),
        lower_up: header.flags.contains(LinkFlags::LowerUp),
    })
}

/// An address from an RTM_NEWADDR body.
pub fn parse_address(payload: &[u8]) -> Option<Address> {
    let msg = AddressMessage::parse(payload).ok()?;
    let mut local = None;
    let mut address = None;
    let mut tentative = false;
    for a in &msg.attributes {
        match a {
            // IPv4: IFA_LOCAL is the own address (IFA_ADDRESS the peer's on
            // point-to-point links); IPv6 has only IFA_ADDRESS.
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => {
                tentative = f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
            }
            _ => {}
        }
    }
    Some(Address {
        index: msg.header.index,
        addr: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        scope: msg.header.scope,
        tentative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressScope;

    #[test]
    fn a_link_reads_back_with_its_name_and_flags() {
        let header = LinkHeader {
            index: 7,
            flags: LinkFlags::Up | LinkFlags::LowerUp,
            ..LinkHeader::default()
        };
        let mut body = vec![0; header.buffer_len()];
        header.emit(&mut body);
        let mut w = nl::Writer::default();
        w.begin(RTM_NEWLINK, 0, 1);
        w.raw(&body);
        w.attr(1, &[0; 6]); // IFLA_ADDRESS, skipped
        w.attr_str(IFLA_IFNAME, "wan1");
        w.end();
        let msg = nl::messages(&w.buf).next().unwrap();
        let link = parse_link(msg.payload).unwrap();
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "wan1".into(),
                up: true,
                lower_up: true
            }
        );
        // Without a name there is no link to show.
        assert_eq!(parse_link(&body), None);
    }

    #[test]
    fn an_address_is_the_local_one_on_point_to_point_links() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = 3;
        m.header.prefix_len = 32;
        m.header.scope = AddressScope::Universe;
        m.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().unwrap()),
            AddressAttribute::Local("10.0.0.1".parse().unwrap()),
        ];
        let mut body = vec![0; m.buffer_len()];
        m.emit(&mut body);
        let a = parse_address(&body).unwrap();
        assert_eq!(a.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((a.index, a.prefix_len, a.tentative), (3, 32, false));

        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = 64;
        m.attributes = vec![
            AddressAttribute::Address("fd00::1".parse().unwrap()),
            AddressAttribute::Flags(AddressFlags::Tentative),
        ];
        let mut body = vec![0; m.buffer_len()];
        m.emit(&mut body);
        let a = parse_address(&body).unwrap();
        assert_eq!(a.addr, "fd00::1".parse::<IpAddr>().unwrap());
        assert!(a.tentative);
    }
}
