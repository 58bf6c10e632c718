//! iperf3 in the lab: servers in a namespace, clients whose JSON report
//! (`-J`) is read into per-interval received bytes, so scenarios can see
//! goodput over time, stalls included.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::{Node, Proc, Topology};

/// Port of the lab's iperf3 servers.
pub const PORT: u16 = 5201;

/// One reporting interval of a run, from the receiver's point of view.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Seconds since the run started (omitted slow-start intervals, `-O`,
    /// included: the clock does not restart after them).
    pub start: f64,
    pub end: f64,
    pub bytes: u64,
}

impl Interval {
    /// Goodput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        let secs = (self.end - self.start).max(1e-9);
        self.bytes as f64 * 8.0 / secs / 1e6
    }
}

/// What an iperf3 client run reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub intervals: Vec<Interval>,
    /// Received bytes over the whole run.
    pub received_bytes: u64,
    /// Receiver-side goodput over the whole run, Mbit/s.
    pub received_mbit_per_s: f64,
}

/// Starts `iperf3 -s` in `node`, bound to `addr`, and waits until it listens.
pub fn start_server(topo: &Topology, node: Node, addr: IpAddr, name: &str) -> anyhow::Result<Proc> {
    let proc = topo.spawn_named(
        node,
        name,
        Command::new("iperf3").args(["-s", "-B", &addr.to_string(), "-p", &PORT.to_string()]),
    )?;
    let listening = crate::wait_until(Duration::from_secs(5), || {
        topo.run(node, &["ss", "-ltnH", &format!("sport = :{PORT}")])
            .is_ok_and(|out| !out.trim().is_empty())
    });
    anyhow::ensure!(
        listening,
        "iperf3 server did not start:\n{}",
        proc.output_text()
    );
    Ok(proc)
}

/// The iperf3 client arguments for one run: to `server`, for `secs`,
/// reporting every `interval` seconds; `reverse` has the server send.
pub fn client_args(
    server: IpAddr,
    secs: f64,
    interval: f64,
    reverse: bool,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "iperf3".into(),
        "-c".into(),
        server.to_string(),
        "-p".into(),
        PORT.to_string(),
        "-t".into(),
        format!("{secs}"),
        "-i".into(),
        format!("{interval}"),
        "-J".into(),
    ];
    if reverse {
        args.push("-R".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs an iperf3 client to completion in `node`.
pub fn run_client(topo: &Topology, node: Node, args: &[String]) -> anyhow::Result<Report> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = topo.run(node, &argv)?;
    parse_report(&out)
}

/// Reads iperf3's `-J` output. In a reverse run (`-R`) the client is the
/// receiver, and its intervals count what it received.
pub fn parse_report(json: &str) -> anyhow::Result<Report> {
    let v: Value = serde_json::from_str(json).context("iperf3 did not print JSON")?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        anyhow::bail!("iperf3: {err}");
    }
    // After the omitted intervals (`-O`) iperf3 restarts its clock at 0;
    // shift what follows so the run has one clock.
    let mut omitted_until = 0.0;
    let mut intervals = Vec::new();
    for i in v["intervals"]
        .as_array()
        .context("iperf3 JSON has no intervals")?
    {
        let sum = &i["sum"];
        let (Some(start), Some(end), Some(bytes)) = (
            sum["start"].as_f64(),
            sum["end"].as_f64(),
            sum["bytes"].as_f64(),
        ) else {
            continue;
        };
        let offset = if sum["omitted"].as_bool() == Some(true) {
            omitted_until = end;
            0.0
        } else {
            omitted_until
        };
        intervals.push(Interval {
            start: start + offset,
            end: end + offset,
            bytes: bytes as u64,
        });
    }
    let received = &v["end"]["sum_received"];
    Ok(Report {
        intervals,
        received_bytes: received["bytes"].as_f64().unwrap_or(0.0) as u64,
        received_mbit_per_s: received["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
    })
}

/// The longest run of consecutive intervals in which nothing arrived,
/// among intervals that start at or after `from` (seconds).
pub fn longest_stall(intervals: &[Interval], from: f64) -> f64 {
    let mut longest: f64 = 0.0;
    let mut current = 0.0;
    for i in intervals.iter().filter(|i| i.start + 1e-6 >= from) {
        if i.bytes == 0 {
            current += i.end - i.start;
            longest = longest.max(current);
        } else {
            current = 0.0;
        }
    }
    longest
}

/// The longest run of consecutive intervals with goodput below
/// `mbit_per_s`, among intervals that start at or after `from`: a stall in
/// which a trickle still arrives.
pub fn longest_below(intervals: &[Interval], from: f64, mbit_per_s: f64) -> f64 {
    let mut longest: f64 = 0.0;
    let mut current = 0.0;
    for i in intervals.iter().filter(|i| i.start + 1e-6 >= from) {
        if i.mbit_per_s() < mbit_per_s {
            current += i.end - i.start;
            longest = longest.max(current);
        } else {
            current = 0.0;
        }
    }
    longest
}

/// Mean goodput (Mbit/s) over the intervals inside `[from, to)`.
pub fn mean_mbit(intervals: &[Interval], from: f64, to: f64) -> f64 {
    let inside: Vec<&Interval> = intervals
        .iter()
        .filter(|i| i.start + 1e-6 >= from && i.end <= to + 1e-6)
        .collect();
    let bytes: u64 = inside.iter().map(|i| i.bytes).sum();
    let secs: f64 = inside.iter().map(|i| i.end - i.start).sum();
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 * 8.0 / secs / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: f64, bytes: u64) -> Interval {
        Interval {
            start,
            end: start + 0.1,
            bytes,
        }
    }

    #[test]
    fn the_longest_stall_counts_consecutive_empty_intervals_after_the_failure() {
        let ivs = [
            iv(0.0, 0),
            iv(0.1, 0),
            iv(0.2, 5),
            iv(0.3, 0),
            iv(0.4, 0),
            iv(0.5, 0),
            iv(0.6, 9),
        ];
        assert!((longest_stall(&ivs, 0.0) - 0.3).abs() < 1e-9);
        assert!((longest_stall(&ivs, 0.2) - 0.3).abs() < 1e-9);
        assert_eq!(longest_stall(&ivs, 0.6), 0.0);
    }

    #[test]
    fn a_trickle_is_not_a_zero_stall_but_is_below_a_threshold() {
        // 1250 bytes per 100 ms is 0.1 Mbit/s.
        let ivs = [
            iv(0.0, 1_250_000),
            iv(0.1, 1250),
            iv(0.2, 0),
            iv(0.3, 1250),
            iv(0.4, 1_250_000),
        ];
        assert!((longest_stall(&ivs, 0.0) - 0.1).abs() < 1e-9);
        assert!((longest_below(&ivs, 0.0, 1.0) - 0.3).abs() < 1e-9);
        assert_eq!(longest_below(&ivs, 0.4, 1.0), 0.0);
    }

    #[test]
    fn mean_goodput_covers_only_the_window() {
        let ivs = [iv(0.0, 125_000), iv(0.1, 250_000), iv(0.2, 0)];
        assert!((mean_mbit(&ivs, 0.0, 0.2) - 15.0).abs() < 1e-9);
        assert!((mean_mbit(&ivs, 0.1, 0.2) - 20.0).abs() < 1e-9);
        assert_eq!(mean_mbit(&ivs, 5.0, 6.0), 0.0);
    }

    #[test]
    fn a_reverse_report_is_read_from_the_receivers_intervals() {
        let json = r#"{"intervals":[{"sum":{"start":0,"end":0.1,"bytes":1000}},
            {"sum":{"start":0.1,"end":0.2,"bytes":0}}],
            "end":{"sum_received":{"bytes":1000,"bits_per_second":40000}}}"#;
        let r = parse_report(json).unwrap();
        assert_eq!(r.intervals.len(), 2);
        assert_eq!(r.received_bytes, 1000);
        assert!((r.received_mbit_per_s - 0.04).abs() < 1e-9);
        assert!(parse_report(r#"{"error":"unable to connect"}"#).is_err());
    }

    #[test]
    fn intervals_after_the_omitted_ones_keep_one_clock() {
        let json = r#"{"intervals":[
            {"sum":{"start":0,"end":0.5,"bytes":1,"omitted":true}},
            {"sum":{"start":0.5,"end":1.0,"bytes":2,"omitted":true}},
            {"sum":{"start":0,"end":0.5,"bytes":3,"omitted":false}},
            {"sum":{"start":0.5,"end":1.0,"bytes":4,"omitted":false}}],
            "end":{"sum_received":{"bytes":7,"bits_per_second":56}}}"#;
        let r = parse_report(json).unwrap();
        let starts: Vec<f64> = r.intervals.iter().map(|i| i.start).collect();
        assert_eq!(starts, [0.0, 0.5, 1.0, 1.5]);
        assert_eq!(r.intervals[3].end, 2.0);
    }
}
