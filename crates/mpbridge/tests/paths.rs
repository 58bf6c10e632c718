//! The path manager in the lab: the daemons set up MPTCP endpoints, limits
//! and per-link policy routing themselves, remove them on exit (and after a
//! crash, on restart), follow address changes, and fail over within a
//! second when a link goes down or silently drops everything.
//! Needs root: each test builds its own namespaces.

mod common;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bridge, Options};
use mpbridge_lab::{wait_until, Node, Topology};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long kernel state may take to follow a change in these tests (the
/// daemon's goal is 100 ms; the figures are printed).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(2);

fn sh(topo: &Topology, node: Node, args: &[&str]) -> String {
    topo.run(node, args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn endpoints(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "mptcp", "endpoint", "show"])
}

/// IPv4 and IPv6 rules, one string.
fn rules(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "rule", "show"]) + &sh(topo, node, &["ip", "-6", "rule", "show"])
}

/// Every rule and route tagged as mpbridge's (routing protocol 77).
fn tagged(topo: &Topology, node: Node) -> String {
    let mut out = String::new();
    for family in ["-4", "-6"] {
        out += &sh(topo, node, &["ip", family, "rule", "show"]);
        out += &sh(topo, node, &["ip", family, "route", "show", "table", "all"]);
    }
    out.lines()
        .filter(|l| l.contains("proto 77"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn limits(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "mptcp", "limits", "show"])
}

/// Router `node`'s expected state while its daemon runs on `links` links:
/// router A has a `subflow` endpoint, a rule and a table per link address;
/// router B only the limits (it needs neither, see `paths::Side::Remote`).
fn assert_paths_set_up(topo: &Topology, node: Node, links: usize) {
    let want = format!("add_addr_accepted {links} subflows {links}");
    assert!(
        limits(topo, node).contains(&want),
        "{node:?}: {}",
        limits(topo, node)
    );
    if node == Node::RouterB {
        assert_eq!(
            endpoints(topo, node).trim(),
            "",
            "router B has no endpoints"
        );
        assert_eq!(
            tagged(topo, node).trim(),
            "",
            "router B has no policy routing"
        );
        return;
    }
    let eps = endpoints(topo, node);
    let rules = rules(topo, node);
    for link in 0..links {
        let ifname = topo.link_ifname(link);
        let table = 7700 + link;
        for v6 in [false, true] {
            let addr = topo.ra_link_addr(link, v6);
            assert!(
                eps.lines().any(|l| l.starts_with(&format!("{addr} "))
                    && l.contains("subflow")
                    && l.contains(&format!("dev {ifname}"))),
                "no subflow endpoint {addr} dev {ifname}:\n{eps}"
            );
            assert!(
                rules.contains(&format!("from {addr} lookup {table} proto 77")),
                "no rule from {addr}:\n{rules}"
            );
            let family = if v6 { "-6" } else { "-4" };
            let routes = sh(
                topo,
                node,
                &["ip", family, "route", "show", "table", &table.to_string()],
            );
            let via = topo.rb_link_addr(link, v6);
            assert!(
                routes.contains(&format!("default via {via} dev {ifname} proto 77")),
                "table {table}: {routes}"
            );
        }
    }
    assert_eq!(eps.lines().count(), 2 * links, "{eps}");
}

/// `limits_restored`: the limits are those of before the first run (after
/// a crash, the limits found at restart are the crashed run's: kept).
fn assert_paths_gone(topo: &Topology, node: Node, limits_restored: bool) {
    assert_eq!(endpoints(topo, node).trim(), "", "{node:?}: endpoints left");
    assert_eq!(
        tagged(topo, node).trim(),
        "",
        "{node:?}: rules or routes left"
    );
    if limits_restored {
        // A namespace nobody touched shows the kernel's defaults.
        assert_eq!(
            limits(topo, node),
            limits(topo, Node::Client),
            "{node:?}: limits not restored"
        );
    }
}

#[test]
fn the_daemons_set_up_endpoints_rules_and_routes_and_remove_them_on_sigterm() {
    let mut bridge = Bridge::start(Options::default());
    for node in [Node::RouterA, Node::RouterB] {
        assert_paths_set_up(&bridge.topo, node, 2);
    }
    let status = bridge.local.terminate(IO_TIMEOUT);
    assert!(status.success(), "local: {status:?}\n{}", bridge.logs());
    let status = bridge.remote.terminate(IO_TIMEOUT);
    assert!(status.success(), "remote: {status:?}\n{}", bridge.logs());
    for node in [Node::RouterA, Node::RouterB] {
        assert_paths_gone(&bridge.topo, node, true);
    }
}

/// Starts the daemon of `node` again with the config the lab wrote.
fn restart(topo: &Topology, node: Node, name: &str) -> mpbridge_lab::Proc {
    let role = if node == Node::RouterA {
        "local"
    } else {
        "remote"
    };
    let config = topo.workdir().join(format!("{role}.toml"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpbridge"));
    cmd.arg("-c").arg(&config).arg(role);
    let proc = topo.spawn_named(node, name, &mut cmd).unwrap();
    proc.wait_for_log(&format!("{role} listening"), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    proc
}

#[test]
fn after_sigkill_a_restart_removes_the_leftovers_and_sets_up_afresh() {
    let mut bridge = Bridge::start(Options::default());
    bridge.local.kill();
    bridge.remote.kill();
    // A crash leaves everything behind…
    assert!(!endpoints(&bridge.topo, Node::RouterA).trim().is_empty());
    assert!(!tagged(&bridge.topo, Node::RouterA).trim().is_empty());
    // …which the next run finds, removes and replaces (not duplicates).
    let mut remote = restart(&bridge.topo, Node::RouterB, "remote-2");
    let mut local = restart(&bridge.topo, Node::RouterA, "local-2");
    assert!(
        local
            .output_text()
            .contains("removed leftovers of an earlier run"),
        "{}",
        local.output_text()
    );
    for node in [Node::RouterA, Node::RouterB] {
        assert_paths_set_up(&bridge.topo, node, 2);
    }
    // And it works: one subflow per link.
    assert_one_subflow_per_link(&bridge.topo, false);
    assert!(local.terminate(IO_TIMEOUT).success());
    assert!(remote.terminate(IO_TIMEOUT).success());
    for node in [Node::RouterA, Node::RouterB] {
        assert_paths_gone(&bridge.topo, node, false);
    }
}

/// Connects ra → rb over MPTCP and waits until ra has an established
/// subflow from each link's address.
fn assert_one_subflow_per_link(topo: &Topology, v6: bool) {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let mptcp_socket = || Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP));
    let listener = topo.enter(Node::RouterB, || -> io::Result<Socket> {
        let s = mptcp_socket()?;
        s.bind(&SockAddr::from(SocketAddr::new(
            topo.rb_link_addr(0, v6),
            0,
        )))?;
        s.listen(8)?;
        Ok(s)
    });
    let listener = listener.expect("MPTCP listener in rb");
    let target = listener.local_addr().unwrap().as_socket().unwrap();
    let client = topo
        .enter(Node::RouterA, || -> io::Result<Socket> {
            let s = mptcp_socket()?;
            s.connect_timeout(&target.into(), IO_TIMEOUT)?;
            Ok(s)
        })
        .expect("MPTCP connect from ra");
    let (accepted, _) = listener.accept().unwrap();
    (&client).write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    (&accepted).read_exact(&mut buf).unwrap();

    let want: Vec<IpAddr> = (0..topo.link_count())
        .map(|i| topo.ra_link_addr(i, v6))
        .collect();
    let mut seen = Vec::new();
    let all_links = wait_until(IO_TIMEOUT, || {
        seen = topo
            .tcp_sockets(Node::RouterA)
            .unwrap()
            .into_iter()
            .filter(|s| s.mptcp_subflow && s.state == "ESTAB" && s.peer == target)
            .collect();
        want.iter()
            .all(|ip| seen.iter().any(|s| s.local.ip() == *ip))
    });
    assert!(
        all_links,
        "v6={v6}: subflows {seen:#?}, wanted one from each of {want:?}"
    );
    // The first link's endpoint stands for the initial subflow: no second
    // subflow from the same address.
    assert_eq!(seen.len(), topo.link_count(), "{seen:#?}");
}

#[test]
fn every_link_carries_a_subflow_ipv4_and_ipv6() {
    let bridge = Bridge::start(Options {
        links: 3,
        ..Options::default()
    });
    assert_one_subflow_per_link(&bridge.topo, false);
    assert_one_subflow_per_link(&bridge.topo, true);
}

/// Waits for `f`; returns how long it took.
fn time_until(what: &str, f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    assert!(
        wait_until(FOLLOW_TIMEOUT, f),
        "{what}: not within {FOLLOW_TIMEOUT:?}"
    );
    start.elapsed()
}

#[test]
fn an_address_removed_and_added_again_is_followed() {
    let bridge = Bridge::start(Options::default());
    let topo = &bridge.topo;
    let addr = topo.ra_link_addr(1, false);
    let has_endpoint = || endpoints(topo, Node::RouterA).contains(&format!("{addr} "));
    let has_rule = || rules(topo, Node::RouterA).contains(&format!("from {addr} lookup 7701"));
    let has_route = || {
        sh(
            topo,
            Node::RouterA,
            &["ip", "route", "show", "table", "7701"],
        )
        .contains("default via")
    };
    assert!(has_endpoint() && has_rule() && has_route());

    let cidr = format!("{addr}/24");
    sh(
        topo,
        Node::RouterA,
        &["ip", "addr", "del", &cidr, "dev", "wan1"],
    );
    let gone = time_until("endpoint and rule removed", || {
        !has_endpoint() && !has_rule()
    });
    sh(
        topo,
        Node::RouterA,
        &["ip", "addr", "add", &cidr, "dev", "wan1"],
    );
    let back = time_until("endpoint, rule and route back", || {
        has_endpoint() && has_rule() && has_route()
    });
    eprintln!("address removed: followed in {gone:?}; added again: followed in {back:?}");
    // Polling `ip` costs a few ms per look; the daemon's goal is 100 ms.
    assert!(
        gone < Duration::from_millis(500) && back < Duration::from_millis(500),
        "{gone:?} {back:?}"
    );
    assert_one_subflow_per_link(topo, false);
}
