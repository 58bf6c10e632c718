//! Short connections that the client closes first, more of them than router
//! A has ephemeral ports. The side that sends the first DATA_FIN (router A,
//! relaying the client's FIN) is the side whose subflows the kernel shuts
//! first (Linux >= 6.17, "mptcp: propagate shutdown to subflows when
//! possible"), so router A holds every subflow in TIME_WAIT for 60 s, each
//! on one four-tuple towards the remote. With its port range shrunk to 200
//! in its namespace, router A must still carry more connections than that:
//! each link's subflows have a four-tuple space of their own, and with
//! `tcp_tw_reuse = 1` (set here in router A's namespace only) a port in
//! TIME_WAIT serves again after a second. Every byte is checked both ways.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sh, Bridge, Options};
use mpbridge_lab::{LanRoutes, LinkSpec, Node, Topology, TopologySpec};

/// Router A's ephemeral ports: 200.
const PORT_RANGE: &str = "40000 40199";
const PORTS: usize = 200;
const REQUEST: usize = 100;
const REPLY: usize = 300;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn request(i: u64) -> Vec<u8> {
    let mut r = i.to_be_bytes().to_vec();
    r.extend((0..REQUEST - 8).map(|j| (j as u64 * 7 + i) as u8));
    r
}

fn reply(i: u64) -> Vec<u8> {
    (0..REPLY).map(|j| (j as u64 * 13 + i * 3) as u8).collect()
}

/// The server: reads a request, checks it, answers, then waits for the
/// client's FIN (the client closes first). Counts the exchanges it saw whole.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
    addr: SocketAddr,
}

impl Server {
    fn start(bridge: &Bridge) -> Server {
        let listener: TcpListener = bridge.server_listener(false);
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut whole, mut bad) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                match answer(stream) {
                    Ok(()) => whole += 1,
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (whole, bad)
        });
        Server {
            stop,
            thread: Some(thread),
            addr,
        }
    }

    /// Stops; returns the whole exchanges and the errors seen.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut got = vec![0u8; REQUEST];
    s.read_exact(&mut got)?;
    let i = u64::from_be_bytes(got[..8].try_into().unwrap());
    if got != request(i) {
        return Err(std::io::Error::other(format!(
            "request {i} arrived changed"
        )));
    }
    s.write_all(&reply(i))?;
    let mut rest = [0u8; 16];
    match s.read(&mut rest)? {
        0 => Ok(()),
        n => Err(std::io::Error::other(format!(
            "{n} bytes after request {i}"
        ))),
    }
}

/// One client-first exchange through the bridge.
fn exchange(dest: SocketAddr, i: u64) -> std::io::Result<()> {
    let mut c = TcpStream::connect_timeout(&dest, IO_TIMEOUT)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.write_all(&request(i))?;
    let mut got = vec![0u8; REPLY];
    c.read_exact(&mut got)?;
    if got != reply(i) {
        return Err(std::io::Error::other(format!("reply {i} arrived changed")));
    }
    c.shutdown(Shutdown::Write)?; // the client closes first
    let mut rest = [0u8; 16];
    match c.read(&mut rest)? {
        0 => Ok(()),
        n => Err(std::io::Error::other(format!("{n} bytes after reply {i}"))),
    }
}

/// A bridge whose router A has [`PORTS`] ephemeral ports and the given
/// `tcp_tw_reuse`, both set in its namespace only.
fn bridge(tw_reuse: u8) -> Bridge {
    let spec = TopologySpec {
        links: (0..2).map(|_| LinkSpec::UNSHAPED).collect(),
    };
    let topo = Topology::build_with(&spec, LanRoutes::Static).expect("build the topology");
    let range = format!("net.ipv4.ip_local_port_range={PORT_RANGE}");
    sh(&topo, Node::RouterA, &["sysctl", "-w", &range]);
    let reuse = format!("net.ipv4.tcp_tw_reuse={tw_reuse}");
    sh(&topo, Node::RouterA, &["sysctl", "-w", &reuse]);
    Bridge::start_in(topo, Options::default())
}

/// Runs `n` exchanges from the client node, `rate` a second (0: back to
/// back); returns the failures by kind.
fn run(bridge: &Bridge, dest: SocketAddr, n: u64, rate: f64) -> BTreeMap<String, usize> {
    bridge.topo.enter(Node::Client, move || {
        let mut failures = BTreeMap::new();
        let start = Instant::now();
        for i in 0..n {
            if rate > 0.0 {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            if let Err(e) = exchange(dest, i) {
                *failures.entry(format!("{:?}", e.kind())).or_insert(0) += 1;
            }
        }
        failures
    })
}

/// Router A's TIME_WAIT sockets by local address (towards any peer).
fn time_waits(topo: &Topology, node: Node) -> BTreeMap<String, usize> {
    let out = sh(topo, node, &["ss", "-tanH", "state", "time-wait"]);
    let mut by = BTreeMap::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [.., local, peer] = fields[..] {
            let local = local.rsplit_once(':').map_or(local, |(a, _)| a);
            *by.entry(format!("{local} -> {peer}")).or_insert(0) += 1;
        }
    }
    by
}

/// Checks that all `n` exchanges went through whole.
fn check(bridge: &Bridge, server: Server, n: u64, failures: BTreeMap<String, usize>) {
    std::thread::sleep(Duration::from_millis(300));
    let tw_a = time_waits(&bridge.topo, Node::RouterA);
    let tw_b = time_waits(&bridge.topo, Node::RouterB);
    let joins = bridge.netstat(Node::RouterA, "MPTcpExt", "MPJoinSynAckRx");
    let (whole, bad) = server.finish();
    let what = format!(
        "{n} client-first connections over {PORTS} ports: client failures {failures:?}, \
         server saw {whole} whole ({bad:?}); TIME_WAIT on router A {tw_a:?}, on router B \
         {tw_b:?}; joins {joins}"
    );
    eprintln!("{what}");
    assert!(
        failures.is_empty() && whole == n as usize && bad.is_empty(),
        "{what}\n{}",
        bridge.logs()
    );
}

/// More connections than ports, back to back: before router A's joins took
/// their ports as connect(2) does, each connection held two of the 200 (one
/// per subflow) and only 100 went through; the rest were reset.
#[test]
fn client_first_connections_beyond_the_port_range_go_through() {
    let bridge = bridge(2);
    let server = Server::start(&bridge);
    let n = (PORTS * 3 / 4) as u64;
    let failures = run(&bridge, server.addr, n, 0.0);
    check(&bridge, server, n, failures);
}

/// With `tcp_tw_reuse = 1` on router A, a sustained 100 connections a second
/// for 6 s (three times the range) all go through: a port in TIME_WAIT
/// serves again after a second, for the joins too. Before, 200 of 600.
#[test]
fn with_tw_reuse_router_a_sustains_three_times_its_port_range() {
    let bridge = bridge(1);
    let server = Server::start(&bridge);
    let n = (PORTS * 3) as u64;
    let failures = run(&bridge, server.addr, n, 100.0);
    check(&bridge, server, n, failures);
}
