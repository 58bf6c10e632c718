//! Shared set-up of the bridge integration tests: a lab topology with the
//! real `mpbridge local` in router A and `mpbridge remote` in router B, the
//! interception rules, and data helpers (patterned streams, SHA-256).

#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use mpbridge_lab::{LinkSpec, Node, Proc, Topology, TopologySpec};
use sha2::{Digest, Sha256};

/// Port the local side listens on for diverted connections.
pub const LOCAL_PORT: u16 = 12345;
/// Port the remote side listens on.
pub const REMOTE_PORT: u16 = 4443;
/// A test key (hex, 32 bytes).
pub const KEY_HEX: &str = "5f2b8c1e9a7d40c3b6e15a9f0d2c4e7b8a1f3d5c7e9b0a2c4d6f8e1a3b5c7d9e";
/// Another key, which the remote does not know.
pub const WRONG_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// How connections reach `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tproxy,
    Redirect,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tproxy => "tproxy",
            Mode::Redirect => "redirect",
        }
    }
}

/// What to start.
pub struct Options {
    pub links: usize,
    pub mode: Mode,
    pub local_key: &'static str,
    /// Extra lines for the remote's `[remote]` section.
    pub remote_extra: &'static str,
    /// Extra lines for the local's `[local]` section.
    pub local_extra: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            links: 2,
            mode: Mode::Tproxy,
            local_key: KEY_HEX,
            remote_extra: "",
            local_extra: "",
        }
    }
}

/// A running bridge in its own topology. Dropping it stops the daemons and
/// removes the namespaces (also when a test panics).
pub struct Bridge {
    pub local: Proc,
    pub remote: Proc,
    pub topo: Topology,
}

/// The `mpbridge` binary cargo built for these tests.
pub fn mpbridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mpbridge"))
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Bridge {
    pub fn start(options: Options) -> Bridge {
        let spec = TopologySpec {
            links: (0..options.links).map(|_| LinkSpec::shaped(0)).collect(),
        };
        let topo = Topology::build(&spec).expect("build the topology");
        // LAB-SETUP: MPTCP endpoints and policy routing, until the path manager lands.
        topo.mptcp_setup_manual().expect("MPTCP endpoints");
        let dir = topo.workdir().to_path_buf();

        let remote_key = dir.join("remote.key");
        write_private(&remote_key, KEY_HEX);
        let remote_conf = dir.join("remote.toml");
        write_private(
            &remote_conf,
            &format!(
                "[auth]\nkey_file = \"{}\"\n\n[remote]\nlisten = [\"0.0.0.0:{REMOTE_PORT}\", \"[::]:{REMOTE_PORT}\"]\n{}\n\n[log]\nlevel = \"debug\"\n",
                remote_key.display(),
                options.remote_extra,
            ),
        );
        let local_key = dir.join("local.key");
        write_private(&local_key, options.local_key);
        let local_conf = dir.join("local.toml");
        write_private(
            &local_conf,
            &format!(
                "[auth]\nkey_file = \"{}\"\n\n[local]\nlisten = [\"0.0.0.0:{LOCAL_PORT}\", \"[::]:{LOCAL_PORT}\"]\nintercept = \"{}\"\nremotes = [\"{}\"]\n{}\n\n[log]\nlevel = \"debug\"\n",
                local_key.display(),
                options.mode.name(),
                SocketAddr::new(topo.rb_link_addr(0, false), REMOTE_PORT),
                options.local_extra,
            ),
        );

        let remote = topo
            .spawn_named(
                Node::RouterB,
                "remote",
                std::process::Command::new(mpbridge_bin())
                    .args(["-c"])
                    .arg(&remote_conf)
                    .arg("remote"),
            )
            .expect("start mpbridge remote");
        remote
            .wait_for_log("remote listening", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", remote.output_text()));
        let local = topo
            .spawn_named(
                Node::RouterA,
                "local",
                std::process::Command::new(mpbridge_bin())
                    .args(["-c"])
                    .arg(&local_conf)
                    .arg("local"),
            )
            .expect("start mpbridge local");
        local
            .wait_for_log("local listening", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", local.output_text()));
        // LAB-SETUP: interception rules, until the owned firewall table lands.
        install_interception(&topo, options.mode);
        Bridge {
            local,
            remote,
            topo,
        }
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

/// The nftables rules (and, for TPROXY, the policy routing) that divert the
/// client LAN's TCP to `mpbridge local` in router A.
fn install_interception(topo: &Topology, mode: Mode) {
    let rules = match mode {
        Mode::Redirect => format!(
            "table inet mpbtest {{
               chain pre {{
                 type nat hook prerouting priority dstnat; policy accept;
                 iifname \"lan0\" meta l4proto tcp redirect to :{LOCAL_PORT}
               }}
             }}"
        ),
        Mode::Tproxy => format!(
            "table inet mpbtest {{
               chain pre {{
                 type filter hook prerouting priority mangle; policy accept;
                 iifname \"lan0\" meta nfproto ipv4 meta l4proto tcp tproxy ip to :{LOCAL_PORT} meta mark set 1 accept
                 iifname \"lan0\" meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :{LOCAL_PORT} meta mark set 1 accept
               }}
             }}"
        ),
    };
    let path = topo.workdir().join("intercept.nft");
    std::fs::write(&path, rules).unwrap();
    topo.run(Node::RouterA, &["nft", "-f", path.to_str().unwrap()])
        .expect("install interception rules");
    if mode == Mode::Tproxy {
        for cmd in [
            "ip rule add fwmark 1 lookup 99",
            "ip route add local 0.0.0.0/0 dev lo table 99",
            "ip -6 rule add fwmark 1 lookup 99",
            "ip -6 route add local ::/0 dev lo table 99",
        ] {
            let args: Vec<&str> = cmd.split(' ').collect();
            topo.run(Node::RouterA, &args).expect(cmd);
        }
    }
}

/// A deterministic byte stream (xorshift), different per seed.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Sends `len` patterned bytes, then half-closes; returns their SHA-256.
pub fn send_pattern(stream: &mut TcpStream, seed: u64, len: u64) -> std::io::Result<[u8; 32]> {
    let mut pattern = Pattern::new(seed);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(hash.finalize().into())
}

/// Reads to EOF; returns the byte count and SHA-256.
pub fn receive_all(stream: &mut TcpStream) -> std::io::Result<(u64, [u8; 32])> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hash.finalize().into()));
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
}

/// The server's address in the given family.
pub fn server_ip(bridge: &Bridge, v6: bool) -> IpAddr {
    bridge.topo.server_addr(v6)
}
