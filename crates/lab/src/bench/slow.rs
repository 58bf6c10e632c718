//! Case `slow`: 100 transfers through the bridge whose receivers read
//! slowly, and the kernel memory their sockets hold on each router — what
//! the fixed receive buffers (`fastopen_rcvbuf`) let a few slow readers
//! take. Downloads (clients read slowly: router A holds the data) and
//! uploads (the server reads slowly: router B holds it).
//!
//! Memory is read from `ss -tmnH` and `ss -MmnH` in each router's
//! namespace (TCP sockets, MPTCP subflows among them, and MPTCP sockets):
//! the sum of `r` (receive queues), `w` (send queues) and `f` (memory the
//! socket reserved ahead), which is what the kernel charges against
//! `net.ipv4.tcp_mem`. `/proc/net/sockstat`'s `mem` is that same charge
//! for the whole host (the counter is not per namespace), so it is kept
//! only as a cross-check.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Figure, Subject};
use crate::{Node, Topology};

/// Transfers at once.
pub const TRANSFERS: usize = 100;
/// Bytes each slow reader takes per connection every [`READ_EVERY`].
pub const READ_BYTES: usize = 1024;
pub const READ_EVERY: Duration = Duration::from_millis(100);
/// First port of its servers (one per proxy session).
const PORT: u16 = 8900;
/// Memory is sampled this often until it stops growing.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// "Stopped growing": less than 2 % more over this long.
const SETTLED: Duration = Duration::from_secs(3);

/// One direction through one path: each router's socket memory once the
/// buffers have filled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlowRow {
    pub subject: Subject,
    /// The RAM of the router emulated ([`emulate_router`]); `None`: this
    /// machine's own kernel settings.
    #[serde(default)]
    pub router_ram_mib: Option<u64>,
    /// "download" (server → slow client) or "upload" (client → slow server).
    pub direction: String,
    pub transfers: usize,
    pub routers: Vec<RouterMemory>,
    /// Seconds until the memory stopped growing (or the limit).
    pub fill_s: Figure,
}

/// A router's sockets, summed, bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterMemory {
    pub router: String,
    /// `r + w + f` of all TCP and MPTCP sockets.
    pub charged: Figure,
    /// `r`: data received and not yet read.
    pub receive: Figure,
    /// `w`: data written and not yet acknowledged (or not yet sent).
    pub send: Figure,
    /// Sockets counted (TCP, subflows included, and MPTCP).
    pub sockets: Figure,
    /// `/proc/net/sockstat` TCP `mem` read in the router's namespace, bytes:
    /// the whole host's charge (not per namespace).
    pub host_tcp_mem: Figure,
}

impl RouterMemory {
    fn new(router: &str) -> RouterMemory {
        RouterMemory {
            router: router.into(),
            charged: Figure::default(),
            receive: Figure::default(),
            send: Figure::default(),
            sockets: Figure::default(),
            host_tcp_mem: Figure::default(),
        }
    }

    /// Charged bytes per transfer (median).
    pub fn per_transfer(&self, transfers: usize) -> f64 {
        self.charged.median() / transfers.max(1) as f64
    }
}

/// One reading of a namespace's sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sockets {
    pub count: u64,
    pub r: i64,
    pub w: i64,
    pub f: i64,
}

impl Sockets {
    pub fn charged(&self) -> i64 {
        self.r + self.w + self.f
    }
}

/// Sums the `skmem:(…)` fields of `ss -m` output.
pub fn parse_skmem(text: &str) -> Sockets {
    let mut out = Sockets::default();
    for part in text.split("skmem:(").skip(1) {
        let Some(inner) = part.split(')').next() else {
            continue;
        };
        out.count += 1;
        for field in inner.split(',') {
            let digits = field
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(field.len());
            let (key, value) = field.split_at(digits);
            // ss prints the kernel's ints as unsigned: a negative forward
            // allocation shows as a value near 2^32.
            let value = value.parse::<u32>().map_or(0, |v| v as i32 as i64);
            match key {
                "r" => out.r += value,
                "w" => out.w += value,
                "f" => out.f += value,
                _ => {}
            }
        }
    }
    out
}

/// `mem` of the `TCP:` line of `/proc/net/sockstat` (pages).
pub fn parse_sockstat_tcp_mem(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// The sockets of `node`'s namespace and the host's TCP memory (bytes).
pub fn read_memory(topo: &Topology, node: Node) -> anyhow::Result<(Sockets, u64)> {
    let tcp = topo.run(node, &["ss", "-tmnH"])?;
    let mptcp = topo.run(node, &["ss", "-MmnH"]).unwrap_or_default();
    let mut s = parse_skmem(&tcp);
    let m = parse_skmem(&mptcp);
    s.count += m.count;
    s.r += m.r;
    s.w += m.w;
    s.f += m.f;
    let sockstat = topo.run(node, &["cat", "/proc/net/sockstat"])?;
    let page = rustix::param::page_size() as u64;
    let host = parse_sockstat_tcp_mem(&sockstat).unwrap_or(0) * page;
    Ok((s, host))
}

/// The per-socket buffer ceiling Linux sets at boot on a machine with
/// `ram_mib` of RAM (`tcp_init`: 1/128 of the free memory, at most 6 MiB
/// for receiving and 4 MiB for sending), free memory taken as 85 % of RAM.
pub fn socket_ceilings(ram_mib: u64) -> (u64, u64) {
    let limit = ram_mib * 1024 * 1024 * 85 / 100 / 128;
    (limit.min(6 << 20), limit.min(4 << 20))
}

/// Gives both routers' namespaces the per-socket TCP buffer limits
/// (`net.ipv4.tcp_rmem`, `tcp_wmem`: per namespace) of a router with
/// `ram_mib` of RAM; returns the values before, for [`restore_router`].
pub fn emulate_router(
    topo: &Topology,
    ram_mib: u64,
) -> anyhow::Result<Vec<(Node, String, String)>> {
    let (rmax, wmax) = socket_ceilings(ram_mib);
    let mut before = Vec::new();
    for node in [Node::RouterA, Node::RouterB] {
        for (key, value) in [
            ("net.ipv4.tcp_rmem", format!("4096 131072 {rmax}")),
            ("net.ipv4.tcp_wmem", format!("4096 16384 {wmax}")),
        ] {
            let old = topo.run(node, &["sysctl", "-n", key])?;
            topo.run(node, &["sysctl", "-qw", &format!("{key}={value}")])?;
            before.push((
                node,
                key.to_string(),
                old.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
    }
    Ok(before)
}

/// Puts back what [`emulate_router`] changed.
pub fn restore_router(topo: &Topology, before: &[(Node, String, String)]) {
    for (node, key, value) in before {
        let _ = topo.run(*node, &["sysctl", "-qw", &format!("{key}={value}")]);
    }
}

/// Both directions through `running` (`Limit`: plain routing), merged into
/// `rows`.
pub fn run(
    topo: &Topology,
    subject: Subject,
    session: u16,
    quick: bool,
    router_ram_mib: Option<u64>,
    rows: &mut Vec<SlowRow>,
) -> anyhow::Result<()> {
    let limit = if quick {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(20)
    };
    for (k, download) in [true, false].into_iter().enumerate() {
        let port = PORT + 2 * session + k as u16 + router_ram_mib.map_or(0, |_| 50);
        let addr = SocketAddr::new(topo.server_addr(false), port);
        let (routers, fill) = one(topo, addr, download, limit)?;
        let direction = if download { "download" } else { "upload" };
        let i = match rows.iter().position(|r| {
            r.subject == subject && r.direction == direction && r.router_ram_mib == router_ram_mib
        }) {
            Some(i) => i,
            None => {
                rows.push(SlowRow {
                    subject,
                    router_ram_mib,
                    direction: direction.into(),
                    transfers: TRANSFERS,
                    routers: vec![RouterMemory::new("router A"), RouterMemory::new("router B")],
                    fill_s: Figure::default(),
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        row.fill_s.push(fill);
        for (m, (s, host)) in row.routers.iter_mut().zip(routers) {
            m.charged.push(s.charged() as f64);
            m.receive.push(s.r as f64);
            m.send.push(s.w as f64);
            m.sockets.push(s.count as f64);
            m.host_tcp_mem.push(host as f64);
        }
    }
    Ok(())
}

/// One run: [`TRANSFERS`] connections, the sender writing as fast as it
/// can, the receiver reading [`READ_BYTES`] per [`READ_EVERY`]; returns
/// the routers' memory at its largest once it stopped growing, and when.
fn one(
    topo: &Topology,
    addr: SocketAddr,
    download: bool,
    limit: Duration,
) -> anyhow::Result<([(Sockets, u64); 2], f64)> {
    let listener = topo
        .enter(Node::Server, || TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr} in the server node"))?;
    let listener = Arc::new(listener);
    let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    let acceptor = {
        let (listener, accepted) = (Arc::clone(&listener), Arc::clone(&accepted));
        std::thread::spawn(move || {
            for _ in 0..TRANSFERS {
                let Ok((s, _)) = listener.accept() else {
                    return;
                };
                accepted.lock().unwrap_or_else(|p| p.into_inner()).push(s);
            }
        })
    };
    let clients = topo.enter(Node::Client, || -> std::io::Result<Vec<TcpStream>> {
        (0..TRANSFERS)
            .map(|_| {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                // A byte up first, so that every proxy dials the server now.
                (&s).write_all(b"s")?;
                Ok(s)
            })
            .collect()
    });
    let clients = match clients {
        Ok(c) => c,
        Err(e) => {
            let _ = rustix::net::shutdown(&*listener, rustix::net::Shutdown::Read);
            let _ = acceptor.join();
            return Err(e)
                .with_context(|| format!("cannot open {TRANSFERS} connections to {addr}"));
        }
    };
    // A proxy still closing thousands of held connections may be slow to
    // take these.
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.lock().unwrap_or_else(|p| p.into_inner()).len() < TRANSFERS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {TRANSFERS} connections reached the server",
            accepted.lock().unwrap_or_else(|p| p.into_inner()).len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = acceptor.join();
    let servers = std::mem::take(&mut *accepted.lock().unwrap_or_else(|p| p.into_inner()));
    // The server reads the byte each client sent.
    for mut s in &servers {
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.read_exact(&mut b)?;
    }
    let (senders, readers) = if download {
        (&servers, &clients)
    } else {
        (&clients, &servers)
    };
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        for s in senders {
            let stop = &stop;
            scope.spawn(move || {
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                let chunk = vec![b'd'; 65536];
                let mut s = s;
                while !stop.load(Ordering::Relaxed) {
                    match s.write(&chunk) {
                        Ok(_) => {}
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            });
        }
        let stop = &stop;
        scope.spawn(move || {
            let mut buf = [0u8; READ_BYTES];
            for s in readers {
                let _ = s.set_nonblocking(true);
            }
            while !stop.load(Ordering::Relaxed) {
                for mut s in readers {
                    let _ = s.read(&mut buf);
                }
                std::thread::sleep(READ_EVERY);
            }
        });
        let measured = settle(topo, limit);
        stop.store(true, Ordering::Relaxed);
        measured
    });
    // Closing the sockets ends the transfers (the scope joined the threads).
    drop(clients);
    drop(servers);
    result
}

/// Samples both routers until their charged memory stops growing; the
/// largest reading of each, and the seconds it took.
fn settle(topo: &Topology, limit: Duration) -> anyhow::Result<([(Sockets, u64); 2], f64)> {
    let started = Instant::now();
    let mut best = [(Sockets::default(), 0u64); 2];
    let mut history: Vec<(Instant, i64)> = Vec::new();
    loop {
        std::thread::sleep(SAMPLE_EVERY);
        let a = read_memory(topo, Node::RouterA)?;
        let b = read_memory(topo, Node::RouterB)?;
        for (slot, now) in best.iter_mut().zip([a, b]) {
            if now.0.charged() >= slot.0.charged() {
                *slot = now;
            }
        }
        let total = a.0.charged() + b.0.charged();
        let now = Instant::now();
        history.push((now, total));
        let earlier = history
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= SETTLED)
            .map(|(_, v)| *v);
        let settled = earlier.is_some_and(|e| total <= e + e / 50);
        if settled || started.elapsed() >= limit {
            return Ok((best, started.elapsed().as_secs_f64()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skmem_fields_are_summed_over_sockets() {
        let text = "ESTAB 0 0 10.0.0.1:1 10.0.0.2:2\n\t skmem:(r100,rb131072,t0,tb87040,f4096,w50,o0,bl0,d0) cubic\n\
                    ESTAB 0 0 10.0.0.1:3 10.0.0.2:4\n\t skmem:(r0,rb131072,t7,tb87040,f0,w1000,o0,bl0,d3)\n\
                    ESTAB 0 0 10.0.0.1:5 10.0.0.2:6\n\t skmem:(r0,rb1,t0,tb1,f4294967040,w0)\n";
        let s = parse_skmem(text);
        assert_eq!(
            s,
            Sockets {
                count: 3,
                r: 100,
                w: 1050,
                f: 4096 - 256
            }
        );
        assert_eq!(s.charged(), 4990);
        assert_eq!(parse_skmem(""), Sockets::default());
    }

    #[test]
    fn sockstat_tcp_mem_is_read() {
        let text =
            "sockets: used 5\nTCP: inuse 3 orphan 0 tw 1 alloc 4 mem 17\nUDP: inuse 0 mem 2\n";
        assert_eq!(parse_sockstat_tcp_mem(text), Some(17));
        assert_eq!(parse_sockstat_tcp_mem("UDP: inuse 0 mem 2\n"), None);
    }
}
