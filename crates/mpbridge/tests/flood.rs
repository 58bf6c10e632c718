//! Half-open floods against `mpbridge remote`, in namespaces with the real
//! daemons: cookieless TCP Fast Open SYNs carrying a Convert header with a
//! bad cookie, whose SYN-ACKs the sender drops so that no handshake ever
//! completes (as with spoofed source addresses). The remote must refuse
//! them for nothing: a RST at once, no connection slot held, no polling,
//! one log line; and a client whose last ACK comes late must still be
//! answered as soon as it arrives.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{Bridge, Options, REMOTE_PORT};
use mpbridge_lab::Node;
use socket2::{Domain, Protocol, Socket, Type};

/// Half-open connections the flood opens.
const FLOOD: usize = 1_000;
/// How long the remote's CPU is watched after the flood.
const WATCH: Duration = Duration::from_secs(5);
/// The remote's share of one core over [`WATCH`] that fails the test: the
/// issue's target, five to ten times what the remote uses (0.6–1.0 %, debug
/// build, load 11–16 on 2 cores). The remote that polled each half-open
/// socket every millisecond used 91 % of a core on a quiet machine, 20–36 %
/// under that load (as much as it could get).
const CPU_BOUND: f64 = 0.05;

/// `TCP_FASTOPEN_NO_COOKIE` (linux/tcp.h).
const TCP_FASTOPEN_NO_COOKIE: libc::c_int = 34;

/// The remote's listening address on link 0.
fn remote_addr(bridge: &Bridge) -> SocketAddr {
    SocketAddr::new(bridge.topo.rb_link_addr(0, false), REMOTE_PORT)
}

/// Drops (`on`) or lets through again the SYN-ACKs that `from` sends to the
/// client node, with a table of the test's own there.
fn drop_synacks(bridge: &Bridge, from: SocketAddr, on: bool) {
    let run = |cmd: &str| common::sh(&bridge.topo, Node::Client, &["nft", cmd]);
    if on {
        run("add table inet flood");
        run("add chain inet flood input { type filter hook input priority 0 ; policy accept ; }");
        run(&format!(
            "add rule inet flood input ip saddr {} tcp sport {} tcp flags & (syn | ack) == syn | ack drop",
            from.ip(),
            from.port()
        ));
    } else {
        run("delete table inet flood");
    }
}

/// An MPTCP socket in the client node that sends `data` in its SYN without
/// a TFO cookie, as `mpbridge local` does; returns it, connecting.
fn send_in_syn(to: SocketAddr, data: &[u8]) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking(),
        Some(Protocol::MPTCP),
    )?;
    let one: libc::c_int = 1;
    // SAFETY: a live socket; the option value is a c_int whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_FASTOPEN_NO_COOKIE,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    match socket.send_to_with_flags(data, &to.into(), libc::MSG_FASTOPEN) {
        Ok(n) if n == data.len() => Ok(socket),
        Ok(n) => Err(std::io::Error::other(format!(
            "only {n} of {} bytes went into the SYN",
            data.len()
        ))),
        Err(e) => Err(e),
    }
}

/// Waits until `socket` (connecting) is connected, then reads the remote's
/// Convert reply (until it is whole, or the remote closes or resets).
fn reply_of(socket: Socket, within: Duration) -> (Result<(), String>, Vec<u8>) {
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(within)).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Ok(convert::Decoded::Complete { .. }) = convert::decode(&reply) {
            return (Ok(()), reply);
        }
        match stream.read(&mut buf) {
            Ok(0) => return (Ok(()), reply),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (Ok(()), reply),
            Err(e) => return (Err(e.to_string()), reply),
        }
    }
}

/// The remote's count of refusals for a bad or missing cookie.
fn refused_auth(bridge: &Bridge) -> u64 {
    bridge.status(Node::RouterB)["totals"]["refused"]["auth"]
        .as_u64()
        .unwrap_or(0)
}

/// Connections of the remote's listener still waiting for their
/// handshake's last ACK.
fn half_open_at_remote(bridge: &Bridge) -> usize {
    let out = common::sh(
        &bridge.topo,
        Node::RouterB,
        &["ss", "-Htn", "state", "syn-recv"],
    );
    let port = format!(":{REMOTE_PORT}");
    out.lines()
        .filter(|l| l.split_whitespace().any(|f| f.ends_with(&port)))
        .count()
}

/// SYNs that router B's kernel dropped or answered without taking their
/// data: a full accept queue, a full SYN queue (cookies instead), or a full
/// TCP Fast Open queue.
fn syn_drops(bridge: &Bridge) -> u64 {
    [
        "ListenDrops",
        "TCPReqQFullDoCookies",
        "TCPReqQFullDrop",
        "TCPFastOpenListenOverflow",
    ]
    .iter()
    .map(|name| bridge.netstat(Node::RouterB, "TcpExt", name))
    .sum()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// One request through the bridge, echoed by `listener`'s server; returns
/// how long it took.
fn served_through_the_bridge(bridge: &Bridge, listener: &TcpListener) -> Duration {
    let dest = listener.local_addr().unwrap();
    let started = Instant::now();
    let mut client = bridge
        .client_connect(dest)
        .expect("connect through the bridge");
    client.write_all(b"legitimate").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    server.write_all(&got).unwrap();
    drop(server);
    let mut echo = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.read_to_end(&mut echo).unwrap();
    assert_eq!(echo, b"legitimate", "{}", bridge.logs());
    started.elapsed()
}

#[test]
fn a_half_open_flood_with_bad_cookies_costs_the_remote_nothing() {
    let bridge = Bridge::start(Options::default());
    let remote = remote_addr(&bridge);
    let listener = bridge.server_listener(false);
    // Where the forged headers ask to go: nobody must connect there.
    let bait = bridge.server_listener(false);
    bait.set_nonblocking(true).unwrap();
    let header = common::forged_header(bait.local_addr().unwrap());
    let pid = bridge.remote.pid();
    let passive = || bridge.netstat(Node::RouterB, "TcpExt", "TCPFastOpenPassive");
    let passive_before = passive();
    let refused_before = refused_auth(&bridge);
    let dropped_before = syn_drops(&bridge);

    drop_synacks(&bridge, remote, true);
    // Each socket is closed once its SYN is out: like a spoofed source,
    // nobody answers the remote's SYN-ACKs or resets, and no SYN is sent
    // again.
    bridge.topo.enter(Node::Client, || {
        for i in 0..FLOOD {
            send_in_syn(remote, &header).unwrap_or_else(|e| panic!("SYN {i}: {e}"));
        }
    });
    // From the last SYN on, the remote's CPU is watched for WATCH.
    let cpu_start = mpbridge_lab::scenario::cpu_seconds(pid).unwrap();
    let watch_start = Instant::now();

    // Meanwhile a legitimate connection is served at once.
    let took = served_through_the_bridge(&bridge, &listener);
    eprintln!("a legitimate connection during the flood took {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "a legitimate connection took {took:?} during the flood\n{}",
        bridge.logs()
    );

    std::thread::sleep(WATCH.saturating_sub(watch_start.elapsed()));
    let cpu = (mpbridge_lab::scenario::cpu_seconds(pid).unwrap() - cpu_start)
        / watch_start.elapsed().as_secs_f64();

    // Every SYN whose data router B's kernel took was refused by the
    // remote. A loaded machine may drop some of the burst on the way (CI
    // once lost 32 of 1000 before router B's listener took them); those
    // never reach the remote, so they are counted apart, and the flood must
    // still have been one.
    let mut accepted = 0;
    let mut refused = 0;
    let counted = wait_until(Duration::from_secs(10), || {
        // The legitimate connection came with its header in the SYN too.
        accepted = (passive() - passive_before).saturating_sub(1);
        refused = refused_auth(&bridge) - refused_before;
        accepted >= (FLOOD as u64) * 9 / 10 && refused == accepted
    });
    assert!(
        counted,
        "{accepted} of {FLOOD} flood SYNs with data accepted by router B's kernel, \
         {refused} refused by the remote; router B's kernel dropped {} of the SYNs \
         (TcpExt counters)\n{}",
        syn_drops(&bridge) - dropped_before,
        bridge.logs()
    );
    eprintln!(
        "remote CPU: {:.1} % of a core over the {WATCH:?} from the last of {FLOOD} SYNs, \
         {refused} of them refused (load {})",
        cpu * 100.0,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    assert!(
        cpu < CPU_BOUND,
        "the remote used {:.1} % of a core in the {WATCH:?} after the flood\n{}",
        cpu * 100.0,
        bridge.logs()
    );

    // It holds nothing: no half-open connection left, no slot, and it
    // connected nowhere.
    assert_eq!(half_open_at_remote(&bridge), 0, "{}", bridge.logs());
    let status = bridge.status(Node::RouterB);
    assert_eq!(status["connections"], serde_json::json!([]), "{status:#}");
    assert!(
        matches!(bait.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the remote connected to the forged destination"
    );
    // One line for the whole flood (the limit lets one through per 10 s).
    let log = bridge.remote.output_text();
    let lines = log.lines().filter(|l| l.contains("cookie refused")).count();
    assert_eq!(lines, 1, "{log}");
}

/// A client whose last ACK arrives late (its first SYN-ACK lost) is
/// answered as soon as it arrives, woken by the kernel rather than by
/// polling; one refused for a bad cookie still gets its Error TLV.
#[test]
fn a_client_whose_last_ack_comes_late_is_answered_once_it_arrives() {
    let bridge = Bridge::start(Options::default());
    let remote = remote_addr(&bridge);
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    let key = convert::cookie::Key::new(1, hex::decode(common::KEY_HEX).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cookie = convert::cookie::sign(&key, dest, now, [42; 16]);
    let mut valid = Vec::new();
    convert::Message::request(dest, Some(cookie.to_vec()))
        .encode(&mut valid)
        .unwrap();
    let forged = common::forged_header(dest);

    for (what, header) in [("valid", &valid), ("forged", &forged)] {
        drop_synacks(&bridge, remote, true);
        let socket = bridge
            .topo
            .enter(Node::Client, || send_in_syn(remote, header))
            .unwrap();
        // The remote accepted it on its SYN and has dialled (or refused)
        // before the SYN-ACK is let through; the handshake completes with
        // the retransmitted one, about a second after the first.
        std::thread::sleep(Duration::from_millis(300));
        drop_synacks(&bridge, remote, false);
        let started = Instant::now();
        let (end, reply) = reply_of(socket, Duration::from_secs(10));
        let took = started.elapsed();
        eprintln!("{what}: answered {took:?} after the SYN-ACKs were let through");
        let decoded = match convert::decode(&reply) {
            Ok(convert::Decoded::Complete { message, .. }) => Some(message),
            _ => None,
        };
        match what {
            "valid" => {
                assert!(
                    decoded.as_ref().is_some_and(|m| m.error().is_none()),
                    "{what}: {end:?} {reply:?}\n{}",
                    bridge.logs()
                );
                let (mut server, _) = listener.accept().unwrap();
                let _ = server.write_all(b"x");
            }
            _ => assert_eq!(
                decoded.as_ref().and_then(|m| m.error()).map(|e| e.code),
                Some(convert::ErrorCode::NotAuthorized),
                "{what}: {end:?} {reply:?}\n{}",
                bridge.logs()
            ),
        }
        assert!(
            took < Duration::from_secs(3),
            "{what}: answered after {took:?}\n{}",
            bridge.logs()
        );
    }
    // The valid one was woken by the kernel when the ACK came, not by
    // looking again and again.
    let log = bridge.remote.output_text();
    let line = log
        .lines()
        .find(|l| l.contains("last ACK came after the header"))
        .unwrap_or_else(|| panic!("no wait for the last ACK logged\n{log}"));
    let field = |name: &str| -> u32 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    assert!(field("woken") >= 1, "{line}");
    eprintln!("{line}");
}
