//! Case 11 `unequal`: one flow over the links of the issue's target table
//! (equal, more links, unequal rates, unequal delays, the `wifi` profile),
//! each way, mpbridge against the peer against the limit and each link
//! alone, and against MPTCP itself (one MPTCP connection between the
//! routers, no proxy: [`MPTCP_ALONE`]), medians over rounds with their
//! spread.
//!
//! Cases that need netem (delay, jitter, bursty loss) run only where the
//! kernel has it — in the lab's VM (`bench --vm`): on a kernel without it
//! they are listed as skipped. Under TCG the VM cannot carry the full
//! rates, so `--scale` multiplies every rate (the report says by how much);
//! every ratio is to the limit measured in the same run, never to a figure
//! from another kernel.
//!
//! Besides the goodput each mpbridge and peer flow records how its bytes
//! split over the links, and (with `--diagnose`) the first round takes a
//! snapshot of both routers in the middle of each flow: `ss -tinm` (the
//! subflows: cwnd, rtt, snd_wnd, rcv_space, rwnd_limited, skmem), `ss
//! -Minm` (the MPTCP sockets) and the `nstat` counters that moved.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::doc::fig;
use super::{subjects, tolerate, Figure, Options, Running, Subject};
use crate::iperf;
use crate::links::LinkSpec;
use crate::measure::Progress;
use crate::scenario::{self, Direction};
use crate::{Node, Proc, Topology};

/// The issue's target table: a name and the links in `--links` syntax.
pub const CASES: [(&str, &str); 7] = [
    ("2 × 50, equal", "50,50"),
    ("4 × 50", "50,50,50,50"),
    ("100 + 50 + 20", "100,50,20"),
    ("2 × 50 at 5 / 30 ms", "50@5ms,50@30ms"),
    ("100 + 50 + 20 at 5 / 30 / 60 ms", "100@5ms,50@30ms,20@60ms"),
    ("2 × wifi", "wifi,wifi"),
    // Not in the issue's table: a link that slows the flow below the best
    // link alone unless mpbridge benches it (paths.slow_links).
    ("100 + 25 at 5 / 60 ms, 5 % loss", "100@5ms,25@60ms-5%"),
];

/// Goodput over TCP through a shaper that counts whole Ethernet frames:
/// 1448 bytes of payload (timestamps on) in 1514 bytes. The limit of a
/// link whose rate follows a schedule is the time integral of its rates
/// times this.
pub const TCP_EFFICIENCY: f64 = 1448.0 / 1514.0;

/// The subject of the flows of [`Topology::mptcp_flow`]: one MPTCP
/// connection between the routers, no proxy, measured while mpbridge (its
/// defaults) runs and sets the paths up.
pub const MPTCP_ALONE: &str = "MPTCP alone";

/// A mpbridge configuration measured beside the default one: a label and
/// lines added to both daemons' role sections (`[local]` and `[remote]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub label: String,
    pub lines: String,
}

impl Variant {
    /// `LABEL|KEY = VALUE[;KEY = VALUE…]`, as `--variant` takes it.
    pub fn parse(text: &str) -> anyhow::Result<Variant> {
        let (label, lines) = text.split_once('|').ok_or_else(|| {
            anyhow::anyhow!(
                "--variant {text:?}: give LABEL|KEY = VALUE (lines for [local] and [remote], \
                 paths.KEY = VALUE for router A's [paths], probe.KEY = VALUE for [probe]; \
                 separated by ;), e.g. \"sndbuf 4 MiB|sndbuf = 4194304\""
            )
        })?;
        anyhow::ensure!(
            !label.trim().is_empty() && !lines.trim().is_empty(),
            "--variant {text:?}: the label and the lines must not be empty"
        );
        Ok(Variant {
            label: label.trim().into(),
            lines: lines
                .split(';')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}

/// One measured configuration of mpbridge (the default or a variant).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Flows {
    /// "mpbridge", "mpbridge, LABEL" or "peer".
    pub subject: String,
    /// One flow, Mbit/s.
    pub mbit: Figure,
    /// Share of the flow's bytes each link carried, percent.
    pub split: Vec<Figure>,
    /// `--diagnose`: both routers in the middle of the first round's flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Snapshot>,
}

/// Both routers seen in the middle of one flow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// `ss -tinm` in router A, then router B.
    pub tcp: [String; 2],
    /// `ss -Minm` (the MPTCP sockets) in router A, then router B.
    pub mptcp: [String; 2],
    /// The nstat counters that moved during the flow (MPTcpExt*, the
    /// out-of-order queue, retransmissions…), router A then router B.
    pub nstat: [Vec<(String, u64)>; 2],
}

/// One case in one direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    /// The links as run (rates already scaled).
    pub links: Vec<LinkSpec>,
    pub direction: Direction,
    /// Seconds each flow through a proxy lasts after the omitted first (a
    /// whole number of schedule periods); with `--long`, measured over the
    /// second half.
    pub secs: f64,
    /// Each link alone (one flow per link, all at once), Mbit/s.
    pub per_link: Vec<Figure>,
    /// What the links can carry: their sum alone; a scheduled link counts
    /// the time integral of its rates × [`TCP_EFFICIENCY`].
    pub limit: Figure,
    /// mpbridge (first: its defaults; then each variant), then the peer,
    /// then [`MPTCP_ALONE`] (absent from runs before it was measured).
    pub flows: Vec<Flows>,
}

impl Row {
    /// The best link alone (median), Mbit/s.
    pub fn best_link(&self) -> f64 {
        self.per_link
            .iter()
            .map(Figure::median)
            .filter(|v| v.is_finite())
            .fold(f64::NAN, f64::max)
    }
}

/// Case 11's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unequal {
    /// Every rate was multiplied by this (1: as named).
    pub scale: f64,
    /// Why, when not 1.
    pub scale_reason: String,
    /// `--long`: the bridged flows lasted this long (seconds, after the
    /// omitted first; stretched to whole schedule periods), each measured
    /// over its second half, split included; the limit kept 6 s flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    pub rows: Vec<Row>,
    /// Cases not run, with why.
    pub skipped: Vec<String>,
}

/// `links` with every rate (schedule steps too) times `scale`, at least 1.
pub fn scaled(links: &[LinkSpec], scale: f64) -> Vec<LinkSpec> {
    let s = |r: u32| ((f64::from(r) * scale).round() as u32).max(1);
    links
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if l.rate_mbit > 0 {
                l.rate_mbit = s(l.rate_mbit);
            }
            for step in &mut l.schedule {
                step.rate_mbit = s(step.rate_mbit);
            }
            l
        })
        .collect()
}

/// Seconds to measure over `links`: `base`, stretched to a whole number of
/// periods of the longest repeating schedule so that the integral of the
/// rates over the flow is their mean.
pub fn flow_secs(links: &[LinkSpec], base: f64) -> f64 {
    let period = links
        .iter()
        .filter(|l| l.schedule_repeats())
        .map(|l| l.schedule.iter().filter_map(|s| s.secs).sum::<f64>())
        .fold(0.0, f64::max);
    if period <= 0.0 {
        return base;
    }
    (base / period).ceil().max(1.0) * period
}

/// The limit of one run: scheduled links by their mean rate, the others as
/// measured alone.
fn limit_of(links: &[LinkSpec], alone: &[f64]) -> f64 {
    links
        .iter()
        .zip(alone)
        .map(|(l, a)| {
            if l.schedule_repeats() {
                l.mean_rate_mbit() * TCP_EFFICIENCY
            } else {
                *a
            }
        })
        .sum()
}

/// Runs case 11: every case of [`CASES`] (those the kernel can shape), each
/// direction, `options.rounds` rounds.
/// Rows are added to `out` as they are measured, so that a run that
/// fails later keeps them.
pub fn run(
    options: &Options,
    progress: &Progress,
    failures: &mut Vec<String>,
    out: &mut Unequal,
    on_row: &mut dyn FnMut(&Unequal, &[String]),
) -> anyhow::Result<()> {
    let netem = crate::shaping::netem_available();
    for (n, (name, spec)) in CASES.into_iter().enumerate() {
        if !options.unequal.is_empty() && !options.unequal.contains(&(n + 1)) {
            continue;
        }
        let links = scaled(&crate::checks::parse_links(spec)?, options.scale);
        if !netem && links.iter().any(crate::shaping::needs_netem_here) {
            out.skipped.push(format!(
                "{name} ({spec}): needs netem, which this kernel lacks (run with --vm)"
            ));
            continue;
        }
        let topo = super::build(&links, progress)?;
        let result = (|| {
            let _servers: Vec<Proc> = (0..topo.link_count())
                .map(|link| {
                    iperf::start_server(
                        &topo,
                        Node::RouterB,
                        topo.rb_link_addr(link, false),
                        &format!("iperf3-link{link}"),
                    )
                })
                .collect::<anyhow::Result<_>>()?;
            let _server = iperf::start_server(
                &topo,
                Node::Server,
                topo.server_addr(false),
                "iperf3-server",
            )?;
            for direction in [Direction::Download, Direction::Upload] {
                let row = case(&topo, name, &links, direction, options, progress, failures)?;
                out.rows.push(row);
                on_row(out, failures);
            }
            anyhow::Ok(())
        })();
        super::release(topo);
        result?;
    }
    Ok(())
}

/// A variant's lines by where they go: `paths.KEY = VALUE` ones (router
/// A's `[paths]`), `probe.KEY = VALUE` ones (both `[probe]`), prefixes
/// removed, then the others (`[local]` and `[remote]`).
fn split_variant_lines(lines: &str) -> (String, String, String) {
    let (mut paths, mut probe, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines.lines().map(str::trim_start) {
        if let Some(rest) = line.strip_prefix("paths.") {
            paths.push(rest);
        } else if let Some(rest) = line.strip_prefix("probe.") {
            probe.push(rest);
        } else {
            roles.push(line);
        }
    }
    (paths.join("\n"), probe.join("\n"), roles.join("\n"))
}

/// Adds a variant's lines to the daemons' configurations in `opts`: the
/// `paths.` ones to router A's `[paths]`, the `probe.` ones to both
/// daemons' `[probe]` (when they probe), the others to both `[local]` and
/// `[remote]`.
pub(super) fn add_variant_lines(opts: &mut Options, lines: &str) {
    let (paths, probe, roles) = split_variant_lines(lines);
    opts.local_extra = [opts.local_extra.as_str(), &roles].join("\n");
    opts.remote_extra = [opts.remote_extra.as_str(), &roles].join("\n");
    opts.local_paths = [opts.local_paths.as_str(), &paths].join("\n");
    opts.probe_lines = [opts.probe_lines.as_str(), &probe].join("\n");
}

/// The configurations of mpbridge measured, by label ("" the default), and
/// the lines each adds.
fn configurations(options: &Options) -> Vec<(String, String)> {
    std::iter::once((String::new(), String::new()))
        .chain(
            options
                .variants
                .iter()
                .map(|v| (v.label.clone(), v.lines.clone())),
        )
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn case(
    topo: &Topology,
    name: &str,
    links: &[LinkSpec],
    direction: Direction,
    options: &Options,
    progress: &Progress,
    failures: &mut Vec<String>,
) -> anyhow::Result<Row> {
    // With --long the bridged flows are long and the limit's are not: each
    // link alone is no policy's business.
    let limit_secs = flow_secs(links, options.flow_secs());
    let secs = flow_secs(links, options.long.unwrap_or(options.flow_secs()));
    let configs = configurations(options);
    let mut row = Row {
        name: name.into(),
        links: links.to_vec(),
        direction,
        secs,
        per_link: vec![Figure::default(); links.len()],
        limit: Figure::default(),
        flows: configs
            .iter()
            .map(|(label, _)| Flows {
                subject: if label.is_empty() {
                    "mpbridge".into()
                } else {
                    format!("mpbridge, {label}")
                },
                split: vec![Figure::default(); links.len()],
                ..Flows::default()
            })
            .collect(),
    };
    if options.peer.is_some() {
        row.flows.push(Flows {
            subject: "peer".into(),
            split: vec![Figure::default(); links.len()],
            ..Flows::default()
        });
    }
    let alone = row.flows.len();
    row.flows.push(Flows {
        subject: MPTCP_ALONE.into(),
        split: vec![Figure::default(); links.len()],
        ..Flows::default()
    });
    // (subject, index into row.flows, extra lines)
    let mut plan: Vec<(Subject, usize, String)> = Vec::new();
    for subject in subjects(options, true) {
        match subject {
            Subject::Mpbridge => {
                for (i, (_, lines)) in configs.iter().enumerate() {
                    plan.push((subject, i, lines.clone()));
                }
            }
            Subject::Peer => plan.push((subject, configs.len(), String::new())),
            Subject::Limit => plan.push((subject, 0, String::new())),
        }
    }
    for round in 0..options.rounds {
        // Every other round in reverse, as the other shaped cases.
        let mut this_round = plan.clone();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for (subject, i, lines) in this_round {
            let label = format!(
                "case 11 {name} {} round {}/{}: {}",
                direction.arrow(),
                round + 1,
                options.rounds,
                match subject {
                    Subject::Limit => "each link alone".to_string(),
                    _ => row.flows[i].subject.clone(),
                }
            );
            progress.phase(&label);
            if subject == Subject::Limit {
                let mut alone = Vec::new();
                let sum = tolerate(failures, progress, &label, || {
                    alone = links_alone(topo, limit_secs, direction)?;
                    Ok(limit_of(links, &alone))
                });
                row.limit.push(sum);
                for (f, v) in row.per_link.iter_mut().zip(alone) {
                    f.push(v);
                }
                continue;
            }
            let mut opts = options.clone();
            if !lines.is_empty() {
                add_variant_lines(&mut opts, &lines);
            }
            let diagnose = options.diagnose && round == 0;
            // MPTCP alone needs the paths mpbridge's defaults set up.
            let measures_alone = subject == Subject::Mpbridge && i == 0;
            // A proxy that does not start costs this sample, not the run.
            let started = Running::with(topo, subject, true, &opts, |_| {
                let mut snapshot = None;
                let mut split = Vec::new();
                let mbit = tolerate(failures, progress, &label, || {
                    let (mbit, s, snap) =
                        one_flow(topo, secs, direction, diagnose, options.long.is_some())?;
                    split = s;
                    snapshot = snap;
                    Ok(mbit)
                });
                let f = &mut row.flows[i];
                f.mbit.push(mbit);
                for (fig, v) in f.split.iter_mut().zip(split) {
                    fig.push(v);
                }
                f.snapshots.extend(snapshot);
                if measures_alone {
                    // The same paths, the same links, no proxy: as long as
                    // the limit's flows (no policy to give time to).
                    let label = format!("{label}, then {MPTCP_ALONE} (no proxy)");
                    progress.phase(&label);
                    let mut split = Vec::new();
                    let mbit = tolerate(failures, progress, &label, || {
                        let before = link_bytes(topo, direction)?;
                        let mbit = topo.mptcp_flow(limit_secs, direction == Direction::Download)?;
                        split = shares(&before, &link_bytes(topo, direction)?);
                        Ok(mbit)
                    });
                    let f = &mut row.flows[alone];
                    f.mbit.push(mbit);
                    for (fig, v) in f.split.iter_mut().zip(split) {
                        fig.push(v);
                    }
                }
                Ok(())
            });
            if let Err(e) = started {
                let first = format!("{e:#}");
                let first = first.lines().next().unwrap_or("").to_string();
                progress.phase(&format!("FAILED, left out: {label}: {first}"));
                failures.push(format!("{label}: {first}"));
                row.flows[i].mbit.push(f64::NAN);
                if measures_alone {
                    row.flows[alone].mbit.push(f64::NAN);
                }
            }
        }
    }
    Ok(row)
}

/// Each link alone, all at once (one flow per link from router A to router
/// B on the link's addresses, `direction` as the bridge's flow), Mbit/s.
fn links_alone(topo: &Topology, secs: f64, direction: Direction) -> anyhow::Result<Vec<f64>> {
    let clients: Vec<Proc> = (0..topo.link_count())
        .map(|link| {
            let args = scenario::link_alone_args_in(topo, link, secs, direction, &["-O", "1"]);
            let mut cmd = std::process::Command::new(&args[0]);
            cmd.args(&args[1..]);
            topo.spawn(Node::RouterA, &mut cmd)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    for client in &clients {
        client.wait_exit(Duration::from_secs_f64(secs + 30.0))?;
        let text = std::fs::read_to_string(client.stdout_path())?;
        let report = iperf::parse_report(&text)
            .map_err(|e| anyhow::anyhow!("iperf3 on one link: {e:#}: {}", client.output_text()))?;
        out.push(report.received_mbit_per_s);
    }
    Ok(out)
}

/// Bytes router A's link interfaces carried, in the flow's direction.
fn link_bytes(topo: &Topology, direction: Direction) -> anyhow::Result<Vec<u64>> {
    (0..topo.link_count())
        .map(|l| {
            let (tx, rx) = topo.link_counters(l)?;
            Ok(match direction {
                Direction::Download => rx,
                Direction::Upload => tx,
            })
        })
        .collect()
}

/// One flow client ↔ server through whatever runs: (Mbit/s, percent of its
/// bytes per link, the snapshot when asked); over its second half only
/// when `second_half` (the split from the links' counters read at its
/// middle, within a fraction of a second).
fn one_flow(
    topo: &Topology,
    secs: f64,
    direction: Direction,
    diagnose: bool,
    second_half: bool,
) -> anyhow::Result<(f64, Vec<f64>, Option<Snapshot>)> {
    let args = iperf::client_args(
        topo.server_addr(false),
        secs,
        1.0,
        direction == Direction::Download,
        &["-O", "1"],
    );
    let before = link_bytes(topo, direction)?;
    let nstat_before = if diagnose {
        Some([nstat(topo, Node::RouterA), nstat(topo, Node::RouterB)])
    } else {
        None
    };
    let mut cmd = std::process::Command::new(&args[0]);
    cmd.args(&args[1..]);
    let client = topo.spawn(Node::Client, &mut cmd)?;
    // The middle of the measured part (after the omitted first second).
    let middle = 1.0 + secs / 2.0;
    let mut before = before;
    if diagnose || second_half {
        std::thread::sleep(Duration::from_secs_f64(middle));
        if second_half {
            before = link_bytes(topo, direction)?;
        }
    }
    let mut snapshot = None;
    if let Some(nstat_before) = nstat_before {
        let ss =
            |node: Node, args: &[&str]| topo.run(node, args).unwrap_or_else(|e| format!("{e:#}"));
        let mut s = Snapshot {
            tcp: [
                ss(Node::RouterA, &["ss", "-tinmH"]),
                ss(Node::RouterB, &["ss", "-tinmH"]),
            ],
            mptcp: [
                ss(Node::RouterA, &["ss", "-MinmH"]),
                ss(Node::RouterB, &["ss", "-MinmH"]),
            ],
            nstat: [Vec::new(), Vec::new()],
        };
        client.wait_exit(Duration::from_secs_f64(secs + 30.0))?;
        for (i, node) in [Node::RouterA, Node::RouterB].into_iter().enumerate() {
            s.nstat[i] = moved(&nstat_before[i], &nstat(topo, node));
        }
        snapshot = Some(s);
    } else {
        client.wait_exit(Duration::from_secs_f64(secs + 30.0))?;
    }
    let after = link_bytes(topo, direction)?;
    let text = std::fs::read_to_string(client.stdout_path())?;
    let report = iperf::parse_report(&text)
        .map_err(|e| anyhow::anyhow!("iperf3: {e:#}: {}", client.output_text()))?;
    let mbit = if second_half {
        second_half_mbit(&report.intervals, secs)
    } else {
        report.received_mbit_per_s
    };
    Ok((mbit, shares(&before, &after), snapshot))
}

/// Each link's share of the bytes the links carried between two readings
/// of [`link_bytes`], percent.
fn shares(before: &[u64], after: &[u64]) -> Vec<f64> {
    let deltas: Vec<f64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b) as f64)
        .collect();
    let total: f64 = deltas.iter().sum();
    deltas.iter().map(|d| 100.0 * d / total.max(1.0)).collect()
}

/// The goodput (Mbit/s) of a flow of `secs` after one omitted second over
/// its second half, from iperf3's intervals (whose clock counts the omitted
/// second, and whose edges lag whole seconds by a few µs); NaN when no
/// interval falls there.
fn second_half_mbit(intervals: &[iperf::Interval], secs: f64) -> f64 {
    let from = 1.0 + secs / 2.0;
    let late: Vec<&iperf::Interval> = intervals
        .iter()
        .filter(|i| i.start + 0.05 >= from)
        .collect();
    let span: f64 = late.iter().map(|i| i.end - i.start).sum();
    let bytes: u64 = late.iter().map(|i| i.bytes).sum();
    if span > 0.0 {
        bytes as f64 * 8.0 / span / 1e6
    } else {
        f64::NAN
    }
}

/// The counters of `nstat -az` that matter for one flow over several
/// links, as (name, value).
fn nstat(topo: &Topology, node: Node) -> Vec<(String, u64)> {
    // -s: leave nstat's history file alone (the other namespaces share it).
    let text = topo.run(node, &["nstat", "-asz"]).unwrap_or_default();
    parse_nstat(&text)
}

/// Reads `nstat -az` text (`NAME VALUE RATE` lines), keeping the MPTCP,
/// reordering, pruning and retransmission counters.
pub fn parse_nstat(text: &str) -> Vec<(String, u64)> {
    let wanted = |name: &str| {
        name.starts_with("MPTcpExt")
            || name.contains("OFO")
            || name.contains("Prune")
            || name.contains("RcvQDrop")
            || name.contains("Retrans")
            || name == "TcpExtTCPSackRecovery"
            || name == "TcpExtTCPLossProbes"
            || name == "TcpExtTCPTimeouts"
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            wanted(name).then(|| (name.to_string(), value))
        })
        .collect()
}

/// The counters that grew from `before` to `after`, by how much.
fn moved(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(name, v)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, b)| *b);
            (*v > b).then(|| (name.clone(), v - b))
        })
        .collect()
}

/// The fields of one `ss -ti` info line that say what limits a sender or a
/// receiver, in the order given (absent ones left out).
pub fn ss_fields(line: &str) -> String {
    const KEYS: [&str; 14] = [
        "skmem:",
        "rtt:",
        "cwnd:",
        "snd_wnd:",
        "rcv_space:",
        "rcv_wnd:",
        "delivery_rate",
        "busy:",
        "rwnd_limited:",
        "sndbuf_limited:",
        "bytes_sent:",
        "bytes_received:",
        "retrans:",
        "reord_seen:",
    ];
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    for key in KEYS {
        if let Some(i) = tokens.iter().position(|t| t.starts_with(key)) {
            // `delivery_rate 12.3Mbps` is two tokens.
            if key == "delivery_rate" {
                if let Some(v) = tokens.get(i + 1) {
                    out.push(format!("delivery_rate:{v}"));
                }
            } else {
                out.push(tokens[i].to_string());
            }
        }
    }
    out.join(" ")
}

/// `a / b` as a percentage, `—` when either is missing.
fn pct(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{:.0} %", 100.0 * r)
    } else {
        "—".into()
    }
}

/// The worst round's ratio to the limit of the same round, percent.
fn worst_round(flow: &Figure, limit: &Figure) -> f64 {
    flow.samples
        .iter()
        .zip(&limit.samples)
        .map(|(f, l)| 100.0 * f / l)
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::min)
}

/// Case 11's section of docs/BENCHMARKS.md.
pub fn markdown(u: &Unequal) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## 8. One flow over unequal links (Mbit/s)\n\nEach case both ways (↓ server → client, \
         router B sends over the links; ↑ client → server). The limit is every link alone at \
         once (one flow per link), summed; a link whose rate follows a schedule counts the time \
         integral of its rates × {TCP_EFFICIENCY:.3} (TCP's payload per frame), measured over \
         whole periods. \"worst\" is the lowest round's ratio to that round's limit; the split is \
         the share of the flow's bytes each link carried (the links' rates' shares beside it)."
    );
    if u.scale != 1.0 {
        let _ = writeln!(
            o,
            "\n**Rates scaled: {}.** The case names give the rates as the issue does.",
            u.scale_reason
        );
    }
    if let Some(long) = u.long {
        let _ = writeln!(
            o,
            "\n**Long flows (`--long {long}`):** each flow through mpbridge or the peer lasted \
             {long} s after the omitted first (stretched to whole schedule periods) and is \
             measured over its second half, its split too: long enough for router A's slow-links \
             policy to judge it (its first trial starts 8 s into a load). The limit and each link \
             alone keep 6 s flows."
        );
    }
    let subjects: Vec<&str> = u
        .rows
        .first()
        .map(|r| r.flows.iter().map(|f| f.subject.as_str()).collect())
        .unwrap_or_default();
    let with_alone = subjects.contains(&MPTCP_ALONE);
    if with_alone {
        let _ = writeln!(
            o,
            "\n\"{MPTCP_ALONE}\" is one MPTCP connection from router A to router B with no proxy \
             (the kernel's own MPTCP over the same links and subflows, measured while mpbridge \
             runs with its defaults, in the same round), with the kernel's defaults: the \
             namespace's congestion control and autotuned buffers. It pays what the limit does \
             not, the DSS option (data sequence mapping and data ACK); \"mpbridge / \
             {MPTCP_ALONE}\" (the ratio of the medians) is what mpbridge adds to or loses from \
             MPTCP itself."
        );
    }
    let _ = write!(o, "\n| links | way | limit | each link alone |");
    for s in &subjects {
        let _ = write!(o, " {s} | {s} / limit (worst) |");
    }
    let _ = write!(o, " mpbridge / best link |");
    if with_alone {
        let _ = write!(o, " mpbridge / {MPTCP_ALONE} |");
    }
    let _ = writeln!(o, " mpbridge's split (rates) |");
    let _ = writeln!(
        o,
        "|{}",
        " --- |".repeat(6 + 2 * subjects.len() + usize::from(with_alone))
    );
    for r in &u.rows {
        let alone: Vec<String> = r
            .per_link
            .iter()
            .map(|f| format!("{:.1}", f.median()))
            .collect();
        let _ = write!(
            o,
            "| {} (`{}`) | {} | {} | {} |",
            r.name,
            r.links
                .iter()
                .map(LinkSpec::spec_text)
                .collect::<Vec<_>>()
                .join(","),
            match r.direction {
                Direction::Download => "↓",
                Direction::Upload => "↑",
            },
            fig(&r.limit, 1),
            alone.join(" + ")
        );
        for f in &r.flows {
            let _ = write!(
                o,
                " {} | {} ({:.0} %) |",
                fig(&f.mbit, 1),
                pct(f.mbit.median(), r.limit.median()),
                worst_round(&f.mbit, &r.limit)
            );
        }
        let total: f64 = r.links.iter().map(LinkSpec::mean_rate_mbit).sum();
        let split: Vec<String> = r
            .flows
            .first()
            .map(|f| {
                f.split
                    .iter()
                    .zip(&r.links)
                    .map(|(s, l)| {
                        format!(
                            "{:.0} ({:.0})",
                            s.median(),
                            100.0 * l.mean_rate_mbit() / total
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let best = r.flows.first().map_or(f64::NAN, |f| f.mbit.median());
        let _ = write!(o, " {} |", pct(best, r.best_link()));
        if with_alone {
            let alone = r
                .flows
                .iter()
                .find(|f| f.subject == MPTCP_ALONE)
                .map_or(f64::NAN, |f| f.mbit.median());
            let _ = write!(o, " {} |", pct(best, alone));
        }
        let _ = writeln!(o, " {} |", split.join(" / "));
    }
    for s in &u.skipped {
        let _ = writeln!(o, "\nSkipped: {s}.");
    }
    let snapshots: Vec<(&Row, &Flows)> = u
        .rows
        .iter()
        .flat_map(|r| r.flows.iter().map(move |f| (r, f)))
        .filter(|(_, f)| !f.snapshots.is_empty())
        .collect();
    if !snapshots.is_empty() {
        let _ = writeln!(
            o,
            "\n### 8. What the routers saw in the middle of the first round's flow\n\n`ss -tinm` \
             on each established subflow (and the MPTCP socket's skmem from `ss -Minm`), and the \
             nstat counters that moved during the flow.\n"
        );
    }
    for (r, f) in snapshots {
        let _ = writeln!(
            o,
            "**{} {}, {}**\n\n```text",
            r.name,
            r.direction.arrow(),
            f.subject
        );
        for snap in &f.snapshots {
            for (i, router) in ["router A", "router B"].into_iter().enumerate() {
                for line in subflow_lines(&snap.tcp[i], false) {
                    let _ = writeln!(o, "{router} {line}");
                }
                for line in subflow_lines(&snap.mptcp[i], true) {
                    let _ = writeln!(o, "{router} mptcp {line}");
                }
                let counters: Vec<String> = snap.nstat[i]
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                let _ = writeln!(o, "{router} nstat {}", counters.join(" "));
            }
        }
        let _ = writeln!(o, "```\n");
    }
    o
}

/// One line per established socket of `ss -…inmH` text that carried data
/// (`mptcp`: every one, its whole info line): its addresses and
/// [`ss_fields`] of its info line.
fn subflow_lines(text: &str, mptcp: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut head: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(h) = head.take() {
                if mptcp {
                    out.push(format!(
                        "{h} {}",
                        line.split_whitespace().collect::<Vec<_>>().join(" ")
                    ));
                } else if line.contains("bytes_acked:") || line.contains("bytes_received:") {
                    out.push(format!("{h} {}", ss_fields(line)));
                }
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        head = match f[..] {
            ["ESTAB", _, _, local, peer, ..] => Some(format!("{local}→{peer}")),
            _ => None,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_lines_for_paths_go_to_router_a_alone() {
        let v = Variant::parse(
            "slow links used|paths.slow_links = \"use\"; sndbuf = 1; probe.interface_counter = false",
        )
        .unwrap();
        let (paths, probe, roles) = split_variant_lines(&v.lines);
        assert_eq!(paths, "slow_links = \"use\"");
        assert_eq!(probe, "interface_counter = false");
        assert_eq!(roles, "sndbuf = 1");
    }

    #[test]
    fn every_target_case_parses() {
        assert_eq!(CASES.len(), 7);
        for (_, spec) in CASES {
            assert!(!crate::checks::parse_links(spec).unwrap().is_empty());
        }
    }

    #[test]
    fn scaling_keeps_delays_and_scales_every_step() {
        let links = crate::checks::parse_links("100@5ms,wifi").unwrap();
        let s = scaled(&links, 0.2);
        assert_eq!(s[0].rate_mbit, 20);
        assert_eq!(s[0].delay_us, 5000);
        let steps: Vec<u32> = s[1].schedule.iter().map(|x| x.rate_mbit).collect();
        assert_eq!(steps, [16, 8, 12]);
        assert!((s[1].mean_rate_mbit() - 0.2 * links[1].mean_rate_mbit()).abs() < 0.01);
    }

    #[test]
    fn a_scheduled_case_is_measured_over_whole_periods() {
        let wifi = crate::checks::parse_links("wifi,50").unwrap();
        assert_eq!(flow_secs(&wifi, 6.0), 9.0);
        assert_eq!(flow_secs(&wifi, 10.0), 18.0);
        assert_eq!(
            flow_secs(&crate::checks::parse_links("50,20").unwrap(), 6.0),
            6.0
        );
    }

    #[test]
    fn the_limit_counts_a_scheduled_link_by_its_mean_rate() {
        let links = crate::checks::parse_links("wifi,50").unwrap();
        let limit = limit_of(&links, &[10.0, 47.0]);
        assert!(
            (limit - (64.444 * TCP_EFFICIENCY + 47.0)).abs() < 0.01,
            "{limit}"
        );
    }

    #[test]
    fn a_long_flow_is_measured_over_its_second_half() {
        // 1 s omitted, then 10 s: 2 MB/s for 6 s, then 1 MB/s.
        let intervals: Vec<iperf::Interval> = (0..11)
            .map(|k| iperf::Interval {
                start: k as f64 + 0.00004,
                end: k as f64 + 1.00004,
                bytes: if k < 6 { 2_000_000 } else { 1_000_000 },
            })
            .collect();
        // From 6 s on: 5 intervals at 8 Mbit/s.
        assert!((second_half_mbit(&intervals, 10.0) - 8.0).abs() < 1e-3);
        assert!(second_half_mbit(&intervals[..3], 10.0).is_nan());
    }

    #[test]
    fn variants_parse_into_lines_for_both_roles() {
        let v = Variant::parse("big buffers|sndbuf = 4194304; x = 1").unwrap();
        assert_eq!(v.label, "big buffers");
        assert_eq!(v.lines, "sndbuf = 4194304\nx = 1");
        assert!(Variant::parse("no bar").is_err());
        assert!(Variant::parse("|x = 1").is_err());
    }

    #[test]
    fn nstat_keeps_the_counters_that_matter_and_their_growth() {
        let before = parse_nstat(
            "#kernel\nTcpExtTCPOFOQueue 10 0.0\nIpInReceives 5 0.0\nMPTcpExtDSSNoMatchTCP 0 0.0\n",
        );
        assert_eq!(before.len(), 2);
        let after = parse_nstat("TcpExtTCPOFOQueue 25 0.0\nMPTcpExtDSSNoMatchTCP 0 0.0\n");
        assert_eq!(moved(&before, &after), [("TcpExtTCPOFOQueue".into(), 15)]);
    }

    #[test]
    fn ss_fields_picks_what_limits_a_flow() {
        let line = " skmem:(r0,rb131072,t0,tb87040,f0,w0,o0,bl0,d0) bbr wscale:7,7 rtt:10.5/2 \
                    cwnd:40 bytes_sent:100 delivery_rate 48.2Mbps rwnd_limited:120ms(3.1%) \
                    snd_wnd:65536 rcv_space:14480";
        assert_eq!(
            ss_fields(line),
            "skmem:(r0,rb131072,t0,tb87040,f0,w0,o0,bl0,d0) rtt:10.5/2 cwnd:40 snd_wnd:65536 \
             rcv_space:14480 delivery_rate:48.2Mbps rwnd_limited:120ms(3.1%) bytes_sent:100"
        );
    }

    #[test]
    fn mptcp_alone_gets_its_column_and_mpbridge_its_ratio_to_it() {
        let fig = |v: &[f64]| Figure {
            samples: v.to_vec(),
        };
        let flows = |subject: &str, v: &[f64]| Flows {
            subject: subject.into(),
            mbit: fig(v),
            split: vec![fig(&[50.0]), fig(&[50.0])],
            snapshots: Vec::new(),
        };
        let links = crate::checks::parse_links("50,50").unwrap();
        let row = Row {
            name: "2 × 50, equal".into(),
            links,
            direction: Direction::Download,
            secs: 6.0,
            per_link: vec![fig(&[47.8]), fig(&[47.8])],
            limit: fig(&[95.6]),
            flows: vec![
                flows("mpbridge", &[93.7]),
                flows("peer", &[91.0]),
                flows(MPTCP_ALONE, &[93.8]),
            ],
        };
        let mut u = Unequal {
            scale: 1.0,
            scale_reason: String::new(),
            long: None,
            rows: vec![row],
            skipped: Vec::new(),
        };
        let text = markdown(&u);
        let head = text.lines().find(|l| l.starts_with("| links")).unwrap();
        assert!(
            head.ends_with(
                "| MPTCP alone | MPTCP alone / limit (worst) | mpbridge / best link | \
                 mpbridge / MPTCP alone | mpbridge's split (rates) |"
            ),
            "{head}"
        );
        let line = text.lines().find(|l| l.starts_with("| 2 × 50")).unwrap();
        assert!(
            line.ends_with("| 98 % (98 %) | 196 % | 100 % | 50 (50) / 50 (50) |"),
            "{line}"
        );
        let columns = |l: &str| l.matches('|').count();
        let rule = text.lines().find(|l| l.starts_with("| ---")).unwrap();
        assert_eq!(columns(head), columns(line));
        assert_eq!(columns(head), columns(rule));
        // A report written before MPTCP alone was measured keeps its shape.
        u.rows[0].flows.pop();
        let text = markdown(&u);
        assert!(!text.contains(MPTCP_ALONE), "{text}");
    }
}
