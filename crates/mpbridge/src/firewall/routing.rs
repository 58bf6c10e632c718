//! What TPROXY needs from the routing side, over rtnetlink: the fwmark
//! policy rule and the `local default dev lo` route in a table of our own,
//! both tagged with our protocol number; plus the lookups the firewall
//! makes (this host's prefixes, the interface a remote is routed through).

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use crate::netlink::{
    self as nl, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, RTM_DELROUTE, RTM_DELRULE,
    RTM_GETADDR, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWRULE,
};

/// The routing table holding the `local` route of diverted packets.
pub const TABLE: u32 = 0x6d70; // "mp"
/// The policy rule's priority: before `main` (32766).
pub const RULE_PRIORITY: u32 = 0x6d70;
/// Protocol number tagging our rule and route (`ip rule` shows `proto 78`),
/// by which leftovers of a crashed run are found. Not the path manager's 77:
/// each owner finds and removes only its own state.
pub const PROTOCOL: u8 = 78;

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

// The crate's message types are used one by one, not its
// `RouteNetlinkMessage` enum, whose parser and emitter for every rtnetlink
// message (links, tc, neighbours…) would add some 300 KB to the router
// binary.
use nl::encode;

/// `ip rule add fwmark MARK/MARK_MASK lookup TABLE priority P proto 78`:
/// other bits of the mark (mwan3's, pbr's) do not matter.
fn rule(v6: bool, mark: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family(v6);
    m.header.action = RuleAction::ToTable;
    m.attributes = vec![
        RuleAttribute::FwMark(mark),
        RuleAttribute::FwMask(super::MARK_MASK),
        RuleAttribute::Table(TABLE),
        RuleAttribute::Priority(RULE_PRIORITY),
        RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL)),
    ];
    m
}

/// `ip route add local default dev lo table TABLE proto 78`.
fn local_route(v6: bool, lo: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family(v6),
        table: RouteHeader::RT_TABLE_UNSPEC,
        protocol: RouteProtocol::Other(PROTOCOL),
        scope: RouteScope::Host,
        kind: RouteType::Local,
        ..RouteHeader::default()
    };
    m.attributes = vec![RouteAttribute::Table(TABLE), RouteAttribute::Oif(lo)];
    m
}

/// A socket to the routing side of the kernel.
pub struct Routing {
    sock: nl::Socket,
}

impl Routing {
    pub fn open() -> io::Result<Routing> {
        Ok(Routing {
            sock: nl::Socket::open(None, 0)?,
        })
    }

    /// Adds the fwmark rule and the local route for one family.
    pub fn install(&mut self, v6: bool, mark: u32) -> io::Result<()> {
        let lo = loopback_index()?;
        self.sock
            .request(RTM_NEWROUTE, &local_route(v6, lo), NLM_F_CREATE)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot add the local route: {e}")))?;
        self.sock
            .request(RTM_NEWRULE, &rule(v6, mark), NLM_F_CREATE)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot add the fwmark rule: {e}")))
    }

    /// Removes our rules and route of one family, also those a crashed run
    /// left behind; what is absent is fine. Returns how many were removed.
    pub fn remove(&mut self, v6: bool, mark: u32) -> usize {
        let mut removed = 0;
        // Delete by description until the kernel says there is none left
        // (a crash between two starts may have left more than one rule).
        for _ in 0..16 {
            if self.sock.request(RTM_DELRULE, &rule(v6, mark), 0).is_err() {
                break;
            }
            removed += 1;
        }
        if let Ok(lo) = loopback_index() {
            for _ in 0..16 {
                if self
                    .sock
                    .request(RTM_DELROUTE, &local_route(v6, lo), 0)
                    .is_err()
                {
                    break;
                }
                removed += 1;
            }
        }
        removed
    }

    /// Every address of this host with its prefix length, as prefixes.
    pub fn local_prefixes(&mut self) -> io::Result<Vec<IpNet>> {
        let seq = self.sock.next_seq();
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Unspec;
        let bytes = encode(RTM_GETADDR, &m, NLM_F_REQUEST | NLM_F_DUMP, seq);
        let mut out = Vec::new();
        for (kind, payload) in self.sock.dump(&bytes)? {
            if kind != RTM_NEWADDR {
                continue;
            }
            let Ok(a) = AddressMessage::parse(&payload[..]) else {
                continue;
            };
            // IFA_LOCAL is the host's own address on point-to-point links;
            // IFA_ADDRESS otherwise.
            let addr = a
                .attributes
                .iter()
                .find_map(|at| match at {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                })
                .or_else(|| {
                    a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
            if let Some(net) = addr.and_then(|ip| IpNet::new(ip, a.header.prefix_len).ok()) {
                out.push(net.trunc());
            }
        }
        Ok(out)
    }

    /// The interface index the kernel would send a packet to `dest` out of
    /// (`ip route get`), or `None` when there is no route.
    pub fn output_interface(&mut self, dest: IpAddr) -> io::Result<Option<u32>> {
        let seq = self.sock.next_seq();
        let mut m = RouteMessage::default();
        m.header.address_family = family(dest.is_ipv6());
        m.header.destination_prefix_length = if dest.is_ipv6() { 128 } else { 32 };
        m.attributes = vec![RouteAttribute::Destination(RouteAddress::from(dest))];
        let bytes = encode(RTM_GETROUTE, &m, NLM_F_REQUEST | NLM_F_ACK, seq);
        let answers = match self.sock.dump(&bytes) {
            Ok(a) => a,
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
        for (kind, payload) in answers {
            if kind != RTM_NEWROUTE {
                continue;
            }
            if let Ok(r) = RouteMessage::parse(&payload[..]) {
                return Ok(r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                }));
            }
        }
        Ok(None)
    }
}

/// The socket on which address changes arrive (rtnetlink multicast groups
/// RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR).
pub fn address_monitor() -> io::Result<nl::Socket> {
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    nl::Socket::open(None, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
}

/// An interface's index, `None` when there is no such interface.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

fn loopback_index() -> io::Result<u32> {
    interface_index("lo").ok_or_else(|| io::Error::other("no loopback interface \"lo\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_and_route_messages_carry_our_tag() {
        let bytes = encode(RTM_NEWRULE, &rule(true, 0x42), NLM_F_REQUEST, 9);
        let msg = nl::messages(&bytes).next().unwrap();
        assert_eq!((msg.kind, msg.seq), (RTM_NEWRULE, 9));
        let back = RuleMessage::parse(msg.payload).unwrap();
        assert!(back.attributes.contains(&RuleAttribute::FwMark(0x42)));
        assert!(back
            .attributes
            .contains(&RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL))));
        let bytes = encode(RTM_NEWROUTE, &local_route(false, 1), NLM_F_REQUEST, 9);
        let msg = nl::messages(&bytes).next().unwrap();
        let r = RouteMessage::parse(msg.payload).unwrap();
        assert_eq!(r.header.kind, RouteType::Local);
        assert!(r.attributes.contains(&RouteAttribute::Table(TABLE)));
    }
}
