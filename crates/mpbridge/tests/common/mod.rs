//! Shared set-up of the bridge integration tests: a lab topology with the
//! real `mpbridge local` in router A (which installs its own interception
//! rules) and `mpbridge remote` in router B, and data helpers (patterned
//! streams, SHA-256).

#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpbridge_lab::bridge as lab_bridge;
use mpbridge_lab::{LanRoutes, LinkSpec, Node, Proc, Topology, TopologySpec};

#[allow(unused_imports)] // each test file uses its own part
pub use mpbridge_lab::bridge::{
    Intercept as Mode, LAB_KEY_HEX as KEY_HEX, LOCAL_PORT, REMOTE_PORT,
};

/// Another key, which the remote does not know.
pub const WRONG_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// What to start.
pub struct Options {
    pub links: usize,
    pub mode: Mode,
    pub local_key: &'static str,
    /// Extra lines for the remote's `[remote]` section.
    pub remote_extra: &'static str,
    /// Extra lines for the local's `[local]` section.
    pub local_extra: &'static str,
    /// The remotes the local tries, in order (default: router B on link 0).
    pub remotes: Option<Vec<std::net::SocketAddr>>,
    /// Links configured `backup = true`.
    pub backup_links: Vec<usize>,
    /// Extra top-level TOML for both daemons (e.g. `[probe]`).
    pub paths_extra: &'static str,
    /// Who routes between the LANs: static routes, or the daemons.
    pub lan_routes: LanRoutes,
    /// The program run as `mpbridge` (default: this build's binary), e.g.
    /// a wrapper that runs a cross-built one under qemu-user.
    pub binary: Option<std::path::PathBuf>,
    /// The program run as `mpbridge remote`, if not `binary`.
    pub remote_binary: Option<std::path::PathBuf>,
    /// Lines for router A's `[paths]` alone (e.g. `subflows = "on-demand"`).
    pub local_paths: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            links: 2,
            mode: Mode::Tproxy,
            local_key: KEY_HEX,
            remote_extra: "",
            local_extra: "",
            remotes: None,
            backup_links: Vec::new(),
            paths_extra: "",
            lan_routes: LanRoutes::Static,
            binary: None,
            remote_binary: None,
            local_paths: "",
        }
    }
}

/// A running bridge in its own topology. Dropping it stops the daemons and
/// removes the namespaces (also when a test panics).
pub struct Bridge {
    pub local: Proc,
    pub remote: Proc,
    pub topo: Topology,
    /// The daemons' control sockets.
    pub local_socket: std::path::PathBuf,
    pub remote_socket: std::path::PathBuf,
}

impl Bridge {
    pub fn start(options: Options) -> Bridge {
        let spec = TopologySpec {
            links: (0..options.links).map(|_| LinkSpec::UNSHAPED).collect(),
        };
        let topo = Topology::build_with(&spec, options.lan_routes).expect("build the topology");
        Self::start_in(topo, options)
    }

    /// Starts the daemons in a topology already built (and perhaps set up
    /// further by the test).
    pub fn start_in(topo: Topology, options: Options) -> Bridge {
        let binary = options
            .binary
            .clone()
            .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_mpbridge")).to_path_buf());
        let daemons = lab_bridge::Bridge::start(
            &topo,
            &binary,
            &lab_bridge::BridgeOptions {
                intercept: options.mode,
                local_key_hex: options.local_key.into(),
                local_extra: options.local_extra.into(),
                remote_extra: options.remote_extra.into(),
                remotes: options.remotes.clone(),
                log_level: "debug".into(),
                backup_links: options.backup_links.clone(),
                paths_extra: options.paths_extra.into(),
                remote_mpbridge: options.remote_binary.clone(),
                local_paths: options.local_paths.into(),
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        Bridge {
            local: daemons.local,
            remote: daemons.remote,
            topo,
            local_socket: daemons.local_socket,
            remote_socket: daemons.remote_socket,
        }
    }

    /// Runs the real `mpbridge status` with `args` inside router A (for the
    /// local) or B (for the remote), against that daemon's socket; returns
    /// its output.
    pub fn status_command(&self, node: Node, args: &[&str]) -> anyhow::Result<String> {
        let socket = match node {
            Node::RouterA => &self.local_socket,
            _ => &self.remote_socket,
        };
        let socket = socket.to_str().expect("a UTF-8 path");
        let mut full = vec![env!("CARGO_BIN_EXE_mpbridge"), "status", "--socket", socket];
        full.extend_from_slice(args);
        self.topo.run(node, &full)
    }

    /// `mpbridge status --json --connections` of router A's or B's daemon.
    pub fn status(&self, node: Node) -> serde_json::Value {
        let out = self
            .status_command(node, &["--json", "--connections"])
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Both daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- local ---\n{}\n--- remote ---\n{}",
            self.local.output_text(),
            self.remote.output_text()
        )
    }

    /// A listener in the server namespace on an ephemeral port.
    pub fn server_listener(&self, v6: bool) -> TcpListener {
        let addr = SocketAddr::new(self.topo.server_addr(v6), 0);
        self.topo
            .enter(Node::Server, move || TcpListener::bind(addr))
            .expect("bind in server ns")
    }

    /// A TCP connection from the client namespace to `dest` (diverted by
    /// router A to the bridge).
    pub fn client_connect(&self, dest: SocketAddr) -> std::io::Result<TcpStream> {
        self.topo.enter(Node::Client, move || {
            TcpStream::connect_timeout(&dest, Duration::from_secs(5))
        })
    }

    /// A raw TCP (not MPTCP) connection from router A to the remote's port.
    pub fn raw_to_remote(&self) -> TcpStream {
        let addr = SocketAddr::new(self.topo.rb_link_addr(0, false), REMOTE_PORT);
        self.topo
            .enter(Node::RouterA, move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            })
            .expect("connect to the remote")
    }

    /// The links (by index) on which router A has an established MPTCP
    /// subflow to the remote.
    pub fn subflow_links(&self) -> Vec<usize> {
        let sockets = self.topo.tcp_sockets(Node::RouterA).unwrap_or_default();
        let mut links: Vec<usize> = sockets
            .iter()
            .filter(|s| s.mptcp_subflow && s.state == "ESTAB" && s.peer.port() == REMOTE_PORT)
            .filter_map(|s| {
                (0..self.topo.link_count()).find(|&i| {
                    s.local.ip() == self.topo.ra_link_addr(i, false)
                        || s.local.ip() == self.topo.ra_link_addr(i, true)
                })
            })
            .collect();
        links.sort_unstable();
        links.dedup();
        links
    }

    /// A namespace's counter from /proc/net/netstat (e.g. TcpExt TCPFastOpenPassive).
    pub fn netstat(&self, node: Node, group: &str, name: &str) -> u64 {
        let text = self.topo.run(node, &["cat", "/proc/net/netstat"]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            if !names.starts_with(&format!("{group}:")) {
                continue;
            }
            let names = names.split_whitespace();
            let values = values.split_whitespace();
            for (n, v) in names.zip(values) {
                if n == name {
                    return v.parse().unwrap();
                }
            }
        }
        panic!("no {group} {name} in /proc/net/netstat");
    }
}

/// A download (server → client) through the bridge until stopped; counts
/// what the client received.
pub struct Download {
    pub client: SocketAddr,
    pub dest: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    /// The test's two ends, to end the threads blocked on them.
    ends: [TcpStream; 2],
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Download {
    pub fn start(bridge: &Bridge) -> Download {
        let listener = bridge.server_listener(false);
        let dest = listener.local_addr().unwrap();
        let mut client = bridge
            .client_connect(dest)
            .expect("connect through the bridge");
        let (mut server, _) = listener.accept().unwrap();
        let ends = [server.try_clone().unwrap(), client.try_clone().unwrap()];
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let sender = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut pattern = Pattern::new(3);
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    pattern.fill(&mut buf);
                    if server.write_all(&buf).is_err() {
                        return;
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Write);
            })
        };
        let client_addr = client.local_addr().unwrap();
        let receiver = {
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        };
        Download {
            client: client_addr,
            dest,
            stop,
            received,
            ends,
            threads: vec![sender, receiver],
        }
    }

    /// Bytes the client has received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops at once (what is in flight is not waited for: the tests that
    /// use it look at the bridge, not at the data).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for end in &self.ends {
            let _ = end.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// How a test makes a link fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Router A's end administratively down (router B's loses carrier).
    Down,
    /// Every packet dropped, both ways, the interfaces up.
    Blackhole,
}

impl Failure {
    /// Fails link `link` (`failed`) or restores it.
    pub fn apply(self, topo: &Topology, link: usize, failed: bool) {
        match (self, failed) {
            (Failure::Down, true) => topo.link_down(link),
            (Failure::Down, false) => topo.link_up(link),
            (Failure::Blackhole, on) => topo.blackhole(link, on),
        }
        .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Runs `args` inside `node` and returns its output (panics on failure).
pub fn sh(topo: &Topology, node: Node, args: &[&str]) -> String {
    topo.run(node, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Every rule, route and nexthop tagged as mpbridge's (protocol 77).
pub fn tagged(topo: &Topology, node: Node) -> String {
    let mut out = String::new();
    for family in ["-4", "-6"] {
        out += &sh(topo, node, &["ip", family, "rule", "show"]);
        out += &sh(topo, node, &["ip", family, "route", "show", "table", "all"]);
    }
    out += &sh(topo, node, &["ip", "nexthop", "show"]);
    out.lines()
        .filter(|l| l.contains("proto 77"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Starts the daemon of `node` again with the config the lab wrote, once
/// it says it is listening; `name` names its log files.
pub fn restart(topo: &Topology, node: Node, name: &str) -> Proc {
    let role = if node == Node::RouterA {
        "local"
    } else {
        "remote"
    };
    let config = topo.workdir().join(format!("{role}.toml"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mpbridge"));
    cmd.arg("-c").arg(&config).arg(role);
    let proc = topo.spawn_named(node, name, &mut cmd).unwrap();
    proc.wait_for_log(&format!("{role} listening"), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    proc
}

// Not every test file uses all three.
#[allow(unused_imports)]
pub use mpbridge_lab::transfer::{receive_all, send_pattern, Pattern};

/// The server's address in the given family.
pub fn server_ip(bridge: &Bridge, v6: bool) -> IpAddr {
    bridge.topo.server_addr(v6)
}

/// A Convert request for `dest` whose cookie is signed with a key the
/// remote does not know.
pub fn forged_header(dest: SocketAddr) -> Vec<u8> {
    let key = convert::cookie::Key::new(1, hex::decode(WRONG_KEY_HEX).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&now.to_le_bytes());
    let cookie = convert::cookie::sign(&key, dest, now, nonce);
    let mut out = Vec::new();
    convert::Message::request(dest, Some(cookie.to_vec()))
        .encode(&mut out)
        .unwrap();
    out
}

/// Writes `payload`, then reads: the connection must have been reset (the
/// reset may surface on the write, which then consumes the error, or on
/// the read). Anything else, EOF included, is an error describing it.
pub fn expect_reset(connected: std::io::Result<TcpStream>, payload: &[u8]) -> Result<(), String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let mut client = match connected {
        Err(e) if e.kind() == ConnectionReset => return Ok(()),
        Err(e) => return Err(format!("connect failed: {e}")),
        Ok(c) => c,
    };
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    match client.write_all(payload) {
        Err(e) if matches!(e.kind(), ConnectionReset | BrokenPipe) => return Ok(()),
        Err(e) => return Err(format!("write failed: {e}")),
        Ok(()) => {}
    }
    let mut buf = [0u8; 64];
    match client.read(&mut buf) {
        Err(e) if e.kind() == ConnectionReset => Ok(()),
        other => Err(format!("expected a reset, got {other:?}")),
    }
}
