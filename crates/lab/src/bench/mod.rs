//! `mpbridge-lab bench`: mpbridge side by side with the peer
//! (shadowsocks-rust with `--mptcp`) and the physical limit, in the same
//! lab, the subjects alternating round by round; medians and spread.
//!
//! - [`peer`]: installing and running the peer, its interception.
//! - [`rr`]: short request/response connections and idle connections.
//! - [`conns`], [`slow`]: connections at 1/4/64 clients, 10,000 held
//!   open, slow readers and the routers' socket memory (issue 16).
//! - [`unequal`]: case 11, one flow over the issue's unequal links.
//! - [`doc`]: docs/BENCHMARKS.md and its SVG.

pub mod conns;
pub mod doc;
pub mod peer;
pub mod rr;
pub mod slow;
pub mod unequal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::bridge::{Bridge, BridgeOptions};
use crate::iperf;
use crate::measure::Progress;
use crate::scenario::{self, FailoverPlan, Failure};
use crate::{LinkSpec, Node, Proc, Topology, TopologySpec};

/// How long a stopping proxy gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A benchmark case, numbered as in the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    /// 2, 3 and 4 equal links at 50 Mbit/s, one flow and 8 flows.
    Equal,
    /// Links of 100, 50 and 20 Mbit/s.
    Mixed,
    /// Unshaped links: goodput and CPU seconds per GB.
    Unshaped,
    /// Short connections per second.
    Setup,
    /// Memory with 1,000 idle connections.
    Idle,
    /// Stall and recovery when a link fails.
    Failover,
    /// Binary sizes.
    Size,
    /// Short connections at 1, 4 and 64 clients ([`conns`]).
    Connections,
    /// 1,000 and 10,000 connections held open ([`conns`]).
    Held,
    /// Slow readers: the routers' socket memory ([`slow`]).
    Slow,
    /// One flow over equal, unequal, delayed and Wi-Fi-like links, both ways.
    Unequal,
}

impl Case {
    pub const ALL: [Case; 11] = [
        Case::Equal,
        Case::Mixed,
        Case::Unshaped,
        Case::Setup,
        Case::Idle,
        Case::Failover,
        Case::Size,
        Case::Connections,
        Case::Held,
        Case::Slow,
        Case::Unequal,
    ];

    pub fn number(self) -> usize {
        Case::ALL.iter().position(|c| *c == self).unwrap_or(0) + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            Case::Equal => "equal",
            Case::Mixed => "mixed",
            Case::Unshaped => "unshaped",
            Case::Setup => "setup",
            Case::Idle => "idle",
            Case::Failover => "failover",
            Case::Size => "size",
            Case::Connections => "connections",
            Case::Held => "held",
            Case::Slow => "slow",
            Case::Unequal => "unequal",
        }
    }

    /// Parses `--cases`: numbers (1–11) or names, comma-separated.
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<Case>> {
        let mut cases = Vec::new();
        for item in text.split(',').map(str::trim) {
            let case = Case::ALL
                .iter()
                .copied()
                .find(|c| item == c.name() || item == c.number().to_string())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--cases {text:?}: {item:?} is not a case; give numbers 1-{} or names ({}), \
                         comma-separated",
                        Case::ALL.len(),
                        Case::ALL.map(Case::name).join(", ")
                    )
                })?;
            if !cases.contains(&case) {
                cases.push(case);
            }
        }
        cases.sort();
        Ok(cases)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub cases: Vec<Case>,
    /// Short flows, one round, fewer topologies: a smoke test of the harness.
    pub quick: bool,
    /// Rounds of alternation (each subject once per round).
    pub rounds: usize,
    /// The `mpbridge` binary the daemons run.
    pub mpbridge: PathBuf,
    /// The router build of `mpbridge` whose size case 7 reports.
    pub mpbridge_router: Option<PathBuf>,
    /// The peer; `None` runs mpbridge and the limit only.
    pub peer: Option<peer::Install>,
    /// Connections held open in case 5.
    pub idle_connections: usize,
    /// Extra lines for the `[local]` section of `mpbridge local` (to try a
    /// setting; the report names them).
    pub local_extra: String,
    /// The equal-link counts of case 1 (default 2, 3, 4; quick 2).
    pub equal: Option<Vec<usize>>,
    /// Extra lines for the `[remote]` section of `mpbridge remote`.
    pub remote_extra: String,
    /// Extra lines for router A's `[paths]` section (case 11's variants'
    /// `paths.KEY = VALUE` lines).
    pub local_paths: String,
    /// Extra lines for both daemons' `[probe]` section when they probe
    /// (variants' `probe.KEY = VALUE` lines).
    pub probe_lines: String,
    /// Case 11: every link rate is multiplied by this (1: as named).
    pub scale: f64,
    /// Case 11: why the rates were scaled (empty when not).
    pub scale_reason: String,
    /// Cases 6 and 11: mpbridge configurations measured beside its defaults.
    pub variants: Vec<unequal::Variant>,
    /// Case 11: snapshot both routers (ss, nstat) in the first round.
    pub diagnose: bool,
    /// Case 11: which rows of [`unequal::CASES`] (1-based; empty: all).
    pub unequal: Vec<usize>,
    /// Case 11: the report so far is written here after each row.
    pub checkpoint: Option<PathBuf>,
    /// Case 11: bridged flows of this many seconds (after the omitted
    /// first), each measured over its second half: long enough for router
    /// A's slow-links policy to judge them (it starts its first trial 8 s
    /// into a load and decides about 4 s later), which the usual 6 s flows
    /// never are. The limit keeps the usual flows.
    pub long: Option<f64>,
    /// Case 6: the links it runs on (link 0 fails); default
    /// [`default_failover_links`].
    pub failover_links: Vec<LinkSpec>,
}

/// Case 6's links unless `--failover-links` says otherwise: 2 × 50 Mbit/s,
/// no delay (shared with case 1's two links).
pub fn default_failover_links() -> Vec<LinkSpec> {
    vec![LinkSpec::shaped(50); 2]
}

/// Parses `--failover-links` (the `--links` syntax of `run`): at least two
/// links, link 0 the one that fails.
pub fn parse_failover_links(text: &str) -> anyhow::Result<Vec<LinkSpec>> {
    // Its errors name `--links`: here the option is another.
    let links = crate::checks::parse_links(text).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            format!("{e:#}").replacen("--links ", "--failover-links ", 1)
        )
    })?;
    anyhow::ensure!(
        links.len() >= 2,
        "--failover-links {text:?}: give at least two links (link 0 fails, the others carry on), \
         e.g. 10@5ms,10@30ms"
    );
    Ok(links)
}

/// A full run's settings, as `mpbridge-lab bench` has them without options
/// (outside the VM), with the `mpbridge` found on the `PATH` and no peer:
/// a base for tests to change what they need.
impl Default for Options {
    fn default() -> Options {
        Options {
            cases: Case::ALL.to_vec(),
            quick: false,
            rounds: 3,
            mpbridge: "mpbridge".into(),
            mpbridge_router: None,
            peer: None,
            idle_connections: 1000,
            local_extra: String::new(),
            equal: None,
            remote_extra: String::new(),
            local_paths: String::new(),
            probe_lines: String::new(),
            scale: 1.0,
            scale_reason: String::new(),
            variants: Vec::new(),
            diagnose: false,
            unequal: Vec::new(),
            checkpoint: None,
            long: None,
            failover_links: default_failover_links(),
        }
    }
}

impl Options {
    /// Seconds each iperf3 flow is measured (after 1 s left out).
    fn flow_secs(&self) -> f64 {
        if self.quick {
            2.0
        } else {
            6.0
        }
    }

    fn has(&self, case: Case) -> bool {
        self.cases.contains(&case)
    }

    /// The equal-link counts of case 1.
    pub fn equal_links(&self) -> Vec<usize> {
        if let Some(counts) = &self.equal {
            return counts.clone();
        }
        if self.quick {
            vec![2]
        } else {
            vec![2, 3, 4]
        }
    }

    fn failover_plan(&self, failure: Failure, direction: scenario::Direction) -> FailoverPlan {
        let (fail_at, restore_at, secs) = if self.quick {
            (2.0, 3.5, 5.0)
        } else {
            (3.0, 6.0, 10.0)
        };
        FailoverPlan {
            failure,
            link: 0,
            direction,
            fail_at,
            restore_at,
            secs,
        }
    }
}

/// Who carries the client's traffic in a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// No proxy: each link alone (shaped) or plain routing (unshaped).
    Limit,
    Mpbridge,
    Peer,
}

/// Repeated measurements of one figure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figure {
    pub samples: Vec<f64>,
}

impl Figure {
    pub fn push(&mut self, v: f64) {
        self.samples.push(v);
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s: Vec<f64> = self
            .samples
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The median (mean of the middle two for an even count); NaN if empty.
    pub fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// Case 1 or 2 on one set of links: the limit and both proxies, Mbit/s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shaped {
    pub case: Case,
    /// Link rates, Mbit/s.
    pub links: Vec<u32>,
    /// Each link alone (one flow per link, all at once), summed.
    pub limit: Figure,
    pub per_flows: Vec<FlowFigures>,
}

/// Goodput through each proxy with `flows` parallel TCP flows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowFigures {
    pub flows: u32,
    pub mpbridge: Figure,
    pub peer: Figure,
}

/// Case 3: unshaped links.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unshaped {
    pub links: usize,
    /// Client → server, then server → client (one flow each), Mbit/s.
    pub directions: Vec<Direction>,
    /// CPU seconds per GB relayed (both directions) of each proxy process.
    pub cpu: Vec<Cpu>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Direction {
    pub name: String,
    /// Plain routing.
    pub limit: Figure,
    pub mpbridge: Figure,
    pub peer: Figure,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cpu {
    pub subject: Subject,
    pub process: String,
    pub s_per_gb: Figure,
}

/// Case 4: short connections through each path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    pub workers: usize,
    pub secs: f64,
    pub rows: Vec<SetupRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupRow {
    /// `Limit` is the direct path (plain routing).
    pub subject: Subject,
    pub per_sec: Figure,
    pub median_ms: Figure,
    pub p90_ms: Figure,
    /// CPU time of the proxy's processes (both routers) per exchange, µs.
    pub cpu_us_per_conn: Figure,
    pub failed: u64,
    pub runs: Vec<rr::RrOutcome>,
}

/// Case 5: memory of each proxy process with idle connections open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idle {
    pub connections: usize,
    pub rows: Vec<MemRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemRow {
    pub subject: Subject,
    pub process: String,
    /// VmRSS just after start, KiB.
    pub rss_idle_kib: Figure,
    /// VmRSS with the connections open, KiB.
    pub rss_kib: Figure,
    /// Pss with the connections open, KiB.
    pub pss_kib: Figure,
}

/// Case 6: one kind of failure through one configuration, one way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverRow {
    pub failure: Failure,
    /// Download: router B reinjects what the failed link lost; upload:
    /// router A.
    #[serde(default)]
    pub direction: scenario::Direction,
    /// "mpbridge, probing", "mpbridge, kernel only", "peer, kernel only".
    pub subject: String,
    pub before_mbit: Figure,
    pub survivors_mbit: Figure,
    pub after_mbit: Figure,
    /// Longest time the receiving application got nothing, seconds (to the
    /// millisecond).
    pub stall_s: Figure,
    pub dip_s: Figure,
    /// Seconds until the restored link carried data again (runs where it did).
    pub regained_s: Figure,
    /// Runs in which it did not within the run.
    pub not_regained: usize,
}

/// Case 7.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Sizes {
    pub mpbridge_router: Option<u64>,
    pub sslocal: Option<u64>,
    pub sslocal_stripped: Option<u64>,
    pub ssserver: Option<u64>,
    pub ssserver_stripped: Option<u64>,
}

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            kernel: crate::exec::run("uname", &["-r"], None)
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Everything a bench run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub quick: bool,
    pub rounds: usize,
    pub cases: Vec<Case>,
    /// Extra `[local]` lines mpbridge ran with (empty: its defaults).
    pub local_extra: String,
    /// Case 6's links (empty in runs from before they could be chosen:
    /// 2 × 50 Mbit/s).
    #[serde(default)]
    pub failover_links: Vec<LinkSpec>,
    /// Why case 6 was not run (its links need netem, which the kernel
    /// lacks), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_skipped: Option<String>,
    /// Links with a fixed delay were delayed by the lab's delay line on
    /// this machine's kernel, not by netem ([`crate::delayline`]).
    #[serde(default)]
    pub delay_line: bool,
    /// `--variant`s: configurations measured beside mpbridge's defaults
    /// (cases 6 and 11), with their lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<unequal::Variant>,
    /// `/proc/loadavg` before and after: how quiet the machine was.
    pub load_before: String,
    pub load_after: String,
    pub peer: Option<peer::Install>,
    pub shaped: Vec<Shaped>,
    pub unshaped: Option<Unshaped>,
    pub setup: Option<Setup>,
    pub idle: Option<Idle>,
    pub failover: Vec<FailoverRow>,
    pub sizes: Option<Sizes>,
    /// Cases `connections`, `held` and `slow`.
    #[serde(default)]
    pub conns: Option<conns::ConnsReport>,
    #[serde(default)]
    pub unequal: Option<unequal::Unequal>,
    /// Measurements that failed (each left out of the medians), with why.
    pub failures: Vec<String>,
    pub wall_seconds: f64,
}

impl BenchReport {
    pub fn new(options: &Options, command: String) -> BenchReport {
        BenchReport {
            date: peer::utc_now(),
            command,
            machine: Machine::probe(),
            quick: options.quick,
            rounds: options.rounds,
            cases: options.cases.clone(),
            local_extra: options.local_extra.clone(),
            failover_links: options.failover_links.clone(),
            failover_skipped: None,
            delay_line: crate::delayline::preferred() && !crate::vm::inside(),
            variants: options.variants.clone(),
            load_before: peer::load_average(),
            load_after: String::new(),
            peer: options.peer.clone(),
            shaped: Vec::new(),
            unshaped: None,
            setup: None,
            idle: None,
            failover: Vec::new(),
            sizes: None,
            conns: None,
            unequal: None,
            failures: Vec::new(),
            wall_seconds: 0.0,
        }
    }
}

/// The topology in use, so that a signal handler can remove it.
static CURRENT: Mutex<Option<Arc<Topology>>> = Mutex::new(None);

/// Removes the topology a bench run is using, if any (for Ctrl-C).
pub fn teardown_current() {
    let current = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(topo) = current {
        topo.teardown();
    }
}

fn build(links: &[LinkSpec], progress: &Progress) -> anyhow::Result<Arc<Topology>> {
    progress.phase(&format!(
        "building the lab: {} link(s) of {} Mbit/s",
        links.len(),
        links
            .iter()
            .map(|l| if l.rate_mbit == 0 {
                "unshaped".to_string()
            } else {
                l.rate_mbit.to_string()
            })
            .collect::<Vec<_>>()
            .join(" + ")
    ));
    let topo = Arc::new(Topology::build(&TopologySpec {
        links: links.to_vec(),
    })?);
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&topo));
    Ok(topo)
}

fn release(topo: Arc<Topology>) {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner()).take();
    topo.teardown();
}

/// Runs every selected case, filling `report` as results come.
pub fn run(options: &Options, progress: &Progress, report: &mut BenchReport) -> anyhow::Result<()> {
    let started = Instant::now();
    anyhow::ensure!(options.rounds >= 1, "--rounds must be at least 1");
    let result = run_cases(options, progress, report);
    report.load_after = peer::load_average();
    report.wall_seconds = started.elapsed().as_secs_f64();
    result
}

fn run_cases(
    options: &Options,
    progress: &Progress,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    if options.has(Case::Size) {
        report.sizes = Some(sizes(options));
    }
    // Case 6 on its default links shares case 1's two links; on others it
    // builds its own.
    let failover_on_equal = options.failover_links == default_failover_links();
    let shaped_sets: Vec<(Case, Vec<u32>)> = {
        let mut sets = Vec::new();
        if options.has(Case::Equal) || (options.has(Case::Failover) && failover_on_equal) {
            let counts = options.equal_links();
            for &n in &counts {
                if n == 2 || options.has(Case::Equal) {
                    sets.push((Case::Equal, vec![50; n]));
                }
            }
            if !counts.contains(&2) && options.has(Case::Failover) && failover_on_equal {
                sets.push((Case::Equal, vec![50; 2]));
            }
        }
        if options.has(Case::Mixed) {
            sets.push((Case::Mixed, vec![100, 50, 20]));
        }
        sets
    };
    for (case, rates) in shaped_sets {
        let links: Vec<LinkSpec> = rates.iter().map(|&r| LinkSpec::shaped(r)).collect();
        let topo = build(&links, progress)?;
        let result = (|| {
            if options.has(case) {
                let figures = shaped(&topo, case, &rates, options, progress, &mut report.failures)?;
                report.shaped.push(figures);
            }
            if case == Case::Equal
                && rates.len() == 2
                && options.has(Case::Failover)
                && failover_on_equal
            {
                let mut save = checkpoint_failover(options, report);
                report.failover =
                    failover(&topo, options, progress, &mut report.failures, &mut save)?;
            }
            anyhow::Ok(())
        })();
        release(topo);
        result?;
    }
    if options.has(Case::Failover) && !failover_on_equal {
        let links = &options.failover_links;
        if links.iter().any(crate::shaping::needs_netem_here) && !crate::shaping::netem_available()
        {
            // As case 11's delayed links: listed as not run.
            report.failover_skipped = Some(format!(
                "its links ({}) need netem, which this kernel lacks (run with --vm)",
                failover_links_text(links)
            ));
        } else {
            let topo = build(links, progress)?;
            let mut save = checkpoint_failover(options, report);
            let result = failover(&topo, options, progress, &mut report.failures, &mut save);
            release(topo);
            report.failover = result?;
        }
    }
    if options.has(Case::Unshaped) || options.has(Case::Setup) || options.has(Case::Idle) {
        let topo = build(&[LinkSpec::UNSHAPED; 2], progress)?;
        let result = unshaped(&topo, options, progress, report);
        release(topo);
        result?;
    }
    if [Case::Connections, Case::Held, Case::Slow]
        .iter()
        .any(|c| options.has(*c))
    {
        let topo = build(&[LinkSpec::UNSHAPED; 2], progress)?;
        let mut conns = conns::ConnsReport::default();
        let result = conns::run(&topo, options, progress, &mut conns, &mut report.failures);
        report.conns = Some(conns);
        release(topo);
        result?;
    }
    if options.has(Case::Unequal) {
        let skeleton = report.clone();
        let unequal = report.unequal.insert(unequal::Unequal {
            scale: options.scale,
            scale_reason: options.scale_reason.clone(),
            long: options.long,
            rows: Vec::new(),
            skipped: Vec::new(),
        });
        // Each row is saved as it comes.
        let mut save = |u: &unequal::Unequal, failures: &[String]| {
            save_partial(options, &skeleton, failures, |r| {
                r.unequal = Some(u.clone())
            });
        };
        unequal::run(options, progress, &mut report.failures, unequal, &mut save)?;
    }
    Ok(())
}

/// Writes the report so far to `checkpoint` (`--json`), when asked:
/// `skeleton` (the report as it stood when the case began) with `fill`'s
/// figures and `failures`, so that a VM whose kernel panics keeps what it
/// measured (the TCG guest's kernel died in round 6 of 8 of case 6 once,
/// 2026-12-06).
fn save_partial(
    options: &Options,
    skeleton: &BenchReport,
    failures: &[String],
    fill: impl FnOnce(&mut BenchReport),
) {
    let Some(path) = &options.checkpoint else {
        return;
    };
    let mut partial = skeleton.clone();
    fill(&mut partial);
    partial.failures = failures.to_vec();
    partial.load_after = peer::load_average();
    if let Ok(text) = serde_json::to_string_pretty(&partial) {
        let _ = std::fs::write(path, text);
    }
}

/// What case 6 hands its rows to after each round: [`save_partial`].
fn checkpoint_failover<'a>(
    options: &'a Options,
    report: &BenchReport,
) -> impl FnMut(&[FailoverRow], &[String]) + 'a {
    let skeleton = report.clone();
    move |rows: &[FailoverRow], failures: &[String]| {
        save_partial(options, &skeleton, failures, |r| r.failover = rows.to_vec());
    }
}

/// The subjects of round `round`, the order reversed every other round so
/// that neither proxy always runs first (or after the other).
fn order(round: usize, subjects: &[Subject]) -> Vec<Subject> {
    let mut s = subjects.to_vec();
    if round % 2 == 1 {
        s.reverse();
    }
    s
}

fn subjects(options: &Options, with_limit: bool) -> Vec<Subject> {
    let mut s = Vec::new();
    if with_limit {
        s.push(Subject::Limit);
    }
    s.push(Subject::Mpbridge);
    if options.peer.is_some() {
        s.push(Subject::Peer);
    }
    s
}

/// A proxy running in a topology (or none: the limit).
enum Running {
    Nothing,
    Mpbridge(Bridge),
    Peer(peer::Peer),
}

impl Running {
    /// Starts `subject`; `probing` only matters for mpbridge.
    fn start(
        topo: &Topology,
        subject: Subject,
        probing: bool,
        options: &Options,
    ) -> anyhow::Result<Running> {
        Ok(match subject {
            Subject::Limit => Running::Nothing,
            Subject::Mpbridge => {
                let bridge_options = BridgeOptions {
                    local_extra: options.local_extra.clone(),
                    remote_extra: options.remote_extra.clone(),
                    local_paths: options.local_paths.clone(),
                    paths_extra: if probing {
                        match options.probe_lines.trim() {
                            "" => String::new(),
                            lines => format!("[probe]\n{lines}\n"),
                        }
                    } else {
                        "[probe]\nenabled = false\n".into()
                    },
                    ..BridgeOptions::default()
                };
                Running::Mpbridge(Bridge::start(topo, &options.mpbridge, &bridge_options)?)
            }
            Subject::Peer => {
                let install = options.peer.as_ref().context("the peer is not installed")?;
                Running::Peer(peer::Peer::start(topo, install, &options.mpbridge)?)
            }
        })
    }

    /// The proxy processes whose CPU and memory count.
    fn processes(&self) -> Vec<(&'static str, u32)> {
        match self {
            Running::Nothing => Vec::new(),
            Running::Mpbridge(b) => vec![
                ("mpbridge local", b.local.pid()),
                ("mpbridge remote", b.remote.pid()),
            ],
            Running::Peer(p) => p.processes(),
        }
    }

    fn logs(&self) -> String {
        match self {
            Running::Nothing => String::new(),
            Running::Mpbridge(b) => b.logs(),
            Running::Peer(p) => p.logs(),
        }
    }

    fn stop(self, topo: &Topology) {
        match self {
            Running::Nothing => {}
            Running::Mpbridge(b) => b.stop(STOP_GRACE),
            Running::Peer(p) => p.stop(topo, STOP_GRACE),
        }
    }

    /// Runs `f` with `subject` running, then stops it (also on error, whose
    /// message then carries the proxy's logs).
    fn with<T>(
        topo: &Topology,
        subject: Subject,
        probing: bool,
        options: &Options,
        f: impl FnOnce(&Running) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let running = Running::start(topo, subject, probing, options)?;
        let result = f(&running).map_err(|e| {
            let logs = running.logs();
            if logs.is_empty() {
                e
            } else {
                e.context(format!("while {subject:?} ran; its logs:\n{logs}"))
            }
        });
        running.stop(topo);
        result
    }
}

/// `f()`, or NaN (left out of medians) with the failure noted in `failures`
/// and on the terminal: one flow that breaks must not end a long run.
fn tolerate(
    failures: &mut Vec<String>,
    progress: &Progress,
    what: &str,
    f: impl FnOnce() -> anyhow::Result<f64>,
) -> f64 {
    match f() {
        Ok(v) => v,
        Err(e) => {
            let first = format!("{e:#}");
            let first = first.lines().next().unwrap_or("").to_string();
            progress.phase(&format!("FAILED, left out: {what}: {first}"));
            failures.push(format!("{what}: {first}"));
            f64::NAN
        }
    }
}

/// One iperf3 run from the client to the server through whatever is in the
/// way: `flows` parallel flows, `reverse` = server → client; 1 s left out.
/// Returns (Mbit/s, bytes received).
fn iperf_through(
    topo: &Topology,
    flows: u32,
    secs: f64,
    reverse: bool,
) -> anyhow::Result<(f64, u64)> {
    let parallel = flows.to_string();
    let args = iperf::client_args(
        topo.server_addr(false),
        secs,
        1.0,
        reverse,
        &["-O", "1", "-P", &parallel],
    );
    let r = iperf::run_client(topo, Node::Client, &args)?;
    Ok((r.received_mbit_per_s, r.received_bytes))
}

/// Every link alone at once: one flow per link from router B to router A
/// on that link's addresses; the sum, Mbit/s.
fn links_alone(topo: &Topology, secs: f64) -> anyhow::Result<f64> {
    let clients: Vec<Proc> = (0..topo.link_count())
        .map(|link| {
            let args = scenario::link_alone_args(topo, link, secs, &["-O", "1"]);
            let mut cmd = std::process::Command::new(&args[0]);
            cmd.args(&args[1..]);
            topo.spawn(Node::RouterA, &mut cmd)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut sum = 0.0;
    for client in &clients {
        client.wait_exit(Duration::from_secs_f64(secs + 20.0))?;
        let out = std::fs::read_to_string(client.stdout_path())?;
        let report = iperf::parse_report(&out)
            .with_context(|| format!("iperf3 on one link: {}", client.output_text()))?;
        sum += report.received_mbit_per_s;
    }
    Ok(sum)
}

/// Cases 1 and 2 on one topology.
fn shaped(
    topo: &Topology,
    case: Case,
    rates: &[u32],
    options: &Options,
    progress: &Progress,
    failures: &mut Vec<String>,
) -> anyhow::Result<Shaped> {
    let secs = options.flow_secs();
    let _servers: Vec<Proc> = (0..topo.link_count())
        .map(|link| {
            iperf::start_server(
                topo,
                Node::RouterB,
                topo.rb_link_addr(link, false),
                &format!("iperf3-link{link}"),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let _server =
        iperf::start_server(topo, Node::Server, topo.server_addr(false), "iperf3-server")?;
    let mut out = Shaped {
        case,
        links: rates.to_vec(),
        limit: Figure::default(),
        per_flows: [1, 8]
            .map(|flows| FlowFigures {
                flows,
                mpbridge: Figure::default(),
                peer: Figure::default(),
            })
            .to_vec(),
    };
    for round in 0..options.rounds {
        for subject in order(round, &subjects(options, true)) {
            progress.phase(&format!(
                "case {} ({}), round {}/{}: {subject:?}",
                case.number(),
                rates
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("+"),
                round + 1,
                options.rounds
            ));
            let label = format!(
                "case {} {rates:?} round {} {subject:?}",
                case.number(),
                round + 1
            );
            if subject == Subject::Limit {
                let mbit = tolerate(failures, progress, &label, || links_alone(topo, secs));
                out.limit.push(mbit);
                continue;
            }
            Running::with(topo, subject, true, options, |_| {
                for f in &mut out.per_flows {
                    let what = format!("{label}, {} flow(s)", f.flows);
                    let mbit = tolerate(failures, progress, &what, || {
                        Ok(iperf_through(topo, f.flows, secs, true)?.0)
                    });
                    match subject {
                        Subject::Mpbridge => f.mpbridge.push(mbit),
                        _ => f.peer.push(mbit),
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Cases 3, 4 and 5 on unshaped links, each subject started once per round.
fn unshaped(
    topo: &Topology,
    options: &Options,
    progress: &Progress,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    let secs = options.flow_secs();
    let _server =
        iperf::start_server(topo, Node::Server, topo.server_addr(false), "iperf3-server")?;
    let (setup_workers, setup_secs) = (4, if options.quick { 1.0 } else { 3.0 });
    let mut un = Unshaped {
        links: topo.link_count(),
        directions: ["client → server", "server → client"]
            .map(|name| Direction {
                name: name.into(),
                limit: Figure::default(),
                mpbridge: Figure::default(),
                peer: Figure::default(),
            })
            .to_vec(),
        cpu: Vec::new(),
    };
    let mut setup = Setup {
        workers: setup_workers,
        secs: setup_secs,
        rows: Vec::new(),
    };
    let mut idle = Idle {
        connections: options.idle_connections,
        rows: Vec::new(),
    };
    let mut session: u16 = 0;
    for round in 0..options.rounds {
        for subject in order(round, &subjects(options, true)) {
            session += 1;
            progress.phase(&format!(
                "cases 3-5 (unshaped), round {}/{}: {subject:?}",
                round + 1,
                options.rounds
            ));
            Running::with(topo, subject, true, options, |running| {
                let procs = running.processes();
                if options.has(Case::Idle) && subject != Subject::Limit {
                    let before: Vec<u64> =
                        procs.iter().map(|(_, pid)| memory_kib(*pid).0).collect();
                    let conns = rr::IdleConnections::open(topo, options.idle_connections, session)?;
                    for ((name, pid), rss_idle) in procs.iter().zip(before) {
                        let (rss, pss) = memory_kib(*pid);
                        let row = mem_row(&mut idle.rows, subject, name);
                        row.rss_idle_kib.push(rss_idle as f64);
                        row.rss_kib.push(rss as f64);
                        row.pss_kib.push(pss as f64);
                    }
                    drop(conns);
                }
                if options.has(Case::Unshaped) {
                    let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu(*p)).collect();
                    let mut bytes = 0;
                    for (i, reverse) in [false, true].into_iter().enumerate() {
                        let what = format!(
                            "case 3 round {} {subject:?} {}",
                            round + 1,
                            un.directions[i].name
                        );
                        let mut got = 0;
                        let mbit = tolerate(&mut report.failures, progress, &what, || {
                            let (mbit, b) = iperf_through(topo, 1, secs, reverse)?;
                            got = b;
                            Ok(mbit)
                        });
                        bytes += got;
                        let d = &mut un.directions[i];
                        match subject {
                            Subject::Limit => d.limit.push(mbit),
                            Subject::Mpbridge => d.mpbridge.push(mbit),
                            Subject::Peer => d.peer.push(mbit),
                        }
                    }
                    let gb = bytes as f64 / 1e9;
                    for ((name, pid), c0) in procs.iter().zip(cpu0) {
                        let row = cpu_row(&mut un.cpu, subject, name);
                        row.s_per_gb.push((cpu(*pid) - c0) / gb.max(1e-9));
                    }
                }
                if options.has(Case::Setup) {
                    let rr_server = rr::RrServer::start(topo, 8, session)?;
                    let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu(*p)).collect();
                    let outcome =
                        rr::run_clients(topo, rr_server.addr, setup_workers, setup_secs, 200_000);
                    let cpu_s: f64 = procs
                        .iter()
                        .zip(cpu0)
                        .map(|((_, p), c0)| cpu(*p) - c0)
                        .sum();
                    drop(rr_server);
                    let row = setup_row(&mut setup.rows, subject);
                    if outcome.completed == 0 {
                        report.failures.push(format!(
                            "case 4 round {} {subject:?}: no short connection got through in {} s \
                             ({} failed)",
                            round + 1,
                            setup_secs,
                            outcome.failed
                        ));
                        row.failed += outcome.failed;
                        row.runs.push(outcome);
                        return Ok(());
                    }
                    row.per_sec.push(outcome.per_sec);
                    row.median_ms.push(outcome.median_ms);
                    row.p90_ms.push(outcome.p90_ms);
                    if subject != Subject::Limit {
                        row.cpu_us_per_conn
                            .push(cpu_s * 1e6 / outcome.completed.max(1) as f64);
                    }
                    row.failed += outcome.failed;
                    row.runs.push(outcome);
                }
                Ok(())
            })?;
        }
    }
    if options.has(Case::Unshaped) {
        report.unshaped = Some(un);
    }
    if options.has(Case::Setup) {
        report.setup = Some(setup);
    }
    if options.has(Case::Idle) {
        report.idle = Some(idle);
    }
    Ok(())
}

fn cpu(pid: u32) -> f64 {
    scenario::cpu_seconds(pid).unwrap_or(f64::NAN)
}

fn mem_row<'a>(rows: &'a mut Vec<MemRow>, subject: Subject, process: &str) -> &'a mut MemRow {
    if let Some(i) = rows.iter().position(|r| r.process == process) {
        return &mut rows[i];
    }
    rows.push(MemRow {
        subject,
        process: process.into(),
        rss_idle_kib: Figure::default(),
        rss_kib: Figure::default(),
        pss_kib: Figure::default(),
    });
    rows.last_mut().expect("just pushed")
}

fn cpu_row<'a>(rows: &'a mut Vec<Cpu>, subject: Subject, process: &str) -> &'a mut Cpu {
    if let Some(i) = rows.iter().position(|r| r.process == process) {
        return &mut rows[i];
    }
    rows.push(Cpu {
        subject,
        process: process.into(),
        s_per_gb: Figure::default(),
    });
    rows.last_mut().expect("just pushed")
}

fn setup_row(rows: &mut Vec<SetupRow>, subject: Subject) -> &mut SetupRow {
    if let Some(i) = rows.iter().position(|r| r.subject == subject) {
        return &mut rows[i];
    }
    rows.push(SetupRow {
        subject,
        per_sec: Figure::default(),
        median_ms: Figure::default(),
        p90_ms: Figure::default(),
        cpu_us_per_conn: Figure::default(),
        failed: 0,
        runs: Vec::new(),
    });
    rows.last_mut().expect("just pushed")
}

/// (VmRSS, Pss) of a process in KiB; 0 where unreadable.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

/// `--links` text of `links`, comma-separated (`10@5ms,10@30ms`).
pub fn failover_links_text(links: &[LinkSpec]) -> String {
    links
        .iter()
        .map(LinkSpec::spec_text)
        .collect::<Vec<_>>()
        .join(",")
}

/// Case 6's configurations: (subject, probing, label, extra lines for both
/// roles). Each `--variant` is mpbridge probing with its lines added.
fn failover_configs(options: &Options) -> Vec<(Subject, bool, String, String)> {
    let mut configs = vec![
        (
            Subject::Mpbridge,
            true,
            "mpbridge, probing".to_string(),
            String::new(),
        ),
        (
            Subject::Mpbridge,
            false,
            "mpbridge, kernel only".to_string(),
            String::new(),
        ),
    ];
    for v in &options.variants {
        configs.push((
            Subject::Mpbridge,
            true,
            format!("mpbridge, probing, {}", v.label),
            v.lines.clone(),
        ));
    }
    if options.peer.is_some() {
        configs.push((
            Subject::Peer,
            false,
            "peer, kernel only".to_string(),
            String::new(),
        ));
    }
    configs
}

/// Case 6 on `topo` (2 × 50 Mbit/s, or `--failover-links`): each failure in
/// each direction, each configuration. The rows so far go to `on_round`
/// after each round.
fn failover(
    topo: &Topology,
    options: &Options,
    progress: &Progress,
    failures: &mut Vec<String>,
    on_round: &mut dyn FnMut(&[FailoverRow], &[String]),
) -> anyhow::Result<Vec<FailoverRow>> {
    let configs = failover_configs(options);
    use scenario::Direction::{Download, Upload};
    let kinds: Vec<(scenario::Direction, Failure)> = [Download, Upload]
        .into_iter()
        .flat_map(|d| [(d, Failure::Down), (d, Failure::Blackhole)])
        .collect();
    let mut rows: Vec<FailoverRow> = Vec::new();
    for round in 0..options.rounds {
        let mut this_round = configs.clone();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for (subject, probing, label, lines) in this_round {
            let mut opts = options.clone();
            if !lines.is_empty() {
                unequal::add_variant_lines(&mut opts, &lines);
            }
            Running::with(topo, subject, probing, &opts, |_| {
                for &(direction, failure) in &kinds {
                    progress.phase(&format!(
                        "case 6 (failover), round {}/{}: {label}, link 0 {}, {}",
                        round + 1,
                        options.rounds,
                        failure.state(),
                        direction.arrow()
                    ));
                    let f = match scenario::failover_in(
                        topo,
                        &options.failover_plan(failure, direction),
                        progress,
                    ) {
                        Ok(f) => f,
                        Err(e) => {
                            let e = format!("{e:#}");
                            failures.push(format!(
                                "case 6 round {} {label} {} {}: {}",
                                round + 1,
                                failure.name(),
                                direction.name(),
                                e.lines().next().unwrap_or("")
                            ));
                            continue;
                        }
                    };
                    let i = match rows.iter().position(|r| {
                        r.failure == failure && r.direction == direction && r.subject == label
                    }) {
                        Some(i) => i,
                        None => {
                            rows.push(FailoverRow {
                                failure,
                                direction,
                                subject: label.clone(),
                                before_mbit: Figure::default(),
                                survivors_mbit: Figure::default(),
                                after_mbit: Figure::default(),
                                stall_s: Figure::default(),
                                dip_s: Figure::default(),
                                regained_s: Figure::default(),
                                not_regained: 0,
                            });
                            rows.len() - 1
                        }
                    };
                    let row = &mut rows[i];
                    row.before_mbit.push(f.before_mbit);
                    row.survivors_mbit.push(f.survivors_mbit);
                    row.after_mbit.push(f.after_mbit);
                    row.stall_s.push(f.longest_stall);
                    row.dip_s.push(f.longest_dip);
                    match f.regained_after {
                        Some(t) => row.regained_s.push(t),
                        None => row.not_regained += 1,
                    }
                }
                Ok(())
            })?;
        }
        sort_failover_rows(&mut rows, &configs);
        on_round(&rows, failures);
    }
    Ok(rows)
}

/// Directions, then failures, then configurations in order.
fn sort_failover_rows(rows: &mut [FailoverRow], configs: &[(Subject, bool, String, String)]) {
    rows.sort_by_key(|r| {
        (
            r.direction == scenario::Direction::Upload,
            r.failure == Failure::Blackhole,
            configs.iter().position(|c| c.2 == r.subject),
        )
    });
}

/// Case 7: file sizes; the peer's also stripped (a copy, with `strip`).
fn sizes(options: &Options) -> Sizes {
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let stripped = |p: &Path| -> Option<u64> {
        let copy = std::env::temp_dir().join(format!(
            "mpblab-strip-{}-{}",
            std::process::id(),
            p.file_name()?.to_string_lossy()
        ));
        std::fs::copy(p, &copy).ok()?;
        let ok = crate::exec::run("strip", &["--strip-all", &copy.to_string_lossy()], None).is_ok();
        let n = size(&copy);
        let _ = std::fs::remove_file(&copy);
        n.filter(|_| ok)
    };
    let peer = options.peer.as_ref();
    Sizes {
        mpbridge_router: options.mpbridge_router.as_deref().and_then(size),
        sslocal: peer.and_then(|p| size(&p.sslocal)),
        sslocal_stripped: peer.and_then(|p| stripped(&p.sslocal)),
        ssserver: peer.and_then(|p| size(&p.ssserver)),
        ssserver_stripped: peer.and_then(|p| stripped(&p.ssserver)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_by_number_or_name_in_issue_order() {
        assert_eq!(
            Case::parse_list("7, equal,3,3").unwrap(),
            [Case::Equal, Case::Unshaped, Case::Size]
        );
        assert_eq!(
            Case::parse_list("1,2,3,4,5,6,7,8,9,10,11").unwrap(),
            Case::ALL
        );
        assert_eq!(
            Case::parse_list("slow,connections").unwrap(),
            [Case::Connections, Case::Slow]
        );
        let e = Case::parse_list("1,12").unwrap_err().to_string();
        assert!(
            e.contains("\"12\" is not a case") && e.contains("failover"),
            "{e}"
        );
    }

    #[test]
    fn the_median_and_spread_ignore_failed_samples() {
        let f = Figure {
            samples: vec![3.0, f64::NAN, 1.0, 2.0, 10.0],
        };
        assert_eq!(f.median(), 2.5);
        assert_eq!((f.min(), f.max()), (1.0, 10.0));
        assert!(Figure::default().median().is_nan());
        let odd = Figure {
            samples: vec![5.0, 1.0, 3.0],
        };
        assert_eq!(odd.median(), 3.0);
    }

    #[test]
    fn failover_links_take_the_links_syntax_and_at_least_two() {
        let links = parse_failover_links("10@5ms,10@30ms").unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!((links[0].rate_mbit, links[0].delay_us), (10, 5000));
        assert_eq!((links[1].rate_mbit, links[1].delay_us), (10, 30_000));
        assert!(links.iter().all(LinkSpec::needs_netem));
        assert_eq!(failover_links_text(&links), "10@5ms,10@30ms");
        // The default is what `50,50` says.
        assert_eq!(
            parse_failover_links("50,50").unwrap(),
            default_failover_links()
        );
        let one = parse_failover_links("10@5ms").unwrap_err().to_string();
        assert!(one.contains("at least two links"), "{one}");
        let bad = parse_failover_links("10@5ms,fast").unwrap_err().to_string();
        assert!(
            bad.starts_with("--failover-links \"10@5ms,fast\": link 1"),
            "{bad}"
        );
        assert!(!bad.contains("\n"), "one sentence: {bad}");
        let many = parse_failover_links(&["10"; 9].join(","))
            .unwrap_err()
            .to_string();
        assert!(many.contains("9 links given"), "{many}");
    }

    fn options(variants: &[&str], peer: bool) -> Options {
        Options {
            cases: vec![Case::Failover],
            rounds: 2,
            peer: peer.then(|| peer::Install {
                sslocal: "sslocal".into(),
                ssserver: "ssserver".into(),
                version: "1".into(),
                cold_build: None,
            }),
            idle_connections: 1,
            variants: variants
                .iter()
                .map(|v| unequal::Variant::parse(v).unwrap())
                .collect(),
            ..Options::default()
        }
    }

    #[test]
    fn each_failover_round_is_saved_with_the_report_so_far() {
        let path = std::env::temp_dir().join(format!(
            "mpblab-failover-checkpoint-{}.json",
            std::process::id()
        ));
        let mut o = options(&[], false);
        o.checkpoint = Some(path.clone());
        let mut report = BenchReport::new(&o, "test".into());
        report.wall_seconds = 7.0;
        let mut save = checkpoint_failover(&o, &report);
        let row = FailoverRow {
            failure: Failure::Blackhole,
            direction: scenario::Direction::Upload,
            subject: "mpbridge, probing".into(),
            before_mbit: Figure {
                samples: vec![90.0],
            },
            survivors_mbit: Figure {
                samples: vec![45.0],
            },
            after_mbit: Figure {
                samples: vec![90.0],
            },
            stall_s: Figure { samples: vec![0.1] },
            dip_s: Figure { samples: vec![0.1] },
            regained_s: Figure::default(),
            not_regained: 1,
        };
        save(std::slice::from_ref(&row), &["one failed".to_string()]);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let saved: BenchReport = serde_json::from_str(&text).unwrap();
        assert_eq!(saved.failover.len(), 1);
        assert_eq!(saved.failover[0].stall_s.samples, [0.1]);
        assert_eq!(saved.failover[0].not_regained, 1);
        assert_eq!(saved.failures, ["one failed"]);
        // The rest is the report as it stood.
        assert_eq!(saved.wall_seconds, 7.0);
        assert_eq!(saved.command, "test");
        // Without a checkpoint nothing is written.
        drop(save);
        o.checkpoint = None;
        checkpoint_failover(&o, &report)(std::slice::from_ref(&row), &[]);
        assert!(!path.exists());
    }

    #[test]
    fn failover_runs_each_variant_probing_beside_the_others() {
        let labels =
            |o: &Options| -> Vec<String> { failover_configs(o).into_iter().map(|c| c.2).collect() };
        // Without a variant: the three configurations as before.
        assert_eq!(
            labels(&options(&[], true)),
            [
                "mpbridge, probing",
                "mpbridge, kernel only",
                "peer, kernel only"
            ]
        );
        let o = options(
            &["sndbuf 1M|sndbuf = 524288", "two|a = 1;paths.b = 2"],
            true,
        );
        let configs = failover_configs(&o);
        assert_eq!(
            labels(&o),
            [
                "mpbridge, probing",
                "mpbridge, kernel only",
                "mpbridge, probing, sndbuf 1M",
                "mpbridge, probing, two",
                "peer, kernel only"
            ]
        );
        let v = &configs[2];
        assert_eq!(
            (v.0, v.1, v.3.as_str()),
            (Subject::Mpbridge, true, "sndbuf = 524288")
        );
        assert_eq!(configs[3].3, "a = 1\npaths.b = 2");
        assert!(configs[0].3.is_empty() && configs[4].3.is_empty());
        // A variant's lines reach both roles, `paths.` ones router A's [paths].
        let mut opts = o.clone();
        unequal::add_variant_lines(&mut opts, &configs[3].3);
        assert!(opts.local_extra.lines().any(|l| l == "a = 1"));
        assert!(opts.remote_extra.lines().any(|l| l == "a = 1"));
        assert!(opts.local_paths.lines().any(|l| l == "b = 2"));
        assert!(!opts.local_extra.contains("b = 2"));
        unequal::add_variant_lines(&mut opts, "probe.interface_counter = false");
        assert_eq!(opts.probe_lines.trim(), "interface_counter = false");
        assert!(!opts.local_extra.contains("interface_counter"));
    }

    #[test]
    fn every_other_round_runs_the_subjects_in_reverse() {
        let s = [Subject::Limit, Subject::Mpbridge, Subject::Peer];
        assert_eq!(order(0, &s), s);
        assert_eq!(
            order(1, &s),
            [Subject::Peer, Subject::Mpbridge, Subject::Limit]
        );
        assert_eq!(order(2, &s), s);
    }
}
