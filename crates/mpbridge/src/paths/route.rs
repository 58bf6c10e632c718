//! Links, addresses, per-link routing tables and source rules through
//! rtnetlink (the `rtnetlink` crate). Every rule and route added here
//! carries routing protocol [`PROTOCOL`], so a later run finds and removes
//! the leftovers of one that crashed.

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion};

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

/// rtnetlink errors as `io::Error`s (the kernel's errno when there is one).
fn io_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
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

/// A connection to rtnetlink for queries and changes.
#[derive(Clone)]
pub struct Rt {
    handle: Handle,
}

impl Rt {
    /// Opens the connection; its I/O task runs on the current runtime.
    pub fn connect() -> io::Result<Rt> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Rt { handle })
    }

    /// The interface named `name`, or `None` if there is none.
    pub async fn link(&self, name: &str) -> io::Result<Option<LinkState>> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        let msg = match found {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(None),
            Err(e) => {
                let e = io_err(e);
                return if errno(&e) == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
        };
        let flags = msg.header.flags;
        let index = msg.header.index;
        let up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp);
        Ok(Some(LinkState {
            index,
            up,
            addrs: self.addresses(index).await?,
        }))
    }

    async fn addresses(&self, index: u32) -> io::Result<Vec<IpAddr>> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = dump.try_next().await.map_err(io_err)? {
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

    /// The gateway of a main-table route through `ifindex` (the default
    /// route's first): how a link's peer is learned when not configured.
    pub async fn gateway(&self, ifindex: u32, v6: bool) -> io::Result<Option<IpAddr>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family(v6);
        let mut dump = self.handle.route().get(query).execute();
        let mut best: Option<(u8, IpAddr)> = None;
        while let Some(route) = dump.try_next().await.map_err(io_err)? {
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

    /// Adds or replaces a route (idempotent).
    pub async fn replace_route(&self, route: RouteMessage) -> io::Result<()> {
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(io_err)
    }

    /// Adds a rule; one that exists already is fine.
    pub async fn add_rule(&self, rule: RuleMessage) -> io::Result<()> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule;
        match req.execute().await.map_err(io_err) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Deletes a rule; one that is gone already is fine.
    pub async fn delete_rule(&self, rule: RuleMessage) -> io::Result<()> {
        match self.handle.rule().del(rule).execute().await.map_err(io_err) {
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// Deletes every rule and route tagged [`PROTOCOL`]; returns how many.
    pub async fn flush_tagged(&self) -> io::Result<usize> {
        let mut removed = 0;
        for v6 in [false, true] {
            let version = if v6 { IpVersion::V6 } else { IpVersion::V4 };
            let rules: Vec<RuleMessage> = self
                .handle
                .rule()
                .get(version)
                .execute()
                .try_collect()
                .await
                .map_err(io_err)?;
            for rule in rules.into_iter().filter(is_ours_rule) {
                self.delete_rule(rule).await?;
                removed += 1;
            }
            let mut query = RouteMessage::default();
            query.header.address_family = family(v6);
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(io_err)?;
            for route in routes
                .into_iter()
                .filter(|r| r.header.protocol == RouteProtocol::Other(PROTOCOL))
            {
                match self
                    .handle
                    .route()
                    .del(route)
                    .execute()
                    .await
                    .map_err(io_err)
                {
                    Err(e) if errno(&e) != Some(libc::ESRCH) => return Err(e),
                    _ => removed += 1,
                }
            }
        }
        Ok(removed)
    }
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
