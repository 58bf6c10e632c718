//! A link interface deleted under the multipath routes, as hostapd deletes
//! a 4-address station's `ap0.sta1` when it disassociates: the kernel
//! deletes the interface's nexthop with it (and the group with its last
//! member). Router A's daemon must route over the remaining link in the
//! same round, without a group update the kernel refuses.
//! Needs root: each test builds its own namespaces.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{sh, Bridge, Options};
use mpbridge::config::RouteSettings;
use mpbridge::host::nexthop::{Nexthop, NexthopKind};
use mpbridge::host::rtnetlink::Rtnl;
use mpbridge::paths::multipath::{Hop, Member, Multipath};
use mpbridge_lab::{wait_until, LanRoutes, LinkSpec, Node, Topology, TopologySpec};

const TIMEOUT: Duration = Duration::from_secs(10);

fn nexthops(topo: &Topology) -> String {
    sh(topo, Node::RouterA, &["ip", "nexthop", "show"])
}

/// The daemon: link 0's interface deleted while both links carry the
/// multipath routes.
#[test]
fn a_deleted_link_interface_leaves_the_daemons_multipath_group_at_once() {
    let bridge = Bridge::start(Options {
        links: 2,
        lan_routes: LanRoutes::Daemons,
        ..Options::default()
    });
    let topo = &bridge.topo;
    let names: Vec<String> = (0..2).map(|l| topo.link_ifname(l)).collect();
    let local = || bridge.local.output_text();
    let both = format!(
        "IPv4 traffic that is not bridged goes over {}, {}",
        names[0], names[1]
    );
    assert!(
        wait_until(TIMEOUT, || local().contains(&both)),
        "the group never held both links\n{}",
        bridge.logs()
    );
    let deleted = Instant::now();
    sh(topo, Node::RouterA, &["ip", "link", "del", &names[0]]);
    let alone = format!("IPv4 traffic that is not bridged goes over {}", names[1]);
    assert!(
        wait_until(TIMEOUT, || local().lines().any(|l| l.ends_with(&alone))),
        "the group never lost the deleted link\n{}\n{}",
        nexthops(topo),
        bridge.logs()
    );
    eprintln!("group without {} after {:?}", names[0], deleted.elapsed());
    // Time for a refused update to show.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !local().contains("multipath group"),
        "a group update was refused when {} went\n{}\n{}",
        names[0],
        nexthops(topo),
        bridge.logs()
    );
}

const TABLE: u32 = 7790;
const BASE: u32 = 4000;
const PREFIX: &str = "198.51.100.0/24";

/// The race the daemon cannot avoid: it lists the nexthops, the kernel
/// deletes an interface with its nexthop, then the daemon sets the group
/// from its list. Played here with the list read before the deletion.
#[test]
fn a_group_set_from_a_list_read_before_an_interface_went_is_set_in_one_round() {
    let spec = TopologySpec {
        links: vec![LinkSpec::UNSHAPED; 2],
    };
    let topo = Topology::build_with(&spec, LanRoutes::Daemons).expect("build the topology");
    let names: Vec<String> = (0..2).map(|l| topo.link_ifname(l)).collect();
    let ifindex = |name: &str| -> u32 {
        let path = format!("/sys/class/net/{name}/ifindex");
        sh(&topo, Node::RouterA, &["cat", &path])
            .trim()
            .parse()
            .unwrap()
    };
    let member = |link: usize| Member {
        link,
        hop: Hop {
            ifindex: ifindex(&names[link]),
            gateway: None,
        },
        weight: 1,
    };
    let (m0, m1) = (member(0), member(1));
    let settings = RouteSettings {
        prefixes: vec![PREFIX.parse().unwrap()],
        table: TABLE,
        metric: None,
        nexthop_base: BASE,
    };
    let group = |members: &[Member]| [members.to_vec(), Vec::new()];
    let (multipath, listed) = topo.enter(Node::RouterA, || {
        let mut rt = Rtnl::open().expect("rtnetlink");
        let mut multipath = Multipath::new(settings);
        // Link 1 out of service: the group is link 0 alone.
        let carries = multipath
            .apply(&mut rt, &names, &group(&[m0]))
            .expect("the group of link 0");
        assert_eq!(carries, [true, false]);
        // The next round (link 1 back) lists the nexthops...
        let listed = multipath.listed(&mut rt).expect("list the nexthops");
        (multipath, listed)
    });
    assert_eq!(
        listed.len(),
        2,
        "link 0's nexthop and the group: {listed:?}"
    );
    // ...and link 0's interface goes before it sets the group: the kernel
    // deletes its nexthop, the group (its last member) and the route.
    sh(&topo, Node::RouterA, &["ip", "link", "del", &names[0]]);
    let mut multipath = multipath;
    let result = topo.enter(Node::RouterA, || {
        let mut rt = Rtnl::open().expect("rtnetlink");
        multipath.apply_listed(&mut rt, &names, &group(&[m0, m1]), &listed)
    });
    let shown = nexthops(&topo);
    let routes = sh(
        &topo,
        Node::RouterA,
        &["ip", "route", "show", "table", &TABLE.to_string()],
    );
    assert_eq!(
        result,
        Ok(vec![false, true]),
        "nexthops:\n{shown}routes:\n{routes}"
    );
    // Link 1 alone in the group, and the route back through it.
    let kernel: BTreeMap<u32, Nexthop> = topo.enter(Node::RouterA, || {
        multipath
            .listed(&mut Rtnl::open().expect("rtnetlink"))
            .expect("list")
    });
    let group_id = BASE + 2 * mpbridge::config::MAX_LINKS as u32;
    assert_eq!(
        kernel.get(&group_id).map(|nh| &nh.kind),
        Some(&NexthopKind::Group(vec![(BASE + 2, 1)])),
        "nexthops:\n{shown}"
    );
    assert!(
        routes.contains(&format!("{PREFIX} nhid {group_id}")),
        "no route over the group:\n{routes}"
    );
    topo.enter(Node::RouterA, || {
        multipath.remove(&mut Rtnl::open().expect("rtnetlink"))
    });
}
