//! Never below the best link alone (issue 19): in the lab's VM (netem),
//! one flow over a 20 Mbit/s link with 5 ms of delay and a 5 Mbit/s link
//! with 60 ms and 5 % loss. Using both, the flow ran at 7.1 to 14.5 Mbit/s
//! where the first link alone carried 16.7 to 19.1; mpbridge local's
//! slow-links policy (`paths.slow_links = "bench"`, its default, which
//! this test also sets) must notice and bench the slow link. It judges a
//! load only once every link carrying a flow has carried it for 6 s
//! (short flows are never trialled) and decides on 2 s figures, so the
//! slow link is benched about 8 s into the 24 s flow (the verdict comes
//! 4 s later), and the flow's second half must reach 85 % of the best
//! link alone: with the policy off it reached 48–76 % in four runs; with
//! it 92–98 % in five (debug build, TCG, host load 1.6–2.0), where
//! earlier rule sets got 91–99 % in eleven runs, 85 % on a busier CI
//! host, 77 % once (a trial judged on the flow still held up by the lossy
//! link) and 74 % once (no log kept); the line sits between the two. It
//! failed in CI at 74 % again (2026-12-06): the benched link flapped and
//! each flap closed its idle subflows, which has the kernel send the
//! whole window again (0.3 s stalls), and a trial judged on the links'
//! counters counted those copies. With backups kept through their flaps
//! and the trial judged on what the bridge delivered: 97–98 % in three
//! runs. The
//! lab measures each link alone first, with the daemons running: the
//! policy must not learn from those (a link without a flow on it is no
//! candidate, and a flow moving from link to link is not judged), else
//! the bridged flow starts with the slow link benched and the test proves
//! nothing. About a minute and a half of VM time.
//!
//! Ignored by default (root, qemu, once Debian's mirrors), run by
//! scripts/test.sh:
//! `cargo test -p mpbridge-lab --test slow_links -- --ignored`.
//! `MPBRIDGE_SLOW_LINKS=use` runs it with the policy off, where it fails.
//! It prints the daemons' logs (what the policy tried and decided).

use std::path::PathBuf;
use std::process::Command;

use mpbridge_lab::vm;

const TEST: &str = "one_flow_is_not_below_the_best_link_when_a_slow_lossy_link_is_benched";

#[test]
#[ignore = "boots a VM (scripts/vm-lab.sh)"]
fn one_flow_is_not_below_the_best_link_when_a_slow_lossy_link_is_benched() {
    if !vm::inside() {
        let exe = std::env::current_exe().expect("the test binary");
        // The VM's command starts with a clean environment: these two go
        // along when set.
        let forwarded: Vec<std::ffi::OsString> = ["MPBRIDGE_BIN", "MPBRIDGE_SLOW_LINKS"]
            .iter()
            .filter_map(|name| {
                let value = std::env::var_os(name)?;
                let mut pair = std::ffi::OsString::from(format!("{name}="));
                pair.push(value);
                Some(pair)
            })
            .collect();
        let status = Command::new("bash")
            .arg(vm::script().unwrap_or_else(|e| panic!("{e:#}")))
            .arg("--")
            .arg("env")
            .args(forwarded)
            .arg(exe)
            .args(["--exact", TEST, "--ignored", "--nocapture"])
            .status()
            .expect("run scripts/vm-lab.sh");
        assert!(status.success(), "failed in the VM: {status}");
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mpbridge-lab"));
    let mpbridge = std::env::var_os("MPBRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.with_file_name("mpbridge"));
    assert!(
        mpbridge.is_file(),
        "no mpbridge at {}: build it first (cargo build -p mpbridge) or set MPBRIDGE_BIN",
        mpbridge.display()
    );
    let json = std::env::temp_dir().join(format!(
        "mpbridge-lab-slow-links.{}.json",
        std::process::id()
    ));
    let mut lab = Command::new(&exe);
    lab.arg("--mpbridge")
        .arg(&mpbridge)
        .args(["run", "aggregate", "--links", "20@5ms,5@60ms-5%"])
        // The daemons' logs at the end: what the policy saw and did.
        .args(["--aggregate-secs", "24", "--logs", "--json"])
        .arg(&json);
    // Router A's default ("bench"), set whatever the default, unless the
    // environment says otherwise.
    let policy = std::env::var_os("MPBRIDGE_SLOW_LINKS").unwrap_or_else(|| "bench".into());
    let mut line = std::ffi::OsString::from("slow_links = \"");
    line.push(policy);
    line.push("\"");
    lab.arg("--paths-config").arg(line);
    let status = lab.status().expect("run mpbridge-lab");
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    assert!(status.success(), "mpbridge-lab failed in the VM: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&text.expect("the run's JSON")).expect("JSON");
    let a = &report["aggregate"];
    let per_link: Vec<f64> = a["per_link"]
        .as_array()
        .expect("per_link")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let best = per_link.iter().cloned().fold(0.0, f64::max);
    // 20 Mbit/s of tbf: the VM carried it (neither unshaped nor starved).
    assert!(
        best > 8.0 && best < 22.0,
        "the best link alone: {best:.1} Mbit/s"
    );
    // The policy needs 8 s of load to decide: the second half (12 s on).
    let goodput = a["series"]["goodput"].as_array().expect("goodput");
    let end = goodput.last().expect("samples")["end"].as_f64().unwrap();
    let late: Vec<&serde_json::Value> = goodput
        .iter()
        .filter(|g| g["start"].as_f64().unwrap() >= end / 2.0)
        .collect();
    assert!(
        !late.is_empty(),
        "no goodput samples in the flow's second half"
    );
    let from = late[0]["start"].as_f64().unwrap();
    let bytes: f64 = late.iter().map(|g| g["bytes"].as_f64().unwrap()).sum();
    let second_half = bytes * 8.0 / 1e6 / (end - from);
    let whole = a["bridge"].as_f64().expect("bridge");
    eprintln!(
        "in the VM: each link alone {per_link:.1?} Mbit/s; through mpbridge {whole:.1} over the \
         flow, {second_half:.1} over its second half"
    );
    assert!(
        second_half >= best * 0.85,
        "one flow through mpbridge ({second_half:.1} Mbit/s over its second half) is below the \
         best link alone ({best:.1} Mbit/s)"
    );
}
