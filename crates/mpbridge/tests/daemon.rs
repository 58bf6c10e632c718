//! How the daemons behave as processes, in namespaces with the real
//! binaries: failing over between configured remotes, refusing loops,
//! draining on SIGTERM, and refusing to start on a kernel without MPTCP.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::{Bridge, Options, REMOTE_PORT};
use mpbridge_lab::{LinkSpec, Node, Topology, TopologySpec};
use rustix::process::{kill_process, Pid, Signal};

/// Serves one connection: reads the request to EOF and echoes it back.
fn echo_once(listener: std::net::TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        echo(conn);
    })
}

/// Reads `conn` to its end and sends it all back.
fn echo(mut conn: std::net::TcpStream) {
    let mut request = Vec::new();
    conn.read_to_end(&mut request).unwrap();
    conn.write_all(&request).unwrap();
}

fn exchange(bridge: &Bridge, dest: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut client = bridge.client_connect(dest)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.write_all(request)?;
    client.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    client.read_to_end(&mut reply)?;
    Ok(reply)
}

#[test]
fn an_unreachable_first_remote_is_skipped_for_the_next() {
    // The first remote is router B's link-1 address on a port nobody serves.
    let bridge = Bridge::start(Options {
        remotes: Some(vec![
            SocketAddr::new(mpbridge_lab::plan::rb_link_addr(1, false), REMOTE_PORT + 1),
            SocketAddr::new(mpbridge_lab::plan::rb_link_addr(0, false), REMOTE_PORT),
        ]),
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    let server = echo_once(listener);
    let reply = exchange(&bridge, dest, b"via the second remote").unwrap();
    assert_eq!(reply, b"via the second remote", "{}", bridge.logs());
    server.join().unwrap();
}

#[test]
fn a_remote_that_got_the_header_but_whose_answer_was_lost_does_not_spoil_the_next() {
    let bridge = Bridge::start(Options {
        remotes: Some(vec![
            SocketAddr::new(mpbridge_lab::plan::rb_link_addr(0, false), REMOTE_PORT),
            SocketAddr::new(mpbridge_lab::plan::rb_link_addr(1, false), REMOTE_PORT),
        ]),
        local_extra: "connect_timeout_ms = 500",
        ..Options::default()
    });
    // Link 0 loses everything router B sends over it: router B reads the
    // header (it rode in the SYN) but its SYN-ACK never arrives, so the
    // local gives up on that remote and tries router B on link 1.
    let rules = bridge.topo.workdir().join("oneway.nft");
    std::fs::write(
        &rules,
        "table inet mpbtest {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n  iifname \"wan0\" drop\n }\n}\n",
    )
    .unwrap();
    bridge
        .topo
        .run(Node::RouterA, &["nft", "-f", &rules.display().to_string()])
        .unwrap();
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    // Router B may open a connection for the first attempt too: echo each.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                if conn.read_to_end(&mut request).is_ok() {
                    let _ = conn.write_all(&request);
                }
            });
        }
    });
    let reply = exchange(&bridge, dest, b"via router B on link 1");
    assert!(
        matches!(&reply, Ok(r) if r == b"via router B on link 1"),
        "{reply:?}\n{}",
        bridge.logs()
    );
}

#[test]
fn a_connection_to_the_listener_itself_is_reset_not_looped() {
    let bridge = Bridge::start(Options::default());
    // Router A's own LAN address on the listener's port: diverted to the
    // listener, whose "original destination" would be itself.
    let dest = SocketAddr::new(bridge.topo.ra_lan_addr(false), common::LOCAL_PORT);
    if let Err(e) = common::expect_reset(bridge.client_connect(dest), b"loop?") {
        panic!("{e}\n{}", bridge.logs());
    }
    assert_refused_as_loop(&bridge);
}

/// The local logged the loop and is still running.
fn assert_refused_as_loop(bridge: &Bridge) {
    let log = bridge.local.output_text();
    assert!(log.contains("is the listener itself"), "{}", bridge.logs());
    assert!(bridge.local.is_running());
}

#[test]
fn an_address_added_after_start_is_recognised_as_the_listener_itself() {
    let bridge = Bridge::start(Options {
        // Bounds the loop should the check miss it.
        local_extra: "\n[limits]\nmax_connections = 8",
        ..Options::default()
    });
    // Router A gains a LAN address once running (DHCP, a new IPv6 prefix).
    bridge
        .topo
        .run(
            Node::RouterA,
            &["ip", "addr", "add", "10.10.0.77/24", "dev", "lan0"],
        )
        .unwrap();
    let dest: SocketAddr = format!("10.10.0.77:{}", common::LOCAL_PORT)
        .parse()
        .unwrap();
    let _ = common::expect_reset(bridge.client_connect(dest), b"loop?");
    assert_refused_as_loop(&bridge);
}

#[test]
fn sigterm_stops_accepting_and_lets_open_connections_finish() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();

    // A connection is open before the signal: the bridge has taken it
    // once it dialled the server (before that it may wait in the
    // listener's backlog, which the signal closes)...
    let mut open = bridge.client_connect(dest).unwrap();
    open.write_all(b"first half, ").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    let dialled = mpbridge_lab::wait_until(Duration::from_secs(5), || {
        accepted = listener.accept().ok();
        accepted.is_some()
    });
    assert!(
        dialled,
        "the bridge never dialled the server\n{}",
        bridge.logs()
    );
    let (conn, _) = accepted.unwrap();
    conn.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || echo(conn));
    let pid = Pid::from_raw(bridge.local.pid() as i32).unwrap();
    kill_process(pid, Signal::TERM).unwrap();
    bridge
        .local
        .wait_for_log("SIGTERM", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bridge.logs()));

    // ...a new one is no longer carried by the bridge: with nothing
    // listening, TPROXY lets it pass, and plain routing delivers it from the
    // client's own address (bridged connections come from router B's).
    let late = bridge.server_listener(false);
    let late_dest = late.local_addr().unwrap();
    let _late_client = bridge.client_connect(late_dest).unwrap();
    let (_conn, peer) = late.accept().unwrap();
    assert_eq!(
        peer.ip(),
        bridge.topo.client_addr(false),
        "{}",
        bridge.logs()
    );

    // ...while the open one finishes its exchange, then the daemon exits.
    open.write_all(b"second half").unwrap();
    open.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    open.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"first half, second half");
    server.join().unwrap();
    let status = bridge
        .local
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bridge.logs()));
    assert!(status.success(), "{status:?}\n{}", bridge.logs());
    // Its exit summary counted the one bridged connection and its bytes.
    let log = bridge.local.output_text();
    assert!(
        log.contains("accepted 1,") && log.contains("bytes up 23 down 23"),
        "{log}"
    );
}

#[test]
fn a_kernel_with_mptcp_disabled_is_refused_with_one_clear_sentence() {
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED],
    })
    .unwrap();
    topo.run(Node::RouterB, &["sysctl", "-qw", "net.mptcp.enabled=0"])
        .unwrap();
    let key = topo.workdir().join("key");
    std::fs::write(&key, common::KEY_HEX).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpbridge"));
    cmd.args(["remote", "--listen", "0.0.0.0:4443", "--key-file"])
        .arg(&key);
    let remote = topo.spawn_named(Node::RouterB, "remote", &mut cmd).unwrap();
    let status = remote.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        status.code(),
        Some(69),
        "EX_UNAVAILABLE\n{}",
        remote.output_text()
    );
    let out = remote.output_text();
    assert!(
        out.contains("MPTCP is disabled") && out.contains("net.mptcp.enabled=1"),
        "{out}"
    );
}

#[test]
fn a_flood_of_forged_headers_is_logged_once_not_per_attempt() {
    let bridge = Bridge::start(Options::default());
    let dest = SocketAddr::new(bridge.topo.server_addr(false), 9);
    let forged = common::forged_header(dest);
    const ATTEMPTS: usize = 200;
    for _ in 0..ATTEMPTS {
        let mut s = bridge.raw_to_remote();
        let _ = s.write_all(&forged);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let log = bridge.remote.output_text();
    let lines = log.lines().filter(|l| l.contains("cookie refused")).count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for {ATTEMPTS} refusals:\n{log}"
    );
    assert!(bridge.remote.is_running());
}

#[test]
fn beyond_max_connections_the_daemon_resets_and_keeps_serving() {
    let bridge = Bridge::start(Options {
        local_extra: "\n[limits]\nmax_connections = 2",
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    // Two connections held open through the bridge (both ends kept)...
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = bridge.client_connect(dest).unwrap();
            let (server_end, _) = listener.accept().unwrap();
            (client, server_end)
        })
        .collect();
    // ...so a third is reset by the local.
    if let Err(e) = common::expect_reset(bridge.client_connect(dest), b"third") {
        panic!("over the limit: {e}\n{}", bridge.logs());
    }
    // Once one closes, the next is served again.
    drop(held);
    let server = echo_once(listener);
    let ok = mpbridge_lab::wait_until(Duration::from_secs(10), || {
        exchange(&bridge, dest, b"room again").is_ok_and(|r| r == b"room again")
    });
    assert!(ok, "{}", bridge.logs());
    server.join().unwrap();
}

#[test]
fn out_of_file_descriptors_the_remote_backs_off_instead_of_spinning() {
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED],
    })
    .unwrap();
    let key = topo.workdir().join("key");
    std::fs::write(&key, common::KEY_HEX).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Only the control socket in the config: in the topology's directory.
    let config = topo.workdir().join("remote.toml");
    let socket = topo.workdir().join("remote.sock");
    std::fs::write(
        &config,
        format!(
            "[remote]\ncontrol_socket = {:?}\n",
            socket.to_str().unwrap()
        ),
    )
    .unwrap();
    // prlimit execs the daemon in place, so the PID is the daemon's.
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=48")
        .arg(env!("CARGO_BIN_EXE_mpbridge"))
        .arg("-c")
        .arg(&config)
        .args(["remote", "--listen", "0.0.0.0:4443", "--key-file"])
        .arg(&key);
    let remote = topo.spawn_named(Node::RouterB, "remote", &mut cmd).unwrap();
    remote
        .wait_for_log("remote listening", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", remote.output_text()));

    let addr = SocketAddr::new(topo.rb_link_addr(0, false), REMOTE_PORT);
    let connect = || {
        topo.enter(Node::RouterA, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        })
    };
    // More connections than the daemon has descriptors: accept fails with EMFILE.
    let held: Vec<_> = (0..80).filter_map(|_| connect().ok()).collect();
    remote
        .wait_for_log("backing off", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", remote.output_text()));
    let cpu = |pid| mpbridge_lab::scenario::cpu_seconds(pid).unwrap();
    let before = cpu(remote.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu(remote.pid()) - before;
    assert!(
        spent < 0.5,
        "{spent} CPU seconds in 2 s: the accept loop spins"
    );

    // Once descriptors are free again, it serves: a malformed header is
    // answered with an Error TLV.
    drop(held);
    let answered = mpbridge_lab::wait_until(Duration::from_secs(15), || {
        let Ok(mut s) = connect() else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.write_all(&[1, 0, 0x22, 0x63]);
        let mut reply = [0u8; 8];
        matches!(s.read(&mut reply), Ok(n) if n >= 4)
    });
    assert!(answered, "{}", remote.output_text());
    assert!(remote.is_running());
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    // A connection that would keep the 10 s drain busy.
    let mut client = bridge.client_connect(dest).unwrap();
    client.write_all(b"hold").unwrap();
    let _server_end = listener.accept().unwrap();
    let pid = Pid::from_raw(bridge.local.pid() as i32).unwrap();
    kill_process(pid, Signal::TERM).unwrap();
    bridge
        .local
        .wait_for_log("draining open connections", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bridge.logs()));
    kill_process(pid, Signal::TERM).unwrap();
    let status = bridge
        .local
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|e| {
            panic!(
                "still draining after a second SIGTERM: {e}\n{}",
                bridge.logs()
            )
        });
    assert_eq!(status.code(), Some(1), "{}", bridge.logs());
}
