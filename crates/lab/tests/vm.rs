//! The lab's VM end to end: `mpbridge-lab run aggregate` over two unequal
//! links, 25 Mbit/s each with 5 ms and 30 ms of delay one way, which need
//! netem, so the lab boots Debian's Linux 6.12 under qemu by itself
//! (`scripts/vm-lab.sh`), runs the scenario in there and renders its JSON
//! on the host. Asserts behaviour with generous margins: both links carry
//! the flow, and the flow beats the best single link measured in the same
//! VM. About a minute of VM time; the first run downloads the kernel.
//!
//! Ignored by default (needs root, qemu and Debian's mirrors once):
//! `cargo test -p mpbridge-lab --test vm -- --ignored` (scripts/test.sh).

use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "boots a VM: scripts/test.sh runs it"]
fn one_flow_over_unequal_delayed_links_in_the_vm_uses_both_and_beats_the_best_link() {
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
        .args(["--aggregate-secs", "8", "--json"])
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
