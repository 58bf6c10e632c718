//! Watching the links while a flow runs: router A's per-link byte counters
//! sampled every 100 ms (interface and MPTCP subflow counters), the rates
//! derived from them, and the live progress line on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::iperf::Interval;
use crate::{netns, plan, Node, Topology};

/// How often the links are sampled.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// Router A's counters of every link at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LinkSample {
    /// Seconds since the flow started.
    pub t: f64,
    /// Bytes router A's end of each link has sent (interface counter).
    pub tx_bytes: Vec<u64>,
    /// Bytes router A's end of each link has received (interface counter;
    /// includes what a black hole then drops).
    pub rx_bytes: Vec<u64>,
    /// Payload router A's MPTCP subflows on each link have received, as TCP
    /// counts it (`bytes_received`): what really got through that link. A
    /// subflow that closes takes its count with it.
    pub subflow_rx_bytes: Vec<u64>,
    /// Bytes the receiving application has read so far, when the flow is
    /// the lab's own transfer rather than iperf3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_rx_bytes: Option<u64>,
}

/// Reads every link's counters in router A. A counter that cannot be read
/// this time (a busy machine's `ss` failing, say) keeps its value from
/// `previous`, or 0 in the first sample: the counters only grow, so "no
/// news" must not read as a drop to 0 and a jump back.
pub fn sample(
    topo: &Topology,
    t: f64,
    app_rx_bytes: Option<u64>,
    previous: Option<&LinkSample>,
) -> LinkSample {
    let links = topo.link_count();
    let counters = netns::try_in_netns(&topo.ns_path(Node::RouterA), || {
        (0..links)
            .map(|link| netns::read_if_bytes(&plan::link_ifname(link)).ok())
            .collect::<Option<Vec<_>>>()
    })
    .ok()
    .flatten();
    let (tx, rx) = counters.map_or((None, None), |c| {
        let (tx, rx) = c.into_iter().unzip();
        (Some(tx), Some(rx))
    });
    LinkSample {
        t,
        tx_bytes: or_previous(tx, previous.map(|p| &p.tx_bytes), links),
        rx_bytes: or_previous(rx, previous.map(|p| &p.rx_bytes), links),
        subflow_rx_bytes: or_previous(
            subflow_bytes(topo, links),
            previous.map(|p| &p.subflow_rx_bytes),
            links,
        ),
        app_rx_bytes,
    }
}

/// The counters just read, or else the previous sample's, or else zeros.
fn or_previous(read: Option<Vec<u64>>, previous: Option<&Vec<u64>>, links: usize) -> Vec<u64> {
    read.or_else(|| previous.cloned())
        .unwrap_or_else(|| vec![0; links])
}

/// Bytes router A's MPTCP subflows on each link have received, or `None`
/// when `ss` could not be run.
fn subflow_bytes(topo: &Topology, links: usize) -> Option<Vec<u64>> {
    let sockets = topo.tcp_sockets(Node::RouterA).ok()?;
    Some(
        (0..links)
            .map(|link| {
                let addrs = [
                    topo.ra_link_addr(link, false),
                    topo.ra_link_addr(link, true),
                ];
                sockets
                    .iter()
                    .filter(|s| s.mptcp_subflow && addrs.contains(&s.local.ip()))
                    .map(|s| s.bytes_received)
                    .sum()
            })
            .collect(),
    )
}

/// Runs `body` while a thread samples the links every [`SAMPLE_PERIOD`]
/// (times relative to `started`) and feeds `progress`; returns what `body`
/// returned and the samples. `app_rx` is read into
/// [`LinkSample::app_rx_bytes`] when given.
pub fn record<T>(
    topo: &Topology,
    started: Instant,
    app_rx: Option<&AtomicU64>,
    progress: &Progress,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<LinkSample>)> {
    let stop = AtomicBool::new(false);
    let (result, samples) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut all = Vec::<LinkSample>::new();
            let mut tick = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                let app = app_rx.map(|a| a.load(Ordering::Relaxed));
                let s = sample(topo, t, app, all.last());
                if let Some(prev) = all.last() {
                    progress.tick(s.t, &rx_mbit(prev, &s), app_mbit(prev, &s));
                }
                all.push(s);
                // Ticks on a fixed grid, however long a sample took.
                tick += 1;
                let next = SAMPLE_PERIOD * tick;
                if let Some(left) = next.checked_sub(started.elapsed()) {
                    std::thread::sleep(left);
                }
            }
            all
        });
        let result = body();
        stop.store(true, Ordering::Relaxed);
        let samples = sampler
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (result, samples)
    });
    progress.clear_line();
    result.map(|r| (r, samples))
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs.max(1e-3) / 1e6
}

/// Per-link receive rates (Mbit/s) between two samples, from the
/// interface counters.
pub fn rx_mbit(a: &LinkSample, b: &LinkSample) -> Vec<f64> {
    a.rx_bytes
        .iter()
        .zip(&b.rx_bytes)
        .map(|(x, y)| mbit(y.saturating_sub(*x), b.t - a.t))
        .collect()
}

/// The application's goodput (Mbit/s) between two samples, if counted.
fn app_mbit(a: &LinkSample, b: &LinkSample) -> Option<f64> {
    Some(mbit(
        b.app_rx_bytes?.saturating_sub(a.app_rx_bytes?),
        b.t - a.t,
    ))
}

/// Each link's receive rate over time: `(end of the sample period, Mbit/s
/// per link)`.
pub fn link_rates(samples: &[LinkSample]) -> Vec<(f64, Vec<f64>)> {
    samples
        .windows(2)
        .map(|w| (w[1].t, rx_mbit(&w[0], &w[1])))
        .collect()
}

/// The application's receive count as goodput intervals (the lab's own
/// transfer, in the shape iperf3 reports).
pub fn app_intervals(samples: &[LinkSample]) -> Vec<Interval> {
    samples
        .windows(2)
        .filter_map(|w| {
            Some(Interval {
                start: w[0].t,
                end: w[1].t,
                bytes: w[1].app_rx_bytes?.saturating_sub(w[0].app_rx_bytes?),
            })
        })
        .collect()
}

/// First time after `restore_at` at which `link`'s subflows received more
/// than 1 Mbit/s over a sample period, relative to `restore_at`: when the
/// restored link carried traffic again for the connection. Subflow bytes,
/// not interface bytes: a black-holed link still counts arriving packets
/// that the firewall then drops.
pub fn regained(samples: &[LinkSample], link: usize, restore_at: f64) -> Option<f64> {
    samples.windows(2).find_map(|w| {
        let (a, b) = (&w[0], &w[1]);
        let bytes = b
            .subflow_rx_bytes
            .get(link)?
            .saturating_sub(*a.subflow_rx_bytes.get(link)?);
        (a.t + 1e-6 >= restore_at && mbit(bytes, b.t - a.t) > 1.0).then_some(b.t - restore_at)
    })
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One line rewritten in place (stderr is a terminal).
    Live,
    /// A plain line every second (stderr is a file or pipe).
    Lines,
    /// Nothing (tests).
    Silent,
}

/// The progress shown on stderr while a scenario runs: the phase, then a
/// status line of elapsed time, per-link rates and the current fault.
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    state: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    note: String,
    last_line: Option<f64>,
    live_shown: bool,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        Progress {
            mode,
            state: Mutex::default(),
        }
    }

    /// [`ProgressMode::Live`] if stderr is a terminal, else
    /// [`ProgressMode::Lines`].
    pub fn for_stderr() -> Progress {
        Progress::new(if std::io::stderr().is_terminal() {
            ProgressMode::Live
        } else {
            ProgressMode::Lines
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new phase starts (or a result to keep on screen): printed as a
    /// line of its own.
    pub fn phase(&self, what: &str) {
        if self.mode == ProgressMode::Silent {
            return;
        }
        self.clear_line();
        let mut state = self.state();
        state.note.clear();
        state.last_line = None;
        eprintln!("  … {what}");
    }

    /// What is being done to the links right now ("link 0 down"); empty
    /// when nothing.
    pub fn note(&self, what: &str) {
        what.clone_into(&mut self.state().note);
    }

    /// A new sample: `t` seconds into the flow, per-link receive rates and,
    /// when known, the application's goodput.
    pub fn tick(&self, t: f64, link_mbit: &[f64], app_mbit: Option<f64>) {
        if self.mode == ProgressMode::Silent {
            return;
        }
        let mut state = self.state();
        let line = status_line(t, link_mbit, app_mbit, &state.note);
        let mut err = std::io::stderr().lock();
        match self.mode {
            ProgressMode::Live => {
                let _ = write!(err, "\r\x1b[2K    {line}");
                let _ = err.flush();
                state.live_shown = true;
            }
            ProgressMode::Lines => {
                if state.last_line.is_none_or(|last| t - last >= 1.0 - 1e-6) {
                    let _ = writeln!(err, "    {line}");
                    state.last_line = Some(t);
                }
            }
            ProgressMode::Silent => {}
        }
    }

    /// Removes the live line, if one is shown.
    pub fn clear_line(&self) {
        let mut state = self.state();
        if state.live_shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            state.live_shown = false;
        }
    }
}

/// `  3.4 s   link 0  48.1   link 1  47.9   sum  96.0 Mbit/s   [link 0 down]`.
pub fn status_line(t: f64, link_mbit: &[f64], app_mbit: Option<f64>, note: &str) -> String {
    let mut line = format!("{t:5.1} s ");
    for (i, r) in link_mbit.iter().enumerate() {
        line.push_str(&format!("  link {i} {r:6.1}"));
    }
    let sum: f64 = link_mbit.iter().sum();
    line.push_str(&format!("   sum {sum:6.1} Mbit/s"));
    if let Some(app) = app_mbit {
        line.push_str(&format!("   received {app:6.1} Mbit/s"));
    }
    if !note.is_empty() {
        line.push_str(&format!("   [{note}]"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_cannot_be_read_keeps_its_last_value() {
        assert_eq!(or_previous(Some(vec![5, 6]), Some(&vec![1, 2]), 2), [5, 6]);
        assert_eq!(or_previous(None, Some(&vec![1, 2]), 2), [1, 2]);
        assert_eq!(or_previous(None, None, 3), [0, 0, 0]);
    }

    fn s(t: f64, rx: [u64; 2], subflow: [u64; 2], app: Option<u64>) -> LinkSample {
        LinkSample {
            t,
            tx_bytes: vec![0, 0],
            rx_bytes: rx.to_vec(),
            subflow_rx_bytes: subflow.to_vec(),
            app_rx_bytes: app,
        }
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        let samples = [
            s(0.0, [0, 0], [0, 0], Some(0)),
            s(0.1, [625_000, 0], [0, 0], Some(1_250_000)),
        ];
        let rates = link_rates(&samples);
        assert_eq!(rates.len(), 1);
        assert!((rates[0].1[0] - 50.0).abs() < 1e-9);
        assert_eq!(rates[0].1[1], 0.0);
        let ivs = app_intervals(&samples);
        assert_eq!(ivs.len(), 1);
        assert!((ivs[0].mbit_per_s() - 100.0).abs() < 1e-6);
    }

    #[test]
    fn a_link_is_regained_when_its_subflow_bytes_move_after_the_restore() {
        let samples = [
            s(5.9, [0; 2], [0, 100], None),
            s(6.0, [9_000_000, 0], [0, 200], None),
            s(6.1, [9_000_000, 0], [0, 300], None),
            s(6.2, [9_000_000, 0], [50_000, 400], None),
        ];
        // Interface bytes before the restore (a black hole) do not count.
        let t = regained(&samples, 0, 6.0).unwrap();
        assert!((t - 0.2).abs() < 1e-9);
        assert_eq!(regained(&samples, 1, 6.0), None);
    }

    #[test]
    fn a_subflow_that_closed_and_reopened_is_not_a_negative_rate() {
        let samples = [
            s(1.0, [0; 2], [5_000_000, 0], None),
            s(1.1, [0; 2], [0, 0], None),
        ];
        assert_eq!(regained(&samples, 0, 0.0), None);
    }

    #[test]
    fn the_status_line_names_links_sum_and_fault() {
        let line = status_line(3.4, &[48.1, 0.0], Some(47.0), "link 1 down");
        assert!(line.contains("3.4 s"), "{line}");
        assert!(line.contains("link 0   48.1"), "{line}");
        assert!(line.contains("sum   48.1 Mbit/s"), "{line}");
        assert!(line.contains("received   47.0"), "{line}");
        assert!(line.ends_with("[link 1 down]"), "{line}");
    }
}
