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

use ipnet::IpNet;

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use super::nexthop::{self, Nexthop};
use crate::netlink::{
    self as nl, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    RTM_DELROUTE, RTM_DELRULE, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_GETRULE, RTM_NEWADDR,
    RTM_NEWLINK, RTM_NEWNEXTHOP, RTM_NEWROUTE, RTM_NEWRULE,
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

/// `PREFIX nhid GROUP table TABLE [metric METRIC] proto 77`: a route whose
/// next hops are nexthop group `group`. Without a metric the kernel uses
/// its default (IPv4 0, IPv6 1024), as `ip route add` does.
pub fn multipath_route(prefix: IpNet, table: u32, metric: Option<u32>, group: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(prefix.addr().is_ipv6());
    msg.header.destination_prefix_length = prefix.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.protocol = RouteProtocol::Other(PROTOCOL);
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = RouteScope::Universe;
    if prefix.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(match prefix.addr() {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
    }
    msg.attributes.push(RouteAttribute::Table(table));
    if let Some(metric) = metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg.attributes.push(RouteAttribute::NhId(group));
    msg
}

/// A route the kernel holds, as much as a report needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub protocol: u8,
    /// The metric (`priority`), the kernel's default when the route has none.
    pub metric: u32,
    /// `via GW dev IF`, `nhid N`, or the route type, for the operator.
    pub summary: String,
}

fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn destination_of(route: &RouteMessage) -> Option<IpNet> {
    let len = route.header.destination_prefix_length;
    let addr = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    });
    let addr = match (addr, route.header.address_family) {
        (Some(a), _) => a,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
        (None, _) => return None,
    };
    IpNet::new(addr, len).ok()
}

/// `static`, `boot`…: the names `ip route` prints for common protocols.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        9 => "ra".into(),
        16 => "dhcp".into(),
        PROTOCOL => "mpbridge".into(),
        n => n.to_string(),
    }
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
            // Our own multipath routes name every link: no peer is learned
            // from them.
            if table != u32::from(RouteHeader::RT_TABLE_MAIN)
                || route.header.protocol == RouteProtocol::Other(PROTOCOL)
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

    /// Every route to exactly `prefix` in `table`.
    pub fn routes_to(&mut self, prefix: IpNet, table: u32) -> io::Result<Vec<RouteEntry>> {
        let v6 = prefix.addr().is_ipv6();
        let mut out = Vec::new();
        for route in self.routes(v6)? {
            if table_of(&route) != table || destination_of(&route) != Some(prefix) {
                continue;
            }
            let mut metric = if v6 { 1024 } else { 0 };
            let mut parts = Vec::new();
            for a in &route.attributes {
                match a {
                    RouteAttribute::Priority(p) => metric = *p,
                    RouteAttribute::Gateway(RouteAddress::Inet(a)) => {
                        parts.push(format!("via {a}"))
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet6(a)) => {
                        parts.push(format!("via {a}"))
                    }
                    RouteAttribute::Oif(i) => parts.push(format!("dev {}", self.ifname(*i))),
                    RouteAttribute::NhId(id) => parts.push(format!("nhid {id}")),
                    RouteAttribute::MultiPath(hops) => {
                        parts.push(format!("{} next hops", hops.len()))
                    }
                    _ => {}
                }
            }
            if parts.is_empty() {
                parts.push(format!("{:?}", route.header.kind).to_lowercase());
            }
            out.push(RouteEntry {
                protocol: match route.header.protocol {
                    RouteProtocol::Other(n) => n,
                    p => u8::from(p),
                },
                metric,
                summary: parts.join(" "),
            });
        }
        Ok(out)
    }

    /// An interface's name, or `#INDEX` when it has none (any more).
    fn ifname(&self, index: u32) -> String {
        rustix::net::netdevice::index_to_name(&self.sock, index)
            .unwrap_or_else(|_| format!("#{index}"))
    }

    /// Adds a route unless one with the same prefix, table and metric
    /// exists (`Ok(false)`): never replaces someone else's.
    pub fn add_route(&mut self, route: &RouteMessage) -> io::Result<bool> {
        match self
            .sock
            .request(RTM_NEWROUTE, route, NLM_F_CREATE | NLM_F_EXCL)
        {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a route; one that is gone already is fine.
    pub fn delete_route(&mut self, route: &RouteMessage) -> io::Result<()> {
        match self.sock.request(RTM_DELROUTE, route, 0) {
            Err(e) if matches!(errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => Ok(()),
            other => other,
        }
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
            Err((_, e)) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            other => other.map_err(|(_, e)| e),
        }
    }

    /// Deletes every nexthop object tagged [`PROTOCOL`], groups first;
    /// returns how many.
    pub fn flush_nexthops(&mut self) -> io::Result<usize> {
        let mut ours: Vec<Nexthop> = self
            .nexthops()?
            .into_iter()
            .filter(|nh| nh.protocol == PROTOCOL)
            .collect();
        ours.sort_by_key(|nh| !matches!(nh.kind, nexthop::NexthopKind::Group(_)));
        for nh in &ours {
            self.delete_nexthop(nh.id)?;
        }
        Ok(ours.len())
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
            for mut route in routes
                .into_iter()
                .filter(|r| r.header.protocol == RouteProtocol::Other(PROTOCOL))
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
