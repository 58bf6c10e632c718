//! Send buffers that follow each connection (`sndbuf = "auto"`, the
//! default of both daemons).
//!
//! When a subflow dies, Linux sends everything its connection has not had
//! acknowledged at the MPTCP level again over the other subflows, and the
//! buffer a connection may fill bounds that. With the kernel's autotuning
//! it grew to megabytes, so one 10 Mbit/s link that survived another's
//! failure carried a second of old data before the flow moved again
//! (README, "A kernel behaviour worth knowing"). A small fixed buffer ends
//! that but starves a flow over long round trips, which needs its rate ×
//! its slowest carrying subflow's round trip in flight.
//!
//! So each connection starts at [`FLOOR`], and once a second the daemon
//! looks at those that moved bytes and gives each three times what it
//! delivered in one round trip of its slowest subflow that carried data,
//! within [`FLOOR`] and [`CEILING`]. A flow held back by its buffer
//! delivers at most the buffer's payload once per such round trip (the
//! kernel counts more than the payload against it), so its buffer grows
//! at each look until the links, not the buffer, set the pace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portable_atomic::Ordering;

use super::kernel::{read, KernelSubflow, Reading};
use crate::config::Sndbuf;
use crate::host::sys::{self, Transport};
use crate::stats::registry::{Conn, Turns};
use crate::stats::Stats;

/// The buffer a connection starts with, as the kernel counts it (twice the
/// SO_SNDBUF asked for): 1 MiB. Measured in the lab's VM (Linux 6.12),
/// 10 Mbit/s links at 5 and 30 ms, the first black-holed: the stall was
/// 0.05–0.17 s at 0.5 and 1 MiB against 0.7–1.7 s autotuned; on this
/// host's 100 + 50 + 20 Mbit/s links 0.5 MiB cost 3–5 % of one flow's
/// rate and 1 MiB nothing.
pub const FLOOR: usize = 1 << 20;
/// The most a look gives: twice the kernel's default autotuning cap
/// (`net.ipv4.tcp_wmem`, 4 MiB).
pub const CEILING: usize = 8 << 20;
/// A new size is set only when it differs from the last by more than an
/// eighth (each setting wakes the connection's writers).
const HYSTERESIS: usize = 8;
/// Connections looked at once a second at most (as `paths::regain`); when
/// more moved bytes, the others are taken in turn at the following looks.
const LOOK_MAX: usize = 256;

/// The buffer (as the kernel counts it) a connection that delivered
/// `bytes_per_sec` over subflows whose slowest carrying round trip is
/// `rtt` should have. Three times the flight: in the lab's VM one download
/// over 20 + 10 + 4 Mbit/s at 5 / 30 / 60 ms (round trips up to 245 ms
/// with the shapers' queues) got 92.7 % of the links' sum at twice, with a
/// buffer of 1.7–2.1 MB, where autotuning got 97.6 %.
pub fn wanted(bytes_per_sec: f64, rtt: Duration) -> usize {
    let in_flight = bytes_per_sec * rtt.as_secs_f64();
    ((3.0 * in_flight) as usize).clamp(FLOOR, CEILING)
}

/// What the last look saw of one connection.
struct Seen {
    /// Bytes acknowledged per subflow, by its addresses.
    acked: Vec<(SocketAddr, SocketAddr, u64)>,
    at: Instant,
    /// The buffer last set (kernel's count).
    set: usize,
    /// Both ways' bytes at the last look (the relay's counters).
    bytes: u64,
}

/// A connection that moved bytes since the last look.
struct Busy<'a> {
    conn: &'a Arc<Conn>,
    /// Both ways' bytes now.
    bytes: u64,
    /// What the last look saw of it, if it saw it.
    last: Option<Seen>,
}

/// The daemon's sizer; [`Sizer::look`] once a second.
pub struct Sizer {
    stats: Arc<Stats>,
    seen: HashMap<u64, Seen>,
    turns: Turns,
}

impl Sizer {
    pub fn new(stats: Arc<Stats>) -> Sizer {
        Sizer {
            stats,
            seen: HashMap::new(),
            turns: Turns::default(),
        }
    }

    /// Looks at the connections that moved bytes since the last look and
    /// sets the send buffer of those that need another.
    pub fn look(&mut self) {
        let now = Instant::now();
        let live = self.stats.live.look(&self.stats);
        let (busy, mut seen) = self.pick(&live.connections);
        for Busy { conn, bytes, last } in busy {
            let Some(Ok(Reading::Subflows(subflows))) = conn.with_socket(read) else {
                continue;
            };
            let acked = acked_by(&subflows);
            let set = last.as_ref().map_or(FLOOR, |b| b.set);
            let mut next = Seen {
                acked,
                at: now,
                set,
                bytes,
            };
            if let Some(b) = &last {
                let want = size_for(b, &next, &subflows);
                if want.abs_diff(set) > set / HYSTERESIS {
                    // The registry hands the descriptor out only while the
                    // connection's socket is open.
                    let done = conn.with_socket(|fd| sys::set_send_buffer_of(fd, want / 2));
                    if done.is_some() {
                        tracing::debug!(conn = conn.id, from = set, to = want, "send buffer");
                        next.set = want;
                    }
                }
            }
            seen.insert(conn.id, next);
        }
        self.seen = seen;
    }

    /// The MPTCP connections to look at now: those that moved bytes since
    /// the last look, at most [`LOOK_MAX`], in turn. Also what is kept of
    /// the others: the last look of each, with its bytes now.
    fn pick<'a>(&mut self, conns: &'a [Arc<Conn>]) -> (Vec<Busy<'a>>, HashMap<u64, Seen>) {
        let mut seen = HashMap::with_capacity(conns.len());
        let mut busy = Vec::new();
        for conn in conns {
            if conn.transport != Transport::Mptcp {
                continue;
            }
            let bytes = conn.counters.up.load(Ordering::Relaxed)
                + conn.counters.down.load(Ordering::Relaxed);
            let last = self.seen.remove(&conn.id);
            if last.as_ref().is_none_or(|b| b.bytes != bytes) {
                busy.push(Busy { conn, bytes, last });
            } else if let Some(b) = last {
                seen.insert(conn.id, b);
            }
        }
        for Busy { conn, bytes, last } in self.turns.take(&mut busy, LOOK_MAX, |b| b.conn.id) {
            if let Some(mut b) = last {
                b.bytes = bytes;
                seen.insert(conn.id, b);
            }
        }
        (busy, seen)
    }
}

/// Gives a new connection's socket its send buffer: [`FLOOR`] for
/// `"auto"` (the looks take it on from there), a fixed one as set, or
/// nothing (the kernel's autotuning).
pub fn apply(socket: &impl AsFd, setting: Sndbuf) {
    match setting {
        Sndbuf::Auto => sys::set_send_buffer(socket, FLOOR / 2),
        Sndbuf::Fixed(bytes) => sys::set_send_buffer(socket, bytes),
        Sndbuf::Kernel => {}
    }
}

/// With `"auto"`, looks once a second until the returned task is aborted.
pub fn spawn(setting: Sndbuf, stats: &Arc<Stats>) -> Option<tokio::task::JoinHandle<()>> {
    if setting != Sndbuf::Auto {
        return None;
    }
    let mut sizer = Sizer::new(Arc::clone(stats));
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sizer.look();
        }
    }))
}

fn acked_by(subflows: &[KernelSubflow]) -> Vec<(SocketAddr, SocketAddr, u64)> {
    subflows
        .iter()
        .filter_map(|s| Some((s.local, s.remote, s.bytes_acked?)))
        .collect()
}

/// The size a connection wants from two looks: its delivery rate between
/// them and the slowest round trip among the subflows that carried data.
fn size_for(before: &Seen, now: &Seen, subflows: &[KernelSubflow]) -> usize {
    let secs = now.at.duration_since(before.at).as_secs_f64();
    if secs <= 0.0 {
        return before.set;
    }
    let mut delivered = 0u64;
    let mut rtt = Duration::ZERO;
    for &(local, remote, acked) in &now.acked {
        let was = before
            .acked
            .iter()
            .find(|&&(l, r, _)| l == local && r == remote)
            .map_or(0, |&(_, _, a)| a);
        let carried = acked.saturating_sub(was);
        if carried == 0 {
            continue;
        }
        delivered += carried;
        let sub_rtt = subflows
            .iter()
            .find(|s| s.local == local && s.remote == remote)
            .and_then(|s| s.rtt)
            .unwrap_or_default();
        rtt = rtt.max(sub_rtt);
    }
    wanted(delivered as f64 / secs, rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn subflow(local: &str, rtt_ms: u64, acked: u64) -> KernelSubflow {
        KernelSubflow {
            local: addr(local),
            remote: addr("10.0.0.2:4443"),
            state: Some(1),
            rtt: Some(Duration::from_millis(rtt_ms)),
            bytes_acked: Some(acked),
            bytes_received: Some(0),
        }
    }

    fn seen(subflows: &[KernelSubflow], at: Instant, set: usize) -> Seen {
        Seen {
            acked: acked_by(subflows),
            at,
            set,
            bytes: 0,
        }
    }

    #[test]
    fn the_buffer_is_twice_the_flight_of_the_slowest_carrying_round_trip_within_bounds() {
        // 4 MB/s over a 270 ms round trip: 1.08 MB in flight, 3.24 MB wanted.
        assert_eq!(wanted(4e6, Duration::from_millis(270)), 3_240_000);
        // A quick, slow flow still gets the floor: a failed link's resend
        // is then short.
        assert_eq!(wanted(1e6, Duration::from_millis(20)), FLOOR);
        assert_eq!(wanted(0.0, Duration::ZERO), FLOOR);
        assert_eq!(wanted(1e9, Duration::from_secs(1)), CEILING);
    }

    #[test]
    fn only_subflows_that_carried_data_set_the_round_trip() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let before = [
            subflow("10.0.1.1:1", 10, 0),
            subflow("10.0.2.1:1", 400, 5_000),
        ];
        // The first link carried 3 MB; the second, slow one nothing more
        // (a benched backup): its 400 ms does not count.
        let now = [
            subflow("10.0.1.1:1", 50, 3_000_000),
            subflow("10.0.2.1:1", 400, 5_000),
        ];
        let want = size_for(&seen(&before, t0, FLOOR), &seen(&now, t1, FLOOR), &now);
        assert_eq!(want, wanted(3e6, Duration::from_millis(50)));
        // 150 kB in flight, 450 kB wanted: the floor.
        assert_eq!(want, FLOOR);
        // Once the slow one carries too, its round trip is the one.
        let later = [
            subflow("10.0.1.1:1", 50, 6_000_000),
            subflow("10.0.2.1:1", 400, 1_005_000),
        ];
        let t2 = t1 + Duration::from_secs(1);
        let want = size_for(&seen(&now, t1, FLOOR), &seen(&later, t2, FLOOR), &later);
        assert_eq!(want, wanted(4e6, Duration::from_millis(400)));
    }

    #[test]
    fn a_flow_held_back_by_its_buffer_gets_more_at_the_next_look() {
        // Held at 1 MiB over a 200 ms round trip, a flow delivers at most
        // 1 MiB per round trip: 5 MiB/s, so three times as much.
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let before = [subflow("10.0.1.1:1", 200, 0)];
        let now = [subflow("10.0.1.1:1", 200, 5 * FLOOR as u64)];
        let want = size_for(&seen(&before, t0, FLOOR), &seen(&now, t1, FLOOR), &now);
        assert_eq!(want, 3 * FLOOR);
    }

    #[test]
    fn a_subflow_gone_or_new_between_looks_counts_no_negative_bytes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        let before = [subflow("10.0.1.1:1", 10, 9_000_000)];
        // The old subflow died; a new one on another port carried 1 MB.
        let now = [subflow("10.0.1.1:2", 30, 1_000_000)];
        let want = size_for(&seen(&before, t0, FLOOR), &seen(&now, t1, FLOOR), &now);
        assert_eq!(want, wanted(2e6, Duration::from_millis(30)));
    }

    #[test]
    fn when_more_connections_are_busy_than_a_look_takes_the_next_look_takes_the_others() {
        let stats = Arc::new(Stats::default());
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let conns: Vec<_> = (0..300)
            .map(|_| {
                let client = addr("10.10.0.2:4000");
                let destination = addr("10.30.0.2:80");
                stats.register(client, destination, &socket, Transport::Mptcp)
            })
            .collect();
        let mut sizer = Sizer::new(Arc::clone(&stats));
        let mut looked = std::collections::BTreeSet::new();
        for _ in 0..2 {
            for conn in &conns {
                conn.counters().up.fetch_add(1000, Ordering::Relaxed);
            }
            let live = stats.live.look(&stats);
            let (busy, seen) = sizer.pick(&live.connections);
            assert_eq!(busy.len(), LOOK_MAX);
            looked.extend(busy.iter().map(|b| b.conn.id));
            sizer.seen = seen;
        }
        assert_eq!(looked.len(), 300);
    }
}
