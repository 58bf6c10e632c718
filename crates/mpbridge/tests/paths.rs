//! The path manager in the lab: the daemons set up MPTCP endpoints, limits
//! and per-link policy routing themselves, remove them on exit (and after a
//! crash, on restart), follow address changes, and fail over within a
//! second when a link goes down or silently drops everything.
//! Needs root: each test builds its own namespaces.

mod common;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{restart, sh, tagged, Bridge, Failure, Options};
use mpbridge_lab::{wait_until, Node, Topology};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long kernel state may take to follow a change in these tests (the
/// daemon's goal is 100 ms; the figures are printed).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(2);

fn endpoints(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "mptcp", "endpoint", "show"])
}

/// IPv4 and IPv6 rules, one string.
fn rules(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "rule", "show"]) + &sh(topo, node, &["ip", "-6", "rule", "show"])
}

fn limits(topo: &Topology, node: Node) -> String {
    sh(topo, node, &["ip", "mptcp", "limits", "show"])
}

/// Router `node`'s expected state while its daemon runs on `links` links:
/// router A has a `subflow` endpoint, a rule and a table per link address;
/// router B only the limits (it needs neither, see `paths::PathManager::start`).
fn assert_paths_set_up(topo: &Topology, node: Node, links: usize) {
    // The subflows limit is the kernel's maximum whatever the links (see
    // `paths::executor::SUBFLOWS_LIMIT`).
    let want = format!("add_addr_accepted {links} subflows 8");
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

/// How many addresses the flood adds: far more notifications than the watch
/// socket's default receive buffer (about 200 KB) holds.
const FLOOD_ADDRESSES: usize = 4000;

#[test]
fn a_link_change_inside_a_flood_of_notifications_is_still_followed() {
    // Probing off: a failing probe would make the daemon look at the link
    // too, and hide a watch that stopped.
    let bridge = Bridge::start(Options {
        paths_extra: "[probe]\nenabled = false\n",
        ..Options::default()
    });
    let topo = &bridge.topo;
    let old = topo.ra_link_addr(1, false);
    let IpAddr::V4(v4) = old else { unreachable!() };
    let new = IpAddr::from([v4.octets()[0], v4.octets()[1], v4.octets()[2], 11]);
    assert!(endpoints(topo, Node::RouterA).contains(&format!("{old} ")));

    // One `ip -batch`: thousands of address notifications (on `lo`: the
    // kernel here has no dummy interfaces), then link 1 changes its address. Whether the kernel drops
    // notifications (ENOBUFS) or not, the daemon must end in step.
    let mut script = String::new();
    for i in 0..FLOOD_ADDRESSES {
        script += &format!("addr add 10.99.{}.{}/32 dev lo\n", i / 250, i % 250 + 1);
    }
    script += &format!("addr del {old}/24 dev wan1\naddr add {new}/24 dev wan1\n");
    let file = topo.workdir().join("flood.batch");
    std::fs::write(&file, script).unwrap();
    sh(
        topo,
        Node::RouterA,
        &["ip", "-batch", file.to_str().unwrap()],
    );

    // Link 1's endpoint and rule are on `now`, none on `then`.
    let in_step = |now: IpAddr, then: IpAddr| {
        wait_until(Duration::from_secs(10), || {
            let eps = endpoints(topo, Node::RouterA);
            let rules = rules(topo, Node::RouterA);
            eps.contains(&format!("{now} "))
                && !eps.contains(&format!("{then} "))
                && rules.contains(&format!("from {now} lookup 7701"))
                && !rules.contains(&format!("from {then} lookup"))
        })
    };
    assert!(
        in_step(new, old),
        "{}\n{}",
        endpoints(topo, Node::RouterA),
        bridge.logs()
    );
    let dropped = bridge.logs().contains("link notifications were dropped");
    eprintln!("the kernel dropped notifications during the flood: {dropped}");

    // The watch goes on after the overflow: a later change is followed too.
    let (new_cidr, old_cidr) = (format!("{new}/24"), format!("{old}/24"));
    sh(
        topo,
        Node::RouterA,
        &["ip", "addr", "del", &new_cidr, "dev", "wan1"],
    );
    sh(
        topo,
        Node::RouterA,
        &["ip", "addr", "add", &old_cidr, "dev", "wan1"],
    );
    assert!(
        in_step(old, new),
        "{}\n{}",
        endpoints(topo, Node::RouterA),
        bridge.logs()
    );
}

// ---------------------------------------------------------------------------
// Failover: one long download survives each link failing in turn.
// ---------------------------------------------------------------------------

/// Each link's rate in the failover tests: slow enough that the test's own
/// hashing keeps up, fast enough that a stall shows at once.
const FAILOVER_RATE_MBIT: u32 = 50;
/// The longest stall a failure may cause (the goal is 300 ms).
const MAX_STALL: Duration = Duration::from_secs(1);
/// How soon a restored link must carry the same connection again.
const MAX_REGAIN: Duration = Duration::from_secs(2);
/// Bytes over a link that count as "it carries the transfer".
const CARRYING: u64 = 512 * 1024;
/// Bytes a restored link carries (about 0.6 s at 50 Mbit/s) before the
/// next link fails, and how long that may take (not asserted: the regain
/// bound is).
const SETTLED: u64 = 4 * 1024 * 1024;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiving side saw: bytes so far, and the longest time
/// without any since the last [`Progress::reset`].
struct Progress {
    bytes: u64,
    last: Instant,
    longest_gap: Duration,
}

impl Progress {
    fn reset(&mut self) {
        self.last = Instant::now();
        self.longest_gap = Duration::ZERO;
    }
}

/// A download server → client through the bridge that runs until stopped.
struct Transfer {
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    sender: std::thread::JoinHandle<io::Result<(u64, [u8; 32])>>,
    receiver: std::thread::JoinHandle<io::Result<(u64, [u8; 32])>>,
}

impl Transfer {
    /// A download (server → client), the direction router B sends in.
    fn start(bridge: &Bridge) -> Transfer {
        Transfer::start_in(bridge, false)
    }

    /// `upload`: client → server, so router A's MPTCP stack is the sender.
    fn start_in(bridge: &Bridge, upload: bool) -> Transfer {
        let listener = bridge.server_listener(false);
        let dest = listener.local_addr().unwrap();
        let client = bridge
            .client_connect(dest)
            .expect("connect through the bridge");
        let (server, _) = listener.accept().unwrap();
        let (mut server, mut client) = if upload {
            (client, server)
        } else {
            (server, client)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Progress {
            bytes: 0,
            last: Instant::now(),
            longest_gap: Duration::ZERO,
        }));
        let sender = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut pattern = common::Pattern::new(7);
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    pattern.fill(&mut buf);
                    server.write_all(&buf)?;
                    hash.update(&buf);
                    sent += buf.len() as u64;
                }
                server.shutdown(std::net::Shutdown::Write)?;
                Ok((sent, hash.finalize().into()))
            })
        };
        let receiver = {
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = client.read(&mut buf)?;
                    let now = Instant::now();
                    let mut p = progress.lock().unwrap();
                    p.longest_gap = p.longest_gap.max(now - p.last);
                    p.last = now;
                    p.bytes += n as u64;
                    drop(p);
                    if n == 0 {
                        let total = progress.lock().unwrap().bytes;
                        return Ok((total, hash.finalize().into()));
                    }
                    hash.update(&buf[..n]);
                }
            })
        };
        Transfer {
            stop,
            progress,
            sender,
            receiver,
        }
    }

    fn bytes(&self) -> u64 {
        self.progress.lock().unwrap().bytes
    }

    fn reset_gap(&self) {
        self.progress.lock().unwrap().reset();
    }

    /// The longest stall since the last reset, counting one still going on.
    fn longest_gap(&self) -> Duration {
        let p = self.progress.lock().unwrap();
        p.longest_gap.max(p.last.elapsed())
    }

    /// Stops sending; returns once the receiver has everything, checked.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, sent_hash) = self.sender.join().unwrap().expect("sender");
        let (received, received_hash) = self.receiver.join().unwrap().expect("receiver");
        assert_eq!(received, sent, "bytes lost or added");
        assert_eq!(received_hash, sent_hash, "data corrupted");
        received
    }
}

/// Router A's received bytes on link `link`'s interface.
fn rx(topo: &Topology, link: usize) -> u64 {
    topo.link_counters(link).unwrap().1
}

/// Waits up to `timeout` until link `link` has received [`CARRYING`] bytes
/// more than now; returns how long that took.
fn carries_traffic(topo: &Topology, link: usize, timeout: Duration) -> Option<Duration> {
    carries_traffic_in(topo, link, timeout, false)
}

/// [`carries_traffic`], counting what router A sends on the link when
/// `upload`.
fn carries_traffic_in(
    topo: &Topology,
    link: usize,
    timeout: Duration,
    upload: bool,
) -> Option<Duration> {
    let start = Instant::now();
    let base = link_bytes(topo, link, upload);
    wait_until(timeout, || {
        link_bytes(topo, link, upload) - base >= CARRYING
    })
    .then(|| start.elapsed())
}

/// One failure of `link`: returns (longest stall, time until the link
/// carried the transfer again after its restore).
fn fail_and_restore(
    bridge: &Bridge,
    transfer: &Transfer,
    failure: Failure,
    link: usize,
    patience: Duration,
    upload: bool,
) -> (Duration, Option<Duration>) {
    let topo = &bridge.topo;
    transfer.reset_gap();
    failure.apply(topo, link, true);
    // Failed over: the download has moved on by a good amount (or the
    // stall is long enough to judge).
    let at = transfer.bytes();
    wait_until(patience, || transfer.bytes() - at >= 4 * CARRYING);
    let stall = transfer.longest_gap();
    failure.apply(topo, link, false);
    let regained = carries_traffic_in(topo, link, patience.max(MAX_REGAIN), upload);
    (stall, regained)
}

/// Router A's `[paths]` lines for subflows on demand.
const ON_DEMAND: &str = "subflows = \"on-demand\"";

/// `local_paths`: router A's `[paths]` lines ("" for the in-kernel path
/// manager, [`ON_DEMAND`]).
fn failover_of_every_link(links: usize, failure: Failure, local_paths: &'static str) {
    failover_of_every_link_in(links, failure, local_paths, false, MAX_STALL);
}

/// The longest stall of an upload's failover: four times the goal of
/// 150 ms, for a loaded machine (router A resends what the failed link
/// lost as soon as its probes name the link; they name a black hole
/// within about 100 ms).
const MAX_UPLOAD_STALL: Duration = Duration::from_millis(600);

fn failover_of_every_link_in(
    links: usize,
    failure: Failure,
    local_paths: &'static str,
    upload: bool,
    max_stall: Duration,
) {
    let bridge = Bridge::start(Options {
        links,
        local_paths,
        ..Options::default()
    });
    let topo = &bridge.topo;
    for link in 0..links {
        topo.set_rate(link, FAILOVER_RATE_MBIT).unwrap();
    }
    let transfer = Transfer::start_in(&bridge, upload);
    for link in 0..links {
        assert!(
            carries_traffic_in(topo, link, IO_TIMEOUT, upload).is_some(),
            "link {link} never carried the transfer\n{}",
            bridge.logs()
        );
    }
    for link in 0..links {
        let (stall, regained) =
            fail_and_restore(&bridge, &transfer, failure, link, IO_TIMEOUT, upload);
        eprintln!("{links} links, upload {upload}, {failure:?} of link {link} ({local_paths:?}): longest stall {stall:?}, regained after {regained:?}");
        assert_router_b_closed_subflows(&bridge, link + 1);
        assert!(
            stall < max_stall,
            "{failure:?} of link {link}: stalled {stall:?}\n{}",
            bridge.logs()
        );
        let regained = regained.unwrap_or_else(|| {
            panic!(
                "link {link} not used again after its restore\n{}",
                bridge.logs()
            )
        });
        assert!(
            regained < MAX_REGAIN,
            "link {link} regained after {regained:?}"
        );
        // The next link fails only once this one is back in full use: a
        // failure 100 ms after a restore, while the fresh subflow is still
        // in slow start, stalled 1.05 s once (CI, black hole of link 1) —
        // two failures at once, not the one this test is about.
        let base = link_bytes(topo, link, upload);
        wait_until(SETTLE_TIMEOUT, || {
            link_bytes(topo, link, upload) - base >= SETTLED
        });
    }
    let bytes = transfer.finish();
    eprintln!("{links} links, {failure:?}: {bytes} bytes intact");
}

/// Router B closed its subflows over a failed link (silent, or without
/// carrier) at least `times` times in all (`probe.close_subflows`), or
/// said once that its kernel cannot.
fn assert_router_b_closed_subflows(bridge: &Bridge, times: usize) {
    let log = bridge.remote.output_text();
    if log.contains("cannot close sockets from outside") {
        eprintln!("this kernel lacks CONFIG_INET_DIAG_DESTROY: router B closed no subflows");
        return;
    }
    let closed = log
        .lines()
        .filter(|l| l.contains("closed the MPTCP subflows over the failed link"))
        .count();
    assert!(
        closed >= times,
        "router B closed the subflows over a failed link {closed} times, not {times}\n{}",
        bridge.logs()
    );
}

#[test]
fn two_links_a_download_survives_each_link_going_down_and_regains_it() {
    failover_of_every_link(2, Failure::Down, "");
}

#[test]
fn two_links_a_download_survives_each_link_going_down_and_regains_it_with_subflows_on_demand() {
    failover_of_every_link(2, Failure::Down, ON_DEMAND);
}

#[test]
fn two_links_a_download_survives_each_link_black_holed_and_regains_it() {
    failover_of_every_link(2, Failure::Blackhole, "");
}

#[test]
fn two_links_a_download_survives_each_link_black_holed_and_regains_it_with_subflows_on_demand() {
    failover_of_every_link(2, Failure::Blackhole, ON_DEMAND);
}

#[test]
fn two_links_an_upload_survives_each_link_black_holed_within_600_ms_and_regains_it() {
    failover_of_every_link_in(2, Failure::Blackhole, "", true, MAX_UPLOAD_STALL);
}

#[test]
fn two_links_an_upload_survives_each_link_going_down_within_600_ms_and_regains_it() {
    failover_of_every_link_in(2, Failure::Down, "", true, MAX_UPLOAD_STALL);
}

#[test]
fn three_links_a_download_survives_each_link_going_down_and_regains_it() {
    failover_of_every_link(3, Failure::Down, "");
}

#[test]
fn three_links_a_download_survives_each_link_black_holed_and_regains_it() {
    failover_of_every_link(3, Failure::Blackhole, "");
}

/// Bytes link `link` receives while links `busy` carry [`CARRYING`] × 8.
fn rx_while_busy(topo: &Topology, link: usize, busy: &[usize]) -> u64 {
    let base = rx(topo, link);
    let busy_base: u64 = busy.iter().map(|&l| rx(topo, l)).sum();
    let moved = wait_until(IO_TIMEOUT, || {
        busy.iter().map(|&l| rx(topo, l)).sum::<u64>() - busy_base >= 8 * CARRYING
    });
    assert!(moved, "links {busy:?} carry nothing");
    rx(topo, link) - base
}

#[test]
fn a_backup_link_carries_nothing_until_every_regular_link_has_failed() {
    let bridge = Bridge::start(Options {
        links: 3,
        backup_links: vec![2],
        ..Options::default()
    });
    let topo = &bridge.topo;
    let eps = endpoints(topo, Node::RouterA);
    assert!(
        eps.lines()
            .filter(|l| l.contains("dev wan2"))
            .all(|l| l.contains("backup")),
        "{eps}"
    );
    for link in 0..3 {
        topo.set_rate(link, FAILOVER_RATE_MBIT).unwrap();
    }
    let transfer = Transfer::start(&bridge);
    for link in [0, 1] {
        assert!(
            carries_traffic(topo, link, IO_TIMEOUT).is_some(),
            "link {link} unused"
        );
    }
    // Probes and the idle subflow's acks are all the backup link sees.
    let idle = CARRYING / 8;
    let seen = rx_while_busy(topo, 2, &[0, 1]);
    assert!(
        seen < idle,
        "backup link received {seen} bytes with both regular links up"
    );
    topo.blackhole(0, true).unwrap();
    let seen = rx_while_busy(topo, 2, &[1]);
    assert!(
        seen < idle,
        "backup link received {seen} bytes with link 1 up"
    );
    transfer.reset_gap();
    topo.blackhole(1, true).unwrap();
    let took_over = carries_traffic(topo, 2, MAX_REGAIN);
    let stall = transfer.longest_gap();
    eprintln!("backup link took over after {took_over:?}, longest stall {stall:?}");
    assert!(
        took_over.is_some(),
        "the backup link never took over\n{}",
        bridge.logs()
    );
    assert!(stall < MAX_STALL, "stalled {stall:?}");
    // The regular links return: the backup link is idle again.
    topo.blackhole(0, false).unwrap();
    topo.blackhole(1, false).unwrap();
    for link in [0, 1] {
        assert!(
            carries_traffic(topo, link, MAX_REGAIN).is_some(),
            "link {link} not used again"
        );
    }
    // What the backup subflow had queued drains first.
    rx_while_busy(topo, 2, &[0, 1]);
    let seen = rx_while_busy(topo, 2, &[0, 1]);
    assert!(
        seen < idle,
        "backup link received {seen} bytes after the others returned"
    );
    transfer.finish();
}

// ---------------------------------------------------------------------------
// Figures for the closing note (not pass/fail):
// cargo test -p mpbridge --test paths failover_figures -- --ignored --nocapture --test-threads 1
// ---------------------------------------------------------------------------

const FIGURE_RUNS: usize = 3;

/// Something done by hand the moment a failure starts.
type Action = Box<dyn Fn(&Topology)>;
const FIGURE_PATIENCE: Duration = Duration::from_secs(10);

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || format!(">{}", FIGURE_PATIENCE.as_millis()),
        |d| d.as_millis().to_string(),
    )
}

fn endpoint_id(topo: &Topology, addr: IpAddr) -> String {
    let eps = endpoints(topo, Node::RouterA);
    let line = eps
        .lines()
        .find(|l| l.starts_with(&format!("{addr} ")))
        .unwrap_or_else(|| panic!("no endpoint {addr}: {eps}"));
    line.split_whitespace().nth(2).unwrap().to_owned()
}

/// Router A's sent (`upload`) or received bytes on link `link`.
fn link_bytes(topo: &Topology, link: usize, upload: bool) -> u64 {
    let (tx, rx) = topo.link_counters(link).unwrap();
    if upload {
        tx
    } else {
        rx
    }
}

/// One figure's scenario.
struct Figure {
    extra: &'static str,
    failure: Failure,
    link: usize,
    upload: bool,
    /// How long the failure lasts at least (the outage the scenario is about).
    hold: Duration,
}

/// A fresh 2-link bridge with `f.extra` config, a running transfer, then
/// `f.failure` of `f.link`, `react` run at once (by hand), restore: returns
/// (longest stall, time until the link carried the transfer again).
fn one_figure(f: &Figure, react: &dyn Fn(&Topology)) -> (Option<Duration>, Option<Duration>) {
    let bridge = Bridge::start(Options {
        paths_extra: f.extra,
        ..Options::default()
    });
    let topo = &bridge.topo;
    for l in 0..2 {
        topo.set_rate(l, FAILOVER_RATE_MBIT).unwrap();
    }
    let transfer = Transfer::start_in(&bridge, f.upload);
    let carries = |l: usize, timeout: Duration| {
        let start = Instant::now();
        let base = link_bytes(topo, l, f.upload);
        wait_until(timeout, || link_bytes(topo, l, f.upload) - base >= CARRYING)
            .then(|| start.elapsed())
    };
    for l in 0..2 {
        assert!(carries(l, IO_TIMEOUT).is_some());
    }
    transfer.reset_gap();
    let failed_at = Instant::now();
    f.failure.apply(topo, f.link, true);
    react(topo);
    let at = transfer.bytes();
    let moved = wait_until(FIGURE_PATIENCE, || transfer.bytes() - at >= 4 * CARRYING);
    let stall = moved.then(|| transfer.longest_gap());
    // The outage's length is the scenario, not a condition to wait for.
    if let Some(left) = f.hold.checked_sub(failed_at.elapsed()) {
        std::thread::sleep(left);
    }
    f.failure.apply(topo, f.link, false);
    let regained = carries(f.link, FIGURE_PATIENCE);
    if moved {
        transfer.finish();
    }
    (stall, regained)
}

#[test]
#[ignore]
fn failover_figures() {
    let none: &dyn Fn(&Topology) = &|_| {};
    let modes: [(&str, &'static str); 3] = [
        ("probing on, down_action remove", ""),
        (
            "probing on, down_action backup",
            "[probe]\ndown_action = \"backup\"\n",
        ),
        ("probing off (rtnetlink only)", "[probe]\nenabled = false\n"),
    ];
    let runs = |f: &Figure, react: &dyn Fn(&Topology)| -> String {
        (0..FIGURE_RUNS)
            .map(|_| {
                let (stall, regained) = one_figure(f, react);
                format!("{}/{}", ms(stall), ms(regained))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("longest stall ms / regained after ms, {FIGURE_RUNS} runs each, 2 links at {FAILOVER_RATE_MBIT} Mbit/s");
    for upload in [false, true] {
        let direction = if upload {
            "upload (A sends)"
        } else {
            "download (B sends)"
        };
        for (name, extra) in modes {
            for failure in [Failure::Down, Failure::Blackhole] {
                for link in [0, 1] {
                    let f = Figure {
                        extra,
                        failure,
                        link,
                        upload,
                        hold: Duration::ZERO,
                    };
                    eprintln!(
                        "{direction} | {name} | {failure:?} link {link} | {}",
                        runs(&f, none)
                    );
                }
            }
        }
    }
    // A long outage: how soon a link that returns is used again.
    for (name, extra) in [modes[0], modes[2]] {
        for failure in [Failure::Down, Failure::Blackhole] {
            let f = Figure {
                extra,
                failure,
                link: 1,
                upload: false,
                hold: Duration::from_secs(5),
            };
            eprintln!(
                "5 s outage, download | {name} | {failure:?} link 1 | {}",
                runs(&f, none)
            );
        }
    }
    // What takes a black-holed link out of service at once, done by hand
    // the moment the black hole starts (probing off, so the daemon stays
    // out of it): the kernel mechanism alone, without detection time.
    let off = "[probe]\nenabled = false\n";
    for link in [0, 1] {
        let addr = move |topo: &Topology| topo.ra_link_addr(link, false);
        let actions: [(&str, Action); 5] = [
            ("nothing", Box::new(|_: &Topology| {})),
            (
                "endpoint delete id N",
                Box::new(move |t: &Topology| {
                    let id = endpoint_id(t, addr(t));
                    sh(
                        t,
                        Node::RouterA,
                        &["ip", "mptcp", "endpoint", "delete", "id", &id],
                    );
                }),
            ),
            (
                "endpoint delete id 0 ADDR",
                Box::new(move |t: &Topology| {
                    let a = addr(t).to_string();
                    sh(
                        t,
                        Node::RouterA,
                        &["ip", "mptcp", "endpoint", "delete", "id", "0", &a],
                    );
                }),
            ),
            (
                "both deletes",
                Box::new(move |t: &Topology| {
                    let id = endpoint_id(t, addr(t));
                    let a = addr(t).to_string();
                    sh(
                        t,
                        Node::RouterA,
                        &["ip", "mptcp", "endpoint", "delete", "id", &id],
                    );
                    let _ = t.run(
                        Node::RouterA,
                        &["ip", "mptcp", "endpoint", "delete", "id", "0", &a],
                    );
                }),
            ),
            (
                "endpoint change id N backup",
                Box::new(move |t: &Topology| {
                    let id = endpoint_id(t, addr(t));
                    sh(
                        t,
                        Node::RouterA,
                        &["ip", "mptcp", "endpoint", "change", "id", &id, "backup"],
                    );
                }),
            ),
        ];
        for upload in [false, true] {
            for (name, action) in &actions {
                let f = Figure {
                    extra: off,
                    failure: Failure::Blackhole,
                    link,
                    upload,
                    hold: Duration::ZERO,
                };
                eprintln!(
                    "by hand, upload={upload}, blackhole link {link}, {name}: {}",
                    runs(&f, action.as_ref())
                );
            }
        }
    }
}

/// What each MPTCP change does to the initial subflow (link 0), on an idle
/// connection with probing off: printed, for the closing note.
/// cargo test -p mpbridge --test paths initial_subflow_facts -- --ignored --nocapture
#[test]
#[ignore]
fn initial_subflow_facts() {
    type Change = fn(&Topology, &str);
    let changes: [(&str, Change); 3] = [
        ("endpoint delete id N", |t, id| {
            sh(
                t,
                Node::RouterA,
                &["ip", "mptcp", "endpoint", "delete", "id", id],
            );
        }),
        ("endpoint delete id 0 ADDR", |t, _| {
            let a = t.ra_link_addr(0, false).to_string();
            sh(
                t,
                Node::RouterA,
                &["ip", "mptcp", "endpoint", "delete", "id", "0", &a],
            );
        }),
        ("endpoint change id N backup", |t, id| {
            sh(
                t,
                Node::RouterA,
                &["ip", "mptcp", "endpoint", "change", "id", id, "backup"],
            );
        }),
    ];
    for (name, change) in changes {
        let bridge = Bridge::start(Options {
            paths_extra: "[probe]\nenabled = false\n",
            ..Options::default()
        });
        let topo = &bridge.topo;
        let addr = topo.ra_link_addr(0, false);
        let transfer = Transfer::start(&bridge);
        assert!(carries_traffic(topo, 1, IO_TIMEOUT).is_some());
        let initial = |t: &Topology| -> Vec<String> {
            let out = sh(t, Node::RouterA, &["ss", "-tniH", "src", &addr.to_string()]);
            out.lines()
                .filter(|l| l.contains("tcp-ulp-mptcp"))
                .map(|l| {
                    l.split_whitespace()
                        .filter(|w| w.starts_with("flags:") || w.starts_with("bytes_received:"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        let before = initial(topo);
        let id = endpoint_id(topo, addr);
        change(topo, &id);
        // Give the kernel a moment to act, then look.
        wait_until(Duration::from_millis(500), || false);
        let after = initial(topo);
        let link0 = carries_traffic(topo, 0, Duration::from_secs(1)).is_some();
        eprintln!(
            "{name}: initial subflow before {before:?}, after {after:?}; link 0 still carries data: {link0}"
        );
        transfer.finish();
    }
}
