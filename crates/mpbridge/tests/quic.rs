//! QUIC from the LAN (`local.quic`), with a real QUIC client and server
//! (aioquic, tests/quic/*.py) and the real daemons in namespaces. With
//! "refuse" (the default) router A answers the client's first datagram with
//! an ICMP port-unreachable at once, and the TCP connection a browser then
//! makes to the same server:443 is bridged; with "pass" the handshake
//! completes over the daemons' multipath routes, as any UDP. A destination
//! in `bypass`, or router A itself, is never refused.
//!
//! aioquic comes from PyPI into a venv under the cache directory
//! (`$MPBRIDGE_CACHE/quic-venv`, default /var/cache/mpbridge), made on first
//! use; the tests fail, saying why, if it cannot be made.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Bridge, Options};
use mpbridge_lab::{LanRoutes, Node, Proc, Topology};

/// The aioquic the scripts were written against.
const AIOQUIC: &str = "aioquic==1.7.2";
/// The refusal must reach the client within this (the behaviour: a
/// browser falls back at once instead of waiting out a time-out).
const REFUSED_WITHIN_MS: f64 = 100.0;
const QUIC_PORT: u16 = 443;

/// The venv's python, with aioquic installed (made once per test run).
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let cache = std::env::var_os("MPBRIDGE_CACHE")
            .map_or_else(|| PathBuf::from("/var/cache/mpbridge"), PathBuf::from);
        let venv = cache.join("quic-venv");
        let python = venv.join("bin/python");
        let has = |python: &Path| {
            let check = format!(
                "import aioquic, cryptography; assert aioquic.__version__ == {:?}",
                AIOQUIC.trim_start_matches("aioquic==")
            );
            Command::new(python)
                .args(["-c", &check])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if has(&python) {
            return Ok(python);
        }
        let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        eprintln!("installing {AIOQUIC} from PyPI into {}", venv.display());
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            &format!(
                "cannot make a Python venv at {} (Debian: apt-get install python3-venv)",
                venv.display()
            ),
        )?;
        run(
            Command::new(venv.join("bin/pip")).args(["install", "-q", AIOQUIC]),
            &format!("pip cannot install {AIOQUIC} (is PyPI reachable?)"),
        )?;
        if has(&python) {
            Ok(python)
        } else {
            Err(format!(
                "{AIOQUIC} installed but not importable by {}",
                python.display()
            ))
        }
    });
    made.as_deref()
        .unwrap_or_else(|e| panic!("the QUIC tests need aioquic: {e}"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/quic")
        .join(name)
}

/// A QUIC server on `ip`:443 inside `node`, once it listens.
fn quic_server(topo: &Topology, node: Node, ip: IpAddr, name: &str) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(script("quic_server.py"))
        .arg(ip.to_string())
        .arg(QUIC_PORT.to_string());
    let server = topo.spawn_named(node, name, &mut cmd).unwrap();
    server
        .wait_for_log("listening on", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", server.output_text()));
    server
}

/// What the client's attempt came to.
#[derive(Debug)]
struct Attempt {
    result: String,
    /// From its first datagram to the outcome.
    ms: f64,
}

/// One QUIC connection attempt from the client namespace to `ip`:443.
fn quic_attempt(topo: &Topology, ip: IpAddr) -> Attempt {
    let python = python().to_str().unwrap();
    let client = script("quic_client.py");
    let (host, port) = (ip.to_string(), QUIC_PORT.to_string());
    let out = topo
        .run(
            Node::Client,
            &[python, client.to_str().unwrap(), &host, &port, "5"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    println!("QUIC to {ip}:{QUIC_PORT}: {json}");
    Attempt {
        result: json["result"].as_str().unwrap().to_owned(),
        ms: json["ms"].as_f64().unwrap(),
    }
}

/// `nft list table inet mpbridge` in router A.
fn table(bridge: &Bridge) -> String {
    bridge
        .topo
        .run(Node::RouterA, &["nft", "list", "table", "inet", "mpbridge"])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bridge.logs()))
}

fn start(local_extra: &'static str) -> Bridge {
    python(); // fails before any namespace is made if aioquic cannot be had
    Bridge::start(Options {
        local_extra,
        lan_routes: LanRoutes::Daemons,
        ..Options::default()
    })
}

/// The default: the first attempt is refused within 100 ms, the server
/// never hears of it, and TCP to the same server:443 is bridged.
fn refused_and_tcp_is_bridged(v6: bool) {
    let bridge = start("");
    let server_ip = bridge.topo.server_addr(v6);
    let server = quic_server(&bridge.topo, Node::Server, server_ip, "quic-server");
    let ruleset = table(&bridge);
    println!("the daemon's ruleset:\n{ruleset}");
    assert!(
        ruleset.contains("chain quic")
            && ruleset.contains("dport 443")
            && ruleset.contains("reject"),
        "{ruleset}"
    );

    let attempt = quic_attempt(&bridge.topo, server_ip);
    println!(
        "IPv{}: QUIC refused in {:.2} ms",
        if v6 { 6 } else { 4 },
        attempt.ms
    );
    assert_eq!(attempt.result, "refused", "{attempt:?}\n{}", bridge.logs());
    assert!(attempt.ms < REFUSED_WITHIN_MS, "{attempt:?}");
    assert!(
        !server.output_text().contains("handshake from"),
        "{}",
        server.output_text()
    );

    // The browser's fallback: TCP to the same address and port, which the
    // server sees coming from router B (bridged), not from the client.
    let listener = bridge.topo.enter(Node::Server, move || {
        TcpListener::bind(SocketAddr::new(server_ip, QUIC_PORT))
    });
    let listener = listener.expect("bind TCP 443 in the server namespace");
    let mut client = bridge
        .client_connect(SocketAddr::new(server_ip, QUIC_PORT))
        .unwrap_or_else(|e| panic!("TCP fallback: {e}\n{}", bridge.logs()));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        peer.ip(),
        bridge.topo.rb_lan_addr(v6),
        "the TCP fallback must be bridged\n{}",
        bridge.logs()
    );
}

#[test]
fn by_default_quic_is_refused_at_once_and_the_tcp_fallback_is_bridged_ipv4() {
    refused_and_tcp_is_bridged(false);
}

#[test]
fn by_default_quic_is_refused_at_once_and_the_tcp_fallback_is_bridged_ipv6() {
    refused_and_tcp_is_bridged(true);
}

/// "pass": no rule, and the handshake completes over the multipath
/// routes, the server seeing the client itself (routed, not bridged).
fn passes(v6: bool) {
    let bridge = start("quic = \"pass\"");
    let server_ip = bridge.topo.server_addr(v6);
    let server = quic_server(&bridge.topo, Node::Server, server_ip, "quic-server");
    let ruleset = table(&bridge);
    assert!(
        !ruleset.contains("quic") && !ruleset.contains("reject"),
        "{ruleset}"
    );
    let attempt = quic_attempt(&bridge.topo, server_ip);
    assert_eq!(
        attempt.result,
        "handshake",
        "{attempt:?}\n{}",
        bridge.logs()
    );
    let client = bridge.topo.client_addr(v6);
    assert!(
        server
            .output_text()
            .contains(&format!("handshake from {client}")),
        "{}",
        server.output_text()
    );
}

#[test]
fn with_quic_pass_the_handshake_completes_over_the_routes_ipv4() {
    passes(false);
}

#[test]
fn with_quic_pass_the_handshake_completes_over_the_routes_ipv6() {
    passes(true);
}

/// The refusal follows the diversion's exceptions: a destination in
/// `local.bypass` and router A's own address are not refused.
#[test]
fn quic_to_a_bypassed_destination_or_to_the_router_itself_is_not_refused() {
    let bypass = format!(
        "bypass = [\"{}/32\"]",
        mpbridge_lab::plan::server_addr(false)
    );
    let bridge = start(Box::leak(bypass.into_boxed_str()));
    let server_ip = bridge.topo.server_addr(false);
    let _server = quic_server(&bridge.topo, Node::Server, server_ip, "quic-server");
    let attempt = quic_attempt(&bridge.topo, server_ip);
    assert_eq!(
        attempt.result,
        "handshake",
        "{attempt:?}\n{}",
        bridge.logs()
    );

    let router_ip = bridge.topo.ra_lan_addr(false);
    let _router = quic_server(&bridge.topo, Node::RouterA, router_ip, "quic-router");
    let attempt = quic_attempt(&bridge.topo, router_ip);
    assert_eq!(
        attempt.result,
        "handshake",
        "{attempt:?}\n{}",
        bridge.logs()
    );
}
