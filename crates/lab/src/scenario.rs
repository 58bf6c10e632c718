//! Lab scenarios that drive iperf3 through the real bridge: aggregation
//! against the per-link limit, failover of a long flow, and unshaped
//! throughput against plain routing with the daemons' CPU cost.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bridge::{self, Bridge, BridgeOptions};
use crate::iperf::{self, Interval};
use crate::{Node, Proc, Topology, TopologySpec};

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

/// The aggregation figures.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Each link alone, one TCP flow, Mbit/s.
    pub per_link: Vec<f64>,
    /// Their sum: what the links can carry.
    pub limit: f64,
    /// One flow client → server through the bridge, Mbit/s.
    pub bridge: f64,
}

impl Aggregate {
    pub fn percent_of_limit(&self) -> f64 {
        if self.limit > 0.0 {
            100.0 * self.bridge / self.limit
        } else {
            0.0
        }
    }
}

/// Each link alone (router B → router A on that link's addresses), then one
/// flow server → client through the bridge, each for `secs` after a first
/// second left out (slow start).
pub fn aggregate(lab: &Lab, secs: f64, progress: &dyn Fn(&str)) -> anyhow::Result<Aggregate> {
    let topo = &lab.topo;
    let mut per_link = Vec::new();
    for link in 0..topo.link_count() {
        progress(&format!("link {link} alone"));
        let name = format!("iperf3-link{link}");
        let _server =
            iperf::start_server(topo, Node::RouterB, topo.rb_link_addr(link, false), &name)?;
        let bind = topo.ra_link_addr(link, false).to_string();
        let args = iperf::client_args(
            topo.rb_link_addr(link, false),
            secs,
            1.0,
            true,
            &["-B", &bind],
        );
        let report = iperf::run_client(topo, Node::RouterA, &args)?;
        per_link.push(report.received_mbit_per_s);
    }
    progress("through the bridge");
    let args = iperf::client_args(topo.server_addr(false), secs, 1.0, true, &["-O", "1"]);
    let report = iperf::run_client(topo, Node::Client, &args)?;
    Ok(Aggregate {
        limit: per_link.iter().sum(),
        per_link,
        bridge: report.received_mbit_per_s,
    })
}

/// How a link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn apply(self, topo: &Topology, link: usize, failed: bool) -> anyhow::Result<()> {
        match (self, failed) {
            (Failure::Down, true) => topo.link_down(link),
            (Failure::Down, false) => topo.link_up(link),
            (Failure::Blackhole, on) => topo.blackhole(link, on),
        }
    }
}

/// The failover figures of one run.
#[derive(Debug, Clone)]
pub struct Failover {
    pub failure: Failure,
    pub link: usize,
    /// Longest time with zero goodput after the failure, seconds (100 ms
    /// resolution).
    pub longest_stall: f64,
    /// Mean goodput from 1 s after the failure until the restore, Mbit/s.
    pub survivors_mbit: f64,
    /// Mean goodput before the failure, Mbit/s.
    pub before_mbit: f64,
    /// Seconds after the restore until the restored link carried traffic
    /// again for the same connection; `None` if it never did in the run.
    pub regained_after: Option<f64>,
    /// Bytes the receiver got over the whole run.
    pub received_bytes: u64,
    pub intervals: Vec<Interval>,
}

/// Per-link received bytes on router A, sampled every 100 ms.
type Samples = Vec<(f64, Vec<u64>)>;

/// Bytes router A's MPTCP subflows on each link have received: counted by
/// TCP, so unlike interface counters they exclude what a blackhole drops.
fn subflow_bytes(topo: &Topology, links: usize) -> Vec<u64> {
    let sockets = topo.tcp_sockets(Node::RouterA).unwrap_or_default();
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
        .collect()
}

/// One long flow server → client through the bridge; `link` fails at
/// `fail_at` seconds and is restored at `restore_at`; the run lasts `secs`.
pub fn failover(
    lab: &Lab,
    failure: Failure,
    link: usize,
    fail_at: f64,
    restore_at: f64,
    secs: f64,
) -> anyhow::Result<Failover> {
    let topo = &lab.topo;
    let name = format!("iperf3-failover-{}-{link}", failure.name());
    let args = iperf::client_args(topo.server_addr(false), secs, 0.1, true, &[]);
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    let started = Instant::now();
    let client = topo.spawn_named(Node::Client, &name, &mut cmd)?;

    // Sample each link's received bytes on router A while the flow runs.
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let links = topo.link_count();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let sampler = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                let rx = subflow_bytes(topo, links);
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((t, rx));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = (|| -> anyhow::Result<()> {
            sleep_until(started, fail_at);
            failure.apply(topo, link, true)?;
            sleep_until(started, restore_at);
            failure.apply(topo, link, false)?;
            client.wait_exit(Duration::from_secs_f64(secs + 15.0))?;
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        result
    })?;
    let out = std::fs::read_to_string(client.stdout_path()).context("iperf3 output")?;
    let report =
        iperf::parse_report(&out).with_context(|| format!("{name}: {}", client.output_text()))?;
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Failover {
        failure,
        link,
        longest_stall: iperf::longest_stall(&report.intervals, fail_at),
        survivors_mbit: iperf::mean_mbit(&report.intervals, fail_at + 1.0, restore_at),
        before_mbit: iperf::mean_mbit(&report.intervals, 1.0, fail_at),
        regained_after: regained(&samples, link, restore_at),
        received_bytes: report.received_bytes,
        intervals: report.intervals,
    })
}

fn sleep_until(started: Instant, at: f64) {
    let target = Duration::from_secs_f64(at);
    if let Some(left) = target.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
}

/// First time after `restore_at` at which `link` received more than
/// 1 Mbit/s over a sample period, relative to `restore_at`.
fn regained(samples: &Samples, link: usize, restore_at: f64) -> Option<f64> {
    samples.windows(2).find_map(|w| {
        let (t0, a) = &w[0];
        let (t1, b) = &w[1];
        let bits = b.get(link)?.saturating_sub(*a.get(link)?) as f64 * 8.0;
        let rate = bits / (t1 - t0).max(1e-3);
        (*t0 >= restore_at && rate > 1e6).then(|| t1 - restore_at)
    })
}

/// Unshaped throughput: plain routing against the bridge, and what the
/// daemons spent in CPU for it.
#[derive(Debug, Clone)]
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
pub fn throughput(lab: &Lab, secs: f64, progress: &dyn Fn(&str)) -> anyhow::Result<Throughput> {
    let topo = &lab.topo;
    let server = topo.server_addr(false);
    let cpu = |p: &Proc| cpu_seconds(p.pid()).unwrap_or(0.0);
    // One flow each way (client → server, then server → client).
    let both_ways = |path: &str| -> anyhow::Result<(iperf::Report, iperf::Report)> {
        let run = |reverse: bool, what: &str| {
            progress(&format!("{path}, {what}"));
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

    bridge::remove_interception(topo)?;
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
    fn this_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn a_link_is_regained_when_its_counter_moves_after_the_restore() {
        let samples: Samples = vec![
            (5.9, vec![0, 100]),
            (6.0, vec![0, 200]),
            (6.1, vec![0, 300]),
            (6.2, vec![50_000, 400]),
        ];
        let t = regained(&samples, 0, 6.0).unwrap();
        assert!((t - 0.2).abs() < 1e-9);
        assert_eq!(regained(&samples, 1, 6.0), None);
    }
}
