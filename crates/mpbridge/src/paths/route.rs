//! Links, addresses, per-link routing tables and source rules over the
//! daemon's netlink socket ([`crate::netlink`]). Every rule and route added
//! here carries routing protocol [`PROTOCOL`], so a later run finds and
//! removes the leftovers of one that crashed.

// netlink-packet-route's message types are used one by one, never its
// `RouteNetlinkMessage` enum (or `LinkMessage`, whose attribute parser
// covers every link kind): those parsers for every rtnetlink message cost
// hundreds of KB in the router binary. A link is read from its fixed
// header only.
//
// The calls block, but never wait: the kernel handles an rtnetlink request
// inside the `send` and queues the whole answer (or the next part of a
// dump, inside `recv`) before the call returns.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use crate::netlink::{
    self as nl, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    RTM_DELROUTE, RTM_DELRULE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_GETRULE, RTM_NEWADDR,
    RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWRULE,
};

// include/uapi/linux/if_link.h
const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;
/// Multicast groups of link and address changes.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// The routing protocol number that tags mpbridge's rules and routes
/// (`ip rule show proto 77`, `ip route show table all proto 77`).
pub const PROTOCOL: u8 = 77;

/// What the kernel says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    /// Administratively up with carrier (IFF_UP and IFF_LOWER_UP).
    pub up: bool,
    /// Usable addresses: global scope, not tentative.
    pub addrs: Vec<IpAddr>,
}

fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// A route in `table` through `ifindex`: the default route via `via`, or a
/// device route when there is no next hop to name.
pub fn default_route(table: u32, ifindex: u32, v6: bool, via: Option<IpAddr>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(v6);
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.protocol = RouteProtocol::Other(PROTOCOL);
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if via.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.attributes.push(RouteAttribute::Table(table));
    msg.attributes.push(RouteAttribute::Oif(ifindex));
    match via {
        Some(IpAddr::V4(v4)) => msg
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(v4))),
        Some(IpAddr::V6(v6)) => msg
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(v6))),
        None => {}
    }
    msg
}

/// `from ADDR lookup TABLE priority PRIORITY proto 77`.
pub fn source_rule(addr: IpAddr, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family(addr.is_ipv6());
    msg.header.src_len = if addr.is_ipv6() { 128 } else { 32 };
    msg.header.action = RuleAction::ToTable;
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.attributes.push(RuleAttribute::Source(addr));
    msg.attributes.push(RuleAttribute::Table(table));
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL)));
    msg
}

fn is_ours_rule(rule: &RuleMessage) -> bool {
    rule.attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL))))
}

/// A socket to rtnetlink for queries and changes. Kernel errors come back
/// as `io::Error`s carrying the errno (EEXIST, ENOENT, …).
pub struct Rt {
    sock: nl::Socket,
}

impl Rt {
    pub fn connect() -> io::Result<Rt> {
        Ok(Rt {
            sock: nl::Socket::open(None, 0)?,
        })
    }

    /// The bodies of the messages of type `kind` in the answer to a dump
    /// request for `body`.
    fn dump(&mut self, request: u16, body: &impl Emitable, kind: u16) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.sock.next_seq();
        let bytes = nl::encode(request, body, NLM_F_REQUEST | NLM_F_DUMP, seq);
        let answer = self.sock.dump(&bytes)?;
        Ok(answer
            .into_iter()
            .filter_map(|(k, payload)| (k == kind).then_some(payload))
            .collect())
    }

    /// The interface named `name`, or `None` if there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkState>> {
        let Some(header) = self
            .get_link(name)?
            .and_then(|payload| LinkHeader::parse(&payload).ok())
        else {
            return Ok(None);
        };
        let flags = header.flags;
        let index = header.index;
        let up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp);
        Ok(Some(LinkState {
            index,
            up,
            addrs: self.addresses(index)?,
        }))
    }

    /// The interface's byte counters `(rx_bytes, tx_bytes)` from its
    /// IFLA_STATS64, or `None` if there is no such interface.
    pub fn link_bytes(&mut self, name: &str) -> io::Result<Option<(u64, u64)>> {
        let Some(payload) = self.get_link(name)? else {
            return Ok(None);
        };
        let header_len = LinkHeader::default().buffer_len();
        let stats = payload
            .get(header_len..)
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

    /// The RTM_NEWLINK answer (header and attributes) for interface `name`.
    fn get_link(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        // `ip link show dev NAME`: a bare ifinfomsg and IFLA_IFNAME; the
        // answer is one RTM_NEWLINK, then the acknowledgement.
        let seq = self.sock.next_seq();
        let mut header = vec![0; LinkHeader::default().buffer_len()];
        LinkHeader::default().emit(&mut header);
        let mut w = nl::Writer::default();
        w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        w.raw(&header);
        w.attr_str(IFLA_IFNAME, name);
        w.end();
        let answer = match self.sock.dump(&w.buf) {
            Ok(a) => a,
            Err(e) if errno(&e) == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(answer
            .into_iter()
            .find(|(k, _)| *k == RTM_NEWLINK)
            .map(|(_, payload)| payload))
    }

    fn addresses(&mut self, index: u32) -> io::Result<Vec<IpAddr>> {
        let mut query = AddressMessage::default();
        query.header.index = index;
        let mut out = Vec::new();
        for payload in self.dump(RTM_GETADDR, &query, RTM_NEWADDR)? {
            let Ok(msg) = AddressMessage::parse(&payload[..]) else {
                continue;
            };
            if msg.header.index != index || msg.header.scope != AddressScope::Universe {
                continue;
            }
            let mut addr = None;
            let mut usable = true;
            for a in &msg.attributes {
                match a {
                    // IPv4: IFA_LOCAL is the own address (IFA_ADDRESS the
                    // peer's on point-to-point links); IPv6 has only IFA_ADDRESS.
                    AddressAttribute::Local(ip) => addr = Some(*ip),
                    AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
                    AddressAttribute::Flags(f) => {
                        usable = !f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
                    }
                    _ => {}
                }
            }
            if let (Some(ip), true) = (addr, usable) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        Ok(out)
    }

    /// Every route of one family, in every table.
    fn routes(&mut self, v6: bool) -> io::Result<Vec<RouteMessage>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family(v6);
        let answer = self.dump(RTM_GETROUTE, &query, RTM_NEWROUTE)?;
        Ok(answer
            .iter()
            .filter_map(|p| RouteMessage::parse(&p[..]).ok())
            .collect())
    }

    /// The gateway of a main-table route through `ifindex` (the default
    /// route's first): how a link's peer is learned when not configured.
    pub fn gateway(&mut self, ifindex: u32, v6: bool) -> io::Result<Option<IpAddr>> {
        let mut best: Option<(u8, IpAddr)> = None;
        for route in self.routes(v6)? {
            let table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
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

    /// The interface a packet from `src` to `dst` leaves by, as the kernel
    /// routes it (`ip route get DST from SRC`: policy rules included), or
    /// `None` when it has no route.
    pub fn route_interface(&mut self, src: IpAddr, dst: IpAddr) -> io::Result<Option<u32>> {
        let (src, dst) = (src.to_canonical(), dst.to_canonical());
        if src.is_ipv6() != dst.is_ipv6() {
            return Ok(None);
        }
        let host = if dst.is_ipv6() { 128 } else { 32 };
        let addr = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => RouteAddress::Inet(v4),
            IpAddr::V6(v6) => RouteAddress::Inet6(v6),
        };
        let mut query = RouteMessage::default();
        query.header.address_family = family(dst.is_ipv6());
        query.header.destination_prefix_length = host;
        query.header.source_prefix_length = host;
        query
            .attributes
            .push(RouteAttribute::Destination(addr(dst)));
        query.attributes.push(RouteAttribute::Source(addr(src)));
        let seq = self.sock.next_seq();
        let bytes = nl::encode(RTM_GETROUTE, &query, NLM_F_REQUEST | NLM_F_ACK, seq);
        let answer = match self.sock.dump(&bytes) {
            Ok(answer) => answer,
            Err(e) if matches!(errno(&e), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
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

    /// Adds or replaces a route (idempotent).
    pub fn replace_route(&mut self, route: RouteMessage) -> io::Result<()> {
        self.sock
            .request(RTM_NEWROUTE, &route, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Adds a rule; one that exists already is fine (NLM_F_EXCL makes the
    /// kernel say EEXIST instead of adding a duplicate).
    pub fn add_rule(&mut self, rule: RuleMessage) -> io::Result<()> {
        match self
            .sock
            .request(RTM_NEWRULE, &rule, NLM_F_CREATE | NLM_F_EXCL)
        {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Deletes a rule; one that is gone already is fine.
    pub fn delete_rule(&mut self, rule: RuleMessage) -> io::Result<()> {
        match self.sock.request(RTM_DELRULE, &rule, 0) {
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// Deletes every rule and route tagged [`PROTOCOL`]; returns how many.
    pub fn flush_tagged(&mut self) -> io::Result<usize> {
        let mut removed = 0;
        for v6 in [false, true] {
            let mut query = RuleMessage::default();
            query.header.family = family(v6);
            let rules: Vec<RuleMessage> = self
                .dump(RTM_GETRULE, &query, RTM_NEWRULE)?
                .iter()
                .filter_map(|p| RuleMessage::parse(&p[..]).ok())
                .collect();
            for rule in rules.into_iter().filter(is_ours_rule) {
                self.delete_rule(rule)?;
                removed += 1;
            }
            let routes = self.routes(v6)?;
            for route in routes
                .into_iter()
                .filter(|r| r.header.protocol == RouteProtocol::Other(PROTOCOL))
            {
                match self.sock.request(RTM_DELROUTE, &route, 0) {
                    Err(e) if errno(&e) != Some(libc::ESRCH) => return Err(e),
                    _ => removed += 1,
                }
            }
        }
        Ok(removed)
    }
}

/// A socket on which the kernel reports every link and address change
/// (groups RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR).
pub fn monitor() -> io::Result<nl::Socket> {
    nl::Socket::open(None, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_routes_carry_the_tag() {
        let rule = source_rule("10.20.1.1".parse().unwrap(), 7701, 7700);
        assert!(is_ours_rule(&rule));
        assert_eq!(rule.header.src_len, 32);
        assert_eq!(rule.header.action, RuleAction::ToTable);
        let v6 = source_rule("fd00:20:1::1".parse().unwrap(), 7701, 7700);
        assert_eq!(
            (v6.header.family, v6.header.src_len),
            (AddressFamily::Inet6, 128)
        );
        let route = default_route(7701, 3, false, Some("10.20.1.2".parse().unwrap()));
        assert_eq!(route.header.protocol, RouteProtocol::Other(PROTOCOL));
        assert_eq!(route.header.scope, RouteScope::Universe);
        assert!(route.attributes.contains(&RouteAttribute::Table(7701)));
        // Without a peer: a device route, on-link.
        let dev = default_route(7701, 3, true, None);
        assert_eq!(dev.header.scope, RouteScope::Link);
        assert!(!dev
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_))));
    }
}
