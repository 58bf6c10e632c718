//! The path manager's rules and routes as rtnetlink messages, and the
//! report of the routes to a prefix; [`crate::host::rtnetlink::Rtnl`] sends
//! them. Every rule, route and nexthop the path manager adds carries
//! routing protocol [`PROTOCOL`], so a later run finds and removes the
//! leftovers of one that crashed.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use crate::host::rtnetlink::{family, table_of, Rtnl};

/// The routing protocol number that tags mpbridge's rules and routes
/// (`ip rule show proto 77`, `ip route show table all proto 77`).
pub const PROTOCOL: u8 = 77;

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

/// Every route to exactly `prefix` in `table`.
pub fn routes_to(rtnl: &mut Rtnl, prefix: IpNet, table: u32) -> io::Result<Vec<RouteEntry>> {
    let v6 = prefix.addr().is_ipv6();
    let mut out = Vec::new();
    for route in rtnl.routes(v6)? {
        if table_of(&route) != table || destination_of(&route) != Some(prefix) {
            continue;
        }
        let mut metric = if v6 { 1024 } else { 0 };
        let mut parts = Vec::new();
        for a in &route.attributes {
            match a {
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => parts.push(format!("via {a}")),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => parts.push(format!("via {a}")),
                RouteAttribute::Oif(i) => parts.push(format!("dev {}", rtnl.ifname(*i))),
                RouteAttribute::NhId(id) => parts.push(format!("nhid {id}")),
                RouteAttribute::MultiPath(hops) => parts.push(format!("{} next hops", hops.len())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_routes_carry_the_tag() {
        let rule = source_rule("10.20.1.1".parse().unwrap(), 7701, 7700);
        assert!(rule
            .attributes
            .contains(&RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL))));
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
