//! Behaviour of the namespace lab itself: building and tearing down,
//! plain routing, shaping and failure injection. (MPTCP paths are the
//! daemon's: `crates/mpbridge/tests/paths.rs`.)
//! Needs root (it creates network namespaces); each test builds its own.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpbridge_lab::{clean_leftovers, wait_until, LinkSpec, Node, Topology, TopologySpec};

const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Long enough for a SYN/SYN-ACK over a veth, short enough to keep a
/// "this connect must fail" check cheap.
const DEAD_CONNECT: Duration = Duration::from_millis(300);

fn build(spec: TopologySpec) -> Topology {
    Topology::build(&spec).unwrap_or_else(|e| panic!("cannot build lab: {e:#}"))
}

fn listen(topo: &Topology, node: Node, ip: IpAddr) -> TcpListener {
    topo.enter(node, || TcpListener::bind((ip, 0))).unwrap()
}

fn connect(
    topo: &Topology,
    node: Node,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    topo.enter(node, || TcpStream::connect_timeout(&to, timeout))
}

/// Opens a connection client → server and exchanges a few bytes each way.
fn client_reaches_server(topo: &Topology, v6: bool, timeout: Duration) -> io::Result<()> {
    let listener = listen(topo, Node::Server, topo.server_addr(v6));
    let mut client = connect(topo, Node::Client, listener.local_addr()?, timeout)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let (mut server, peer) = listener.accept()?;
    assert_eq!(
        peer.ip(),
        topo.client_addr(v6),
        "server sees the client's own address"
    );
    server.set_read_timeout(Some(IO_TIMEOUT))?;
    client.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong")?;
    client.read_exact(&mut buf)?;
    assert_eq!(&buf, b"pong");
    Ok(())
}

fn ns_exists(name: &str) -> bool {
    PathBuf::from("/run/netns").join(name).exists()
}

fn all_names(topo: &Topology) -> Vec<String> {
    Node::ALL
        .iter()
        .map(|&n| topo.ns_name(n).to_string())
        .collect()
}

#[test]
fn dropping_a_topology_removes_its_namespaces_and_workdir() {
    let topo = build(TopologySpec::unshaped(2));
    let names = all_names(&topo);
    let workdir = topo.workdir().to_path_buf();
    assert!(names.iter().all(|n| ns_exists(n)), "{names:?}");
    assert!(workdir.is_dir());
    drop(topo);
    assert!(names.iter().all(|n| !ns_exists(n)), "{names:?} left behind");
    assert!(!workdir.exists(), "{} left behind", workdir.display());
}

#[test]
fn namespaces_are_removed_when_the_test_body_panics() {
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let topo = build(TopologySpec::unshaped(1));
        names = all_names(&topo);
        panic!("test body fails");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| !ns_exists(n)), "{names:?} left behind");
}

#[test]
fn two_topologies_coexist_without_collisions() {
    let (one, two) = std::thread::scope(|s| {
        let a = s.spawn(|| build(TopologySpec::unshaped(1)));
        let b = s.spawn(|| build(TopologySpec::unshaped(1)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (names_one, names_two) = (all_names(&one), all_names(&two));
    assert!(names_one.iter().all(|n| !names_two.contains(n)));
    assert_ne!(one.workdir(), two.workdir());
    client_reaches_server(&one, false, IO_TIMEOUT).unwrap();
    client_reaches_server(&two, false, IO_TIMEOUT).unwrap();
}

#[test]
fn client_reaches_server_by_plain_routing_v4_and_v6() {
    let topo = build(TopologySpec::unshaped(2));
    client_reaches_server(&topo, false, IO_TIMEOUT).expect("IPv4");
    client_reaches_server(&topo, true, IO_TIMEOUT).expect("IPv6");
}

#[test]
fn sysctls_are_set_inside_the_namespaces_only() {
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let topo = build(TopologySpec::unshaped(1));
    let sysctl = |node, key| {
        topo.run(node, &["sysctl", "-n", key])
            .unwrap()
            .trim()
            .to_string()
    };
    for node in [Node::RouterA, Node::RouterB] {
        assert_eq!(sysctl(node, "net.ipv4.ip_forward"), "1");
        assert_eq!(sysctl(node, "net.ipv6.conf.all.forwarding"), "1");
    }
    assert_eq!(sysctl(Node::Client, "net.ipv4.ip_forward"), "0");
    for node in Node::ALL {
        assert_eq!(sysctl(node, "net.ipv4.tcp_fastopen"), "3");
    }
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(host_forward, host_after, "the host's sysctl changed");
}

#[test]
fn ipv6_addresses_are_usable_at_once() {
    let topo = build(TopologySpec::unshaped(2));
    for node in Node::ALL {
        let tentative = topo
            .run(node, &["ip", "-6", "addr", "show", "tentative"])
            .unwrap();
        assert_eq!(tentative.trim(), "", "{node:?}");
    }
}

#[test]
fn spawned_process_runs_in_its_namespace_and_stops_with_the_topology() {
    let topo = build(TopologySpec::unshaped(1));
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "echo ready-$MPB_TEST_VAR; exec sleep 30"])
        .env("MPB_TEST_VAR", "42");
    let proc = topo.spawn_named(Node::Server, "sleeper", &mut cmd).unwrap();
    assert!(
        topo.spawn_named(Node::Server, "sleeper", &mut cmd).is_err(),
        "name reused"
    );
    proc.wait_for_log("ready-42", IO_TIMEOUT).unwrap();
    // `ip netns exec` execs in place: the PID is the program's own.
    assert!(wait_until(IO_TIMEOUT, || {
        std::fs::read_to_string(format!("/proc/{}/comm", proc.pid()))
            .is_ok_and(|c| c.trim() == "sleep")
    }));
    let proc_ns = std::fs::metadata(format!("/proc/{}/ns/net", proc.pid())).unwrap();
    let lab_ns = std::fs::metadata(topo.ns_path(Node::Server)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(proc_ns.ino(), lab_ns.ino(), "not in the server namespace");
    assert!(proc.stdout_path().starts_with(topo.workdir()));

    drop(topo);
    assert!(!proc.is_running(), "topology drop must stop its processes");
}

#[test]
fn run_reports_the_failing_command_and_its_stderr() {
    let topo = build(TopologySpec::unshaped(1));
    let out = topo
        .run(Node::RouterA, &["ip", "-br", "link", "show", "wan0"])
        .unwrap();
    assert!(out.starts_with("wan0"), "{out}");
    let err = topo
        .run(Node::RouterA, &["ip", "link", "show", "nosuchdev"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ip link show nosuchdev"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn tbf_limits_a_shaped_link() {
    const RATE_MBIT: u32 = 20;
    let topo = build(TopologySpec {
        links: vec![LinkSpec::shaped(RATE_MBIT)],
    });
    let listener = listen(&topo, Node::Server, topo.server_addr(false));
    let mut sender = connect(
        &topo,
        Node::Client,
        listener.local_addr().unwrap(),
        IO_TIMEOUT,
    )
    .unwrap();
    let (mut receiver, _) = listener.accept().unwrap();
    receiver.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sender.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let chunk = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) && sender.write_all(&chunk).is_ok() {}
        }
    });

    // Count what arrives during one second after the first byte.
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = read_some(&mut receiver, &mut buf);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        total += read_some(&mut receiver, &mut buf);
    }
    let mbit = total as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6;
    stop.store(true, Ordering::Relaxed);
    // Closing with unread data resets the connection, unblocking the writer.
    drop(receiver);
    writer.join().unwrap();
    eprintln!("tbf {RATE_MBIT} Mbit/s link carried {mbit:.1} Mbit/s");
    assert!(
        mbit < 30.0,
        "{mbit:.1} Mbit/s through a {RATE_MBIT} Mbit/s link"
    );
    assert!(
        mbit > 10.0,
        "only {mbit:.1} Mbit/s through a {RATE_MBIT} Mbit/s link"
    );
}

/// One `read`, retried when interrupted: with a read timeout set, Linux
/// fails a socket read with EINTR even after a mere stop/continue.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.unwrap(),
        }
    }
}

#[test]
fn set_rate_installs_and_removes_tbf_on_both_routers() {
    let topo = build(TopologySpec::unshaped(1));
    topo.set_rate(0, 0).unwrap(); // removing nothing is fine
    topo.set_rate(0, 50).unwrap();
    for node in [Node::RouterA, Node::RouterB] {
        let qdisc = topo
            .run(node, &["tc", "qdisc", "show", "dev", "wan0"])
            .unwrap();
        assert!(
            qdisc.contains("tbf") && qdisc.contains("rate 50Mbit"),
            "{qdisc}"
        );
    }
    topo.set_rate(0, 0).unwrap();
    for node in [Node::RouterA, Node::RouterB] {
        let qdisc = topo
            .run(node, &["tc", "qdisc", "show", "dev", "wan0"])
            .unwrap();
        assert!(!qdisc.contains("tbf"), "{qdisc}");
    }
}

#[test]
fn blackhole_drops_traffic_until_lifted() {
    let topo = build(TopologySpec::unshaped(1));
    client_reaches_server(&topo, false, IO_TIMEOUT).unwrap();
    topo.blackhole(0, true).unwrap();
    for v6 in [false, true] {
        let err = client_reaches_server(&topo, v6, DEAD_CONNECT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "v6={v6}: {err}");
    }
    let link = topo
        .run(Node::RouterA, &["ip", "-br", "link", "show", "wan0"])
        .unwrap();
    assert!(
        link.contains("UP"),
        "a black hole keeps the link up: {link}"
    );
    // Like a dead radio link: each router's sends by it succeed and vanish,
    // and router A's interface counts nothing of what router B sends.
    let (_, rx_before) = topo.link_counters(0).unwrap();
    for (from, to) in [
        (Node::RouterB, Node::RouterA),
        (Node::RouterA, Node::RouterB),
    ] {
        let to_ip = match to {
            Node::RouterA => topo.ra_link_addr(0, false),
            _ => topo.rb_link_addr(0, false),
        };
        let receiver = topo.enter(to, || UdpSocket::bind((to_ip, 0))).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let target = receiver.local_addr().unwrap();
        let sender = topo
            .enter(from, || UdpSocket::bind(("0.0.0.0", 0)))
            .unwrap();
        for i in 0..20u8 {
            sender
                .send_to(&[i; 100], target)
                .unwrap_or_else(|e| panic!("{from:?}'s send {i} into the black hole failed: {e}"));
        }
        let mut buf = [0u8; 200];
        let got = receiver.recv_from(&mut buf);
        assert!(got.is_err(), "{to:?} got {got:?} through the black hole");
    }
    let (_, rx_after) = topo.link_counters(0).unwrap();
    assert_eq!(
        rx_after, rx_before,
        "router A's interface counted bytes from a black-holed link"
    );
    topo.blackhole(0, false).unwrap();
    assert_reconnects(&topo, "no connectivity after the black hole was lifted");
}

#[test]
fn total_loss_drops_everything_and_zero_removes_the_rules() {
    let topo = build(TopologySpec::unshaped(1));
    topo.set_loss(0, 50.0).unwrap();
    for node in [Node::RouterA, Node::RouterB] {
        let rules = topo
            .run(node, &["nft", "list", "table", "inet", "mpblab"])
            .unwrap();
        assert!(
            rules.contains("iifname \"wan0\" numgen random mod 1000 < 500 drop"),
            "{node:?}: {rules}"
        );
    }
    topo.set_loss(0, 100.0).unwrap();
    assert!(client_reaches_server(&topo, false, DEAD_CONNECT).is_err());
    topo.set_loss(0, 0.0).unwrap();
    for node in [Node::RouterA, Node::RouterB] {
        let tables = topo.run(node, &["nft", "list", "tables"]).unwrap();
        assert!(!tables.contains("mpblab"), "{node:?}: {tables}");
    }
    client_reaches_server(&topo, false, IO_TIMEOUT).unwrap();
}

/// Sends `bytes` from `from` to a listener at `ip` in `to`.
fn transfer(topo: &Topology, from: Node, to: Node, ip: IpAddr, bytes: usize) {
    let listener = listen(topo, to, ip);
    let mut client = connect(topo, from, listener.local_addr().unwrap(), IO_TIMEOUT).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        server.read_to_end(&mut received).map(|_| received.len())
    });
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    client.write_all(&vec![7u8; bytes]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), bytes);
}

#[test]
fn loss_meets_real_packets_not_gso_super_packets() {
    let topo = build(TopologySpec {
        links: vec![LinkSpec {
            loss_pct: 0.1,
            ..LinkSpec::UNSHAPED
        }],
    });
    // Count what arrives from the link in each router, just before the
    // lab's own drop rule.
    let probe = "table inet probe {\n  chain pre {\n    type filter hook prerouting priority -400;\n    iifname \"wan0\" counter\n  }\n}\n";
    let probe_file = topo.workdir().join("probe.nft");
    std::fs::write(&probe_file, probe).unwrap();
    for node in [Node::RouterA, Node::RouterB] {
        topo.run(node, &["nft", "-f", probe_file.to_str().unwrap()])
            .unwrap();
    }
    const BYTES: usize = 2 << 20;
    transfer(
        &topo,
        Node::Client,
        Node::Server,
        topo.server_addr(false),
        BYTES,
    );
    transfer(
        &topo,
        Node::Server,
        Node::Client,
        topo.client_addr(false),
        BYTES,
    );
    transfer(
        &topo,
        Node::RouterA,
        Node::RouterB,
        topo.rb_link_addr(0, false),
        BYTES,
    );
    transfer(
        &topo,
        Node::RouterB,
        Node::RouterA,
        topo.ra_link_addr(0, false),
        BYTES,
    );
    for node in [Node::RouterA, Node::RouterB] {
        let out = topo
            .run(node, &["nft", "list", "table", "inet", "probe"])
            .unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        let after = |key| {
            words
                .iter()
                .position(|w| *w == key)
                .map(|i| words[i + 1].parse::<u64>().unwrap())
        };
        let (packets, bytes) = (after("packets").unwrap(), after("bytes").unwrap());
        assert!(bytes >= 2 * BYTES as u64, "{node:?}: {out}");
        assert!(
            bytes / packets <= 1500,
            "{node:?}: {} bytes per packet: {out}",
            bytes / packets
        );
    }
    topo.set_loss(0, 0.0).unwrap();
    let segs = topo
        .run(Node::RouterB, &["ip", "-d", "link", "show", "wan0"])
        .unwrap();
    assert!(segs.contains("gso_max_segs 65535"), "{segs}");
}

#[test]
fn link_down_and_up_restores_connectivity_v4_and_v6() {
    let topo = build(TopologySpec::unshaped(2));
    topo.link_down(0).unwrap();
    for v6 in [false, true] {
        assert!(
            client_reaches_server(&topo, v6, DEAD_CONNECT).is_err(),
            "v6={v6}"
        );
    }
    topo.link_up(0).unwrap();
    assert_reconnects(&topo, "no connectivity after link_up");
    let addrs = topo
        .run(Node::RouterA, &["ip", "-o", "addr", "show", "dev", "wan0"])
        .unwrap();
    assert!(
        addrs.contains("fd00:20::1/64"),
        "IPv6 address not restored: {addrs}"
    );
}

#[test]
fn link_counters_count_traffic_on_that_link_only() {
    let topo = build(TopologySpec::unshaped(2));
    let (tx0, _) = topo.link_counters(0).unwrap();
    let (tx1, _) = topo.link_counters(1).unwrap();
    transfer(
        &topo,
        Node::Client,
        Node::Server,
        topo.server_addr(false),
        1 << 20,
    );
    let (tx0_after, _) = topo.link_counters(0).unwrap();
    let (tx1_after, _) = topo.link_counters(1).unwrap();
    assert!(
        tx0_after - tx0 >= 1 << 20,
        "wan0 sent {} bytes",
        tx0_after - tx0
    );
    assert!(
        tx1_after - tx1 < 64 * 1024,
        "wan1 sent {} bytes",
        tx1_after - tx1
    );
}

#[test]
fn bad_spec_is_refused_with_a_clear_error() {
    let err = Topology::build(&TopologySpec::unshaped(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 to 8 links"), "{err}");
}

#[test]
fn leftovers_of_dead_processes_are_cleaned_and_ours_kept() {
    let topo = build(TopologySpec::unshaped(1));
    // A PID above the kernel's largest pid_max can never be alive; our own
    // PID as the serial keeps parallel test processes apart.
    let orphan = format!("mpb4194305x{}c", std::process::id());
    let orphan_dir = std::env::temp_dir().join(format!("mpblab-4194305x{}", std::process::id()));
    std::fs::create_dir_all(&orphan_dir).unwrap();
    ip(&["netns", "add", &orphan]);
    let removed = clean_leftovers().unwrap();
    // Another test process may have cleaned it first; either way it is gone.
    assert!(!ns_exists(&orphan), "{orphan} survived");
    assert!(!orphan_dir.exists(), "{} survived", orphan_dir.display());
    let own = format!("mpb{}x", std::process::id());
    assert!(removed.iter().all(|n| !n.starts_with(&own)), "{removed:?}");
    assert!(
        all_names(&topo).iter().all(|n| ns_exists(n)),
        "ours were removed"
    );
}

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ip {args:?} failed");
}

/// Client reaches server again, IPv4 and IPv6, within the I/O timeout.
fn assert_reconnects(topo: &Topology, what: &str) {
    for v6 in [false, true] {
        let back = wait_until(IO_TIMEOUT, || {
            client_reaches_server(topo, v6, DEAD_CONNECT).is_ok()
        });
        assert!(back, "v6={v6}: {what}");
    }
}

#[test]
fn a_rate_schedule_changes_the_rate_on_both_routers_and_holds_its_last_step() {
    let link = mpbridge_lab::links::parse_link("100:1s/20").unwrap();
    let topo = build(TopologySpec { links: vec![link] });
    let rate = |node| {
        topo.run(node, &["tc", "qdisc", "show", "dev", "wan0"])
            .unwrap()
    };
    let first = rate(Node::RouterA);
    assert!(first.contains("rate 100Mbit"), "{first}");
    let changed = wait_until(Duration::from_secs(5), || {
        [Node::RouterA, Node::RouterB]
            .iter()
            .all(|&n| rate(n).contains("rate 20Mbit"))
    });
    assert!(changed, "still {}", rate(Node::RouterA));
    // The last step has no duration: it stays.
    std::thread::sleep(Duration::from_millis(1500));
    let held = rate(Node::RouterB);
    assert!(held.contains("rate 20Mbit"), "{held}");
}

#[test]
fn a_link_that_needs_netem_is_refused_before_anything_is_created_where_netem_is_missing() {
    if mpbridge_lab::shaping::netem_available() {
        eprintln!("this kernel has netem: nothing to refuse");
        return;
    }
    let links = mpbridge_lab::checks::parse_links("50,50@30ms").unwrap();
    let e = Topology::build(&TopologySpec { links })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("link 1 (50@30ms) needs netem, which this kernel lacks"),
        "{e}"
    );
}
