//! The data path end to end, in network namespaces with real veth links,
//! real nftables rules and real MPTCP: client → router A (`mpbridge local`)
//! → two links → router B (`mpbridge remote`) → server.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{receive_all, send_pattern, Bridge, Mode, Options};
use mpbridge_lab::{wait_until, Node};

const BIG: u64 = 100 * 1024 * 1024;

/// 100 MB each way at once through the bridge; both arrive intact, and the
/// connection between the routers is MPTCP with a subflow on each link.
fn big_transfer_both_ways(mode: Mode, v6: bool) {
    transfer_both_ways(mode, v6, false, BIG);
}

/// `size` bytes each way at once; `routers_v6` makes the MPTCP connection
/// between the routers IPv6 too.
fn transfer_both_ways(mode: Mode, v6: bool, routers_v6: bool, size: u64) {
    let remote = SocketAddr::new(
        mpbridge_lab::plan::rb_link_addr(0, routers_v6),
        common::REMOTE_PORT,
    );
    let bridge = Bridge::start(Options {
        mode,
        remotes: Some(vec![remote]),
        ..Options::default()
    });
    let listener = bridge.server_listener(v6);
    let dest = listener.local_addr().unwrap();

    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut writer = conn.try_clone().unwrap();
        let sender = std::thread::spawn(move || send_pattern(&mut writer, 2, size).unwrap());
        let received = receive_all(&mut conn).unwrap();
        (received, sender.join().unwrap())
    });

    let mut client = bridge.client_connect(dest).expect("client connects");
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_pattern(&mut writer, 1, size).unwrap());

    // While the transfer runs, router A holds one MPTCP connection to the
    // remote with a subflow on each link.
    let mut links_seen = Vec::new();
    let both = wait_until(Duration::from_secs(10), || {
        links_seen = bridge.subflow_links();
        links_seen.len() >= 2
    });

    let (got, got_hash) = receive_all(&mut client).unwrap();
    let sent_hash = sender.join().unwrap();
    let ((server_got, server_hash), server_sent_hash) = server.join().unwrap();
    assert!(
        both,
        "expected subflows on both links, saw {links_seen:?}\n{}",
        bridge.logs()
    );
    assert_eq!(server_got, size, "server received all bytes");
    assert_eq!(server_hash, sent_hash, "client → server data intact");
    assert_eq!(got, size, "client received all bytes");
    assert_eq!(got_hash, server_sent_hash, "server → client data intact");
}

#[test]
fn tproxy_ipv4_carries_100_mb_each_way_intact_over_two_subflows() {
    big_transfer_both_ways(Mode::Tproxy, false);
}

#[test]
fn an_ipv6_path_between_the_routers_carries_data_over_two_subflows() {
    transfer_both_ways(Mode::Tproxy, false, true, 20 * 1024 * 1024);
}

#[test]
fn tproxy_ipv6_carries_100_mb_each_way_intact_over_two_subflows() {
    big_transfer_both_ways(Mode::Tproxy, true);
}

#[test]
fn redirect_ipv4_carries_100_mb_each_way_intact_over_two_subflows() {
    big_transfer_both_ways(Mode::Redirect, false);
}

#[test]
fn redirect_ipv6_carries_100_mb_each_way_intact_over_two_subflows() {
    big_transfer_both_ways(Mode::Redirect, true);
}

/// Opens a connection through the bridge, exchanges a request and a reply.
fn request_reply(bridge: &Bridge, dest: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut client = bridge.client_connect(dest).unwrap();
    client.write_all(request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    reply
}

#[test]
fn the_convert_header_rides_in_the_syn_and_the_client_can_half_close() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    const ROUNDS: usize = 3;
    let server = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let (mut conn, _) = listener.accept().unwrap();
            // Read the whole request up to the client's FIN, then answer:
            // the reply must still reach the half-closed client.
            let mut request = Vec::new();
            conn.read_to_end(&mut request).unwrap();
            let mut reply = b"reply to ".to_vec();
            reply.extend_from_slice(&request);
            reply.extend(std::iter::repeat_n(b'x', 1 << 20));
            conn.write_all(&reply).unwrap();
        }
    });
    let before = bridge.netstat(Node::RouterB, "TcpExt", "TCPFastOpenPassive");
    for i in 0..ROUNDS {
        let request = format!("request {i}");
        let reply = request_reply(&bridge, dest, request.as_bytes());
        assert!(
            reply.starts_with(format!("reply to {request}").as_bytes()),
            "round {i}"
        );
        assert_eq!(reply.len(), 9 + request.len() + (1 << 20), "round {i}");
    }
    server.join().unwrap();
    let tfo = bridge.netstat(Node::RouterB, "TcpExt", "TCPFastOpenPassive") - before;
    // Every connection from the second on carried its header in the SYN
    // (with TCP_FASTOPEN_NO_COOKIE the first does too).
    assert!(
        tfo >= ROUNDS as u64 - 1,
        "only {tfo} of {ROUNDS} SYNs carried data\n{}",
        bridge.logs()
    );
}

/// The connection must be reset (not closed, not answered).
fn assert_reset(client: std::io::Result<TcpStream>, payload: &[u8], what: &str, bridge: &Bridge) {
    if let Err(e) = common::expect_reset(client, payload) {
        panic!("{what}: {e}\n{}", bridge.logs());
    }
}

#[test]
fn a_destination_that_refuses_gives_the_client_a_reset() {
    let bridge = Bridge::start(Options::default());
    // A port nobody listens on in the server namespace.
    let closed = {
        let l = bridge.server_listener(false);
        l.local_addr().unwrap()
    };
    assert_reset(
        bridge.client_connect(closed),
        b"hello",
        "refused destination",
        &bridge,
    );
}

#[test]
fn a_local_with_the_wrong_key_is_refused_and_the_destination_sees_nothing() {
    let bridge = Bridge::start(Options {
        local_key: common::WRONG_KEY_HEX,
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    listener.set_nonblocking(true).unwrap();
    let dest = listener.local_addr().unwrap();
    let request = b"GET / HTTP/1.0\r\n\r\n";
    assert_reset(bridge.client_connect(dest), request, "wrong key", &bridge);
    assert!(
        listener.accept().is_err(),
        "the destination must see no connection"
    );
    assert!(
        bridge.remote.output_text().contains("cookie refused"),
        "{}",
        bridge.logs()
    );
}

/// Sends raw bytes to the remote (as a forged local would) and returns what
/// the remote answered before closing.
fn raw_exchange(bridge: &Bridge, bytes: &[u8], pace: Option<Duration>) -> std::io::Result<Vec<u8>> {
    let mut s = bridge.raw_to_remote();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    match pace {
        None => s.write_all(bytes)?,
        Some(gap) => {
            for b in bytes {
                if s.write_all(&[*b]).is_err() {
                    break; // the remote gave up on us: that is the point
                }
                std::thread::sleep(gap);
            }
        }
    }
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(reply),
        Err(e) => Err(e),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header(dest: SocketAddr, key_hex: &str, timestamp: u64, nonce: [u8; 16]) -> Vec<u8> {
    let key = convert::cookie::Key::new(1, hex::decode(key_hex).unwrap()).unwrap();
    let cookie = convert::cookie::sign(&key, dest, timestamp, nonce);
    let mut out = Vec::new();
    convert::Message::request(dest, Some(cookie.to_vec()))
        .encode(&mut out)
        .unwrap();
    out
}

fn error_code_of(reply: &[u8]) -> Option<convert::ErrorCode> {
    match convert::decode(reply) {
        Ok(convert::Decoded::Complete { message, .. }) => message.error().map(|e| e.code),
        _ => None,
    }
}

#[test]
fn forged_expired_replayed_malformed_and_slow_headers_are_refused_and_the_remote_keeps_serving() {
    let bridge = Bridge::start(Options {
        remote_extra: "header_timeout_ms = 1000",
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();

    // A valid header, accepted once...
    let valid = header(dest, common::KEY_HEX, now_unix(), [7; 16]);
    let mut first = bridge.raw_to_remote();
    first.write_all(&valid).unwrap();
    let accepted = wait_until(Duration::from_secs(5), || listener.accept().is_ok());
    assert!(
        accepted,
        "a valid header reaches the destination\n{}",
        bridge.logs()
    );
    drop(first);

    let cases: Vec<(&str, Vec<u8>, Option<convert::ErrorCode>)> = vec![
        (
            "replayed cookie",
            valid.clone(),
            Some(convert::ErrorCode::NotAuthorized),
        ),
        (
            "wrong key",
            header(dest, common::WRONG_KEY_HEX, now_unix(), [8; 16]),
            Some(convert::ErrorCode::NotAuthorized),
        ),
        (
            "expired timestamp",
            header(dest, common::KEY_HEX, now_unix() - 3600, [9; 16]),
            Some(convert::ErrorCode::NotAuthorized),
        ),
        (
            "zero total length",
            vec![1, 0, 0x22, 0x63],
            Some(convert::ErrorCode::MalformedMessage),
        ),
        (
            "bad magic",
            vec![1, 1, 0xde, 0xad],
            Some(convert::ErrorCode::MalformedMessage),
        ),
        (
            "no cookie",
            {
                let mut out = Vec::new();
                convert::Message::request(dest, None)
                    .encode(&mut out)
                    .unwrap();
                out
            },
            Some(convert::ErrorCode::MissingCookie),
        ),
        (
            "destination is the remote's own address",
            header(
                SocketAddr::new(bridge.topo.rb_lan_addr(false), dest.port()),
                common::KEY_HEX,
                now_unix(),
                [11; 16],
            ),
            Some(convert::ErrorCode::NotAuthorized),
        ),
    ];
    assert!(!cases.is_empty());
    for (what, bytes, expected) in &cases {
        let reply = raw_exchange(&bridge, bytes, None).unwrap();
        assert_eq!(
            error_code_of(&reply),
            *expected,
            "{what}: reply {reply:?}\n{}",
            bridge.logs()
        );
        assert!(
            listener.accept().is_err(),
            "{what}: the destination must see no connection"
        );
    }

    // A valid header sent one byte every 100 ms takes longer than the 1 s
    // header timeout: dropped without reaching the destination.
    let slow = header(dest, common::KEY_HEX, now_unix(), [10; 16]);
    let started = Instant::now();
    let reply = raw_exchange(&bridge, &slow, Some(Duration::from_millis(100))).unwrap();
    assert!(
        reply.is_empty(),
        "slow header: no reply expected, got {reply:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the slow client was not cut off"
    );
    assert!(
        listener.accept().is_err(),
        "slow header: the destination must see no connection"
    );

    // The remote is still serving: a real connection through the bridge works.
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        conn.read_to_end(&mut req).unwrap();
        conn.write_all(&req).unwrap();
    });
    assert_eq!(request_reply(&bridge, dest, b"still alive"), b"still alive");
    server.join().unwrap();
    assert!(
        bridge.remote.is_running(),
        "the remote survived\n{}",
        bridge.logs()
    );
}

/// The remote's policy refuses its own addresses: one it gains at run time
/// from then on, and one it loses no longer. (It reads this host's live
/// view; the address here is the server's own, which router B takes over
/// for a while.)
#[test]
fn an_address_the_remote_gains_or_loses_at_run_time_is_refused_or_reached() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut sent = 0u64;
    let mut fresh = || {
        sent += 1;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&sent.to_be_bytes());
        header(dest, common::KEY_HEX, now_unix(), nonce)
    };
    let own = format!("{}/32", dest.ip());
    let addr = |verb: &str| {
        bridge
            .topo
            .run(Node::RouterB, &["ip", "addr", verb, &own, "dev", "lo"])
            .unwrap();
    };

    addr("add");
    let refused = wait_until(Duration::from_secs(5), || {
        raw_exchange(&bridge, &fresh(), None)
            .is_ok_and(|r| error_code_of(&r) == Some(convert::ErrorCode::NotAuthorized))
    });
    assert!(refused, "{}", bridge.logs());

    addr("del");
    let reached = wait_until(Duration::from_secs(5), || {
        let mut s = bridge.raw_to_remote();
        s.write_all(&fresh()).is_ok()
            && wait_until(Duration::from_millis(500), || listener.accept().is_ok())
    });
    assert!(reached, "{}", bridge.logs());
}
