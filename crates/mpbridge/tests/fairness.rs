//! A new connection through a busy bridge: it must get data at once while
//! another download fills the links, and what the remote writes before the
//! last ACK of the handshake (TCP Fast Open accepts a connection on its SYN)
//! must still arrive. Needs root: each test builds its own namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{sh, Bridge, Download, Options};
use mpbridge_lab::{wait_until, Node};

/// Each link's rate: a pair of Wi-Fi bridges, filled by one download.
const RATE_MBIT: u32 = 50;
/// The behaviour under test: a new download's first MiB while another one
/// fills the links. Measured 0.2–0.9 s; before the fix, never: router A
/// reset the connection after `reply_timeout` (10 s).
const FIRST_MIB_WITHIN: Duration = Duration::from_secs(5);
/// A server's first words through a busy bridge: measured 0.1–0.3 s.
const BANNER_WITHIN: Duration = Duration::from_secs(3);
/// The same when the handshake's last ACK is lost: the remote's SYN-ACK
/// retransmission brings another one after a second.
const BANNER_AFTER_LOST_ACK_WITHIN: Duration = Duration::from_secs(5);
/// What a server that speaks first (SSH, SMTP, FTP...) says.
const BANNER: &[u8] = b"SSH-2.0-mpbridge-fairness-test\r\n";

/// A bridge with two links at [`RATE_MBIT`] and a download that fills them,
/// checked: the download runs faster than one link alone.
fn busy_bridge(local_extra: &'static str) -> (Bridge, Download) {
    let bridge = Bridge::start(Options {
        local_extra,
        ..Options::default()
    });
    for l in 0..2 {
        bridge.topo.set_rate(l, RATE_MBIT).unwrap();
    }
    let first = Download::start(&bridge);
    // Past slow start, then the rate over the next 6 MiB.
    assert!(
        wait_until(Duration::from_secs(10), || first.received() > 4 << 20),
        "the first download got only {} bytes\n{}",
        first.received(),
        bridge.logs()
    );
    let (start, from) = (Instant::now(), first.received());
    let span = 6 << 20;
    assert!(
        wait_until(Duration::from_secs(10), || first.received() > from + span),
        "the first download stalled\n{}",
        bridge.logs()
    );
    let mbit = span as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6;
    assert!(
        mbit > 1.2 * f64::from(RATE_MBIT),
        "the first download does not fill both links: {mbit:.1} Mbit/s"
    );
    (bridge, first)
}

/// Starts a second download beside the first and checks that it gets its
/// first MiB within [`FIRST_MIB_WITHIN`] while the first goes on.
fn second_download_gets_its_first_mib(local_extra: &'static str) {
    let (bridge, first) = busy_bridge(local_extra);
    let first_before = first.received();
    let start = Instant::now();
    let second = Download::start(&bridge);
    let got = wait_until(FIRST_MIB_WITHIN, || second.received() >= 1 << 20);
    let elapsed = start.elapsed();
    let first_during = first.received() - first_before;
    let second_got = second.received();
    second.stop();
    first.stop();
    assert!(
        got,
        "the second download got {second_got} bytes in {elapsed:?} while the first got \
         {first_during}\n{}",
        bridge.logs()
    );
    assert!(
        first_during > 0,
        "the first download stopped while the second started"
    );
    eprintln!("second download: first MiB after {elapsed:?}, the first got {first_during} bytes meanwhile");
}

#[test]
fn a_new_download_gets_data_while_another_fills_the_links() {
    second_download_gets_its_first_mib("");
}

#[test]
fn a_new_download_gets_data_beside_another_with_a_16_mib_fastopen_buffer() {
    second_download_gets_its_first_mib("fastopen_rcvbuf = 16777216");
}

/// Accepts on `listener` within `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_until(limit, || match listener.accept() {
        Ok((stream, _)) => {
            accepted = Some(stream);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    });
    let stream = accepted?;
    stream.set_nonblocking(false).unwrap();
    Some(stream)
}

/// Connects through the bridge to a server that speaks first: it writes
/// [`BANNER`] and waits. Returns how long the client waited for it, or
/// what it saw instead within `limit`.
fn banner_through(bridge: &Bridge, limit: Duration) -> Result<Duration, String> {
    let listener = bridge.server_listener(false);
    let dest: SocketAddr = listener.local_addr().unwrap();
    let start = Instant::now();
    let mut client = bridge.client_connect(dest).map_err(|e| e.to_string())?;
    let Some(mut server) = accept_within(&listener, limit) else {
        return Err("the remote never dialled the server".into());
    };
    server.write_all(BANNER).unwrap();
    let left = limit
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    client.set_read_timeout(Some(left)).unwrap();
    let mut got = vec![0u8; BANNER.len()];
    match client.read_exact(&mut got) {
        Ok(()) if got == BANNER => Ok(start.elapsed()),
        Ok(()) => Err(format!("wrong bytes: {got:?}")),
        Err(e) => Err(format!("no banner after {:?}: {e}", start.elapsed())),
    }
}

#[test]
fn a_server_that_speaks_first_is_heard_through_a_busy_bridge() {
    let (bridge, first) = busy_bridge("");
    let result = banner_through(&bridge, BANNER_WITHIN);
    first.stop();
    match result {
        Ok(after) => eprintln!("banner after {after:?}"),
        Err(e) => panic!("{e}\n{}", bridge.logs()),
    }
}

#[test]
fn a_reply_written_before_the_last_ack_of_the_handshake_still_arrives() {
    let bridge = Bridge::start(Options::default());
    // Router A drops the first pure ACK it sends to the remote: the last
    // ACK of the next connection's handshake. The remote has accepted the
    // connection on its SYN (the header rides in it) and answers before
    // that ACK arrives; its SYN-ACK retransmission brings another ACK.
    let port = common::REMOTE_PORT.to_string();
    let nft = |args: &[&str]| sh(&bridge.topo, Node::RouterA, &[&["nft"], args].concat());
    nft(&["add", "table", "inet", "lostack"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "lostack",
        "out",
        "{ type filter hook output priority 0 ; }",
    ]);
    nft(&[
        "add", "rule", "inet", "lostack", "out", "tcp", "dport", &port, "tcp", "flags", "==",
        "ack", "limit", "rate", "1/hour", "burst", "1", "packets", "counter", "drop",
    ]);
    let result = banner_through(&bridge, BANNER_AFTER_LOST_ACK_WITHIN);
    let rules = nft(&["list", "table", "inet", "lostack"]);
    assert!(
        rules.contains("packets 1 "),
        "the last ACK was not dropped:\n{rules}"
    );
    match result {
        Ok(after) => eprintln!("banner after {after:?} (one ACK lost)"),
        Err(e) => panic!("{e}\n{}", bridge.logs()),
    }
}
