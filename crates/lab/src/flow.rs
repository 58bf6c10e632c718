//! One long bulk flow through the bridge, one way, whose receiver notes
//! when bytes arrive: goodput per 100 ms for the tables and plots, and
//! every silence to the millisecond, so a failover stall is measured where
//! a person would see it — at the receiving application — in either
//! direction (iperf3 reports no finer than 100 ms, and in an upload its
//! client's intervals count what was written, not what arrived).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::iperf::Interval;
use crate::scenario::Direction;
use crate::transfer::IO_TIMEOUT;
use crate::{Node, Topology};

/// Goodput is counted over periods this long.
pub const BIN: Duration = Duration::from_millis(100);
/// Silences at least this long are kept (shorter ones are the ordinary
/// spacing of reads).
pub const MIN_GAP: Duration = Duration::from_millis(5);

/// A time without any byte arriving, in seconds since the flow started.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    /// The last read before the silence.
    pub start: f64,
    /// The first read after it.
    pub end: f64,
}

impl Gap {
    pub fn secs(&self) -> f64 {
        self.end - self.start
    }
}

/// What the receiver saw.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Bytes per [`BIN`], from the flow's start to the sender's end.
    pub intervals: Vec<Interval>,
    /// Every silence of at least [`MIN_GAP`], in order.
    pub gaps: Vec<Gap>,
    pub bytes: u64,
}

impl Received {
    /// The longest silence that was still going on at or after `from` and
    /// began before `to` (seconds), counted from `from` at the earliest —
    /// a failure's stall, not the ordinary spacing before it nor what
    /// happens after the link's return — and when it began (its own
    /// start, which may be before `from`); `(0, from)` when none.
    pub fn longest_gap_within(&self, from: f64, to: f64) -> (f64, f64) {
        self.gaps
            .iter()
            .filter(|g| g.end > from && g.start < to)
            .map(|g| (g.end - g.start.max(from), g.start))
            .fold((0.0, from), |best, g| if g.0 > best.0 { g } else { best })
    }

    /// The silences of at least `secs`.
    pub fn gaps_over(&self, secs: f64) -> Vec<Gap> {
        self.gaps
            .iter()
            .filter(|g| g.secs() >= secs)
            .copied()
            .collect()
    }
}

/// The receiver's bookkeeping, fed one read at a time.
#[derive(Debug, Default)]
struct Tally {
    bins: Vec<u64>,
    gaps: Vec<Gap>,
    last: f64,
    bytes: u64,
}

impl Tally {
    /// `n` bytes read `t` seconds into the flow.
    fn read(&mut self, t: f64, n: usize) {
        if t - self.last >= MIN_GAP.as_secs_f64() {
            self.gaps.push(Gap {
                start: self.last,
                end: t,
            });
        }
        self.last = t;
        let bin = (t / BIN.as_secs_f64()) as usize;
        if self.bins.len() <= bin {
            self.bins.resize(bin + 1, 0);
        }
        self.bins[bin] += n as u64;
        self.bytes += n as u64;
    }

    /// The tally of a flow that ran `secs` seconds.
    fn finish(self, secs: f64) -> Received {
        let step = BIN.as_secs_f64();
        let whole = (secs / step).round() as usize;
        // Bytes read after the sender's end are the buffers draining, not
        // the links' rate: they count in `bytes` only. Periods with nothing
        // count too.
        let mut bins = self.bins;
        bins.resize(whole, 0);
        let intervals = bins
            .iter()
            .enumerate()
            .map(|(i, &bytes)| Interval {
                start: i as f64 * step,
                end: (i + 1) as f64 * step,
                bytes,
            })
            .collect();
        Received {
            intervals,
            gaps: self.gaps,
            bytes: self.bytes,
        }
    }
}

/// A connection from the client to the server through the bridge, ready
/// to carry a flow in `direction`.
pub struct Flow {
    sender: TcpStream,
    receiver: TcpStream,
}

impl Flow {
    /// Connects from the client to a fresh listener on the server.
    pub fn connect(topo: &Topology, direction: Direction) -> anyhow::Result<Flow> {
        let any = SocketAddr::new(topo.server_addr(false), 0);
        let listener = topo
            .enter(Node::Server, move || TcpListener::bind(any))
            .context("cannot listen in the server namespace")?;
        let dest = listener.local_addr()?;
        let client = topo
            .enter(Node::Client, move || {
                TcpStream::connect_timeout(&dest, Duration::from_secs(10))
            })
            .context("the client cannot connect to the server through the bridge")?;
        let (accepted, _) = listener.accept().context("the server's accept")?;
        let (sender, receiver) = match direction {
            Direction::Download => (accepted, client),
            Direction::Upload => (client, accepted),
        };
        for s in [&sender, &receiver] {
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
        }
        Ok(Flow { sender, receiver })
    }

    /// Sends as fast as the connection takes for `secs` seconds from
    /// `started`, then half-closes; reads everything meanwhile, adding to
    /// `received` as bytes arrive. `during` runs on this thread at the
    /// same time. An I/O error (a reset, a silence longer than
    /// [`IO_TIMEOUT`]) is an error.
    pub fn run<T>(
        self,
        started: Instant,
        secs: f64,
        received: &AtomicU64,
        during: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<(Received, T)> {
        let Flow {
            mut sender,
            mut receiver,
        } = self;
        let until = started + Duration::from_secs_f64(secs);
        std::thread::scope(|scope| {
            let send = scope.spawn(move || -> std::io::Result<u64> {
                let buf = vec![0x5au8; 64 * 1024];
                let mut sent = 0u64;
                while Instant::now() < until {
                    sender.write_all(&buf)?;
                    sent += buf.len() as u64;
                }
                sender.shutdown(Shutdown::Write)?;
                Ok(sent)
            });
            let receive = scope.spawn(move || -> std::io::Result<Tally> {
                let mut buf = vec![0u8; 64 * 1024];
                let mut tally = Tally::default();
                loop {
                    let n = receiver.read(&mut buf)?;
                    if n == 0 {
                        return Ok(tally);
                    }
                    tally.read(started.elapsed().as_secs_f64(), n);
                    received.store(tally.bytes, Ordering::Relaxed);
                }
            });
            let during = during();
            let sent = send
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .context("the flow's sender failed")?;
            let tally = receive
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .context("the flow's receiver failed")?;
            anyhow::ensure!(
                tally.bytes == sent,
                "the flow lost data: {sent} bytes sent, {} received",
                tally.bytes
            );
            Ok((tally.finish(secs), during?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fill_100_ms_periods_and_silences_are_kept_to_the_millisecond() {
        let mut t = Tally::default();
        for (time, n) in [(0.01, 10), (0.05, 5), (0.12, 7), (0.3004, 1), (0.302, 1)] {
            t.read(time, n);
        }
        let r = t.finish(0.4);
        let bytes: Vec<u64> = r.intervals.iter().map(|i| i.bytes).collect();
        assert_eq!(bytes, [15, 7, 0, 2]);
        assert_eq!(r.bytes, 24);
        // 0 → 0.01, 0.01 → 0.05, 0.05 → 0.12, 0.12 → 0.3004; not the 1.6 ms.
        assert_eq!(r.gaps.len(), 4);
        assert!((r.gaps[3].secs() - 0.1804).abs() < 1e-9);
        let (len, began) = r.longest_gap_within(0.0, 1.0);
        assert!((len - 0.1804).abs() < 1e-9);
        assert!((began - 0.12).abs() < 1e-9);
        // A silence that began before `from` counts from `from` only.
        assert!((r.longest_gap_within(0.2, 1.0).0 - 0.1004).abs() < 1e-9);
        assert_eq!(r.longest_gap_within(0.31, 1.0), (0.0, 0.31));
        // One that began at or after `to` is not this failure's.
        assert!((r.longest_gap_within(0.0, 0.12).0 - 0.07).abs() < 1e-9);
        assert_eq!(r.gaps_over(0.1).len(), 1);
    }

    #[test]
    fn bytes_after_the_end_are_no_goodput() {
        let mut t = Tally::default();
        t.read(0.05, 1);
        t.read(0.25, 4);
        let r = t.finish(0.2);
        let bytes: Vec<u64> = r.intervals.iter().map(|i| i.bytes).collect();
        assert_eq!(bytes, [1, 0]);
        assert_eq!(r.bytes, 5);
    }

    #[test]
    fn a_flow_over_loopback_arrives_whole_with_its_gaps() {
        // No namespaces: the I/O part alone, over this process's loopback.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let flow = Flow {
            sender: client,
            receiver: server,
        };
        let got = AtomicU64::new(0);
        let started = Instant::now();
        let (r, ()) = flow.run(started, 0.3, &got, || Ok(())).unwrap();
        assert!(r.bytes > 0);
        assert_eq!(got.load(Ordering::Relaxed), r.bytes);
        assert_eq!(r.intervals.len(), 3);
        assert!(r.intervals.iter().map(|i| i.bytes).sum::<u64>() <= r.bytes);
    }
}
