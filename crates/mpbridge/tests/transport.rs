//! The MPTCP connections between the routers take the congestion control
//! the config names (`local.congestion`, `remote.congestion`), on every
//! subflow of both routers, whatever the namespaces' default is.
//!
//! Root only; real namespaces, veth links, MPTCP and daemons.

mod common;

use std::time::{Duration, Instant};

use common::REMOTE_PORT;
use common::{Bridge, Download, Options};
use mpbridge_lab::Node;

/// The congestion control named on each established subflow between the
/// routers in `node` (the word after `ts sack` in `ss -ti`: the first
/// token of the info line that is a known algorithm).
fn subflow_algorithms(bridge: &Bridge, node: Node) -> Vec<String> {
    let text = bridge
        .topo
        .run(node, &["ss", "-tinH", "state", "established"])
        .unwrap();
    let mut out = Vec::new();
    let mut ours = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            ours = line.contains(&format!(":{REMOTE_PORT} "))
                || line.trim_end().ends_with(&format!(":{REMOTE_PORT}"));
            continue;
        }
        if ours && line.contains("tcp-ulp-mptcp") {
            if let Some(alg) = line
                .split_whitespace()
                .find(|t| ["reno", "cubic", "bbr"].contains(t))
            {
                out.push(alg.to_string());
            }
        }
    }
    out
}

#[test]
fn every_subflow_of_both_routers_uses_the_configured_congestion_control() {
    // reno: neither this machine's default (bbr) nor Debian's (cubic), so
    // only the setting can put it there.
    let bridge = Bridge::start(Options {
        local_extra: "congestion = \"reno\"",
        remote_extra: "congestion = \"reno\"",
        ..Options::default()
    });
    let download = Download::start(&bridge);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        a = subflow_algorithms(&bridge, Node::RouterA);
        b = subflow_algorithms(&bridge, Node::RouterB);
        if a.len() >= 2 && b.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = download.received();
    download.stop();
    assert!(received > 0, "nothing went through the bridge");
    assert!(
        a.len() >= 2 && b.len() >= 2,
        "expected two subflows on each router: A {a:?}, B {b:?}\n{}",
        bridge.logs()
    );
    assert!(
        a.iter().chain(&b).all(|alg| alg == "reno"),
        "subflows not on reno: A {a:?}, B {b:?}"
    );
}

/// The send buffers (`tb` of `ss -Mm`: the kernel's count, twice what
/// SO_SNDBUF asked) of router B's MPTCP connections, through which
/// downloads leave.
fn send_buffers(bridge: &Bridge) -> Vec<u64> {
    let text = bridge
        .topo
        .run(Node::RouterB, &["ss", "-MmHn", "state", "established"])
        .unwrap();
    text.split(",tb")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn router_b_gives_its_connections_one_mib_of_send_buffer_which_a_quick_flow_keeps() {
    const FLOOR: u64 = 1 << 20;
    let bridge = Bridge::start(Options::default());
    // Shallow queues (5 ms): 80 Mbit/s over round trips of a few ms need
    // far less than the first buffer, so the looks keep it. (Growth needs
    // round trips this lab cannot make without netem: TCP small queues
    // keep a sender's own qdisc from holding more than about a
    // millisecond; control::sndbuf's unit tests and the VM bench cover it.)
    for dev in ["wan0", "wan1"] {
        let tc = [
            "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "40mbit", "burst", "4kb",
            "latency", "5ms",
        ];
        bridge.topo.run(Node::RouterB, &tc).unwrap();
    }
    let download = Download::start(&bridge);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen.push(send_buffers(&bridge));
        std::thread::sleep(Duration::from_millis(500));
    }
    let received = download.received();
    download.stop();
    assert!(received > 0, "nothing went through the bridge");
    // Autotuning (sndbuf = 0) shows other, changing sizes here
    // (151552 to 211456 bytes in one run).
    assert!(
        seen.iter().all(|tb| tb == &[FLOOR]),
        "router B's one connection should keep 1 MiB of send buffer: {seen:?}\n{}",
        bridge.logs()
    );
}
