//! Lab scenarios through the real bridge: aggregation against the
//! per-link limit, failover of a long flow on any link, a SHA-256-checked
//! transfer across link flaps, and unshaped throughput against plain
//! routing with the daemons' CPU cost. Each returns figures and samples.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::bridge::{self, Bridge, BridgeOptions};
use crate::flow::{Flow, Gap};
use crate::iperf::{self, Interval};
use crate::measure::{self, LinkSample, Progress};
use crate::{transfer, wait_until, Node, Proc, Topology, TopologySpec};

/// A topology with the daemons running and an iperf3 server on `server`.
pub struct Lab {
    pub bridge: Bridge,
    pub iperf_server: Proc,
    pub topo: Topology,
}

impl Lab {
    /// Builds the topology and starts the daemons (which set MPTCP up).
    pub fn start(
        spec: &TopologySpec,
        mpbridge: &std::path::Path,
        options: &BridgeOptions,
    ) -> anyhow::Result<Lab> {
        let topo = Topology::build(spec)?;
        let bridge = Bridge::start(&topo, mpbridge, options)?;
        let iperf_server = iperf::start_server(
            &topo,
            Node::Server,
            topo.server_addr(false),
            "iperf3-server",
        )?;
        Ok(Lab {
            bridge,
            iperf_server,
            topo,
        })
    }
}

/// What a timed flow recorded, every 100 ms: the receiver's goodput,
/// router A's per-link counters, and the faults applied to the links.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Series {
    /// Goodput intervals (iperf3's, or the lab transfer's own count).
    pub goodput: Vec<Interval>,
    /// Router A's link counters, sampled every 100 ms.
    pub links: Vec<LinkSample>,
    /// Failures and restores, in order.
    pub events: Vec<Event>,
}

/// A link failing or coming back during a flow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Event {
    /// Seconds since the flow started: for a failure, when the lab began
    /// to apply it (the failure takes hold during the command, and in the
    /// VM a command can take a few hundred milliseconds, all of which a
    /// stall measured from its end would leave out); for a restore, when
    /// the command returned (a down link is then up and ready again).
    pub t: f64,
    pub link: usize,
    pub failure: Failure,
    /// `false` when the failure began, `true` when it was lifted.
    pub restored: bool,
    /// The same moment as `t` by the wall clock, in seconds since the Unix
    /// epoch: what lines a failure up with the daemons' logs (see
    /// [`utc_time_of_day`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<f64>,
}

/// The wall clock now, in seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds since the Unix epoch, `unix`, as a UTC time of day to the
/// microsecond (`06:26:30.123456`), as the daemons' logs stamp their lines.
pub fn utc_time_of_day(unix: f64) -> String {
    let micros = (unix.max(0.0) * 1e6).round() as u64;
    let secs = micros / 1_000_000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        micros % 1_000_000
    )
}

/// Which way a measured flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Server → client: router B sends over the links (what a person
    /// watching a download sees).
    #[default]
    Download,
    /// Client → server: router A sends over the links.
    Upload,
}

impl Direction {
    /// "server → client" or "client → server".
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::Download => "server → client",
            Direction::Upload => "client → server",
        }
    }

    /// "download" or "upload".
    pub fn name(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }

    /// Whether iperf3 runs reversed (`-R`: the server sends).
    fn iperf_reverse(self) -> bool {
        self == Direction::Download
    }
}

/// The aggregation figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Aggregate {
    /// Which way every flow went.
    #[serde(default)]
    pub direction: Direction,
    /// Seconds each flow was measured (after one second of slow start).
    pub secs: f64,
    /// Each link alone, one TCP flow, Mbit/s.
    pub per_link: Vec<f64>,
    /// Their sum: what the links can carry.
    pub limit: f64,
    /// One flow server → client through the bridge, Mbit/s.
    pub bridge: f64,
    /// `bridge` as a percentage of `limit`.
    pub percent_of_limit: f64,
    /// The bridge flow over time.
    pub series: Series,
}

/// Runs one iperf3 client in `node` to completion while the links are
/// sampled; `during` runs meanwhile (given the flow's start) and returns
/// the events it caused.
fn iperf_recorded(
    topo: &Topology,
    node: Node,
    args: &[String],
    progress: &Progress,
    during: impl FnOnce(Instant) -> anyhow::Result<Vec<Event>>,
) -> anyhow::Result<(iperf::Report, Series)> {
    let secs: f64 = args
        .iter()
        .skip_while(|a| *a != "-t")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(10.0);
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    let started = Instant::now();
    let client = topo.spawn(node, &mut cmd)?;
    let (events, links) = measure::record(topo, started, None, progress, || {
        let events = during(started)?;
        client.wait_exit(Duration::from_secs_f64(secs + 20.0))?;
        Ok(events)
    })?;
    let out = std::fs::read_to_string(client.stdout_path()).context("iperf3 output")?;
    let report = iperf::parse_report(&out)
        .with_context(|| format!("iperf3 in {node:?}: {}", client.output_text()))?;
    let series = Series {
        goodput: report.intervals.clone(),
        links,
        events,
    };
    Ok((report, series))
}

/// iperf3 client arguments for link `link` alone: from router A, bound to
/// its address on the link, to router B's (`-R`: router B sends), `secs`
/// long, 1 s intervals; `extra` appended.
pub fn link_alone_args(topo: &Topology, link: usize, secs: f64, extra: &[&str]) -> Vec<String> {
    link_alone_args_in(topo, link, secs, Direction::Download, extra)
}

/// [`link_alone_args`] in `direction` (upload: router A sends).
pub fn link_alone_args_in(
    topo: &Topology,
    link: usize,
    secs: f64,
    direction: Direction,
    extra: &[&str],
) -> Vec<String> {
    let bind = topo.ra_link_addr(link, false).to_string();
    let mut more = vec!["-B", bind.as_str()];
    more.extend_from_slice(extra);
    iperf::client_args(
        topo.rb_link_addr(link, false),
        secs,
        1.0,
        direction.iperf_reverse(),
        &more,
    )
}

/// Each link alone (router B → router A on that link's addresses), then one
/// flow server → client through the bridge, each for `secs` after a first
/// second left out (slow start).
pub fn aggregate(lab: &Lab, secs: f64, progress: &Progress) -> anyhow::Result<Aggregate> {
    aggregate_in(lab, secs, Direction::Download, progress)
}

/// [`aggregate`] with every flow going `direction` (the links alone too).
pub fn aggregate_in(
    lab: &Lab,
    secs: f64,
    direction: Direction,
    progress: &Progress,
) -> anyhow::Result<Aggregate> {
    let topo = &lab.topo;
    let mut per_link = Vec::new();
    for link in 0..topo.link_count() {
        progress.phase(&format!("aggregate: link {link} alone, {secs} s"));
        let name = format!("iperf3-link{link}");
        let _server =
            iperf::start_server(topo, Node::RouterB, topo.rb_link_addr(link, false), &name)?;
        // Slow start left out as for the bridge flow: over a delayed link
        // it would otherwise lower the limit.
        let args = link_alone_args_in(topo, link, secs, direction, &["-O", "1"]);
        let (report, _) = iperf_recorded(topo, Node::RouterA, &args, progress, |_| Ok(vec![]))?;
        per_link.push(report.received_mbit_per_s);
    }
    progress.phase(&format!(
        "aggregate: one flow through mpbridge, 1 s slow start + {secs} s"
    ));
    let args = iperf::client_args(
        topo.server_addr(false),
        secs,
        0.1,
        direction.iperf_reverse(),
        &["-O", "1"],
    );
    let (report, series) = iperf_recorded(topo, Node::Client, &args, progress, |_| Ok(vec![]))?;
    let limit: f64 = per_link.iter().sum();
    let bridge = report.received_mbit_per_s;
    Ok(Aggregate {
        direction,
        secs,
        per_link,
        limit,
        bridge,
        percent_of_limit: if limit > 0.0 {
            100.0 * bridge / limit
        } else {
            0.0
        },
        series,
    })
}

/// How a link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The interface goes down on router A.
    Down,
    /// Every packet on the link is dropped; the interface stays up.
    Blackhole,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Down => "down",
            Failure::Blackhole => "blackhole",
        }
    }

    /// "down", "black-holed": what the link is while failed.
    pub fn state(self) -> &'static str {
        match self {
            Failure::Down => "down",
            Failure::Blackhole => "black-holed",
        }
    }

    fn apply(self, topo: &Topology, link: usize, failed: bool) -> anyhow::Result<()> {
        match (self, failed) {
            (Failure::Down, true) => topo.link_down(link),
            (Failure::Down, false) => topo.link_up(link),
            (Failure::Blackhole, on) => topo.blackhole(link, on),
        }
    }
}

/// One link failing for a while: `link` fails (`failure`) `at` seconds into
/// the flow and is restored at `restore_at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Flap {
    pub link: usize,
    pub failure: Failure,
    pub at: f64,
    pub restore_at: f64,
}

/// Flaps the links in turn until `until` seconds: link `k mod N` fails at
/// `first_at + k·(down_for + gap)` for `down_for` seconds, `down` on the
/// first round over the links, `blackhole` on the second, and so on. With
/// one link there is nothing to fail over to, so no flaps.
pub fn flap_cycle(links: usize, first_at: f64, down_for: f64, gap: f64, until: f64) -> Vec<Flap> {
    if links < 2 {
        return Vec::new();
    }
    (0..)
        .map(|k: usize| {
            let at = first_at + k as f64 * (down_for + gap);
            let failure = if (k / links) % 2 == 0 {
                Failure::Down
            } else {
                Failure::Blackhole
            };
            Flap {
                link: k % links,
                failure,
                at,
                restore_at: at + down_for,
            }
        })
        .take_while(|f| f.at < until)
        .collect()
}

/// Applies `flaps` on time (relative to `started`) until they are all done
/// or `done()` says the flow ended; then restores whatever is still failed.
/// Returns what was applied, when.
fn run_flaps(
    topo: &Topology,
    started: Instant,
    flaps: &[Flap],
    done: &dyn Fn() -> bool,
    progress: &Progress,
) -> anyhow::Result<Vec<Event>> {
    let mut plan: Vec<(f64, Flap, bool)> = flaps
        .iter()
        .flat_map(|f| [(f.at, *f, false), (f.restore_at, *f, true)])
        .collect();
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut events = Vec::new();
    let mut failed: Vec<Flap> = Vec::new();
    let apply = |flap: Flap, restored: bool, events: &mut Vec<Event>| {
        let now = || (started.elapsed().as_secs_f64(), unix_now());
        let began = now();
        flap.failure.apply(topo, flap.link, !restored)?;
        let (t, wall) = if restored { now() } else { began };
        events.push(Event {
            t,
            link: flap.link,
            failure: flap.failure,
            restored,
            unix: Some(wall),
        });
        anyhow::Ok(())
    };
    let note = |failed: &[Flap]| {
        let what: Vec<String> = failed
            .iter()
            .map(|f| format!("link {} {}", f.link, f.failure.state()))
            .collect();
        progress.note(&what.join(", "));
    };
    for (t, flap, restored) in plan {
        let wait = Duration::from_secs_f64(t).saturating_sub(started.elapsed());
        if wait_until(wait, done) {
            break;
        }
        apply(flap, restored, &mut events)?;
        if restored {
            failed.retain(|f| f != &flap);
        } else {
            failed.push(flap);
        }
        note(&failed);
    }
    for flap in failed.drain(..) {
        apply(flap, true, &mut events)?;
    }
    note(&failed);
    Ok(events)
}

/// What a failover run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct FailoverPlan {
    pub failure: Failure,
    pub link: usize,
    /// Which way the flow goes: a download has router B reinject what the
    /// failed link lost, an upload router A.
    #[serde(default)]
    pub direction: Direction,
    /// When the link fails, seconds into the flow (T).
    pub fail_at: f64,
    /// When it comes back (T2).
    pub restore_at: f64,
    /// How long the flow runs.
    pub secs: f64,
}

impl FailoverPlan {
    /// Checks the timing against a topology of `links` links: one clear
    /// sentence per problem.
    pub fn validate(&self, links: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.link < links,
            "--link {}: there are only {links} link(s), numbered from 0",
            self.link
        );
        anyhow::ensure!(
            links >= 2,
            "failover needs at least two links (give e.g. --links 50,50)"
        );
        let (t, t2, d) = (self.fail_at, self.restore_at, self.secs);
        anyhow::ensure!(
            t.is_finite() && t2.is_finite() && d.is_finite() && t >= 1.0 && t2 >= t + 0.5 && d >= t2 + 1.0 && d <= 600.0,
            "failover timing --fail-at {t} --restore-at {t2} --duration {d} does not fit: \
             give 1 ≤ fail-at, fail-at + 0.5 ≤ restore-at, restore-at + 1 ≤ duration ≤ 600 (seconds)"
        );
        anyhow::ensure!(
            d.fract() == 0.0,
            "--duration {d}: iperf3 takes whole seconds"
        );
        Ok(())
    }
}

/// The failover figures of one run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Failover {
    pub plan: FailoverPlan,
    /// Longest time the receiving application got no byte at all, from the
    /// failure on, in a silence that began before the restore, seconds (to
    /// the millisecond).
    pub longest_stall: f64,
    /// When that silence began, seconds after the failure (negative: the
    /// last byte before it came before the failure).
    #[serde(default)]
    pub stall_began: f64,
    /// Longest time from the failure on with goodput below a tenth of the
    /// goodput before it, seconds (100 ms steps): the stall as a person
    /// sees it, when a trickle still arrives.
    pub longest_dip: f64,
    /// Mean goodput before the failure (after the first second), Mbit/s.
    pub before_mbit: f64,
    /// Mean goodput while the link was failed, leaving out the first second
    /// (or half the window if shorter): what the surviving links carry.
    pub survivors_mbit: f64,
    /// Mean goodput from one second after the restore to the end, Mbit/s.
    pub after_mbit: f64,
    /// Seconds after the restore until the restored link carried traffic
    /// again for the same connection; `None` if it did not within the run.
    pub regained_after: Option<f64>,
    /// Bytes the receiver got over the whole run.
    pub received_bytes: u64,
    /// Every silence of 50 ms or more at the receiver, for a look at what
    /// else stalled the flow (a restore, the machine's load).
    #[serde(default)]
    pub silences: Vec<Gap>,
    pub series: Series,
}

/// One long flow through the bridge while one link fails and comes back
/// as `plan` says.
pub fn failover(lab: &Lab, plan: &FailoverPlan, progress: &Progress) -> anyhow::Result<Failover> {
    failover_in(&lab.topo, plan, progress)
}

/// [`failover`] in `topo` through whatever proxy diverts the client's TCP
/// there (the benchmarks run it for mpbridge and for the peer).
pub fn failover_in(
    topo: &Topology,
    plan: &FailoverPlan,
    progress: &Progress,
) -> anyhow::Result<Failover> {
    plan.validate(topo.link_count())?;
    progress.phase(&format!(
        "failover: link {} {} at {} s, back at {} s, {} s flow {}",
        plan.link,
        plan.failure.state(),
        plan.fail_at,
        plan.restore_at,
        plan.secs,
        plan.direction.arrow()
    ));
    let flap = Flap {
        link: plan.link,
        failure: plan.failure,
        at: plan.fail_at,
        restore_at: plan.restore_at,
    };
    let flow = Flow::connect(topo, plan.direction)?;
    let received = AtomicU64::new(0);
    let started = Instant::now();
    let ((got, events), links) = measure::record(topo, started, Some(&received), progress, || {
        flow.run(started, plan.secs, &received, || {
            run_flaps(topo, started, &[flap], &|| false, progress)
        })
    })?;
    let ivs = &got.intervals;
    // The failure as applied, not as planned (the lab's own commands take
    // a few milliseconds).
    let failed = events
        .iter()
        .find(|e| !e.restored)
        .map_or(plan.fail_at, |e| e.t);
    let restored = events
        .iter()
        .find(|e| e.restored)
        .map_or(plan.restore_at, |e| e.t);
    let (t, t2) = (plan.fail_at, plan.restore_at);
    let settle = (0.5 * (t2 - t)).min(1.0);
    let before_mbit = iperf::mean_mbit(ivs, 1.0_f64.min(t / 2.0), t);
    let (longest_stall, stall_began) = got.longest_gap_within(failed, restored);
    let regained_after = match plan.direction {
        Direction::Download => measure::regained(&links, plan.link, restored),
        Direction::Upload => regained_sending(&links, plan.link, restored),
    };
    Ok(Failover {
        plan: *plan,
        longest_stall,
        stall_began: stall_began - failed,
        longest_dip: iperf::longest_below(ivs, t, before_mbit / 10.0),
        before_mbit,
        survivors_mbit: iperf::mean_mbit(ivs, t + settle, t2),
        after_mbit: iperf::mean_mbit(ivs, t2 + 1.0, plan.secs),
        regained_after,
        received_bytes: got.bytes,
        silences: got.gaps_over(0.05),
        series: Series {
            goodput: got.intervals,
            links,
            events,
        },
    })
}

/// First time after `restore_at` at which router A sent more than 1 Mbit/s
/// over a sample period by `link`, relative to `restore_at`: when the
/// restored link carried an upload again. The interface counter is right
/// for sending: a black hole drops in postrouting, before it counts.
fn regained_sending(samples: &[LinkSample], link: usize, restore_at: f64) -> Option<f64> {
    samples.windows(2).find_map(|w| {
        let (a, b) = (&w[0], &w[1]);
        let bytes = b.tx_bytes.get(link)?.saturating_sub(*a.tx_bytes.get(link)?);
        let mbit = bytes as f64 * 8.0 / (b.t - a.t).max(1e-3) / 1e6;
        (a.t + 1e-6 >= restore_at && mbit > 1.0).then_some(b.t - restore_at)
    })
}

/// What the daemons' probes decided during a run, read from their logs:
/// a healthy link taken out of service is a false alarm (a flap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verdicts {
    /// Times router A's probes took a link down.
    pub local_downs: usize,
    /// Times router B's view of the arriving probes took a link down.
    pub remote_downs: usize,
    /// Times a link's probes were lost while every other link's were too,
    /// and the link was kept (both daemons' logs).
    pub held: usize,
    /// Times a daemon found itself held up long enough to have named a link
    /// (three probe intervals), which then counted in no probe's window
    /// (both daemons' logs).
    #[serde(default)]
    pub held_up: usize,
}

impl Verdicts {
    /// Counts the verdict lines in the local's and the remote's logs.
    pub fn from_logs(local: &str, remote: &str) -> Verdicts {
        let downs = |log: &str| {
            log.lines()
                .filter(|l| {
                    l.contains("probes changed the link's state") && l.contains("state=\"down\"")
                })
                .count()
        };
        let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
        let both = |what: &str| count(local, what) + count(remote, what);
        Verdicts {
            local_downs: downs(local),
            remote_downs: downs(remote),
            held: both("probes lost, but on every other link too"),
            held_up: both("held up for"),
        }
    }
}

/// What an integrity run is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct IntegrityPlan {
    /// Bytes sent each way.
    pub bytes: u64,
    /// Link failures during the transfer (those not yet begun when it ends
    /// are skipped).
    pub flaps: Vec<Flap>,
}

/// The integrity figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Integrity {
    pub plan: IntegrityPlan,
    /// Counts and SHA-256 of both directions.
    pub outcome: transfer::Outcome,
    /// Whether both directions arrived whole and unchanged.
    pub intact: bool,
    /// How long the transfer took, seconds.
    pub seconds: f64,
    /// Mean goodput server → client, Mbit/s.
    pub mean_mbit: f64,
    /// Longest time the client received nothing, seconds (100 ms resolution).
    pub longest_stall: f64,
    /// For each restore that happened: the link, and seconds until it
    /// carried traffic again for the connection (`None`: not before the
    /// transfer ended).
    pub regained_after: Vec<(usize, Option<f64>)>,
    pub series: Series,
}

/// A transfer of `plan.bytes` each way over one connection through the
/// bridge while the links flap as planned; checks SHA-256 end to end. A
/// broken connection is an error.
pub fn integrity(
    lab: &Lab,
    plan: &IntegrityPlan,
    progress: &Progress,
) -> anyhow::Result<Integrity> {
    let topo = &lab.topo;
    for flap in &plan.flaps {
        anyhow::ensure!(
            flap.link < topo.link_count() && flap.restore_at > flap.at,
            "bad flap {flap:?} for {} link(s)",
            topo.link_count()
        );
    }
    progress.phase(&format!(
        "integrity: {} MB each way over one connection, {} planned link flap(s)",
        plan.bytes as f64 / 1e6,
        plan.flaps.len()
    ));
    let server = transfer::Server::bind(topo)?;
    let client_rx = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let started = Instant::now();
    let ((outcome, seconds, events), links) =
        measure::record(topo, started, Some(&client_rx), progress, || {
            std::thread::scope(|scope| {
                let transfer = scope.spawn(|| {
                    let result = transfer::run(topo, server, plan.bytes, &client_rx);
                    let seconds = started.elapsed().as_secs_f64();
                    finished.store(true, Ordering::Relaxed);
                    result.map(|o| (o, seconds))
                });
                let events = run_flaps(
                    topo,
                    started,
                    &plan.flaps,
                    &|| finished.load(Ordering::Relaxed),
                    progress,
                );
                let result = transfer
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                let (outcome, seconds) = result.with_context(|| {
                    format!(
                        "the connection broke during the transfer, {} s in",
                        started.elapsed().as_secs()
                    )
                })?;
                Ok((outcome, seconds, events?))
            })
        })?;
    let goodput = measure::app_intervals(&links);
    let regained_after = events
        .iter()
        .filter(|e| e.restored)
        .map(|e| (e.link, measure::regained(&links, e.link, e.t)))
        .collect();
    Ok(Integrity {
        plan: plan.clone(),
        intact: outcome.intact(),
        mean_mbit: plan.bytes as f64 * 8.0 / seconds.max(1e-3) / 1e6,
        longest_stall: iperf::longest_stall(&goodput, 0.0),
        regained_after,
        outcome,
        seconds,
        series: Series {
            goodput,
            links,
            events,
        },
    })
}

/// Unshaped throughput: plain routing against the bridge, and what the
/// daemons spent in CPU for it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Throughput {
    /// One flow client → server by plain routing (no bridge), Mbit/s.
    pub routing_up: f64,
    /// One flow server → client by plain routing, Mbit/s.
    pub routing_down: f64,
    pub bridge_up: f64,
    pub bridge_down: f64,
    /// CPU seconds of `mpbridge local` per GB it relayed.
    pub local_cpu_s_per_gb: f64,
    /// CPU seconds of `mpbridge remote` per GB it relayed.
    pub remote_cpu_s_per_gb: f64,
}

/// Both directions through the bridge, then the same by plain routing.
pub fn throughput(lab: &Lab, secs: f64, progress: &Progress) -> anyhow::Result<Throughput> {
    let topo = &lab.topo;
    let server = topo.server_addr(false);
    let cpu = |p: &Proc| cpu_seconds(p.pid()).unwrap_or(0.0);
    // One flow each way (client → server, then server → client).
    let both_ways = |path: &str| -> anyhow::Result<(iperf::Report, iperf::Report)> {
        let run = |reverse: bool, what: &str| {
            progress.phase(&format!("{path}, {what}"));
            let args = iperf::client_args(server, secs, 1.0, reverse, &[]);
            iperf::run_client(topo, Node::Client, &args)
        };
        Ok((
            run(false, "client → server")?,
            run(true, "server → client")?,
        ))
    };
    let (local0, remote0) = (cpu(&lab.bridge.local), cpu(&lab.bridge.remote));
    let (up, down) = both_ways("bridge")?;
    let (local1, remote1) = (cpu(&lab.bridge.local), cpu(&lab.bridge.remote));
    let gb = (up.received_bytes + down.received_bytes) as f64 / 1e9;

    // The server LAN bypassed (SIGHUP): client TCP to it takes plain routing.
    bridge::add_bypass(topo, &lab.bridge.local, &format!("{server}/32"))?;
    let (r_up, r_down) = both_ways("plain routing")?;
    Ok(Throughput {
        routing_up: r_up.received_mbit_per_s,
        routing_down: r_down.received_mbit_per_s,
        bridge_up: up.received_mbit_per_s,
        bridge_down: down.received_mbit_per_s,
        local_cpu_s_per_gb: (local1 - local0) / gb.max(1e-9),
        remote_cpu_s_per_gb: (remote1 - remote0) / gb.max(1e-9),
    })
}

/// User + system CPU seconds a process has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after = stat.rsplit_once(')').context("unexpected /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Ok(ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_is_written_as_the_daemons_logs_write_it() {
        // 1796538390 s is 2026-12-06 06:26:30 UTC.
        assert_eq!(utc_time_of_day(1_796_538_390.123_456), "06:26:30.123456");
        assert_eq!(utc_time_of_day(0.0), "00:00:00.000000");
        assert!(unix_now() > 1_796_538_390.0);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn flaps_take_the_links_in_turn_down_then_blackhole() {
        let flaps = flap_cycle(2, 1.0, 1.5, 1.0, 10.0);
        let got: Vec<(usize, Failure, f64)> =
            flaps.iter().map(|f| (f.link, f.failure, f.at)).collect();
        assert_eq!(
            got,
            [
                (0, Failure::Down, 1.0),
                (1, Failure::Down, 3.5),
                (0, Failure::Blackhole, 6.0),
                (1, Failure::Blackhole, 8.5),
            ]
        );
        assert!(flaps
            .iter()
            .all(|f| (f.restore_at - f.at - 1.5).abs() < 1e-9));
        assert!(flap_cycle(1, 1.0, 1.5, 1.0, 10.0).is_empty());
    }

    #[test]
    fn failover_timing_that_cannot_work_is_refused() {
        let ok = FailoverPlan {
            failure: Failure::Down,
            link: 1,
            direction: Direction::Download,
            fail_at: 3.0,
            restore_at: 6.0,
            secs: 10.0,
        };
        assert!(ok.validate(2).is_ok());
        let err = FailoverPlan { link: 2, ..ok }.validate(2).unwrap_err();
        assert!(err.to_string().contains("only 2 link(s)"), "{err}");
        assert!(ok.validate(1).is_err());
        for (t, t2, d) in [
            (6.0, 3.0, 10.0),
            (3.0, 6.0, 6.5),
            (0.0, 6.0, 10.0),
            (3.0, 6.0, 9.5),
        ] {
            let plan = FailoverPlan {
                fail_at: t,
                restore_at: t2,
                secs: d,
                ..ok
            };
            assert!(plan.validate(2).is_err(), "{t} {t2} {d} accepted");
        }
    }

    #[test]
    fn verdicts_are_counted_from_the_daemons_logs() {
        let local = "2026-12-05T10:47:29Z INFO mpbridge::paths::planner: probes changed the link's state link=wan0 state=\"down\"\n\
                     2026-12-05T10:47:31Z INFO mpbridge::paths::planner: probes changed the link's state link=wan0 state=\"up\"\n\
                     2026-12-05T10:47:32Z INFO mpbridge::paths::planner: probes lost, but on every other link too: kept\n";
        let remote = "x probes changed the link's state link=wan1 state=\"down\"\n\
                      y probes changed the link's state link=wan0 state=\"down\"\n\
                      z INFO mpbridge::paths::planner: held up for 212 ms: not counted in the probes' windows\n";
        assert_eq!(
            Verdicts::from_logs(local, remote),
            Verdicts {
                local_downs: 1,
                remote_downs: 2,
                held: 1,
                held_up: 1,
            }
        );
        assert_eq!(Verdicts::from_logs("", ""), Verdicts::default());
    }
}
