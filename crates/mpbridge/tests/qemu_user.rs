//! The data path with the router binaries of other CPU architectures, run
//! under qemu-user (`qemu-aarch64`, `qemu-arm`, `qemu-mipsel`) in the test's
//! own namespaces: 100 MB each way through local → 2 subflows → remote.
//!
//! qemu-user passes only rtnetlink through: the daemons must say in one line
//! that the path manager is unavailable and serve on, so the test sets the
//! MPTCP endpoints, limits, policy routing and the TPROXY rules from outside
//! (with `firewall = "none"`), as the lab did before the path manager.
//! Ignored by default: they need `scripts/cross.sh`'s binaries (found in
//! `MPBRIDGE_CROSS_DIR`, else `$CARGO_TARGET_DIR/cross`, else
//! `target/cross`); `scripts/test.sh` builds those and runs them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use common::{Bridge, Options, LOCAL_PORT};
use mpbridge_lab::transfer::{self, Server};
use mpbridge_lab::{plan, wait_until, LinkSpec, Node, Topology, TopologySpec};

const BIG: u64 = 100 * 1024 * 1024;
/// The mark TPROXY'd packets carry and the table the rule sends them to
/// (the daemon's own values, docs/FIREWALL.md).
const DIVERT_MARK: &str = "0x6d700001";
const DIVERT_TABLE: &str = "28016";

/// The cross-built binary of `rust_target`.
fn cross_binary(rust_target: &str) -> PathBuf {
    let dir = std::env::var_os("MPBRIDGE_CROSS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("cross")))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/cross"));
    let bin = dir.join(rust_target).join("router/mpbridge");
    assert!(
        bin.is_file(),
        "no {} (build it with scripts/cross.sh)",
        bin.display()
    );
    bin
}

/// A script that runs `binary` under `qemu` with the arguments it gets.
/// `exec` keeps the PID, so the lab signals the emulated daemon itself.
fn qemu_wrapper(topo: &Topology, qemu: &str, binary: &std::path::Path) -> PathBuf {
    let path = topo.workdir().join(format!("mpbridge-{qemu}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec {qemu} {} \"$@\"\n", binary.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// What the daemons' path managers and firewall do on a real kernel, done
/// by hand: limits on both routers; on router A a `subflow` endpoint on
/// every link but the first, per-link tables and source rules, and the
/// TPROXY rules and policy routing of docs/FIREWALL.md for `lan0`.
fn set_up_from_outside(topo: &Topology) {
    let ip = |node: Node, args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        topo.run(node, &[&["ip"][..], &args].concat())
            .unwrap_or_else(|e| panic!("{e:#}"));
    };
    for node in [Node::RouterA, Node::RouterB] {
        ip(node, "mptcp limits set subflows 8 add_addr_accepted 8");
    }
    for link in 0..topo.link_count() {
        let table = plan::link_table(link);
        let dev = topo.link_ifname(link);
        for v6 in [false, true] {
            let family = if v6 { "-6" } else { "-4" };
            let (ra, rb) = (topo.ra_link_addr(link, v6), topo.rb_link_addr(link, v6));
            ip(
                Node::RouterA,
                &format!("{family} route replace default via {rb} dev {dev} table {table}"),
            );
            ip(
                Node::RouterA,
                &format!("{family} rule add from {ra} table {table}"),
            );
            if link > 0 {
                ip(
                    Node::RouterA,
                    &format!("mptcp endpoint add {ra} dev {dev} subflow"),
                );
            }
        }
    }
    for family in ["-4", "-6"] {
        ip(
            Node::RouterA,
            &format!("{family} rule add fwmark {DIVERT_MARK} lookup {DIVERT_TABLE} priority {DIVERT_TABLE}"),
        );
        ip(
            Node::RouterA,
            &format!("{family} route add local default dev lo table {DIVERT_TABLE}"),
        );
    }
    let rules = format!(
        "table inet mpbridge_static {{
    chain prerouting {{
        type filter hook prerouting priority mangle; policy accept;
        iifname \"{lan}\" meta l4proto tcp jump divert
    }}
    chain divert {{
        socket transparent 1 meta mark set {DIVERT_MARK} accept
        meta mark 0x6d700002 return
        fib daddr type local return
        meta nfproto ipv4 meta l4proto tcp tproxy ip to :{LOCAL_PORT} meta mark set {DIVERT_MARK} accept
        meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :{LOCAL_PORT} meta mark set {DIVERT_MARK} accept
    }}
}}
",
        lan = plan::LAN_IFNAME
    );
    let file = topo.workdir().join("static.nft");
    std::fs::write(&file, rules).unwrap();
    topo.run(Node::RouterA, &["nft", "-f", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// 100 MB each way through the emulated daemons, over two subflows.
fn carries_100_mb_each_way_under(qemu: &str, rust_target: &str) {
    let binary = cross_binary(rust_target);
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED; 2],
    })
    .expect("build the topology");
    set_up_from_outside(&topo);
    let wrapper = qemu_wrapper(&topo, qemu, &binary);
    let bridge = Bridge::start_in(
        topo,
        Options {
            local_extra: "firewall = \"none\"",
            binary: Some(wrapper),
            ..Options::default()
        },
    );
    for daemon in [&bridge.local, &bridge.remote] {
        let log = daemon.output_text();
        assert_eq!(
            log.matches("path manager unavailable").count(),
            1,
            "{} must say once that it runs without a path manager:\n{log}",
            daemon.name()
        );
    }

    let server = Server::bind(&bridge.topo).unwrap();
    let received = AtomicU64::new(0);
    let mut links_seen = Vec::new();
    let outcome = std::thread::scope(|s| {
        let run = s.spawn(|| transfer::run(&bridge.topo, server, BIG, &received));
        wait_until(Duration::from_secs(30), || {
            links_seen = bridge.subflow_links();
            links_seen.len() >= 2 || run.is_finished()
        });
        run.join().unwrap()
    });
    let outcome = outcome.unwrap_or_else(|e| panic!("{e:#}\n{}", bridge.logs()));
    eprintln!("{qemu} {rust_target}: {outcome:?}");
    assert!(outcome.intact(), "{outcome:?}\n{}", bridge.logs());
    assert_eq!(
        links_seen,
        vec![0, 1],
        "expected subflows on both links\n{}",
        bridge.logs()
    );
}

#[test]
#[ignore = "needs scripts/cross.sh's aarch64 binary and qemu-user"]
fn aarch64_binary_under_qemu_carries_100_mb_each_way_over_two_subflows() {
    carries_100_mb_each_way_under("qemu-aarch64", "aarch64-unknown-linux-musl");
}

#[test]
#[ignore = "needs scripts/cross.sh's armv7 binary and qemu-user"]
fn armv7_binary_under_qemu_carries_100_mb_each_way_over_two_subflows() {
    carries_100_mb_each_way_under("qemu-arm", "armv7-unknown-linux-musleabihf");
}
