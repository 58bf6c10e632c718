//! The interception rules `mpbridge local` owns, in namespaces with the
//! real binaries: its nftables table diverts client TCP into the bridge,
//! dies with the process (SIGKILL included) so that the LAN falls back to
//! plain routing, comes back with a restart, follows a bypass added by
//! SIGHUP, and refuses rules that would loop.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bridge, Mode, Options};
use mpbridge_lab::bridge as lab_bridge;
use mpbridge_lab::Node;

const MPBRIDGE: &str = env!("CARGO_BIN_EXE_mpbridge");

/// Sends a request through a fresh client connection to `listener` and
/// returns the address the server saw the connection come from: router B's
/// for a bridged connection, the client's own for plain routing.
fn seen_from(bridge: &Bridge, listener: &TcpListener) -> IpAddr {
    let dest = listener.local_addr().unwrap();
    let mut client = bridge
        .client_connect(dest)
        .unwrap_or_else(|e| panic!("connect to {dest}: {e}\n{}", bridge.logs()));
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping");
    peer.ip()
}

/// `nft list table inet mpbridge` in router A, `None` when there is none.
fn table(bridge: &Bridge) -> Option<String> {
    bridge
        .topo
        .run(Node::RouterA, &["nft", "list", "table", "inet", "mpbridge"])
        .ok()
}

fn signal(proc: &mpbridge_lab::Proc, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(proc.pid() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Bridged; SIGKILL → the table is gone within a second and plain routing
/// carries new connections; restarted → bridged again.
fn kill_9_falls_back_to_plain_routing(mode: Mode, v6: bool) {
    let mut bridge = Bridge::start(Options {
        mode,
        ..Options::default()
    });
    let listener = bridge.server_listener(v6);
    let (via_bridge, direct) = (bridge.topo.rb_lan_addr(v6), bridge.topo.client_addr(v6));

    let ruleset = table(&bridge).unwrap_or_else(|| panic!("no table\n{}", bridge.logs()));
    println!("{mode:?}: the daemon's ruleset:\n{ruleset}");
    assert!(ruleset.contains("flags owner"), "{ruleset}");
    assert_eq!(
        seen_from(&bridge, &listener),
        via_bridge,
        "{}",
        bridge.logs()
    );

    // Timed from the signal; each poll is one `nft list` run (3-5 ms).
    let killed = Instant::now();
    signal(&bridge.local, rustix::process::Signal::KILL);
    let gone = mpbridge_lab::wait_until(Duration::from_secs(5), || table(&bridge).is_none());
    let elapsed = killed.elapsed();
    bridge.local.kill(); // reap
    println!(
        "{mode:?} IPv{}: SIGKILL -> table gone in {} ms",
        if v6 { 6 } else { 4 },
        elapsed.as_millis()
    );
    assert!(
        gone && elapsed < Duration::from_secs(1),
        "table still there after {elapsed:?}"
    );
    assert_eq!(
        seen_from(&bridge, &listener),
        direct,
        "plain routing after SIGKILL"
    );

    bridge.local = lab_bridge::restart_local(&bridge.topo, Path::new(MPBRIDGE), "local-2")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        seen_from(&bridge, &listener),
        via_bridge,
        "{}",
        bridge.logs()
    );
    // The restarted daemon's counters saw that one connection.
    signal(&bridge.local, rustix::process::Signal::TERM);
    bridge.local.wait_exit(Duration::from_secs(15)).unwrap();
    let log = bridge.local.output_text();
    assert!(
        log.contains("accepted 1,") && log.contains("bytes up 4 "),
        "{log}"
    );
    if mode == Mode::Tproxy {
        // The fwmark rule and local route outlive a SIGKILL (harmless: no
        // packet carries the mark any more) and the next start replaces them.
        let log = bridge.local.output_text();
        assert!(
            log.contains("removed policy routing left by an earlier run"),
            "{log}"
        );
    }
}

#[test]
fn tproxy_ipv4_kill_9_falls_back_to_plain_routing_and_a_restart_bridges_again() {
    kill_9_falls_back_to_plain_routing(Mode::Tproxy, false);
}

#[test]
fn tproxy_ipv6_kill_9_falls_back_to_plain_routing_and_a_restart_bridges_again() {
    kill_9_falls_back_to_plain_routing(Mode::Tproxy, true);
}

#[test]
fn redirect_ipv4_kill_9_falls_back_to_plain_routing_and_a_restart_bridges_again() {
    kill_9_falls_back_to_plain_routing(Mode::Redirect, false);
}

#[test]
fn redirect_ipv6_kill_9_falls_back_to_plain_routing_and_a_restart_bridges_again() {
    kill_9_falls_back_to_plain_routing(Mode::Redirect, true);
}

#[test]
fn a_bypass_added_by_sighup_is_honoured_by_the_next_connection() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let server = bridge.topo.server_addr(false);
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.rb_lan_addr(false)
    );

    lab_bridge::add_bypass(&bridge.topo, &bridge.local, &format!("{server}/32"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.client_addr(false),
        "{}",
        bridge.logs()
    );
    let ruleset = table(&bridge).unwrap();
    assert!(ruleset.contains(&server.to_string()), "{ruleset}");

    // A config that does not validate: one clear error, the set unchanged.
    let config = bridge.topo.workdir().join("local.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("bypass = [", "bypass = [\"10.0.0.1/8\", ", 1),
    )
    .unwrap();
    signal(&bridge.local, rustix::process::Signal::HUP);
    bridge
        .local
        .wait_for_log("config not reloaded", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = bridge.local.output_text();
    assert!(
        log.contains("local.toml:") && log.contains("local.bypass[0]"),
        "{log}"
    );
    assert!(bridge.local.is_running());
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.client_addr(false)
    );
    // Of the three connections, the daemon carried only the first.
    signal(&bridge.local, rustix::process::Signal::TERM);
    bridge.local.wait_exit(Duration::from_secs(15)).unwrap();
    let log = bridge.local.output_text();
    assert!(log.contains("accepted 1,"), "{log}");
}

#[test]
fn an_address_added_at_run_time_joins_the_local_set() {
    let bridge = Bridge::start(Options::default());
    let local4 = || {
        bridge
            .topo
            .run(
                Node::RouterA,
                &["nft", "list", "set", "inet", "mpbridge", "local4"],
            )
            .unwrap()
    };
    assert!(!local4().contains("10.40.0.0/24"));
    bridge
        .topo
        .run(
            Node::RouterA,
            &["ip", "addr", "add", "10.40.0.1/24", "dev", "lan0"],
        )
        .unwrap();
    let joined =
        mpbridge_lab::wait_until(Duration::from_secs(5), || local4().contains("10.40.0.0/24"));
    assert!(joined, "{}\n{}", local4(), bridge.logs());
    bridge
        .topo
        .run(
            Node::RouterA,
            &["ip", "addr", "del", "10.40.0.1/24", "dev", "lan0"],
        )
        .unwrap();
    let left = mpbridge_lab::wait_until(Duration::from_secs(5), || {
        !local4().contains("10.40.0.0/24")
    });
    assert!(left, "{}", local4());
}

#[test]
fn without_the_owner_flag_the_table_is_removed_on_exit_and_a_leftover_at_start() {
    let mut bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    bridge.local.kill();
    // A run that behaves as on a kernel without the owner flag (Linux <
    // 5.12), killed: its table outlives it.
    let mut cmd = Command::new(MPBRIDGE);
    cmd.arg("-c")
        .arg(bridge.topo.workdir().join("local.toml"))
        .arg("local")
        .env("MPBRIDGE_TEST_NO_OWNER_FLAG", "1");
    let mut unowned = bridge
        .topo
        .spawn_named(Node::RouterA, "local-unowned", &mut cmd)
        .unwrap();
    unowned
        .wait_for_log("local listening", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(unowned.output_text().contains("using a normal table"));
    let ruleset = table(&bridge).unwrap();
    assert!(!ruleset.contains("flags owner"), "{ruleset}");
    unowned.kill();
    assert!(table(&bridge).is_some(), "a normal table outlives SIGKILL");
    // TPROXY fails open even so: with no listener, tproxy does not match.
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.client_addr(false)
    );

    // The next start removes the leftover and owns its table again.
    let local = lab_bridge::restart_local(&bridge.topo, Path::new(MPBRIDGE), "local-3")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(local.output_text().contains("left by an earlier run"));
    assert!(table(&bridge).unwrap().contains("flags owner"));
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.rb_lan_addr(false)
    );

    // TPROXY's policy rule is there while the daemon runs...
    let mark = format!("{:#x}", mpbridge::firewall::DIVERT_MARK);
    let rules = bridge
        .topo
        .run(Node::RouterA, &["ip", "rule", "show"])
        .unwrap();
    assert!(rules.contains(&mark), "{rules}");
    // ...and a normal exit removes the table and the policy routing.
    signal(&local, rustix::process::Signal::TERM);
    local.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(table(&bridge).is_none());
    let rules = bridge
        .topo
        .run(Node::RouterA, &["ip", "rule", "show"])
        .unwrap();
    assert!(!rules.contains(&mark), "{rules}");
}

#[test]
fn a_lan_interface_that_routes_to_the_remote_is_refused_at_start() {
    let mut bridge = Bridge::start(Options::default());
    bridge.local.kill();
    let config = bridge.topo.workdir().join("local.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "lan_interfaces = [\"lan0\"]",
            "lan_interfaces = [\"lan0\", \"wan0\"]",
            1,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(MPBRIDGE);
    cmd.arg("-c").arg(&config).arg("local");
    let local = bridge
        .topo
        .spawn_named(Node::RouterA, "local-loop", &mut cmd)
        .unwrap();
    let status = local.wait_exit(Duration::from_secs(10)).unwrap();
    let out = local.output_text();
    assert_eq!(status.code(), Some(78), "EX_CONFIG\n{out}");
    let remote = SocketAddr::new(bridge.topo.rb_link_addr(0, false), common::REMOTE_PORT);
    assert!(
        out.contains(&format!("the remote {remote} is routed through wan0")),
        "{out}"
    );
    assert!(table(&bridge).is_none(), "no rules left behind");
}

#[test]
fn redirect_sigterm_lets_new_connections_pass_while_open_ones_finish() {
    let bridge = Bridge::start(Options {
        mode: Mode::Redirect,
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    let mut open = bridge.client_connect(dest).unwrap();
    open.write_all(b"before, ").unwrap();
    let (mut server_end, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), bridge.topo.rb_lan_addr(false));

    signal(&bridge.local, rustix::process::Signal::TERM);
    bridge
        .local
        .wait_for_log("draining open connections", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bridge.logs()));
    // The redirect rules are gone: a new connection is routed, not sent to
    // the closed listener...
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.client_addr(false)
    );
    // ...while the open one, translated by conntrack, still works.
    open.write_all(b"after").unwrap();
    open.shutdown(Shutdown::Write)
        .unwrap_or_else(|e| panic!("{e}\n{}", bridge.logs()));
    let mut got = Vec::new();
    server_end.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"before, after", "{}", bridge.logs());
    server_end.write_all(b"reply").unwrap();
    drop(server_end);
    let mut reply = Vec::new();
    open.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");
    bridge.local.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(table(&bridge).is_none());
}

#[test]
fn with_firewall_none_the_daemon_installs_nothing() {
    let bridge = Bridge::start(Options {
        local_extra: "firewall = \"none\"",
        ..Options::default()
    });
    assert!(table(&bridge).is_none());
    let rules = bridge
        .topo
        .run(Node::RouterA, &["ip", "rule", "show"])
        .unwrap();
    let mark = format!("{:#x}", mpbridge::firewall::DIVERT_MARK);
    assert!(!rules.contains(&mark), "{rules}");
    let listener = bridge.server_listener(false);
    assert_eq!(
        seen_from(&bridge, &listener),
        bridge.topo.client_addr(false)
    );
}

/// An fw4-like ruleset (OpenWrt's firewall): its own `table inet fw4` on
/// the same hooks as ours (prerouting at mangle, dstnat, filter chains).
const FW4_LIKE: &str = "
table inet fw4 {
	chain input { type filter hook input priority filter; policy accept; ct state established,related accept; iifname \"lo\" accept; }
	chain forward { type filter hook forward priority filter; policy accept; ct state established,related accept; }
	chain output { type filter hook output priority filter; policy accept; }
	chain mangle_prerouting { type filter hook prerouting priority mangle; policy accept; meta l4proto tcp counter; }
	chain dstnat { type nat hook prerouting priority dstnat; policy accept; }
	chain srcnat { type nat hook postrouting priority srcnat; policy accept; }
}
";

/// OpenWrt's firewall beside the owned table: loading fw4's ruleset, fw4's
/// restart (it replaces only `table inet fw4`) and `fw4 flush` (`nft flush
/// ruleset`: every table not owned by a process goes) leave `inet mpbridge`
/// in place and client TCP bridged.
#[test]
fn the_owned_table_survives_fw4_restart_and_flush_and_keeps_bridging() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let rb = bridge.topo.rb_lan_addr(false);
    let fw4 = bridge.topo.workdir().join("fw4.nft");
    std::fs::write(&fw4, FW4_LIKE).unwrap();
    let nft = |args: &[&str]| {
        let mut full = vec!["nft"];
        full.extend_from_slice(args);
        bridge
            .topo
            .run(Node::RouterA, &full)
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let fw4 = fw4.to_str().unwrap();

    nft(&["-f", fw4]);
    assert_eq!(seen_from(&bridge, &listener), rb, "bridged beside fw4");
    // fw4 restart: its table is deleted and loaded again.
    nft(&["delete", "table", "inet", "fw4"]);
    nft(&["-f", fw4]);
    assert!(table(&bridge).is_some(), "fw4's restart removed our table");
    assert_eq!(
        seen_from(&bridge, &listener),
        rb,
        "bridged after fw4 restart"
    );
    // fw4 flush.
    nft(&["flush", "ruleset"]);
    let ours = table(&bridge).expect("`nft flush ruleset` removed the owned table");
    assert!(ours.contains("flags owner"), "{ours}");
    assert!(
        !nft(&["list", "tables"]).contains("fw4"),
        "flush ruleset must remove fw4's table"
    );
    assert_eq!(seen_from(&bridge, &listener), rb, "bridged after fw4 flush");
    assert!(bridge.local.is_running(), "{}", bridge.logs());
}

/// The client namespace's `Tcp` counter `name` from /proc/net/snmp.
fn tcp_snmp(bridge: &Bridge, name: &str) -> u64 {
    let text = bridge
        .topo
        .run(Node::Client, &["cat", "/proc/net/snmp"])
        .unwrap();
    let mut rows = text.lines().filter(|l| l.starts_with("Tcp: "));
    let (names, values) = (rows.next().unwrap(), rows.next().unwrap());
    let at = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// A client that reuses its source port right after a bridged connection
/// the server closed first: router A's transparent socket closed first too,
/// so router A holds that 4-tuple in TIME_WAIT. The new SYN must still reach
/// the listener at once (tproxy's TIME_WAIT handling), not be answered from
/// the TIME_WAIT entry so that the client has to retransmit it.
fn port_reuse_after_a_server_close(mode: Mode, v6: bool) {
    let bridge = Bridge::start(Options {
        mode,
        ..Options::default()
    });
    let listener = bridge.server_listener(v6);
    let dest = listener.local_addr().unwrap();
    let client_ip = bridge.topo.client_addr(v6);
    let domain = if v6 {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let before = bridge.netstat(Node::Client, "TcpExt", "TCPSynRetrans");
    let resets_before = tcp_snmp(&bridge, "OutRsts");
    let mut port = 0;
    let mut slowest = Duration::ZERO;
    let rounds = 5;
    for round in 0..rounds {
        let started = Instant::now();
        let (stream, local) = bridge
            .topo
            .enter(Node::Client, move || {
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                s.bind(&SocketAddr::new(client_ip, port).into())?;
                s.connect_timeout(&dest.into(), Duration::from_secs(5))?;
                let local = s.local_addr()?.as_socket().unwrap();
                std::io::Result::Ok((std::net::TcpStream::from(s), local))
            })
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: connect from port {port}: {e}\n{}",
                    bridge.logs()
                )
            });
        slowest = slowest.max(started.elapsed());
        port = local.port();
        let mut client = stream;
        client.write_all(b"ping").unwrap();
        // The server answers and closes first; the client closes after EOF.
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).unwrap();
        conn.write_all(b"pong").unwrap();
        drop(conn);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"pong");
        drop(client);
        // Router A's side of the relayed close (its FIN answered) settles.
        std::thread::sleep(Duration::from_millis(100));
    }
    let tw = common::sh(
        &bridge.topo,
        Node::RouterA,
        &["ss", "-tanH", "state", "time-wait"],
    );
    let resent = bridge.netstat(Node::Client, "TcpExt", "TCPSynRetrans") - before;
    let resets = tcp_snmp(&bridge, "OutRsts") - resets_before;
    eprintln!("slowest connect {slowest:?}, client resets {resets}, SYNs resent {resent}");
    // The case this test is about: router A does hold the last connection
    // in TIME_WAIT (else it would pass without testing anything).
    assert!(
        tw.contains(&format!(":{port} ")) || tw.contains(&format!(":{port}\n")),
        "{tw}"
    );
    assert_eq!(
        resent,
        0,
        "{resent} SYNs resent (client sent {resets} resets, slowest connect \
         {slowest:?}) for {rounds} connections from port {port}; \
         router A's TIME_WAIT:\n{tw}\n{}",
        bridge.logs()
    );
}

#[test]
fn tproxy_ipv4_a_client_reusing_its_port_after_a_server_close_does_not_resend_its_syn() {
    port_reuse_after_a_server_close(Mode::Tproxy, false);
}

#[test]
fn tproxy_ipv6_a_client_reusing_its_port_after_a_server_close_does_not_resend_its_syn() {
    port_reuse_after_a_server_close(Mode::Tproxy, true);
}

#[test]
fn redirect_ipv4_a_client_reusing_its_port_after_a_server_close_does_not_resend_its_syn() {
    port_reuse_after_a_server_close(Mode::Redirect, false);
}
