//! How bridged connections end, in namespaces with the real daemons: a FIN
//! from either side arrives as a FIN, a reset from either side as a reset,
//! and a connection cut at the end of the drain as a reset on both sides.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::{Bridge, Options};

/// A bridged connection: (client end, server end).
fn connected(bridge: &Bridge, listener: &TcpListener) -> (TcpStream, TcpStream) {
    let dest = listener.local_addr().unwrap();
    let mut client = bridge.client_connect(dest).unwrap();
    // The header rides in the first SYN only with data behind it: say hello.
    client.write_all(b"hello").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut hello = [0u8; 5];
    server.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (client, server)
}

fn set_linger_zero(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads until an error or EOF; returns which.
fn read_end(s: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn a_server_fin_reaches_the_client_which_can_still_send() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let (mut client, mut server) = connected(&bridge, &listener);
    server.write_all(b"bye").unwrap();
    server.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye", "{}", bridge.logs());
    client.write_all(b"after the server's FIN").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"after the server's FIN", "{}", bridge.logs());
}

#[test]
fn a_client_reset_reaches_the_server_as_a_reset() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let (client, mut server) = connected(&bridge, &listener);
    set_linger_zero(&client);
    drop(client);
    let end = read_end(&mut server);
    assert!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the server saw {end:?}\n{}",
        bridge.logs()
    );
}

#[test]
fn a_server_reset_reaches_the_client_as_a_reset() {
    let bridge = Bridge::start(Options::default());
    let listener = bridge.server_listener(false);
    let (mut client, server) = connected(&bridge, &listener);
    set_linger_zero(&server);
    drop(server);
    let end = read_end(&mut client);
    assert!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client saw {end:?}\n{}",
        bridge.logs()
    );
}

/// A connection still open when the drain period after SIGTERM ends is cut
/// short: both ends must see a reset, never a clean end of stream that
/// would pass a truncated transfer off as a whole one.
#[test]
fn a_connection_cut_at_the_end_of_the_drain_is_reset_on_both_sides() {
    let bridge = Bridge::start(Options {
        local_extra: "\n[limits]\ndrain_secs = 1",
        ..Options::default()
    });
    let listener = bridge.server_listener(false);
    let (mut client, mut server) = connected(&bridge, &listener);
    let pid = rustix::process::Pid::from_raw(bridge.local.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    bridge
        .local
        .wait_for_log("drain period over", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", bridge.logs()));
    let client_end = read_end(&mut client);
    let server_end = read_end(&mut server);
    assert!(
        matches!(&client_end, Err(e) if e.kind() == ErrorKind::ConnectionReset)
            && matches!(&server_end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "client saw {client_end:?}, server saw {server_end:?}\n{}",
        bridge.logs()
    );
}
