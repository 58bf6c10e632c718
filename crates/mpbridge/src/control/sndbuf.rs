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
//!
//! That alone can settle too low over links of unequal round trips. The
//! kernel's scheduler hands each subflow data in proportion to its pacing
//! rate, and a subflow on a short round trip over a queue (a shaper's, a
//! Wi-Fi card's) paces far above its link's rate: it holds most of the
//! buffer unsent while the subflow on the long round trip runs dry, carries
//! less, and, not limited by its window, never grows it. The flow then
//! delivers less, and three times that is again too little. Measured on
//! this host's 6.18 with the lab's delay line, 2 × 50 Mbit/s at 5 and
//! 30 ms one way: one download in five sat at 70 Mbit/s with 1.55 MB, the
//! others at 92 with 2.1–2.4 MB. So a look that finds a carrying subflow
//! dry, with room in its window, while another holds a fair part of the
//! buffer unsent ([`starved`]) raises that connection's factor by half
//! ([`FACTOR_STEP`]); each look that does not find it lowers the factor by
//! half a flight, back to 3. (A subflow in slow start is dry too, but its
//! window is full: a new one beside an old one that holds the buffer is
//! no reason to grow it.)

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
/// Flights a connection's buffer holds: three to start with ([`wanted`]).
const FACTOR: f64 = 3.0;
/// A look that finds a carrying subflow starved multiplies the factor by
/// this, up to [`FACTOR_MAX`]; one that does not takes [`FACTOR_DECAY`]
/// off it, down to [`FACTOR`].
const FACTOR_STEP: f64 = 1.5;
const FACTOR_MAX: f64 = 8.0;
const FACTOR_DECAY: f64 = 0.5;
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
    wanted_times(FACTOR, bytes_per_sec, rtt)
}

/// [`wanted`] with `factor` flights instead of three.
fn wanted_times(factor: f64, bytes_per_sec: f64, rtt: Duration) -> usize {
    let in_flight = bytes_per_sec * rtt.as_secs_f64();
    ((factor * in_flight) as usize).clamp(FLOOR, CEILING)
}

/// Whether a connection's buffer sits in one subflow's queue while another
/// that carries data runs dry: among the subflows that carried data since
/// the last look (by their acknowledged bytes, `before` → `now`), one holds
/// unsent at least an eighth of the buffer `set`, and another holds less
/// than an eighth of that with a quarter of its congestion window or more
/// free (a subflow in slow start fills its window). One subflow, a flow
/// that does not fill its buffer (nothing much unsent anywhere), or
/// subflows whose queues the kernel does not report, are not starved.
fn starved(before: &Seen, now: &Seen, subflows: &[KernelSubflow]) -> bool {
    let carrying: Vec<&KernelSubflow> = subflows
        .iter()
        .filter(|s| {
            let key = (s.local, s.remote);
            let acked = |seen: &Seen| {
                seen.acked
                    .iter()
                    .find(|&&(l, r, _)| (l, r) == key)
                    .map(|&(_, _, a)| a)
            };
            acked(now).unwrap_or(0) > acked(before).unwrap_or(0)
        })
        .collect();
    let Some(most) = carrying.iter().filter_map(|s| s.notsent).max() else {
        return false;
    };
    let most = u64::from(most);
    let dry = |s: &KernelSubflow| match (s.notsent, s.unacked, s.cwnd) {
        (Some(unsent), Some(unacked), Some(cwnd)) => {
            u64::from(unsent) < most / 8 && u64::from(unacked) * 4 <= u64::from(cwnd) * 3
        }
        _ => false,
    };
    most >= (before.set / 8) as u64 && carrying.iter().any(|s| dry(s))
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
    /// Flights the buffer holds ([`FACTOR`], more after starved looks).
    factor: f64,
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
    /// Whether starved subflows raise the factor (`"auto"`; not `"flight"`).
    starve: bool,
    seen: HashMap<u64, Seen>,
    turns: Turns,
}

impl Sizer {
    pub fn new(stats: Arc<Stats>, starve: bool) -> Sizer {
        Sizer {
            stats,
            starve,
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
                factor: last.as_ref().map_or(FACTOR, |b| b.factor),
            };
            if let Some(b) = &last {
                if self.starve {
                    next.factor = next_factor(b, &next, &subflows);
                }
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
/// `"auto"` and `"flight"` (the looks take it on from there), a fixed one as set, or
/// nothing (the kernel's autotuning).
pub fn apply(socket: &impl AsFd, setting: Sndbuf) {
    match setting {
        Sndbuf::Auto | Sndbuf::Flight => sys::set_send_buffer(socket, FLOOR / 2),
        Sndbuf::Fixed(bytes) => sys::set_send_buffer(socket, bytes),
        Sndbuf::Kernel => {}
    }
}

/// With `"auto"` or `"flight"`, looks once a second until the returned task
/// is aborted.
pub fn spawn(setting: Sndbuf, stats: &Arc<Stats>) -> Option<tokio::task::JoinHandle<()>> {
    let starve = match setting {
        Sndbuf::Auto => true,
        Sndbuf::Flight => false,
        Sndbuf::Kernel | Sndbuf::Fixed(_) => return None,
    };
    let mut sizer = Sizer::new(Arc::clone(stats), starve);
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

/// The factor of a connection at a look, from the last look's.
fn next_factor(before: &Seen, now: &Seen, subflows: &[KernelSubflow]) -> f64 {
    if starved(before, now, subflows) {
        (before.factor * FACTOR_STEP).min(FACTOR_MAX)
    } else {
        (before.factor - FACTOR_DECAY).max(FACTOR)
    }
}

/// The size a connection wants from two looks: its delivery rate between
/// them and the slowest round trip among the subflows that carried data,
/// times `now.factor`.
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
    wanted_times(now.factor, delivered as f64 / secs, rtt)
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
            notsent: Some(0),
            unacked: Some(100),
            cwnd: Some(300),
        }
    }

    fn unsent(mut s: KernelSubflow, bytes: Option<u32>) -> KernelSubflow {
        s.notsent = bytes;
        s
    }

    fn seen(subflows: &[KernelSubflow], at: Instant, set: usize) -> Seen {
        Seen {
            acked: acked_by(subflows),
            at,
            set,
            bytes: 0,
            factor: FACTOR,
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

    /// Two looks a second apart at the download measured on 2 × 50 Mbit/s
    /// at 5 and 30 ms one way (README): 70 Mbit/s, the buffer at 1.55 MB,
    /// the 5 ms subflow holding `fast_unsent`, the 30 ms one `slow_unsent`
    /// with 170 of its 354 segments of window in flight.
    fn two_looks(
        fast_unsent: Option<u32>,
        slow_unsent: Option<u32>,
    ) -> (Seen, Seen, Vec<KernelSubflow>) {
        let set = 1_550_766;
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let before = [
            subflow("10.20.0.1:1", 22, 20_000_000),
            subflow("10.20.1.1:1", 63, 10_000_000),
        ];
        let mut slow = unsent(subflow("10.20.1.1:1", 63, 13_000_000), slow_unsent);
        (slow.unacked, slow.cwnd) = (Some(170), Some(354));
        let now = vec![
            unsent(subflow("10.20.0.1:1", 22, 26_000_000), fast_unsent),
            slow,
        ];
        (seen(&before, t0, set), seen(&now, t1, set), now)
    }

    #[test]
    fn a_subflow_that_runs_dry_while_another_holds_the_buffer_unsent_is_starved() {
        let (before, now, subflows) = two_looks(Some(958_080), Some(0));
        assert!(starved(&before, &now, &subflows));
        let (before, now, subflows) = two_looks(Some(958_080), Some(65_728));
        assert!(
            starved(&before, &now, &subflows),
            "64 KiB is dry beside 0.96 MB"
        );
        // Both hold a fair part: the buffer is shared (the 92 Mbit/s flows).
        let (before, now, subflows) = two_looks(Some(1_000_000), Some(400_000));
        assert!(!starved(&before, &now, &subflows));
        // Little unsent anywhere: the flow does not fill its buffer.
        let (before, now, subflows) = two_looks(Some(150_000), Some(0));
        assert!(!starved(&before, &now, &subflows));
        // A kernel that does not say.
        let (before, now, subflows) = two_looks(Some(958_080), None);
        assert!(!starved(&before, &now, &subflows));
        // A dry subflow whose window is full is in slow start (a link
        // that just came back beside one that carried it all): not
        // starved.
        let (before, now, mut subflows) = two_looks(Some(958_080), Some(0));
        subflows[1].unacked = Some(300);
        assert!(!starved(&before, &now, &subflows));
        // A dry subflow that carried nothing since the last look (a benched
        // backup) is not starved; one subflow alone never is.
        let (before, mut now, mut subflows) = two_looks(Some(958_080), Some(0));
        subflows[1].bytes_acked = Some(10_000_000);
        now.acked = acked_by(&subflows);
        assert!(!starved(&before, &now, &subflows));
        subflows.truncate(1);
        now.acked = acked_by(&subflows);
        assert!(!starved(&before, &now, &subflows));
    }

    #[test]
    fn a_starved_look_raises_the_buffer_past_the_hysteresis_and_quiet_looks_bring_it_back() {
        let (mut before, mut now, subflows) = two_looks(Some(958_080), Some(0));
        // 9 MB/s over 63 ms: three flights are within an eighth of 1.55 MB,
        // so without the factor nothing would change.
        let plain = size_for(&before, &now, &subflows);
        assert!(plain.abs_diff(before.set) <= before.set / HYSTERESIS);
        now.factor = next_factor(&before, &now, &subflows);
        assert_eq!(now.factor, 4.5);
        let want = size_for(&before, &now, &subflows);
        assert_eq!(want, wanted_times(4.5, 9e6, Duration::from_millis(63)));
        assert!(want > before.set + before.set / HYSTERESIS);
        // Starved look after starved look: up to the most.
        for _ in 0..10 {
            before.factor = now.factor;
            now.factor = next_factor(&before, &now, &subflows);
        }
        assert_eq!(now.factor, FACTOR_MAX);
        // Once both hold data, each look takes half a flight off, down to 3.
        let (_, _, shared) = two_looks(Some(1_000_000), Some(400_000));
        let mut looks = 0;
        while now.factor > FACTOR {
            before.factor = now.factor;
            now.factor = next_factor(&before, &now, &shared);
            looks += 1;
        }
        assert_eq!((now.factor, looks), (FACTOR, 10));
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
        let mut sizer = Sizer::new(Arc::clone(&stats), true);
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
