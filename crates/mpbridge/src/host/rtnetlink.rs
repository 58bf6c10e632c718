//! Plain rtnetlink on the daemon's netlink socket, the crate's one wrapper:
//! the dumps of this host's links and addresses that [`super::view`] is
//! built from, the interface a destination is routed through (`ip route
//! get`), routes, rules and nexthop objects read, added and removed, and
//! requests whose message the caller builds (the firewall's rule and
//! route, the path manager's). What is whose is told by its routing
//! protocol number, which each caller passes (a later run removes the
//! leftovers of one that crashed by it).
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
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use super::netlink::{
    self as nl, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    RTM_DELROUTE, RTM_DELRULE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_GETRULE, RTM_NEWADDR,
    RTM_NEWLINK, RTM_NEWNEXTHOP, RTM_NEWROUTE, RTM_NEWRULE,
};
use super::nexthop::{self, Nexthop, NexthopKind};
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
        Ok(self.link_stats(name)?.and_then(|c| c[2].zip(c[3])))
    }

    /// Interface `name`'s received-packet counter and its bytes received
    /// and sent together (wrapping), from its IFLA_STATS64, or `None` if
    /// there is no such interface.
    pub fn link_traffic(&mut self, name: &str) -> io::Result<Option<(u64, u64)>> {
        Ok(self.link_stats(name)?.and_then(|c| {
            let bytes = c[2]?.wrapping_add(c[3]?);
            Some((c[0]?, bytes))
        }))
    }

    /// The first four counters of interface `name`'s IFLA_STATS64:
    /// rx_packets, tx_packets, rx_bytes, tx_bytes.
    fn link_stats(&mut self, name: &str) -> io::Result<Option<[Option<u64>; 4]>> {
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
        Ok(Some([counter(0), counter(8), counter(16), counter(24)]))
    }

    /// The index of interface `name` (SIOCGIFINDEX), `None` if there is none.
    pub fn interface_index(&self, name: &str) -> Option<u32> {
        rustix::net::netdevice::name_to_index(&self.sock, name).ok()
    }

    /// An interface's name, or `#INDEX` when it has none (any more).
    pub fn ifname(&self, index: u32) -> String {
        rustix::net::netdevice::index_to_name(&self.sock, index)
            .unwrap_or_else(|_| format!("#{index}"))
    }

    /// Every route of one family, in every table.
    pub fn routes(&mut self, v6: bool) -> io::Result<Vec<RouteMessage>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family(v6);
        let answer = self.dump(RTM_GETROUTE, &query, RTM_NEWROUTE)?;
        Ok(answer
            .iter()
            .filter_map(|p| RouteMessage::parse(&p[..]).ok())
            .collect())
    }

    /// The gateway of a main-table route through `ifindex` (the default
    /// route's first), routes of protocol `not_of` left out: how a link's
    /// peer is learned when not configured.
    pub fn gateway(&mut self, ifindex: u32, v6: bool, not_of: u8) -> io::Result<Option<IpAddr>> {
        let mut best: Option<(u8, IpAddr)> = None;
        for route in self.routes(v6)? {
            if table_of(&route) != u32::from(RouteHeader::RT_TABLE_MAIN)
                || route.header.protocol == RouteProtocol::Other(not_of)
            {
                continue;
            }
            let oif = route
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == ifindex));
            let gw = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                _ => None,
            });
            if let (true, Some(gw)) = (oif, gw) {
                let len = route.header.destination_prefix_length;
                if best.is_none_or(|(l, _)| len < l) {
                    best = Some((len, gw));
                }
            }
        }
        Ok(best.map(|(_, gw)| gw))
    }

    /// Adds a route unless one with the same prefix, table and metric
    /// exists (`Ok(false)`): never replaces someone else's.
    pub fn add_route(&mut self, route: &RouteMessage) -> io::Result<bool> {
        match self
            .sock
            .request(RTM_NEWROUTE, route, NLM_F_CREATE | NLM_F_EXCL)
        {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds or replaces a route (idempotent).
    pub fn replace_route(&mut self, route: &RouteMessage) -> io::Result<()> {
        self.sock
            .request(RTM_NEWROUTE, route, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Deletes a route; one that is gone already is fine.
    pub fn delete_route(&mut self, route: &RouteMessage) -> io::Result<()> {
        match self.sock.request(RTM_DELROUTE, route, 0) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) => Ok(()),
            other => other,
        }
    }

    /// Adds a rule; one that exists already is fine (NLM_F_EXCL makes the
    /// kernel say EEXIST instead of adding a duplicate).
    pub fn add_rule(&mut self, rule: &RuleMessage) -> io::Result<()> {
        match self
            .sock
            .request(RTM_NEWRULE, rule, NLM_F_CREATE | NLM_F_EXCL)
        {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Deletes a rule; one that is gone already is fine.
    pub fn delete_rule(&mut self, rule: &RuleMessage) -> io::Result<()> {
        match self.sock.request(RTM_DELRULE, rule, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// Deletes every rule and route of routing protocol `protocol`;
    /// returns how many.
    pub fn flush_protocol(&mut self, protocol: u8) -> io::Result<usize> {
        let tag = RouteProtocol::Other(protocol);
        let mut removed = 0;
        for v6 in [false, true] {
            let mut query = RuleMessage::default();
            query.header.family = family(v6);
            let rules: Vec<RuleMessage> = self
                .dump(RTM_GETRULE, &query, RTM_NEWRULE)?
                .iter()
                .filter_map(|p| RuleMessage::parse(&p[..]).ok())
                .filter(|r| r.attributes.contains(&RuleAttribute::Protocol(tag)))
                .collect();
            for rule in &rules {
                self.delete_rule(rule)?;
                removed += 1;
            }
            for mut route in self
                .routes(v6)?
                .into_iter()
                .filter(|r| r.header.protocol == tag)
            {
                // A route through a nexthop object is dumped with its next
                // hops spelled out too, which a delete may not name (EINVAL).
                if route
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::NhId(_)))
                {
                    route.attributes.retain(|a| {
                        matches!(
                            a,
                            RouteAttribute::Table(_)
                                | RouteAttribute::Destination(_)
                                | RouteAttribute::Priority(_)
                                | RouteAttribute::NhId(_)
                        )
                    });
                }
                match self.sock.request(RTM_DELROUTE, &route, 0) {
                    Err(e) if e.raw_os_error() != Some(libc::ESRCH) => return Err(e),
                    _ => removed += 1,
                }
            }
        }
        Ok(removed)
    }

    /// Every nexthop object of the namespace.
    pub fn nexthops(&mut self) -> io::Result<Vec<Nexthop>> {
        let seq = self.sock.next_seq();
        let answer = self.sock.dump(&nexthop::dump_message(seq))?;
        Ok(answer
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWNEXTHOP)
            .filter_map(|(_, payload)| nexthop::parse(payload))
            .collect())
    }

    /// Creates nexthop `nh.id`, or replaces it in place (a group keeps its
    /// routes; flows move only as far as the membership changed).
    pub fn replace_nexthop(&mut self, nh: &Nexthop) -> io::Result<()> {
        let seq = self.sock.next_seq();
        let bytes = nexthop::new_message(nh, NLM_F_CREATE | NLM_F_REPLACE, seq);
        self.sock.transact(&bytes, &[seq]).map_err(|(_, e)| e)
    }

    /// Deletes nexthop `id` (and, if it is a group, the routes through
    /// it); one that is gone already is fine.
    pub fn delete_nexthop(&mut self, id: u32) -> io::Result<()> {
        let seq = self.sock.next_seq();
        match self
            .sock
            .transact(&nexthop::delete_message(id, seq), &[seq])
        {
            Err((_, e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map_err(|(_, e)| e),
        }
    }

    /// Deletes every nexthop object of routing protocol `protocol`, groups
    /// first; returns how many.
    pub fn flush_nexthops(&mut self, protocol: u8) -> io::Result<usize> {
        let mut doomed: Vec<Nexthop> = self
            .nexthops()?
            .into_iter()
            .filter(|nh| nh.protocol == protocol)
            .collect();
        doomed.sort_by_key(|nh| !matches!(nh.kind, NexthopKind::Group(_)));
        for nh in &doomed {
            self.delete_nexthop(nh.id)?;
        }
        Ok(doomed.len())
    }
}

/// The table a route is in (RTA_TABLE, else the header's byte).
pub fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
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
