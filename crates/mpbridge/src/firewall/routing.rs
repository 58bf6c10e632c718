//! What TPROXY needs from the routing side: the fwmark policy rule and the
//! `local default dev lo` route in a table of our own, both tagged with our
//! protocol number, added and removed over [`crate::host::rtnetlink`].

use std::io;
use std::net::IpAddr;

use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use crate::host::netlink::{NLM_F_CREATE, RTM_DELROUTE, RTM_DELRULE, RTM_NEWROUTE, RTM_NEWRULE};
use crate::host::rtnetlink::{family, Rtnl};

/// The routing table holding the `local` route of diverted packets.
pub const TABLE: u32 = 0x6d70; // "mp"
/// The policy rule's priority: before `main` (32766).
pub const RULE_PRIORITY: u32 = 0x6d70;
/// Protocol number tagging our rule and route (`ip rule` shows `proto 78`),
/// by which leftovers of a crashed run are found. Not the path manager's 77:
/// each owner finds and removes only its own state.
pub const PROTOCOL: u8 = 78;

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
    rtnl: Rtnl,
}

impl Routing {
    pub fn open() -> io::Result<Routing> {
        Ok(Routing {
            rtnl: Rtnl::open()?,
        })
    }

    /// Adds the fwmark rule and the local route for one family.
    pub fn install(&mut self, v6: bool, mark: u32) -> io::Result<()> {
        let lo = self.loopback_index()?;
        self.rtnl
            .request(RTM_NEWROUTE, &local_route(v6, lo), NLM_F_CREATE)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot add the local route: {e}")))?;
        self.rtnl
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
            if self.rtnl.request(RTM_DELRULE, &rule(v6, mark), 0).is_err() {
                break;
            }
            removed += 1;
        }
        if let Ok(lo) = self.loopback_index() {
            for _ in 0..16 {
                if self
                    .rtnl
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

    /// The interface index the kernel would send a packet to `dest` out of
    /// (`ip route get`), or `None` when there is no route.
    pub fn output_interface(&mut self, dest: IpAddr) -> io::Result<Option<u32>> {
        self.rtnl.route_interface(dest, None)
    }

    fn loopback_index(&self) -> io::Result<u32> {
        self.rtnl
            .interface_index("lo")
            .ok_or_else(|| io::Error::other("no loopback interface \"lo\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netlink::{self as nl, encode, NLM_F_REQUEST};
    use netlink_packet_core::Parseable;

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
