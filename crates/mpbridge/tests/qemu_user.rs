//! The data path with the router binaries of other CPU architectures, run
//! under qemu-user (`qemu-aarch64`, `qemu-arm`, `qemu-mipsel`) in the test's
//! own namespaces: 100 MB each way through local → 2 subflows → remote.
//!
//! qemu-user passes only rtnetlink through: a daemon must say in one line
//! that its path manager is unavailable and serve on; the test sets router
//! B's MPTCP limits from outside, as the lab did before the path manager.
//! qemu-user (7.2) also refuses IP_TRANSPARENT and SO_ORIGINAL_DST, so an
//! emulated `mpbridge local` cannot take diverted connections at all: the
//! emulated binary is router B's `mpbridge remote` (MPTCP listener, TCP Fast
//! Open, cookie check, splice relay) beside a native local, and a test
//! checks that the emulated local says why it refuses. Both daemons run on
//! arm64 in the full-system VM test (scripts/vm-test.sh).
//! Ignored by default: they need `scripts/cross.sh`'s binaries (found in
//! `MPBRIDGE_CROSS_DIR`, else `$CARGO_TARGET_DIR/cross`, else
//! `target/cross`); `scripts/test.sh` builds those and runs them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use common::{Bridge, Options};
use mpbridge_lab::transfer::{self, Server};
use mpbridge_lab::{wait_until, LinkSpec, Node, Topology, TopologySpec};

const BIG: u64 = 100 * 1024 * 1024;

/// The cross-built binary of `rust_target`.
fn cross_binary(rust_target: &str) -> PathBuf {
    cross_file(rust_target, "router/mpbridge", "scripts/cross.sh")
}

/// `path` under scripts/cross.sh's directory for `rust_target`.
fn cross_file(rust_target: &str, path: &str, built_by: &str) -> PathBuf {
    let dir = std::env::var_os("MPBRIDGE_CROSS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("cross")))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/cross"));
    let bin = dir.join(rust_target).join(path);
    assert!(
        bin.is_file(),
        "no {} (build it with {built_by})",
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

/// What router B's path manager does on a real kernel, done by hand: the
/// MPTCP limits that let router A's subflows join.
fn set_remote_limits_from_outside(topo: &Topology) {
    topo.run(
        Node::RouterB,
        &[
            "ip",
            "mptcp",
            "limits",
            "set",
            "subflows",
            "8",
            "add_addr_accepted",
            "8",
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// 100 MB each way through the emulated `mpbridge remote` (router B) and a
/// native `mpbridge local`, over two subflows.
fn carries_100_mb_each_way_under(qemu: &str, rust_target: &str) {
    let binary = cross_binary(rust_target);
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED; 2],
    })
    .expect("build the topology");
    set_remote_limits_from_outside(&topo);
    let wrapper = qemu_wrapper(&topo, qemu, &binary);
    let bridge = Bridge::start_in(
        topo,
        Options {
            remote_binary: Some(wrapper),
            // The emulated remote has no path manager, hence no probe
            // responder: router A would declare every link down.
            paths_extra: "[probe]\nenabled = false",
            ..Options::default()
        },
    );
    let log = bridge.remote.output_text();
    assert_eq!(
        log.matches("path manager unavailable").count(),
        1,
        "the emulated remote must say once that it runs without a path manager:\n{log}"
    );

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
    assert!(outcome.intact(), "{outcome:?}\n{}", bridge.logs());
    assert_eq!(
        links_seen,
        vec![0, 1],
        "expected subflows on both links\n{}",
        bridge.logs()
    );
    assert!(
        bridge.remote.output_text().contains("remote listening"),
        "{}",
        bridge.logs()
    );
}

/// `mpbridge local` emulated: qemu-user (Debian 12's 7.2) passes neither
/// IP_TRANSPARENT nor SO_ORIGINAL_DST to the kernel, so it cannot take
/// diverted connections there. It must refuse at start with one sentence
/// saying why (it binds before it starts the path manager).
fn emulated_local_says_why_it_cannot_intercept(qemu: &str, rust_target: &str) {
    let binary = cross_binary(rust_target);
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED; 2],
    })
    .expect("build the topology");
    let dir = topo.workdir().to_path_buf();
    std::fs::write(dir.join("key"), common::KEY_HEX).unwrap();
    std::fs::write(
        dir.join("local.toml"),
        format!(
            "[auth]\nkey_file = {:?}\n[local]\nremotes = [\"10.20.0.2:4443\"]\nlan_interfaces = [\"lan0\"]\n\
             firewall = \"none\"\n[[link]]\ninterface = \"wan0\"\n",
            dir.join("key").display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(qemu);
    cmd.arg(&binary)
        .arg("-c")
        .arg(dir.join("local.toml"))
        .arg("local");
    let local = topo.spawn_named(Node::RouterA, "local", &mut cmd).unwrap();
    let status = local.wait_exit(Duration::from_secs(30)).unwrap();
    let log = local.output_text();
    assert_eq!(status.code(), Some(71), "{log}");
    assert!(
        log.contains("does not know IP_TRANSPARENT (an emulator such as qemu-user?)"),
        "{log}"
    );
}

#[test]
#[ignore = "needs scripts/cross.sh's aarch64 binary and qemu-user"]
fn aarch64_remote_under_qemu_carries_100_mb_each_way_over_two_subflows() {
    carries_100_mb_each_way_under("qemu-aarch64", "aarch64-unknown-linux-musl");
}

#[test]
#[ignore = "needs scripts/cross.sh's armv7 binary and qemu-user"]
fn armv7_remote_under_qemu_carries_100_mb_each_way_over_two_subflows() {
    carries_100_mb_each_way_under("qemu-arm", "armv7-unknown-linux-musleabihf");
}

#[test]
#[ignore = "needs scripts/cross.sh's mipsel binary and qemu-user"]
fn mipsel_remote_under_qemu_carries_100_mb_each_way_over_two_subflows() {
    carries_100_mb_each_way_under("qemu-mipsel", "mipsel-unknown-linux-musl");
}

#[test]
#[ignore = "needs scripts/cross.sh's aarch64 binary and qemu-user"]
fn aarch64_local_under_qemu_refuses_interception_in_one_sentence() {
    emulated_local_says_why_it_cannot_intercept("qemu-aarch64", "aarch64-unknown-linux-musl");
}

/// A socket program with threads under qemu-mipsel: tools/connhold's
/// listener thread and 500 connections over loopback, a byte each way on
/// each. Such a program once crashed there; what did crash since is
/// non-PIC MIPS code (scripts/cross.sh says why the binaries stay PIC).
#[test]
#[ignore = "needs scripts/cross.sh --connhold mipsel and qemu-user"]
fn mipsel_socket_program_with_threads_runs_under_qemu() {
    let connhold = cross_file(
        "mipsel-unknown-linux-musl",
        "release/connhold",
        "scripts/cross.sh --connhold mipsel",
    );
    let out = std::process::Command::new("qemu-mipsel")
        .arg(&connhold)
        .args(["selftest", "500"])
        .output()
        .expect("run qemu-mipsel");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{:?}\n{text}", out.status);
    assert!(
        text.contains("selftest: 500 connections opened, 500 served"),
        "{text}"
    );
}
