//! MPTCP in the lab: reading a namespace's TCP sockets and MPTCP
//! connections back with `ss` (the daemons' path managers set the paths up),
//! and one MPTCP flow between the routers with no proxy in between.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::plan::Node;
use crate::ss::{parse_ss_tcp, TcpSocket};
use crate::Topology;

impl Topology {
    /// The TCP sockets of `node` as `ss -tni` shows them, MPTCP subflows
    /// marked. A subflow the in-kernel path manager opened for an endpoint
    /// with `dev` shows that device in [`TcpSocket::bound_dev`].
    pub fn tcp_sockets(&self, node: Node) -> anyhow::Result<Vec<TcpSocket>> {
        let out = self.run(node, &["ss", "-tniH"])?;
        Ok(parse_ss_tcp(&out))
    }

    /// `ss -Mni` in `node`, verbatim. On Linux 6.18 its `subflows:N` counts
    /// the subflows *added* to a connection, not counting the first one:
    /// a connection over two links shows `subflows:1`.
    pub fn mptcp_ss(&self, node: Node) -> anyhow::Result<String> {
        self.run(node, &["ss", "-Mni"])
    }
}

/// How long [`Topology::mptcp_flow`] leaves out at the start of its flow
/// (slow start), as the bench's iperf3 flows do (`-O 1`).
pub const OMIT: Duration = Duration::from_secs(1);

/// How long a connect, an accept, a read or a write of
/// [`Topology::mptcp_flow`] may wait before the flow counts as failed.
const STUCK: Duration = Duration::from_secs(5);

impl Topology {
    /// One MPTCP connection from router A to router B's address on link 0,
    /// no proxy: the kernel's own MPTCP over the links, with the subflows
    /// the path managers of the daemons running set up (without them it
    /// stays on link 0). Router B sends when `router_b_sends` (the
    /// direction of a download), else router A. Returns the receiver's
    /// goodput over `secs` after [`OMIT`], Mbit/s.
    ///
    /// The kernel's MPTCP with its defaults (the namespace's congestion
    /// control, autotuned buffers), no bridge: it pays the DSS option (data
    /// sequence mapping and data ACK) that plain TCP's limit does not, and
    /// what a bridge adds to or loses from MPTCP itself shows against it.
    pub fn mptcp_flow(&self, secs: f64, router_b_sends: bool) -> anyhow::Result<f64> {
        let bind = SocketAddr::new(self.rb_link_addr(0, false), 0);
        let listener = self
            .enter(Node::RouterB, || -> std::io::Result<Socket> {
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
                s.bind(&bind.into())?;
                s.listen(1)?;
                // Linux's accept() honours the receive time-out.
                s.set_read_timeout(Some(STUCK))?;
                Ok(s)
            })
            .context("cannot listen for MPTCP in router B (is MPTCP enabled?)")?;
        let to = listener
            .local_addr()?
            .as_socket()
            .context("router B's listener has no IP address")?;
        let connected = self
            .enter(Node::RouterA, || -> std::io::Result<Socket> {
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
                s.connect_timeout(&to.into(), STUCK)?;
                Ok(s)
            })
            .with_context(|| format!("cannot connect over MPTCP from router A to {to}"))?;
        let (accepted, _) = listener
            .accept()
            .with_context(|| format!("router B accepted nothing on {to}"))?;
        let (sender, receiver) = if router_b_sends {
            (accepted, connected)
        } else {
            (connected, accepted)
        };
        for s in [&sender, &receiver] {
            s.set_read_timeout(Some(STUCK))?;
            s.set_write_timeout(Some(STUCK))?;
        }
        let window = Duration::from_secs_f64(secs);
        // The receiver's window starts with its first byte, a trip after
        // the sender's first write: the sender goes on a second longer.
        let sending = OMIT + window + Duration::from_secs(1);
        let sending = std::thread::spawn(move || send_for(TcpStream::from(sender), sending));
        let received = receive_window(&mut TcpStream::from(receiver), OMIT, window);
        let sent = sending
            .join()
            .map_err(|_| anyhow::anyhow!("the MPTCP sender panicked"))?;
        let bytes = received.context("the MPTCP flow's receiver")?;
        sent.context("the MPTCP flow's sender")?;
        Ok(bytes as f64 * 8.0 / window.as_secs_f64() / 1e6)
    }
}

/// Writes for `how_long`, then closes its way; returns the bytes written.
/// (A receiver that closes with data unread does not stop an MPTCP
/// sender at once: Linux 6.18 let its blocked write wait out a 5 s
/// time-out.)
fn send_for(mut stream: TcpStream, how_long: Duration) -> std::io::Result<u64> {
    let buf = vec![0x5a_u8; 128 * 1024];
    let until = Instant::now() + how_long;
    let mut sent = 0_u64;
    while Instant::now() < until {
        match stream.write(&buf) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(sent)
}

/// Reads to the end; from the first byte on, leaves `omit` out and counts
/// the bytes of the next `window`. A flow that ends before the
/// window does is an error.
fn receive_window(
    stream: &mut TcpStream,
    omit: Duration,
    window: Duration,
) -> std::io::Result<u64> {
    let mut buf = vec![0_u8; 256 * 1024];
    let mut first: Option<Instant> = None;
    let mut counted = 0_u64;
    let mut ended = false;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) if ended => return Ok(counted),
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the sender closed before the window ended",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let start = *first.get_or_insert(now) + omit;
        if now >= start + window {
            ended = true;
        } else if now >= start {
            counted += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected loopback pair: (the connecting end, the accepted end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (connected, accepted)
    }

    #[test]
    fn the_receiver_counts_its_window_alone_and_reads_to_the_end() {
        let (sender, mut receiver) = pair();
        let sending = std::thread::spawn(move || send_for(sender, Duration::from_millis(600)));
        let started = Instant::now();
        let counted = receive_window(
            &mut receiver,
            Duration::from_millis(100),
            Duration::from_millis(300),
        )
        .unwrap();
        let took = started.elapsed();
        let sent = sending.join().unwrap().unwrap();
        assert!(counted > 0, "nothing counted in the window");
        // The sender wrote at one pace for 600 ms, 300 of them counted.
        assert!(
            counted < sent * 3 / 4 && counted > sent / 4,
            "sent {sent}, counted {counted}: only the window counts"
        );
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(5),
            "read to the sender's end (600 ms), took {took:?}"
        );
    }

    #[test]
    fn a_flow_that_ends_before_its_window_is_an_error() {
        let (mut sender, mut receiver) = pair();
        sender.write_all(&[1; 1000]).unwrap();
        drop(sender);
        let e = receive_window(&mut receiver, Duration::ZERO, Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    }
}
