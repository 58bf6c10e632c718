//! A fixed-size transfer both ways over one TCP connection from the client
//! to the server (so through the bridge), with the SHA-256 of what each
//! side sent and received: the end-to-end integrity check of the lab.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Node, Topology};

/// How long either side may wait for a single read or write before the
/// transfer counts as broken (a stall this long is a failure, not a figure).
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One direction of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Direction {
    pub sent_bytes: u64,
    pub sent_sha256: String,
    pub received_bytes: u64,
    pub received_sha256: String,
}

impl Direction {
    /// Everything arrived, unchanged.
    pub fn intact(&self) -> bool {
        self.sent_bytes == self.received_bytes && self.sent_sha256 == self.received_sha256
    }
}

/// Both directions of a finished transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub client_to_server: Direction,
    pub server_to_client: Direction,
}

impl Outcome {
    pub fn intact(&self) -> bool {
        self.client_to_server.intact() && self.server_to_client.intact()
    }
}

/// A deterministic pseudo-random byte stream (xorshift64), one per seed.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed | 1)
    }

    /// The next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes `len` bytes of pattern `seed`, then half-closes; returns the
/// SHA-256 of what was written.
pub fn send_pattern(stream: &mut TcpStream, seed: u64, len: u64) -> std::io::Result<[u8; 32]> {
    let mut pattern = Pattern::new(seed);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(hash.finalize().into())
}

/// Reads to EOF; returns the byte count and SHA-256.
pub fn receive_all(stream: &mut TcpStream) -> std::io::Result<(u64, [u8; 32])> {
    receive_counting(stream, &AtomicU64::new(0))
}

/// Reads to EOF, adding to `count` as bytes arrive; returns the byte count
/// and SHA-256.
pub fn receive_counting(
    stream: &mut TcpStream,
    count: &AtomicU64,
) -> std::io::Result<(u64, [u8; 32])> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hash.finalize().into()));
        }
        hash.update(&buf[..n]);
        total += n as u64;
        count.store(total, Ordering::Relaxed);
    }
}

/// A listener in the server namespace, ready for [`run`].
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds an ephemeral port on the server's IPv4 address.
    pub fn bind(topo: &Topology) -> anyhow::Result<Server> {
        let addr = SocketAddr::new(topo.server_addr(false), 0);
        let listener = topo
            .enter(Node::Server, move || TcpListener::bind(addr))
            .context("cannot listen in the server namespace")?;
        let addr = listener.local_addr()?;
        Ok(Server { listener, addr })
    }
}

/// Connects from the client to `server` and moves `bytes` each way at
/// once (different patterns). `client_rx` counts what the client has
/// received so far, for goodput over time. Returns when both directions
/// have ended; an I/O error (a reset, a stall longer than [`IO_TIMEOUT`])
/// is an error.
pub fn run(
    topo: &Topology,
    server: Server,
    bytes: u64,
    client_rx: &AtomicU64,
) -> anyhow::Result<Outcome> {
    const UP_SEED: u64 = 0x6d70_6272_6964_6765;
    const DOWN_SEED: u64 = 0x6c61_6220_6461_7461;
    let dest = server.addr;
    let mut client = topo
        .enter(Node::Client, move || {
            TcpStream::connect_timeout(&dest, Duration::from_secs(10))
        })
        .context("the client cannot connect to the server through the bridge")?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let server_rx = AtomicU64::new(0);
    let hex = |h: [u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    std::thread::scope(|scope| -> anyhow::Result<Outcome> {
        let server_side = scope.spawn(|| -> anyhow::Result<_> {
            let (mut conn, _) = server.listener.accept().context("server accept")?;
            conn.set_read_timeout(Some(IO_TIMEOUT))?;
            conn.set_write_timeout(Some(IO_TIMEOUT))?;
            let mut writer = conn.try_clone()?;
            let sender = scope.spawn(move || send_pattern(&mut writer, DOWN_SEED, bytes));
            let received = receive_counting(&mut conn, &server_rx).context("server receiving");
            let sent = join(sender).context("server sending");
            Ok((sent?, received?))
        });
        let mut writer = client.try_clone()?;
        let sender = scope.spawn(move || send_pattern(&mut writer, UP_SEED, bytes));
        let received = receive_counting(&mut client, client_rx).context("client receiving");
        let sent = join(sender).context("client sending");
        let server_result = server_side
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let (up_sent, (down_rx_bytes, down_rx_hash)) = (sent?, received?);
        let (down_sent, (up_rx_bytes, up_rx_hash)) = server_result?;
        Ok(Outcome {
            client_to_server: Direction {
                sent_bytes: bytes,
                sent_sha256: hex(up_sent),
                received_bytes: up_rx_bytes,
                received_sha256: hex(up_rx_hash),
            },
            server_to_client: Direction {
                sent_bytes: bytes,
                sent_sha256: hex(down_sent),
                received_bytes: down_rx_bytes,
                received_sha256: hex(down_rx_hash),
            },
        })
    })
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, std::io::Result<T>>) -> std::io::Result<T> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_seed_and_repeat_by_seed() {
        let (mut a, mut b, mut c) = ([0u8; 37], [0u8; 37], [0u8; 37]);
        Pattern::new(1).fill(&mut a);
        Pattern::new(1).fill(&mut b);
        Pattern::new(2).fill(&mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_direction_is_intact_only_if_count_and_hash_match() {
        let d = Direction {
            sent_bytes: 3,
            sent_sha256: "ab".into(),
            received_bytes: 3,
            received_sha256: "ab".into(),
        };
        assert!(d.intact());
        let short = Direction {
            received_bytes: 2,
            ..d.clone()
        };
        assert!(!short.intact());
        let changed = Direction {
            received_sha256: "ac".into(),
            ..d
        };
        assert!(!changed.intact());
    }

    #[test]
    fn a_transfer_over_loopback_is_intact_both_ways() {
        // No namespaces: the I/O part alone, over this process's loopback.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = AtomicU64::new(0);
        std::thread::scope(|s| {
            let server = s.spawn(|| {
                let (mut conn, _) = listener.accept().unwrap();
                let mut w = conn.try_clone().unwrap();
                let sent = s.spawn(move || send_pattern(&mut w, 7, 300_000).unwrap());
                let got = receive_counting(&mut conn, &AtomicU64::new(0)).unwrap();
                (sent.join().unwrap(), got)
            });
            let mut c = TcpStream::connect(addr).unwrap();
            let mut w = c.try_clone().unwrap();
            let up = s.spawn(move || send_pattern(&mut w, 9, 200_000).unwrap());
            let (n, down_hash) = receive_counting(&mut c, &count).unwrap();
            let (down_sent, (up_n, up_hash)) = server.join().unwrap();
            assert_eq!((n, down_hash), (300_000, down_sent));
            assert_eq!((up_n, up_hash), (200_000, up.join().unwrap()));
            assert_eq!(count.load(Ordering::Relaxed), 300_000);
        });
    }
}
