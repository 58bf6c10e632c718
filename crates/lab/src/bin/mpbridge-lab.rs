//! `mpbridge-lab`: the test bed on one machine. Builds client, router A, N
//! shaped links, router B and server as network namespaces, runs the real
//! daemons in them and measures with iperf3. Argument parsing and printing
//! only; the scenarios live in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mpbridge_lab::bridge::BridgeOptions;
use mpbridge_lab::measure::Progress;
use mpbridge_lab::report::Report;
use mpbridge_lab::scenario::{self, Direction, FailoverPlan, Failure, IntegrityPlan, Lab};
use mpbridge_lab::{bench, checks, plot, vm};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Parser)]
#[command(version, about = "mpbridge's test bed in network namespaces")]
struct Cli {
    /// The mpbridge binary (default: beside this one, or $MPBRIDGE_BIN).
    #[arg(long, global = true, value_name = "PATH")]
    mpbridge: Option<PathBuf>,
    /// Delay links that need only a fixed delay (`50@30ms`, `20@60ms-5%`)
    /// on this machine's own kernel with the lab's userspace delay line
    /// (NFQUEUE on arrival; needs iptables), not with netem in the VM.
    /// Jitter and bursty loss still need netem. Also
    /// MPBRIDGE_LAB_DELAY_LINE=1.
    #[arg(long, global = true)]
    delay_line: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario (as root; everything it creates is removed at the end).
    Run(RunArgs),
    /// Benchmarks: mpbridge against shadowsocks-rust (built on first use)
    /// and the physical limit; writes docs/BENCHMARKS.md and an SVG.
    Bench(BenchArgs),
    /// Remove namespaces left behind by runs that were killed.
    Clean,
}

#[derive(Args)]
struct BenchArgs {
    /// Cases to run, by number or name, comma-separated: 1 equal, 2 mixed,
    /// 3 unshaped, 4 setup, 5 idle, 6 failover, 7 size, 8 connections (1, 4,
    /// 64 clients), 9 held (1,000 and 10,000 open), 10 slow (slow readers'
    /// socket memory), 11 unequal (one flow over unequal links) (default: all).
    #[arg(long, value_name = "N,N,…")]
    cases: Option<String>,
    /// Short flows, one round, two links only: a smoke test of the harness
    /// (writes under target/lab/ unless --out is given).
    #[arg(long)]
    quick: bool,
    /// Rounds of alternation between the subjects (default 3; quick 1).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// The Markdown report (default docs/BENCHMARKS.md).
    #[arg(long, value_name = "FILE.md")]
    out: Option<PathBuf>,
    /// The SVG beside it (default: benchmarks.svg in the report's folder).
    #[arg(long, value_name = "FILE.svg")]
    svg: Option<PathBuf>,
    /// Every sample as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where the peer is built and kept (default $MPBRIDGE_BENCH_CACHE,
    /// else $XDG_CACHE_HOME/mpbridge-bench, else /var/cache/mpbridge-bench).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Leave the peer out (no build): mpbridge and the limit only.
    #[arg(long)]
    no_peer: bool,
    /// The router build of mpbridge whose size case 7 reports (default:
    /// target/router/mpbridge beside the mpbridge binary's target dir).
    #[arg(long, value_name = "PATH")]
    mpbridge_router: Option<PathBuf>,
    /// Idle connections held open in case 5 (default 1000; quick 200).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// A sentence for the report about the machine (e.g. "quiet").
    #[arg(long, value_name = "TEXT", default_value = "")]
    note: String,
    /// An extra line for the `[local]` section of mpbridge local's config,
    /// e.g. "fastopen = false" (repeatable; the report names them).
    #[arg(long, value_name = "KEY = VALUE")]
    local_config: Vec<String>,
    /// Write the report and SVG from a saved `--json` run instead of running.
    #[arg(long, value_name = "FILE.json")]
    render: Option<PathBuf>,
    /// Case 1's numbers of equal links, comma-separated (default 2,3,4;
    /// quick 2); each from 2 to 8.
    #[arg(long, value_name = "N,N,…")]
    equal: Option<String>,
    /// An extra line for the `[remote]` section of mpbridge remote's config
    /// (repeatable).
    #[arg(long, value_name = "KEY = VALUE")]
    remote_config: Vec<String>,
    /// Run in the lab's x86_64 VM (Debian's Linux 6.12 under qemu, netem
    /// available): every figure, the limit too, is measured in there.
    #[arg(long)]
    vm: bool,
    /// Case 11: multiply every link rate by this (default 1; with --vm 0.2,
    /// as TCG cannot carry the full rates).
    #[arg(long, value_name = "FACTOR")]
    scale: Option<f64>,
    /// Cases 6 and 11: a mpbridge configuration measured beside its
    /// defaults, as LABEL|KEY = VALUE[;KEY = VALUE…] (lines for both [local]
    /// and [remote]; paths.KEY for router A's [paths], probe.KEY for both
    /// [probe]); repeatable. Case 6 runs it probing, as the row
    /// "mpbridge, probing, LABEL".
    #[arg(long, value_name = "LABEL|LINES")]
    variant: Vec<String>,
    /// Case 11: in the first round, snapshot both routers in the middle of
    /// each flow (ss -tinm, ss -Minm, nstat) into the JSON and the report.
    #[arg(long)]
    diagnose: bool,
    /// Case 11: only these of its links, by number (1 2×50, 2 4×50,
    /// 3 100+50+20, 4 2×50 at 5/30 ms, 5 100+50+20 at 5/30/60 ms, 6 wifi,
    /// 7 100+25 at 5/60 ms with 5 % loss on the slow link).
    #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
    unequal: Vec<usize>,
    /// Case 11: flows through the proxies last SECS (e.g. 30) and are
    /// measured over their second half, long enough for router A's
    /// slow-links policy to judge them (the usual 6 s flows never are).
    #[arg(long, value_name = "SECS")]
    long: Option<f64>,
    /// Case 6: the links it runs on, in the --links syntax of `run` (e.g.
    /// 10@5ms,10@30ms; default 50,50); at least two, link 0 fails. Links
    /// with delay, jitter or bursty loss need netem: --vm. Rates as given
    /// (--scale is case 11's).
    #[arg(long, value_name = "LINK,LINK,…")]
    failover_links: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    scenario: Scenario,
    /// The links, comma-separated: a rate in Mbit/s (0 = unshaped), then
    /// optionally @DELAY~JITTER (one way), -LOSS% or -LOSS%xBURST, and rate
    /// steps as 100:3s/30:4s/100; or the profile `wifi`. E.g.
    /// 100@5ms,50@30ms~5ms,20@60ms-1%x4. Default 50,50 (throughput: 0,0).
    #[arg(long, value_name = "LINK,LINK,…")]
    links: Option<String>,
    /// Random loss in percent on every link (one value) or per link
    /// (comma-separated); default none (integrity: 1).
    #[arg(long, value_name = "PCT[,PCT…]")]
    loss: Option<String>,
    /// failover: how the link fails (default: both, one after the other).
    #[arg(long)]
    failure: Option<FailureArg>,
    /// failover: which link fails (0 carries the connection's first subflow).
    #[arg(long, default_value_t = 0, value_name = "N")]
    link: usize,
    /// failover: when the link fails, seconds into the flow (T).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    fail_at: f64,
    /// failover: when the link comes back (T2).
    #[arg(long, default_value_t = 6.0, value_name = "SECS")]
    restore_at: f64,
    /// failover: how long the flow runs (whole seconds).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// aggregate, failover: which way the flows go: download (server →
    /// client, router B sends over the links) or upload.
    #[arg(long, value_enum, default_value_t = DirectionArg::Download)]
    direction: DirectionArg,
    /// aggregate: seconds each flow is measured.
    #[arg(long, default_value_t = 4.0, value_name = "SECS")]
    aggregate_secs: f64,
    /// integrity: megabytes sent each way.
    #[arg(long, default_value_t = 100, value_name = "MB")]
    size_mb: u64,
    /// Write every sample and figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw goodput and per-link traffic over time as SVG to FILE.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// An extra line for the `[local]` section of mpbridge local's
    /// config, e.g. "fastopen = false" (repeatable).
    #[arg(long, value_name = "KEY = VALUE")]
    local_config: Vec<String>,
    /// An extra line for the `[remote]` section of mpbridge remote's
    /// config (router B), e.g. "sndbuf = 1048576" (repeatable).
    #[arg(long, value_name = "KEY = VALUE")]
    remote_config: Vec<String>,
    /// An extra line for the `[paths]` section of mpbridge local's config
    /// (router A), e.g. 'slow_links = "use"' (repeatable).
    #[arg(long, value_name = "KEY = VALUE")]
    paths_config: Vec<String>,
    /// An extra line for both daemons' `[probe]` section, e.g.
    /// "down_after = 10" (repeatable; default: the daemons' own probing).
    #[arg(long, value_name = "KEY = VALUE")]
    probe_config: Vec<String>,
    /// wifi-bridge: the failures, in turn, comma-separated: disconnect (link 0's
    /// station), ap-restart (link 1's access point), radio-off (link 0's station
    /// radio, rfkill), silence (link 1 associated but passing nothing); each
    /// during its own transfer of --size-mb, from --fail-at to --restore-at.
    /// Default: all four.
    #[arg(long, value_name = "F,F,…")]
    wifi_failures: Option<String>,
    /// wifi-bridge: router A without bridges; its daemon's links name the
    /// 4-address stations' own interfaces (ap0.sta1, made on each
    /// association with a new ifindex), which the lab addresses as an
    /// OpenWrt hotplug script would.
    #[arg(long)]
    no_bridge: bool,
    /// wifi-bridge: hostapd renews the pairwise and group keys every SECS
    /// seconds (wpa_ptk_rekey, wpa_group_rekey).
    #[arg(long, value_name = "SECS")]
    wifi_rekey: Option<u32>,
    /// Run in the lab's x86_64 VM (Debian's Linux 6.12 under qemu). Links
    /// that need netem (delay, jitter, bursty loss) run there without it.
    #[arg(long)]
    vm: bool,
    /// Print both daemons' output at the end, as after a failure (e.g. to
    /// see what the slow-links policy of router A did).
    #[arg(long)]
    logs: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Aggregate, then failover (down and blackhole) on two 50 Mbit/s links.
    Demo,
    /// Each link alone, then one flow through mpbridge: percent of the limit.
    Aggregate,
    /// One long flow; a link fails at T and returns at T2.
    Failover,
    /// A SHA-256-checked transfer both ways while the links flap (and lose packets).
    Integrity,
    /// Unshaped links: bridge against plain routing, and the daemons' CPU per GB.
    Throughput,
    /// Two WPA2 4-address Wi-Fi links (mac80211_hwsim, in the VM): aggregation, then a
    /// checked transfer during each Wi-Fi failure (station disconnect, access point
    /// restart, radio off).
    WifiBridge,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Demo => "demo",
            Scenario::Aggregate => "aggregate",
            Scenario::Failover => "failover",
            Scenario::Integrity => "integrity",
            Scenario::Throughput => "throughput",
            Scenario::WifiBridge => "wifi-bridge",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DirectionArg {
    /// Server → client.
    Download,
    /// Client → server.
    Upload,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailureArg {
    /// The interface goes down.
    Down,
    /// Packets are silently dropped; the interface stays up.
    Blackhole,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.delay_line {
        mpbridge_lab::delayline::prefer();
    }
    if mpbridge_lab::delayline::preferred() && !vm::inside() {
        eprintln!(
            "mpbridge-lab: links with a fixed delay are delayed on this machine's kernel by the \
             lab's delay line (NFQUEUE), not by netem"
        );
    }
    let args = match cli.command {
        Cmd::Bench(args) => return bench(cli.mpbridge, args),
        Cmd::Clean => {
            let removed = mpbridge_lab::clean_leftovers()?;
            println!("removed {} namespace(s) {removed:?}", removed.len());
            return Ok(());
        }
        Cmd::Run(args) => args,
    };
    // Everything the operator asked for and the machine must offer is
    // checked before anything is created.
    let default_links = match args.scenario {
        Scenario::Throughput => "0,0",
        Scenario::WifiBridge => "20,20",
        _ => "50,50",
    };
    let default_loss = (args.scenario == Scenario::Integrity).then_some("1");
    let spec = checks::topology_spec(
        args.links.as_deref().unwrap_or(default_links),
        args.loss.as_deref().or(default_loss),
    )?;
    let failures = match args.failure {
        Some(FailureArg::Down) => vec![Failure::Down],
        Some(FailureArg::Blackhole) => vec![Failure::Blackhole],
        None => vec![Failure::Down, Failure::Blackhole],
    };
    let direction = match args.direction {
        DirectionArg::Download => Direction::Download,
        DirectionArg::Upload => Direction::Upload,
    };
    let plans: Vec<FailoverPlan> = failures
        .iter()
        .map(|&failure| FailoverPlan {
            failure,
            link: args.link,
            direction,
            fail_at: args.fail_at,
            restore_at: args.restore_at,
            secs: args.duration,
        })
        .collect();
    if matches!(args.scenario, Scenario::Demo | Scenario::Failover) {
        plans[0].validate(spec.links.len())?;
    }
    anyhow::ensure!(
        args.aggregate_secs >= 1.0
            && args.aggregate_secs <= 600.0
            && args.aggregate_secs.fract() == 0.0,
        "--aggregate-secs {}: give whole seconds from 1 to 600",
        args.aggregate_secs
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.size_mb),
        "--size-mb {}: give 1 to 100000 megabytes",
        args.size_mb
    );
    if args.plot.is_some() {
        anyhow::ensure!(
            args.scenario != Scenario::Throughput,
            "--plot: the throughput scenario has no flow over time to draw; use it with demo, \
             aggregate, failover or integrity"
        );
    }
    if args.scenario == Scenario::WifiBridge {
        return wifi_bridge(cli.mpbridge, &args, &spec);
    }
    if !vm::inside() && (args.vm || spec.needs_netem()) {
        return run_in_vm(cli.mpbridge, &args, &spec);
    }
    checks::Machine::probe().check()?;
    let mpbridge = match cli.mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let options = BridgeOptions {
        local_extra: args.local_config.join("\n"),
        remote_extra: args.remote_config.join("\n"),
        local_paths: args.paths_config.join("\n"),
        paths_extra: probe_section(&args.probe_config),
        ..BridgeOptions::default()
    };

    // Ctrl-C, SIGTERM or SIGHUP while the lab exists: remove it, then exit.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the Ctrl-C handler")?;
    let progress = Arc::new(Progress::for_stderr());
    let mut report = Report::new(args.scenario.name(), &spec.links);
    eprintln!(
        "mpbridge-lab: {}: starting the lab, {}",
        report.scenario,
        report.links_line()
    );
    let lab = Arc::new(Lab::start(&spec, &mpbridge, &options)?);
    let (tx, rx) = mpsc::channel::<Msg>();
    let signal_tx = tx.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = signal_tx.send(Msg::Signal(sig));
        }
    });
    let started = Instant::now();
    let worker = {
        let (lab, progress) = (Arc::clone(&lab), Arc::clone(&progress));
        let scenario = args.scenario;
        let (aggregate_secs, bytes) = (args.aggregate_secs, args.size_mb * 1_000_000);
        let links = spec.links.len();
        let mut report = report.clone();
        std::thread::spawn(move || {
            let result = run_scenario(
                &lab,
                scenario,
                &plans,
                aggregate_secs,
                direction,
                bytes,
                links,
                &progress,
                &mut report,
            );
            let _ = tx.send(Msg::Done(Box::new(report), result));
        })
    };
    let interrupted = |sig: i32| -> ! {
        progress.clear_line();
        eprintln!("\nmpbridge-lab: interrupted (signal {sig}): removing the lab");
        lab.topo.teardown();
        std::process::exit(128 + sig);
    };
    let result = match rx.recv() {
        Ok(Msg::Done(done, result)) => {
            // A tool the scenario ran may have failed from the same Ctrl-C.
            if result.is_err() {
                if let Ok(Msg::Signal(sig)) = rx.recv_timeout(Duration::from_millis(300)) {
                    interrupted(sig);
                }
            }
            report = *done;
            result
        }
        Ok(Msg::Signal(sig)) => interrupted(sig),
        Err(_) => Err(anyhow::anyhow!(
            "the scenario thread ended without a result"
        )),
    };
    let _ = worker.join();
    report.wall_seconds = started.elapsed().as_secs_f64();
    report.verdicts = Some(scenario::Verdicts::from_logs(
        &lab.bridge.local.output_text(),
        &lab.bridge.remote.output_text(),
    ));
    progress.clear_line();
    if args.scenario != Scenario::Throughput {
        print!("\n{}", report.table());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        // In the VM the path is the share's: the host names the real one.
        if !vm::inside() {
            println!("samples: {}", path.display());
        }
    }
    if let Some(path) = &args.plot {
        if result.is_ok() {
            plot::write_svg(&report, path)?;
            println!("plot: {}", path.display());
        }
    }
    if args.scenario == Scenario::Demo || args.scenario == Scenario::Failover {
        println!(
            "\nThe daemons' path managers set the MPTCP endpoints and policy routing up, probe \
             every link every 20 ms, and take a link out of service (and back) as the probes say."
        );
    }
    if result.is_err() || args.logs {
        // The failures by the wall clock, to line up with the logs below.
        for f in &report.failover {
            for e in &f.series.events {
                let what = if e.restored {
                    "restored"
                } else {
                    e.failure.state()
                };
                if let Some(unix) = e.unix {
                    eprintln!(
                        "link {} {what} at {} UTC ({:.3} s into the flow)",
                        e.link,
                        scenario::utc_time_of_day(unix),
                        e.t
                    );
                }
            }
            eprintln!(
                "longest stall {:.0} ms, beginning {:.0} ms after the failure",
                f.longest_stall * 1e3,
                f.stall_began * 1e3
            );
        }
        eprintln!("{}", lab.bridge.logs());
    }
    result
}

/// Both daemons' `[probe]` section with `--probe-config`'s lines (none
/// without them).
fn probe_section(lines: &[String]) -> String {
    match lines.is_empty() {
        true => String::new(),
        false => format!("[probe]\n{}\n", lines.join("\n")),
    }
}

/// Runs this very command inside the lab's VM (see `mpbridge_lab::vm`),
/// then writes the JSON and plot asked for from the run's JSON, as a run
/// on this machine does.
fn run_in_vm(
    mpbridge: Option<PathBuf>,
    args: &RunArgs,
    spec: &mpbridge_lab::TopologySpec,
) -> anyhow::Result<()> {
    let why = match args.scenario {
        Scenario::WifiBridge => "its radios need mac80211_hwsim".into(),
        _ => vm::reason(&spec.links).unwrap_or_else(|| "--vm was given".into()),
    };
    eprintln!(
        "mpbridge-lab: {}: {why}: running it in an x86_64 VM (Debian's Linux 6.12 under qemu, \
         scripts/vm-lab.sh); every figure, the limit too, is measured in there",
        args.scenario.name()
    );
    let mpbridge = match mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let mpbridge = std::fs::canonicalize(&mpbridge)
        .with_context(|| format!("cannot find the mpbridge binary {}", mpbridge.display()))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let share = vm::Share::new()?;
    let json = share.dir.join("report.json");
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // Ctrl-C reaches qemu too, which ends the VM and all in it: stay to
    // remove the share.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("cannot install the Ctrl-C handler")?;
    }
    let ok = vm::run(&share, &exe, &vm::guest_args(&raw, &mpbridge, &json))?;
    anyhow::ensure!(
        !interrupted.load(std::sync::atomic::Ordering::Relaxed),
        "interrupted: the VM and everything in it are gone"
    );
    let report: Option<Report> = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let (Some(report), Some(path)) = (&report, &args.json) {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("samples: {}", path.display());
    } else if let (Some(path), true) = (&args.json, json.is_file()) {
        // A report of its own shape (wifi-bridge): as it came.
        std::fs::copy(&json, path).with_context(|| format!("cannot write {}", path.display()))?;
        println!("samples: {}", path.display());
    }
    if let (Some(report), Some(path), true) = (&report, &args.plot, ok) {
        plot::write_svg(report, path)?;
        println!("plot: {}", path.display());
    }
    anyhow::ensure!(ok, "the run in the VM failed: see the output above");
    Ok(())
}

/// `run wifi-bridge`: on this machine, checks the tools and goes to the VM
/// (whose kernel has mac80211_hwsim); in the VM, builds the Wi-Fi lab and
/// runs aggregation and the failures.
fn wifi_bridge(
    mpbridge: Option<PathBuf>,
    args: &RunArgs,
    spec: &mpbridge_lab::TopologySpec,
) -> anyhow::Result<()> {
    use mpbridge_lab::wifi::{self, FailureTiming, WifiFailure, WifiLab, WifiReport};
    anyhow::ensure!(
        spec.links.len() == wifi::LINKS,
        "wifi-bridge has {} links (an access point and a station each): give --links two \
         rates, e.g. 20,20",
        wifi::LINKS
    );
    let failures = match &args.wifi_failures {
        Some(text) => WifiFailure::parse_list(text)?,
        None => WifiFailure::ALL.to_vec(),
    };
    anyhow::ensure!(
        args.fail_at >= 1.0 && args.restore_at > args.fail_at,
        "--fail-at {} --restore-at {}: the failure needs a second of transfer before it and \
         must end after it begins",
        args.fail_at,
        args.restore_at
    );
    wifi::check_tools()?;
    if !vm::inside() {
        return run_in_vm(mpbridge, args, spec);
    }
    checks::Machine::probe().check()?;
    let mpbridge = match mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let options = BridgeOptions {
        local_extra: args.local_config.join("\n"),
        remote_extra: args.remote_config.join("\n"),
        local_paths: args.paths_config.join("\n"),
        paths_extra: probe_section(&args.probe_config),
        ..BridgeOptions::default()
    };
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the Ctrl-C handler")?;
    let progress = Arc::new(Progress::for_stderr());
    let mut report = WifiReport {
        links: spec.links.clone(),
        ..WifiReport::default()
    };
    eprintln!("mpbridge-lab: wifi-bridge: moving four hwsim radios into the routers, associating");
    let setup = Instant::now();
    let wifi_options = wifi::WifiOptions {
        no_bridge: args.no_bridge,
        rekey_secs: args.wifi_rekey,
    };
    let wl = Arc::new(WifiLab::start_with(
        spec,
        &mpbridge,
        &options,
        &wifi_options,
    )?);
    report.setup_seconds = setup.elapsed().as_secs_f64();
    {
        let wl = Arc::clone(&wl);
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("\nmpbridge-lab: interrupted (signal {sig}): removing the lab");
                wl.lab.topo.teardown();
                std::process::exit(128 + sig);
            }
        });
    }
    let started = Instant::now();
    let timing = FailureTiming {
        fail_at: args.fail_at,
        restore_at: args.restore_at,
    };
    let result = (|| -> anyhow::Result<()> {
        if args.wifi_failures.is_none() {
            report.aggregate = Some(scenario::aggregate(
                &wl.lab,
                args.aggregate_secs,
                &progress,
            )?);
        }
        for failure in failures {
            let run = wifi::failure_run(
                &wl,
                &mpbridge,
                failure,
                failure.default_link(),
                timing,
                args.size_mb * 1_000_000,
                &progress,
            )?;
            progress.clear_line();
            eprintln!("{}", run.status);
            eprintln!(
                "timeline of {} on link {} (seconds into the transfer):\n{}",
                run.failure.name(),
                run.link,
                wifi::timeline::text(&run.timeline)
            );
            let intact = run.intact;
            report.failures.push(run);
            anyhow::ensure!(intact, "the data arrived changed: see the table");
        }
        Ok(())
    })();
    report.wall_seconds = started.elapsed().as_secs_f64();
    progress.clear_line();
    print!("\n{}", wifi::table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if result.is_err() {
        eprintln!("{}", wl.lab.bridge.logs());
    }
    result
}

/// What the main thread waits for: the scenario's end or a signal.
enum Msg {
    Done(Box<Report>, anyhow::Result<()>),
    Signal(i32),
}

/// Runs `scenario`, filling `report` as results come.
#[allow(clippy::too_many_arguments)]
fn run_scenario(
    lab: &Lab,
    scenario: Scenario,
    plans: &[FailoverPlan],
    aggregate_secs: f64,
    direction: Direction,
    integrity_bytes: u64,
    links: usize,
    progress: &Progress,
    report: &mut Report,
) -> anyhow::Result<()> {
    if matches!(scenario, Scenario::Demo | Scenario::Aggregate) {
        report.aggregate = Some(scenario::aggregate_in(
            lab,
            aggregate_secs,
            direction,
            progress,
        )?);
    }
    if matches!(scenario, Scenario::Demo | Scenario::Failover) {
        for plan in plans {
            report
                .failover
                .push(scenario::failover(lab, plan, progress)?);
        }
    }
    if scenario == Scenario::Integrity {
        let plan = IntegrityPlan {
            bytes: integrity_bytes,
            flaps: scenario::flap_cycle(links, 1.0, 1.5, 1.0, 600.0),
        };
        let integrity = scenario::integrity(lab, &plan, progress)?;
        let intact = integrity.intact;
        report.integrity = Some(integrity);
        anyhow::ensure!(intact, "the data arrived changed: see the table above");
    }
    if scenario == Scenario::Throughput {
        report.throughput = Some(throughput(lab, progress)?);
    }
    Ok(())
}

fn throughput(lab: &Lab, progress: &Progress) -> anyhow::Result<scenario::Throughput> {
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
    Ok(t)
}

fn bench(mpbridge: Option<PathBuf>, args: BenchArgs) -> anyhow::Result<()> {
    let command = std::iter::once("mpbridge-lab".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let cases = match &args.cases {
        Some(text) => bench::Case::parse_list(text)?,
        None => bench::Case::ALL.to_vec(),
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    anyhow::ensure!(
        (1..=20).contains(&rounds),
        "--rounds {rounds}: give 1 to 20"
    );
    let idle = args.idle.unwrap_or(if args.quick { 200 } else { 1000 });
    anyhow::ensure!(
        (1..=5000).contains(&idle),
        "--idle {idle}: give 1 to 5000 connections"
    );
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            PathBuf::from("target/lab/BENCHMARKS-quick.md")
        } else {
            PathBuf::from("docs/BENCHMARKS.md")
        }
    });
    let svg = args.svg.clone().unwrap_or_else(|| {
        let name = if args.quick {
            "benchmarks-quick.svg"
        } else {
            "benchmarks.svg"
        };
        out.with_file_name(name)
    });
    if let Some(saved) = &args.render {
        let text = std::fs::read_to_string(saved)
            .with_context(|| format!("cannot read {}", saved.display()))?;
        let report: bench::BenchReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench run's JSON", saved.display()))?;
        return write_bench_docs(&report, &out, &svg, &args.note);
    }
    let scale = args
        .scale
        .unwrap_or(if args.vm || vm::inside() { 0.2 } else { 1.0 });
    anyhow::ensure!(
        scale > 0.0 && scale <= 10.0,
        "--scale {scale}: give a factor above 0 and up to 10"
    );
    let variants = args
        .variant
        .iter()
        .map(|v| bench::unequal::Variant::parse(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cases_8 = bench::unequal::CASES.len();
    if let Some(n) = args.unequal.iter().find(|n| !(1..=cases_8).contains(*n)) {
        anyhow::bail!("--unequal {n}: give numbers from 1 to {cases_8}");
    }
    if let Some(long) = args.long {
        anyhow::ensure!(
            (10.0..=600.0).contains(&long),
            "--long {long}: give 10 to 600 seconds (the policy judges a flow 8 s in at the earliest)"
        );
    }
    let failover_links = match &args.failover_links {
        None => bench::default_failover_links(),
        Some(text) => {
            anyhow::ensure!(
                cases.contains(&bench::Case::Failover),
                "--failover-links {text:?}: case 6 (failover) is not among --cases"
            );
            let links = bench::parse_failover_links(text)?;
            if !args.vm && !vm::inside() && !mpbridge_lab::shaping::netem_available() {
                if let Some(why) = vm::reason(&links) {
                    anyhow::bail!("--failover-links {text:?}: {why}; add --vm");
                }
            }
            links
        }
    };
    if args.vm && !vm::inside() {
        return bench_in_vm(mpbridge, &args, scale, &out, &svg);
    }
    checks::Machine::probe().check()?;
    let mpbridge = match mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let mpbridge_router = args.mpbridge_router.clone().or_else(|| {
        // …/target/release/mpbridge → …/target/router/mpbridge
        let dir = mpbridge.parent()?.parent()?;
        Some(dir.join("router").join("mpbridge")).filter(|p| p.is_file())
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let progress = Progress::for_stderr();
    let peer = if args.no_peer {
        None
    } else {
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(bench::peer::default_cache);
        Some(bench::peer::ensure_installed(&cache, &progress)?)
    };
    let options = bench::Options {
        cases,
        quick: args.quick,
        rounds,
        mpbridge,
        mpbridge_router,
        peer,
        idle_connections: idle,
        local_extra: args.local_config.join("\n"),
        remote_extra: args.remote_config.join("\n"),
        local_paths: String::new(),
        probe_lines: String::new(),
        scale,
        scale_reason: match (scale == 1.0, vm::inside()) {
            (true, _) => String::new(),
            (false, true) => format!(
                "every rate × {scale}: the VM runs under TCG (no KVM here), which cannot carry \
                 the full rates (at full rate one flow ran slower than the best link alone)"
            ),
            (false, false) => format!("every rate × {scale}, as --scale asked"),
        },
        variants,
        diagnose: args.diagnose,
        unequal: args.unequal.clone(),
        checkpoint: args.json.clone(),
        long: args.long,
        failover_links,
        equal: match &args.equal {
            None => None,
            Some(text) => Some(
                text.split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (2..=mpbridge_lab::plan::MAX_LINKS).contains(n))
                            .with_context(|| {
                                format!("--equal {text:?}: give link counts from 2 to 8, e.g. 2,4")
                            })
                    })
                    .collect::<anyhow::Result<Vec<usize>>>()?,
            ),
        },
    };
    // Everything the bench creates lives in its namespaces: Ctrl-C removes them.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the Ctrl-C handler")?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("\nmpbridge-lab: interrupted (signal {sig}): removing the lab");
            bench::teardown_current();
            std::process::exit(128 + sig);
        }
    });
    let mut report = bench::BenchReport::new(&options, command);
    let result = bench::run(&options, &progress, &mut report);
    progress.clear_line();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("samples: {}", path.display());
    }
    result?;
    write_bench_docs(&report, &out, &svg, &args.note)
}

/// Runs this bench inside the lab's VM (see `mpbridge_lab::vm`): the peer
/// is built here first (the VM sees this machine's files read-only), the
/// guest writes its JSON to the share, and this process writes the report
/// and SVG from it as a run on this machine does.
fn bench_in_vm(
    mpbridge: Option<PathBuf>,
    args: &BenchArgs,
    scale: f64,
    out: &std::path::Path,
    svg: &std::path::Path,
) -> anyhow::Result<()> {
    eprintln!(
        "mpbridge-lab: bench: --vm: running it in an x86_64 VM (Debian's Linux 6.12 under qemu, \
         scripts/vm-lab.sh); every figure, the limit too, is measured in there; case 11's rates \
         × {scale}"
    );
    let mpbridge = match mpbridge {
        Some(p) => p,
        None => mpbridge_lab::bridge::find_mpbridge()?,
    };
    let mpbridge = std::fs::canonicalize(&mpbridge)
        .with_context(|| format!("cannot find the mpbridge binary {}", mpbridge.display()))?;
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(bench::peer::default_cache);
    if !args.no_peer {
        bench::peer::ensure_installed(&cache, &Progress::for_stderr())?;
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let share = vm::Share::new()?;
    let json = share.dir.join("bench.json");
    let mut guest = vm::guest_args(
        &std::env::args().skip(1).collect::<Vec<_>>(),
        &mpbridge,
        &json,
    );
    for (flag, value) in [
        ("--out", share.dir.join("BENCHMARKS.md")),
        ("--svg", share.dir.join("benchmarks.svg")),
        ("--cache", cache),
    ] {
        guest.push(flag.into());
        guest.push(value.display().to_string());
    }
    if args.scale.is_none() {
        guest.push("--scale".into());
        guest.push(scale.to_string());
    }
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("cannot install the Ctrl-C handler")?;
    }
    // A whole bench outlasts the VM's default life of 30 min.
    if std::env::var_os("VM_TIMEOUT").is_none() {
        std::env::set_var("VM_TIMEOUT", "14400");
    }
    let ok = vm::run(&share, &exe, &guest)?;
    anyhow::ensure!(
        !interrupted.load(std::sync::atomic::Ordering::Relaxed),
        "interrupted: the VM and everything in it are gone"
    );
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("the VM left no results ({})", json.display()))?;
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("samples: {}", path.display());
    }
    let report: bench::BenchReport =
        serde_json::from_str(&text).context("the VM's results are not a bench run's JSON")?;
    write_bench_docs(&report, out, svg, &args.note)?;
    anyhow::ensure!(ok, "the bench in the VM failed: see the output above");
    Ok(())
}

/// The Markdown report at `out` and the SVG at `svg`, printed too.
fn write_bench_docs(
    report: &bench::BenchReport,
    out: &std::path::Path,
    svg: &std::path::Path,
    note: &str,
) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let drawn = bench::doc::write_svg(report, svg)?;
    let svg_name = svg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|_| drawn && svg.parent() == out.parent());
    let md = bench::doc::markdown(report, svg_name.as_deref(), note);
    std::fs::write(out, &md).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{md}");
    println!("report: {}", out.display());
    if drawn {
        println!("plot: {}", svg.display());
    }
    Ok(())
}
