//! Kernel nexthop objects (Linux >= 5.3) as rtnetlink messages: one per
//! link and family, and the multipath group routes point at. Pure: no
//! socket, so every message is a unit test ([`super::rtnetlink::Rtnl`] sends
//! them).

// netlink-packet-route (0.34) has no nexthop messages, so they are written
// here with the daemon's netlink writer, after include/uapi/linux/nexthop.h:
//
//   struct nhmsg { u8 family, scope, protocol, resvd; u32 flags; }
//   struct nexthop_grp { u32 id; u8 weight; u8 weight_high; u16 resvd; }
//
// A group's family is AF_UNSPEC; a weight travels as weight - 1.

use std::net::IpAddr;

use super::netlink::{self as nl, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use super::netlink::{RTM_DELNEXTHOP, RTM_GETNEXTHOP, RTM_NEWNEXTHOP};

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHMSG_LEN: usize = 8;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
/// The largest weight of a group member that every kernel with nexthop
/// groups takes (one byte on the wire; 6.12 added a high byte).
pub const MAX_WEIGHT: u16 = 256;

/// What a nexthop object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexthopKind {
    /// Out of interface `ifindex`, via `gateway`, or to destinations on the
    /// link itself without one.
    Link {
        ifindex: u32,
        v6: bool,
        gateway: Option<IpAddr>,
    },
    /// A multipath group: (member id, weight 1..=[`MAX_WEIGHT`]), hashed per
    /// flow by the kernel (hash-threshold).
    Group(Vec<(u32, u16)>),
    /// Anything else (blackhole, encapsulation, resilient group): not ours.
    Other,
}

/// One nexthop object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    pub id: u32,
    /// Routing protocol that installed it (the path manager's:
    /// `paths::route::PROTOCOL`).
    pub protocol: u8,
    pub kind: NexthopKind,
}

fn nhmsg(family: u8, protocol: u8) -> [u8; NHMSG_LEN] {
    let mut h = [0u8; NHMSG_LEN];
    h[0] = family;
    h[2] = protocol;
    h
}

/// `ip nexthop add|replace …` as one message with `flags` (NLM_F_REQUEST
/// and NLM_F_ACK are added).
pub fn new_message(nh: &Nexthop, flags: u16, seq: u32) -> Vec<u8> {
    let mut w = nl::Writer::default();
    w.begin(RTM_NEWNEXTHOP, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
    match &nh.kind {
        NexthopKind::Link {
            ifindex,
            v6,
            gateway,
        } => {
            w.raw(&nhmsg(if *v6 { AF_INET6 } else { AF_INET }, nh.protocol));
            w.attr(NHA_ID, &nh.id.to_ne_bytes());
            w.attr(NHA_OIF, &ifindex.to_ne_bytes());
            match gateway {
                Some(IpAddr::V4(a)) => w.attr(NHA_GATEWAY, &a.octets()),
                Some(IpAddr::V6(a)) => w.attr(NHA_GATEWAY, &a.octets()),
                None => {}
            }
        }
        NexthopKind::Group(members) => {
            w.raw(&nhmsg(AF_UNSPEC, nh.protocol));
            w.attr(NHA_ID, &nh.id.to_ne_bytes());
            let mut entries = Vec::with_capacity(8 * members.len());
            for &(id, weight) in members {
                let wire = weight.clamp(1, MAX_WEIGHT) - 1;
                entries.extend_from_slice(&id.to_ne_bytes());
                entries.push((wire & 0xff) as u8);
                entries.extend_from_slice(&[0, 0, 0]);
            }
            w.attr(NHA_GROUP, &entries);
        }
        NexthopKind::Other => unreachable!("only link nexthops and groups are written"),
    }
    w.end();
    w.buf
}

/// `ip nexthop del id ID`.
pub fn delete_message(id: u32, seq: u32) -> Vec<u8> {
    let mut w = nl::Writer::default();
    w.begin(RTM_DELNEXTHOP, NLM_F_REQUEST | NLM_F_ACK, seq);
    w.raw(&nhmsg(AF_UNSPEC, 0));
    w.attr(NHA_ID, &id.to_ne_bytes());
    w.end();
    w.buf
}

/// `ip nexthop show`: every nexthop object of the namespace.
pub fn dump_message(seq: u32) -> Vec<u8> {
    let mut w = nl::Writer::default();
    w.begin(RTM_GETNEXTHOP, NLM_F_REQUEST | NLM_F_DUMP, seq);
    w.raw(&nhmsg(AF_UNSPEC, 0));
    w.end();
    w.buf
}

/// A nexthop from the payload of an RTM_NEWNEXTHOP message; `None` when
/// it is truncated or has no id.
pub fn parse(payload: &[u8]) -> Option<Nexthop> {
    let header = payload.get(..NHMSG_LEN)?;
    let (family, protocol) = (header[0], header[2]);
    let mut id = None;
    let mut ifindex = None;
    let mut gateway = None;
    let mut group = None;
    let mut other = false;
    let u32_of = |b: &[u8]| {
        b.get(..4)
            .map(|b| u32::from_ne_bytes(b.try_into().expect("4")))
    };
    for (kind, value) in nl::attributes(&payload[NHMSG_LEN..]) {
        match kind {
            NHA_ID => id = u32_of(value),
            NHA_OIF => ifindex = u32_of(value),
            NHA_GATEWAY => {
                gateway = match value.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).expect("4"))),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).expect("16"))),
                    _ => None,
                }
            }
            NHA_GROUP => {
                group = Some(
                    value
                        .chunks_exact(8)
                        .map(|e| {
                            let id = u32::from_ne_bytes(e[..4].try_into().expect("4"));
                            (id, (u16::from(e[5]) << 8 | u16::from(e[4])) + 1)
                        })
                        .collect(),
                )
            }
            // NHA_BLACKHOLE, NHA_ENCAP_TYPE, NHA_ENCAP, NHA_FDB, NHA_RES_GROUP
            4 | 7 | 8 | 11 | 12 => other = true,
            _ => {}
        }
    }
    let kind = match (group, ifindex, other) {
        (_, _, true) => NexthopKind::Other,
        (Some(members), _, false) => NexthopKind::Group(members),
        (None, Some(ifindex), false) => NexthopKind::Link {
            ifindex,
            v6: family == AF_INET6,
            gateway,
        },
        (None, None, false) => NexthopKind::Other,
    };
    Some(Nexthop {
        id: id?,
        protocol,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(bytes: &[u8]) -> &[u8] {
        let msg = nl::messages(bytes).next().expect("one message");
        msg.payload
    }

    #[test]
    fn a_link_nexthop_reads_back_as_written() {
        for (v6, gw) in [
            (false, Some("10.20.0.2".parse().unwrap())),
            (true, Some("fd00:20::2".parse().unwrap())),
            (true, None),
        ] {
            let nh = Nexthop {
                id: 7700,
                protocol: 77,
                kind: NexthopKind::Link {
                    ifindex: 21,
                    v6,
                    gateway: gw,
                },
            };
            let bytes = new_message(&nh, nl::NLM_F_CREATE, 5);
            let msg = nl::messages(&bytes).next().unwrap();
            assert_eq!((msg.kind, msg.seq), (RTM_NEWNEXTHOP, 5));
            assert_eq!(msg.payload[0], if v6 { AF_INET6 } else { AF_INET });
            assert_eq!(parse(msg.payload), Some(nh));
        }
    }

    #[test]
    fn a_group_carries_its_members_and_weights() {
        let nh = Nexthop {
            id: 7716,
            protocol: 77,
            kind: NexthopKind::Group(vec![(7700, 1), (7702, 256), (7704, 100)]),
        };
        let bytes = new_message(&nh, 0, 1);
        let p = payload(&bytes);
        // A group has no family; weights travel as weight - 1.
        assert_eq!(p[0], AF_UNSPEC);
        let (_, group) = nl::attributes(&p[NHMSG_LEN..])
            .find(|(k, _)| *k == NHA_GROUP)
            .unwrap();
        assert_eq!(group.len(), 24);
        assert_eq!((group[4], group[12], group[20]), (0, 255, 99));
        assert_eq!(parse(p), Some(nh));
    }

    #[test]
    fn delete_and_dump_name_what_they_concern() {
        let del = delete_message(7716, 3);
        let msg = nl::messages(&del).next().unwrap();
        assert_eq!(msg.kind, RTM_DELNEXTHOP);
        let attrs: Vec<_> = nl::attributes(&msg.payload[NHMSG_LEN..]).collect();
        assert_eq!(attrs, vec![(NHA_ID, &7716u32.to_ne_bytes()[..])]);
        let dump = dump_message(4);
        let msg = nl::messages(&dump).next().unwrap();
        assert_eq!(msg.kind, RTM_GETNEXTHOP);
        assert_eq!(msg.payload.len(), NHMSG_LEN);
    }

    #[test]
    fn foreign_and_broken_nexthops_are_recognised() {
        // A blackhole nexthop: an id and the NHA_BLACKHOLE flag.
        let mut w = nl::Writer::default();
        w.begin(RTM_NEWNEXTHOP, 0, 1);
        w.raw(&nhmsg(AF_INET, 4));
        w.attr(NHA_ID, &9u32.to_ne_bytes());
        w.attr(4, &[]);
        w.end();
        let nh = parse(payload(&w.buf)).unwrap();
        assert_eq!((nh.id, nh.protocol, nh.kind), (9, 4, NexthopKind::Other));
        // Truncated header, or no id: nothing.
        assert_eq!(parse(&[2, 0, 77]), None);
        assert_eq!(parse(&nhmsg(AF_INET, 77)), None);
    }
}
