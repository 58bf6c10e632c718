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
