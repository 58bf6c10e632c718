//! The lab in its VM (Debian's Linux 6.12 under qemu, `scripts/vm-lab.sh`),
//! where netem exists: each link gets its own delay, and `mpbridge-lab run
//! aggregate` over two unequal links, 25 Mbit/s each with 5 ms and 30 ms of
//! delay one way, asserts behaviour with generous margins: both links carry
//! the flow, and the flow beats the best single link measured in the same
//! VM. About a minute of VM time; the first run downloads the kernel.
//!
//! Each test runs itself inside the VM (this very binary, over the shared
//! root file system); `both_in_one_vm` runs both in one boot. Ignored by
//! default (they need root, qemu and, once, Debian's mirrors):
//! `cargo test -p mpbridge-lab --test vm -- --ignored --exact both_in_one_vm`
//! and, for the Wi-Fi lab, `... --exact a_wifi_link_carries_a_transfer_across_a_disassociation_and_leaves_nothing`
//! (scripts/test.sh).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mpbridge_lab::{checks, vm, Node, Topology, TopologySpec};

/// Runs the tests of this very binary that `filter` selects inside the VM,
/// where they find themselves there (`vm::inside`) and do their part.
fn run_in_vm(filter: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary");
    let status = Command::new("bash")
        .arg(vm::script().unwrap_or_else(|e| panic!("{e:#}")))
        .arg("--")
        .arg(exe)
        .args(filter)
        .args(["--ignored", "--nocapture", "--test-threads", "1"])
        .status()
        .expect("run scripts/vm-lab.sh");
    assert!(status.success(), "{filter:?} failed in the VM: {status}");
}

const DELAY_TEST: &str = "netem_delays_each_link_by_its_own_amount_each_way";
const FLOW_TEST: &str = "one_flow_over_unequal_delayed_links_uses_both_and_beats_the_best_link";

#[test]
#[ignore = "boots a VM: scripts/test.sh runs it"]
fn both_in_one_vm() {
    assert!(!vm::inside(), "this one boots the VM");
    run_in_vm(&["--exact", DELAY_TEST, FLOW_TEST]);
}

/// The shortest of a few TCP handshakes from router A to router B's
/// address on `link`: one round trip.
fn handshake_rtt(topo: &Topology, link: usize) -> Duration {
    let listener = topo
        .enter(Node::RouterB, || {
            TcpListener::bind((topo.rb_link_addr(link, false), 0))
        })
        .unwrap();
    let to = listener.local_addr().unwrap();
    (0..5)
        .map(|_| {
            topo.enter(Node::RouterA, || {
                let start = Instant::now();
                let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
                let rtt = start.elapsed();
                drop(s);
                rtt
            })
        })
        .min()
        .unwrap()
}

#[test]
#[ignore = "boots a VM: scripts/test.sh runs it"]
fn netem_delays_each_link_by_its_own_amount_each_way() {
    if !vm::inside() {
        return run_in_vm(&["--exact", DELAY_TEST]);
    }
    let spec = TopologySpec {
        links: checks::parse_links("0@5ms,20@30ms~1ms").unwrap(),
    };
    let topo = Topology::build(&spec).unwrap_or_else(|e| panic!("{e:#}"));
    let qdisc = topo
        .run(Node::RouterB, &["tc", "qdisc", "show", "dev", "wan1"])
        .unwrap();
    assert!(qdisc.contains("netem") && qdisc.contains("tbf"), "{qdisc}");
    let fast = handshake_rtt(&topo, 0);
    let slow = handshake_rtt(&topo, 1);
    eprintln!("handshake round trips in the VM: link 0 {fast:?}, link 1 {slow:?}");
    // Twice the one-way delay, plus what a slow VM adds.
    assert!(
        fast >= Duration::from_millis(10) && fast < Duration::from_millis(50),
        "link 0: {fast:?}"
    );
    assert!(
        slow >= Duration::from_millis(58) && slow < Duration::from_millis(110),
        "link 1: {slow:?}"
    );
}

#[test]
#[ignore = "boots a VM: scripts/test.sh runs it"]
fn one_flow_over_unequal_delayed_links_uses_both_and_beats_the_best_link() {
    if !vm::inside() {
        return run_in_vm(&["--exact", FLOW_TEST]);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mpbridge-lab"));
    // The daemon cargo built beside this test (cargo test --workspace
    // builds it), unless MPBRIDGE_BIN names one.
    let mpbridge = std::env::var_os("MPBRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.with_file_name("mpbridge"));
    assert!(
        mpbridge.is_file(),
        "no mpbridge at {}: build it first (cargo build -p mpbridge) or set MPBRIDGE_BIN",
        mpbridge.display()
    );
    let json =
        std::env::temp_dir().join(format!("mpbridge-lab-vm-test.{}.json", std::process::id()));
    let status = Command::new(&exe)
        .arg("--mpbridge")
        .arg(&mpbridge)
        .args(["run", "aggregate", "--links", "25@5ms,25@30ms"])
        // The daemons' logs at the end (router A's slow-links policy must
        // try nothing over these two healthy links).
        .args(["--aggregate-secs", "8", "--logs", "--json"])
        .arg(&json)
        .status()
        .expect("run mpbridge-lab");
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    assert!(status.success(), "mpbridge-lab failed in the VM: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&text.expect("the run's JSON")).expect("JSON");
    let links = &report["links"];
    assert_eq!(links[1]["delay_us"], 30_000, "{links}");
    let a = &report["aggregate"];
    let per_link: Vec<f64> = a["per_link"]
        .as_array()
        .expect("per_link")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let bridge = a["bridge"].as_f64().expect("bridge");
    eprintln!("in the VM: each link alone {per_link:?} Mbit/s, through mpbridge {bridge:.1}");
    assert_eq!(per_link.len(), 2);
    for (i, &m) in per_link.iter().enumerate() {
        // 25 Mbit/s of tbf: neither unshaped nor dead.
        assert!(m > 5.0 && m < 30.0, "link {i} alone: {m:.1} Mbit/s");
    }
    let best = per_link.iter().cloned().fold(0.0, f64::max);
    assert!(
        bridge > best * 1.05,
        "one flow through mpbridge ({bridge:.1} Mbit/s) does not beat the best link alone \
         ({best:.1} Mbit/s)"
    );
    // Both links carried the flow: router A received a fair share on each.
    let samples = a["series"]["links"].as_array().expect("samples");
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let got: Vec<f64> = (0..2)
        .map(|i| last["rx_bytes"][i].as_f64().unwrap() - first["rx_bytes"][i].as_f64().unwrap())
        .collect();
    let total: f64 = got.iter().sum();
    for (i, bytes) in got.iter().enumerate() {
        assert!(
            *bytes > 0.15 * total,
            "link {i} carried {bytes} of {total} bytes of the flow"
        );
    }
}

const WIFI_TEST: &str = "a_wifi_link_carries_a_transfer_across_a_disassociation_and_leaves_nothing";

/// The Wi-Fi lab (crate::wifi) bounded for CI: four hwsim radios, two WPA2
/// 4-address links associated, a checked transfer while link 0's station
/// disconnects and reconnects, `mpbridge status` showing the links, then
/// teardown that leaves no namespace, process or radio behind; last, the
/// sentence a kernel without hwsim gets.
#[test]
#[ignore = "boots a VM: scripts/test.sh runs it"]
fn a_wifi_link_carries_a_transfer_across_a_disassociation_and_leaves_nothing() {
    use mpbridge_lab::bridge::BridgeOptions;
    use mpbridge_lab::measure::{Progress, ProgressMode};
    use mpbridge_lab::wifi::{self, FailureTiming, WifiFailure, WifiLab};

    if !vm::inside() {
        return run_in_vm(&["--exact", WIFI_TEST]);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mpbridge-lab"));
    let mpbridge = std::env::var_os("MPBRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.with_file_name("mpbridge"));
    assert!(mpbridge.is_file(), "no mpbridge at {}", mpbridge.display());
    let radios = wifi::find_radios().unwrap_or_else(|e| panic!("{e:#}"));
    let spec = TopologySpec {
        links: checks::parse_links("10,10").unwrap(),
    };
    let progress = Progress::new(ProgressMode::Silent);
    let started = Instant::now();
    let wl = WifiLab::start(&spec, &mpbridge, &BridgeOptions::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "Wi-Fi lab up (associated, daemons running) in {:?}",
        started.elapsed()
    );
    let names: Vec<String> = [Node::RouterA, Node::RouterB]
        .iter()
        .map(|&n| wl.lab.topo.ns_name(n).to_string())
        .collect();
    let pids = wl.lab.topo.spawned_pids();
    let run = wifi::failure_run(
        &wl,
        &mpbridge,
        WifiFailure::Disconnect,
        0,
        FailureTiming {
            fail_at: 2.0,
            restore_at: 4.0,
        },
        // 16 MB take at least 6.4 s over both links at full rate, so the
        // transfer outlives the restore at 4 s on a quiet machine too (8 MB
        // over 2 × 20 Mbit/s ended at 3.3 s, before the station was back).
        16_000_000,
        &progress,
    );
    let run = match run {
        Ok(run) => run,
        Err(e) => panic!("{e:#}\n{}", wl.lab.bridge.logs()),
    };
    eprintln!(
        "{}",
        wifi::table(&wifi::WifiReport {
            links: spec.links.clone(),
            failures: vec![run.clone()],
            ..Default::default()
        })
    );
    assert!(run.intact, "{:?}", run.outcome);
    // The failure began while the data still flowed: the transfer outlived it.
    assert!(
        run.seconds > run.restore_at,
        "the transfer ended before the station came back"
    );
    assert!(
        run.associated_after.is_some(),
        "link 0's station never reassociated"
    );
    // The timeline puts every clock on the transfer's: the station's own
    // reconnection and router B's daemon seeing its link come back both
    // lie after the restore.
    let after_restore = |who: &str, what: &str| {
        run.timeline
            .iter()
            .any(|m| m.who.starts_with(who) && m.what.contains(what) && m.t >= run.restore_at)
    };
    assert!(
        after_restore("wpa 0", "CTRL-EVENT-CONNECTED")
            && after_restore("router B", "link changed link=wan0 up=true"),
        "timeline:\n{}",
        wifi::timeline::text(&run.timeline)
    );
    for needle in [
        "wan0",
        "wan1",
        "subflows",
        "mpbridge local",
        "mpbridge remote",
    ] {
        assert!(
            run.status.contains(needle),
            "no {needle:?} in:\n{}",
            run.status
        );
    }
    drop(wl);
    for name in &names {
        assert!(
            !std::path::Path::new("/run/netns").join(name).exists(),
            "namespace {name} left behind"
        );
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left running"
        );
    }
    // The radios came home (their namespaces are gone): a second lab could start.
    assert_eq!(
        wifi::find_radios().unwrap_or_else(|e| panic!("{e:#}")),
        radios
    );
    // A kernel without hwsim: one sentence saying so and how to get it.
    let rmmod = Command::new("rmmod")
        .arg("mac80211_hwsim")
        .status()
        .expect("rmmod");
    assert!(rmmod.success(), "cannot unload mac80211_hwsim");
    // The module's radios leave sysfs after rmmod returns, one by one (seen:
    // "offers 1 radio(s)" right after it).
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new("/sys/module/mac80211_hwsim").exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = format!("{:#}", wifi::find_radios().unwrap_err());
    assert!(
        e.contains("no mac80211_hwsim") && e.contains("radios=4"),
        "{e}"
    );
    let e = WifiLab::start(&spec, &mpbridge, &BridgeOptions::default())
        .err()
        .expect("a Wi-Fi lab without radios");
    assert!(format!("{e:#}").contains("no mac80211_hwsim"), "{e:#}");
}
