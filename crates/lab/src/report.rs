//! The results of one `mpbridge-lab run`: the [`Report`] that `--json`
//! writes with every sample, and the table printed on the terminal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::plan::LinkSpec;
use crate::scenario::{Aggregate, Failover, Integrity, Throughput, Verdicts};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    /// The scenario's name (`demo`, `aggregate`, …).
    pub scenario: String,
    /// The links as built.
    pub links: Vec<LinkSpec>,
    pub aggregate: Option<Aggregate>,
    pub failover: Vec<Failover>,
    pub integrity: Option<Integrity>,
    pub throughput: Option<Throughput>,
    /// What the daemons' probes decided over the run (their logs).
    #[serde(default)]
    pub verdicts: Option<Verdicts>,
    /// Wall time of the whole run, lab set-up and teardown excluded.
    pub wall_seconds: f64,
}

impl Report {
    pub fn new(scenario: &str, links: &[LinkSpec]) -> Report {
        Report {
            scenario: scenario.into(),
            links: links.to_vec(),
            aggregate: None,
            failover: Vec::new(),
            integrity: None,
            throughput: None,
            verdicts: None,
            wall_seconds: 0.0,
        }
    }

    /// `2 links: 50 Mbit/s, 50 Mbit/s (1 % loss)`.
    pub fn links_line(&self) -> String {
        let each: Vec<String> = self.links.iter().map(link_text).collect();
        format!("{} link(s): {}", self.links.len(), each.join("; "))
    }

    /// The readable table of everything measured.
    pub fn table(&self) -> String {
        let mut out = format!("lab: {}\n", self.links_line());
        if let Some(a) = &self.aggregate {
            let _ = writeln!(
                out,
                "\naggregation (one TCP flow, {}; each link alone, then through mpbridge, {} s \
                 each after 1 s of slow start)",
                a.direction.arrow(),
                a.secs
            );
            for (i, mbit) in a.per_link.iter().enumerate() {
                let _ = writeln!(out, "  link {i} alone            {mbit:8.1} Mbit/s");
            }
            let _ = writeln!(out, "  limit (sum of links)    {:8.1} Mbit/s", a.limit);
            // What the links are set to (a schedule's average): a limit
            // well below says the lab, not the links, set it.
            if !self.links.is_empty() && self.links.iter().all(|l| l.rate_mbit > 0) {
                let rates: f64 = self.links.iter().map(LinkSpec::mean_rate_mbit).sum();
                let _ = writeln!(out, "  the links' rates        {rates:8.1} Mbit/s");
            }
            let _ = writeln!(
                out,
                "  through mpbridge        {:8.1} Mbit/s   {:.1} % of the limit",
                a.bridge, a.percent_of_limit
            );
        }
        if let Some(first) = self.failover.first() {
            let p = &first.plan;
            let _ = writeln!(
                out,
                "\nfailover (one long flow, {} s; the link fails at {} s and returns at {} s)",
                p.secs, p.fail_at, p.restore_at
            );
            let _ = writeln!(
                out,
                "  {:<10} {:<16} {:>4} {:>12} {:>14} {:>12} {:>14} {:>11} {:>16}",
                "failure",
                "flow",
                "link",
                "before",
                "on survivors",
                "after",
                "longest stall",
                "below 10 %",
                "link regained"
            );
            for f in &self.failover {
                let _ = writeln!(
                    out,
                    "  {:<10} {:<16} {:>4} {:>5.1} Mbit/s {:>7.1} Mbit/s {:>5.1} Mbit/s {:>11.0} ms {:>9.1} s {:>16}",
                    f.plan.failure.name(),
                    f.plan.direction.arrow(),
                    f.plan.link,
                    f.before_mbit,
                    f.survivors_mbit,
                    f.after_mbit,
                    f.longest_stall * 1000.0,
                    f.longest_dip,
                    regained_text(f.regained_after),
                );
            }
            let _ = writeln!(
                out,
                "  (longest stall: longest time the receiving application got no byte after the \
                 failure; below 10 %: longest time with goodput under a tenth of \"before\", \
                 100 ms steps; link regained: time after the restore until the link carried the \
                 same connection's data again)"
            );
        }
        if let Some(i) = &self.integrity {
            let _ = writeln!(
                out,
                "\nintegrity ({:.0} MB each way over one connection, SHA-256 checked end to end)",
                i.plan.bytes as f64 / 1e6
            );
            for (name, d) in [
                ("client → server", &i.outcome.client_to_server),
                ("server → client", &i.outcome.server_to_client),
            ] {
                let _ = writeln!(
                    out,
                    "  {name}   {:>12} of {:>12} bytes   sha256 {}…   {}",
                    d.received_bytes,
                    d.sent_bytes,
                    &d.received_sha256[..16.min(d.received_sha256.len())],
                    if d.intact() { "intact" } else { "CORRUPT" }
                );
            }
            let _ = writeln!(
                out,
                "  took {:.1} s ({:.1} Mbit/s each way), longest stall {:.1} s",
                i.seconds, i.mean_mbit, i.longest_stall
            );
            let mut restores = i.regained_after.iter();
            for e in i.series.events.iter().filter(|e| !e.restored) {
                let back = i
                    .series
                    .events
                    .iter()
                    .find(|r| r.restored && r.link == e.link && r.t >= e.t);
                let regained = restores.next().and_then(|r| r.1);
                let _ = writeln!(
                    out,
                    "  link {} {:<11} {:5.1} s → {}   regained {}",
                    e.link,
                    e.failure.state(),
                    e.t,
                    back.map_or("end".into(), |r| format!("{:5.1} s", r.t)),
                    regained_text(regained)
                );
            }
        }
        if let Some(v) = &self.verdicts {
            let _ = writeln!(
                out,
                "\nprobe verdicts: a link taken down {} time(s) by router A's probes, {} by router \
                 B's; {} silence(s) on every link at once held (no link taken down); a daemon \
                 held up {} time(s) for three probe intervals or more (not counted in the \
                 probes' windows)",
                v.local_downs, v.remote_downs, v.held, v.held_up
            );
        }
        let _ = writeln!(out, "\nwall time {:.1} s", self.wall_seconds);
        out
    }
}

fn link_text(l: &LinkSpec) -> String {
    l.to_string()
}

fn regained_text(t: Option<f64>) -> String {
    match t {
        Some(t) => format!("after {t:.1} s"),
        None => "not in this run".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Direction, FailoverPlan, Failure, Series};

    fn series() -> Series {
        Series {
            goodput: vec![],
            links: vec![],
            events: vec![],
        }
    }

    #[test]
    fn the_table_shows_each_figure() {
        let mut r = Report::new(
            "demo",
            &[
                LinkSpec::shaped(50),
                LinkSpec {
                    loss_pct: 1.0,
                    ..LinkSpec::UNSHAPED
                },
            ],
        );
        r.aggregate = Some(Aggregate {
            direction: Default::default(),
            secs: 4.0,
            per_link: vec![47.9, 47.8],
            limit: 95.7,
            bridge: 95.0,
            percent_of_limit: 99.27,
            series: series(),
        });
        r.failover.push(Failover {
            plan: FailoverPlan {
                failure: Failure::Blackhole,
                link: 1,
                direction: Direction::Download,
                fail_at: 3.0,
                restore_at: 6.0,
                secs: 10.0,
            },
            longest_stall: 0.3004,
            stall_began: 0.0,
            longest_dip: 1.2,
            before_mbit: 94.0,
            survivors_mbit: 47.0,
            after_mbit: 93.0,
            regained_after: None,
            received_bytes: 1,
            silences: Vec::new(),
            series: series(),
        });
        r.wall_seconds = 33.25;
        r.verdicts = Some(crate::scenario::Verdicts {
            local_downs: 1,
            remote_downs: 2,
            held: 0,
            held_up: 3,
        });
        let t = r.table();
        for needle in [
            "a link taken down 1 time(s) by router A's probes, 2 by router B's; 0 silence(s)",
            "a daemon held up 3 time(s)",
            "2 link(s): 50 Mbit/s; unshaped (1 % loss)",
            "link 1 alone                47.8 Mbit/s",
            "99.3 % of the limit",
            "blackhole  server → client     1  94.0 Mbit/s",
            "longest stall  below 10 %    link regained",
            "300 ms",
            "1.2 s",
            "not in this run",
            "wall time 33.2 s",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in\n{t}");
        }
        assert!(
            !t.contains("the links' rates"),
            "an unshaped link has none:\n{t}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failover"][0]["plan"]["failure"], "blackhole");
        assert_eq!(json["links"][1]["loss_pct"], 1.0);
        // Fields a plain link does not use stay out of the JSON.
        assert!(json["links"][0].get("delay_us").is_none(), "{json}");
    }

    #[test]
    fn the_links_rates_are_their_time_average_and_the_report_reads_back() {
        let links = crate::checks::parse_links("wifi,50@30ms").unwrap();
        let mut r = Report::new("aggregate", &links);
        r.aggregate = Some(Aggregate {
            direction: crate::scenario::Direction::Upload,
            secs: 9.0,
            per_link: vec![60.0, 48.0],
            limit: 108.0,
            bridge: 100.0,
            percent_of_limit: 92.6,
            series: series(),
        });
        let t = r.table();
        for needle in [
            "2 link(s): wifi (80 Mbit/s for 4 s",
            "50 Mbit/s, 30 ms one way",
            "one TCP flow, client → server",
            "the links' rates           114.4 Mbit/s",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in\n{t}");
        }
        // The host renders what the VM wrote.
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.links, links);
        assert_eq!(back.table(), t);
    }
}
