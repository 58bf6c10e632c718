//! The shape of a lab: what the caller asks for ([`TopologySpec`]) and the
//! fixed address and interface-name plan every topology follows. Pure data,
//! no I/O, so the plan can be unit-tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most links a topology may have (each gets its own `/24` and `/64`).
pub const MAX_LINKS: usize = 8;

pub use crate::links::LinkSpec;

/// What to build: the links between the routers, in order (link 0 carries
/// the plain routes between the LANs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopologySpec {
    pub links: Vec<LinkSpec>,
}

impl TopologySpec {
    /// `n` unshaped, lossless links.
    pub fn unshaped(n: usize) -> TopologySpec {
        TopologySpec {
            links: vec![LinkSpec::UNSHAPED; n],
        }
    }

    /// Checks the spec before anything is created.
    pub fn validate(&self) -> anyhow::Result<()> {
        let n = self.links.len();
        anyhow::ensure!(
            (1..=MAX_LINKS).contains(&n),
            "a topology needs 1 to {MAX_LINKS} links, got {n}"
        );
        for (i, link) in self.links.iter().enumerate() {
            anyhow::ensure!(
                link.loss_pct.is_finite() && (0.0..=100.0).contains(&link.loss_pct),
                "link {i}: loss_pct must be between 0 and 100, got {}",
                link.loss_pct
            );
        }
        Ok(())
    }

    /// Whether any link needs netem here (delay, jitter or bursty loss;
    /// not a delay the delay line takes).
    pub fn needs_netem(&self) -> bool {
        self.links.iter().any(crate::shaping::needs_netem_here)
    }
}

/// Who routes between the client's LAN and the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LanRoutes {
    /// Static routes over link 0: router A's to the server LAN, router B's
    /// to the client LAN (plain routing, the bridge tests' set-up).
    #[default]
    Static,
    /// None: the daemons' multipath routes must carry that traffic
    /// (router B's daemon is told the client LAN's prefixes).
    Daemons,
}

/// The four namespaces of a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The device behind router A that speaks plain TCP.
    Client,
    /// Router A: `lan0` towards the client, `wan0..` towards router B.
    RouterA,
    /// Router B: `wan0..` towards router A, `lan0` towards the server.
    RouterB,
    /// The destination behind router B.
    Server,
}

impl Node {
    pub const ALL: [Node; 4] = [Node::Client, Node::RouterA, Node::RouterB, Node::Server];

    /// The letter that ends the namespace name.
    pub fn role(self) -> char {
        match self {
            Node::Client => 'c',
            Node::RouterA => 'a',
            Node::RouterB => 'b',
            Node::Server => 's',
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Node::Client => 0,
            Node::RouterA => 1,
            Node::RouterB => 2,
            Node::Server => 3,
        }
    }
}

/// The interface towards the other LAN side in client, ra, rb and server.
pub const LAN_IFNAME: &str = "lan0";

/// Name of link `link`'s interface; the same on both routers.
pub fn link_ifname(link: usize) -> String {
    format!("wan{link}")
}

/// The interface index of `node`'s LAN interface, or of its end of link
/// `link`. No veth shares its index with its peer: the kernel treats a
/// carrier change of such a veth as non-urgent and reports it (operstate,
/// IPv6 readiness) up to a second late.
pub(crate) fn ifindex(node: Node, link: Option<usize>) -> u32 {
    match (node, link) {
        (Node::Client, _) => 10,
        (Node::RouterA, None) => 11,
        (Node::RouterA, Some(i)) => 20 + i as u32,
        (Node::RouterB, Some(i)) => 30 + i as u32,
        (Node::RouterB, None) => 40,
        (Node::Server, _) => 41,
    }
}

/// Prefix lengths of every subnet in the plan.
pub const V4_PREFIX: u8 = 24;
pub const V6_PREFIX: u8 = 64;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(segments: [u16; 8]) -> IpAddr {
    let [a, b, c, d, e, f, g, h] = segments;
    IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
}

/// Host `host` of the client–ra LAN (10.10.0.0/24, fd00:10::/64).
fn client_lan(host: u8, is_v6: bool) -> IpAddr {
    if is_v6 {
        v6([0xfd00, 0x10, 0, 0, 0, 0, 0, host.into()])
    } else {
        v4(10, 10, 0, host)
    }
}

/// Host `host` of link `link` (10.20.link.0/24, fd00:20:link::/64).
fn link_net(link: usize, host: u8, is_v6: bool) -> IpAddr {
    assert!(link < MAX_LINKS, "link {link} is outside the plan");
    if is_v6 {
        v6([0xfd00, 0x20, link as u16, 0, 0, 0, 0, host.into()])
    } else {
        v4(10, 20, link as u8, host)
    }
}

/// Host `host` of the rb–server LAN (10.30.0.0/24, fd00:30::/64).
fn server_lan(host: u8, is_v6: bool) -> IpAddr {
    if is_v6 {
        v6([0xfd00, 0x30, 0, 0, 0, 0, 0, host.into()])
    } else {
        v4(10, 30, 0, host)
    }
}

pub fn client_addr(is_v6: bool) -> IpAddr {
    client_lan(2, is_v6)
}
pub fn ra_lan_addr(is_v6: bool) -> IpAddr {
    client_lan(1, is_v6)
}
pub fn ra_link_addr(link: usize, is_v6: bool) -> IpAddr {
    link_net(link, 1, is_v6)
}
pub fn rb_link_addr(link: usize, is_v6: bool) -> IpAddr {
    link_net(link, 2, is_v6)
}
pub fn rb_lan_addr(is_v6: bool) -> IpAddr {
    server_lan(1, is_v6)
}
pub fn server_addr(is_v6: bool) -> IpAddr {
    server_lan(2, is_v6)
}

/// The client LAN as a prefix string (`10.10.0.0/24`, `fd00:10::/64`).
pub fn client_net(is_v6: bool) -> String {
    if is_v6 {
        format!("fd00:10::/{V6_PREFIX}")
    } else {
        format!("10.10.0.0/{V4_PREFIX}")
    }
}

/// The server LAN as a prefix string (`10.30.0.0/24`, `fd00:30::/64`).
pub fn server_net(is_v6: bool) -> String {
    if is_v6 {
        format!("fd00:30::/{V6_PREFIX}")
    } else {
        format!("10.30.0.0/{V4_PREFIX}")
    }
}

/// `addr/prefix` as `ip addr add` wants it.
pub(crate) fn with_prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}/{V4_PREFIX}"),
        IpAddr::V6(_) => format!("{addr}/{V6_PREFIX}"),
    }
}

/// Routing table holding link `link`'s default route on router A (policy routing).
pub fn link_table(link: usize) -> u32 {
    100 + link as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(client_addr(false).to_string(), "10.10.0.2");
        assert_eq!(ra_lan_addr(true).to_string(), "fd00:10::1");
        assert_eq!(ra_link_addr(3, false).to_string(), "10.20.3.1");
        assert_eq!(rb_link_addr(3, true).to_string(), "fd00:20:3::2");
        assert_eq!(rb_lan_addr(false).to_string(), "10.30.0.1");
        assert_eq!(server_addr(true).to_string(), "fd00:30::2");
        assert_eq!(with_prefix(server_addr(true)), "fd00:30::2/64");
        assert_eq!(link_ifname(7), "wan7");
        assert_eq!(link_table(2), 102);
    }

    #[test]
    fn every_link_gets_distinct_addresses() {
        let mut seen = std::collections::HashSet::new();
        for link in 0..MAX_LINKS {
            for is_v6 in [false, true] {
                assert!(seen.insert(ra_link_addr(link, is_v6)));
                assert!(seen.insert(rb_link_addr(link, is_v6)));
            }
        }
        assert_eq!(seen.len(), MAX_LINKS * 4);
    }

    #[test]
    fn spec_with_no_or_too_many_links_is_refused() {
        assert!(TopologySpec::unshaped(0).validate().is_err());
        assert!(TopologySpec::unshaped(MAX_LINKS + 1).validate().is_err());
        assert!(TopologySpec::unshaped(MAX_LINKS).validate().is_ok());
    }

    #[test]
    fn spec_with_impossible_loss_is_refused() {
        for loss_pct in [-1.0, 100.5, f32::NAN] {
            let spec = TopologySpec {
                links: vec![LinkSpec {
                    loss_pct,
                    ..LinkSpec::UNSHAPED
                }],
            };
            assert!(spec.validate().is_err(), "{loss_pct} accepted");
        }
    }

    #[test]
    fn no_veth_shares_its_index_with_its_peer() {
        let mut pairs = vec![
            (ifindex(Node::Client, None), ifindex(Node::RouterA, None)),
            (ifindex(Node::RouterB, None), ifindex(Node::Server, None)),
        ];
        for i in 0..MAX_LINKS {
            pairs.push((
                ifindex(Node::RouterA, Some(i)),
                ifindex(Node::RouterB, Some(i)),
            ));
        }
        for (a, b) in &pairs {
            assert_ne!(a, b);
        }
        // And within router A and router B every index is distinct.
        for node in [Node::RouterA, Node::RouterB] {
            let mut seen: Vec<u32> = (0..MAX_LINKS).map(|i| ifindex(node, Some(i))).collect();
            seen.push(ifindex(node, None));
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), MAX_LINKS + 1);
        }
    }

    #[test]
    fn roles_are_distinct() {
        let roles: std::collections::HashSet<char> = Node::ALL.iter().map(|n| n.role()).collect();
        assert_eq!(roles.len(), 4);
    }
}
