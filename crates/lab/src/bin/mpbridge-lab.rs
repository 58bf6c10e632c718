//! `mpbridge-lab`: the test bed on one machine. Builds client, router A, N
//! shaped links, router B and server as network namespaces, runs the real
//! daemons in them and measures with iperf3. Argument parsing and printing
//! only; the scenarios live in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mpbridge_lab::bridge::BridgeOptions;
use mpbridge_lab::scenario::{self, Failure, Lab};
use mpbridge_lab::{LinkSpec, TopologySpec};

#[derive(Parser)]
#[command(version, about = "mpbridge's test bed in network namespaces")]
struct Cli {
    /// The mpbridge binary (default: beside this one, or $MPBRIDGE_BIN).
    #[arg(long, global = true, value_name = "PATH")]
    mpbridge: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario.
    Run {
        scenario: Scenario,
        /// Link rates in Mbit/s, comma-separated (0 = unshaped).
        #[arg(long, value_name = "MBIT,MBIT,…")]
        links: Option<String>,
        /// An extra line for the `[local]` section of mpbridge local's
        /// config, e.g. "fastopen = false" (repeatable).
        #[arg(long, value_name = "KEY = VALUE")]
        local_config: Vec<String>,
    },
    /// Remove namespaces left behind by runs that were killed.
    Clean,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// Aggregation on the links, then failover of a long flow (down, blackhole).
    Demo,
    /// Unshaped links: bridge against plain routing, and the daemons' CPU per GB.
    Throughput,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpbridge-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_links(text: &str) -> anyhow::Result<TopologySpec> {
    let links = text
        .split(',')
        .map(|r| {
            r.trim().parse::<u32>().map(LinkSpec::shaped).map_err(|_| {
                anyhow::anyhow!(
                    "--links: {r:?} is not a rate in Mbit/s (expected e.g. --links 50,50)"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = TopologySpec { links };
    spec.validate().context("--links")?;
    Ok(spec)
}

fn preflight() -> anyhow::Result<()> {
    let iperf = std::process::Command::new("iperf3")
        .arg("--version")
        .output();
    anyhow::ensure!(
        iperf.is_ok_and(|o| o.status.success()),
        "iperf3 is not installed: run `apt-get install iperf3` (scripts/demo.sh does it for you)"
    );
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (scenario, links, local_config) = match cli.command {
        Cmd::Clean => {
            let removed = mpbridge_lab::clean_leftovers()?;
            println!("removed {} namespace(s) {removed:?}", removed.len());
            return Ok(());
        }
        Cmd::Run {
            scenario,
            links,
            local_config,
        } => (scenario, links, local_config),
    };
    let default_links = match scenario {
        Scenario::Demo => "50,50",
        Scenario::Throughput => "0,0",
    };
    let spec = parse_links(links.as_deref().unwrap_or(default_links))?;
    preflight()?;
    let mpbridge = match cli.mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let options = BridgeOptions {
        local_extra: local_config.join("\n"),
        ..BridgeOptions::default()
    };
    let lab = Lab::start(&spec, &mpbridge, &options)?;
    let rates: Vec<String> = spec
        .links
        .iter()
        .map(|l| {
            if l.rate_mbit == 0 {
                "unshaped".into()
            } else {
                format!("{} Mbit/s", l.rate_mbit)
            }
        })
        .collect();
    println!("lab: {} link(s): {}", spec.links.len(), rates.join(", "));
    let progress = |what: &str| eprintln!("  … {what}");
    let result = match scenario {
        Scenario::Demo => demo(&lab, &progress),
        Scenario::Throughput => throughput(&lab, &progress),
    };
    if result.is_err() {
        eprintln!("{}", lab.bridge.logs());
    }
    result
}

fn demo(lab: &Lab, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    let agg = scenario::aggregate(lab, 4.0, progress)?;
    println!("\naggregation (one TCP flow, server → client, 4 s each after 1 s of slow start)");
    for (i, mbit) in agg.per_link.iter().enumerate() {
        println!("  link {i} alone            {mbit:8.1} Mbit/s");
    }
    println!("  limit (sum of links)    {:8.1} Mbit/s", agg.limit);
    println!(
        "  through mpbridge        {:8.1} Mbit/s   {:.1} % of the limit",
        agg.bridge,
        agg.percent_of_limit()
    );

    println!("\nfailover (one long flow; link 0, which carries the first subflow, fails at 3 s and returns at 6 s; 10 s run)");
    println!(
        "  {:<10} {:>12} {:>16} {:>16} {:>22}",
        "failure", "before", "on survivors", "longest stall", "link 0 regained after"
    );
    for failure in [Failure::Down, Failure::Blackhole] {
        progress(&format!("failover: {}", failure.name()));
        let f = scenario::failover(lab, failure, 0, 3.0, 6.0, 10.0)?;
        let regained = match f.regained_after {
            Some(t) => format!("{t:.1} s"),
            None => "not in this run".into(),
        };
        println!(
            "  {:<10} {:>7.1} Mbit/s {:>9.1} Mbit/s {:>14.1} s {:>22}",
            failure.name(),
            f.before_mbit,
            f.survivors_mbit,
            f.longest_stall,
            regained
        );
    }
    println!(
        "\nThe daemons' path managers set the MPTCP endpoints and policy routing up, probe every link \
         every 100 ms, and take a link out of service (and back) as the probes say."
    );
    Ok(())
}

fn throughput(lab: &Lab, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    let t = scenario::throughput(lab, 5.0, progress)?;
    println!("\nthroughput (one TCP flow, 5 s each)");
    println!(
        "  {:<26} {:>14} {:>14}",
        "", "client→server", "server→client"
    );
    println!(
        "  {:<26} {:>9.0} Mbit/s {:>9.0} Mbit/s",
        "plain routing", t.routing_up, t.routing_down
    );
    println!(
        "  {:<26} {:>9.0} Mbit/s {:>9.0} Mbit/s",
        "through mpbridge", t.bridge_up, t.bridge_down
    );
    println!(
        "  {:<26} {:>13.0} % {:>13.0} %",
        "bridge / routing",
        100.0 * t.bridge_up / t.routing_up.max(1e-9),
        100.0 * t.bridge_down / t.routing_down.max(1e-9)
    );
    println!(
        "\nCPU per GB relayed: mpbridge local {:.2} s, mpbridge remote {:.2} s",
        t.local_cpu_s_per_gb, t.remote_cpu_s_per_gb
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_rates_parse_and_bad_ones_say_what_is_expected() {
        let spec = parse_links("100, 50,20").unwrap();
        let rates: Vec<u32> = spec.links.iter().map(|l| l.rate_mbit).collect();
        assert_eq!(rates, [100, 50, 20]);
        let err = parse_links("50,fast").unwrap_err().to_string();
        assert!(
            err.contains("\"fast\" is not a rate") && err.contains("--links 50,50"),
            "{err}"
        );
        assert!(parse_links("").is_err());
        assert!(parse_links(&["10"; 9].join(",")).is_err());
    }
}
