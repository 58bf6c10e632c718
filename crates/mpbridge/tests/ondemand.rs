//! Subflows on demand (`paths.subflows = "on-demand"`): router A's daemon
//! selects the userspace MPTCP path manager in its namespace (and puts the
//! in-kernel one back on exit), a short connection keeps its one subflow, a
//! connection that lives gets one per link, and a connection left on a
//! failed link moves to another at once — then regains the link.
//! Needs root: each test builds its own namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sh, Bridge, Failure, Options};
use mpbridge_lab::{wait_until, Node, Topology};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest stall a failure may cause (as in tests/paths.rs).
const MAX_STALL: Duration = Duration::from_secs(1);
/// How soon a restored link must carry the connection again.
const MAX_REGAIN: Duration = Duration::from_secs(2);
/// Bytes over a link that count as "it carries the transfer".
const CARRYING: u64 = 512 * 1024;

/// Router A's path-manager sysctl, whichever this kernel has.
fn path_manager(topo: &Topology) -> String {
    let out = sh(
        topo,
        Node::RouterA,
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/mptcp/path_manager 2>/dev/null || cat /proc/sys/net/mptcp/pm_type",
        ],
    );
    out.trim().to_owned()
}

fn is_userspace(value: &str) -> bool {
    value == "userspace" || value == "1"
}

/// MP_JOIN SYNs router B has received (MIB `MPTcpExt MPJoinSynRx`).
fn joins_received(topo: &Topology) -> u64 {
    let text = sh(topo, Node::RouterB, &["cat", "/proc/net/netstat"]);
    let mut lines = text.lines().filter(|l| l.starts_with("MPTcpExt:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "MPJoinSynRx")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no MPJoinSynRx in router B's MIB:\n{text}"))
}

/// Router A's established subflows to the remote, by local address.
fn subflow_sources(topo: &Topology) -> Vec<IpAddr> {
    let remote = topo.rb_link_addr(0, false);
    topo.tcp_sockets(Node::RouterA)
        .unwrap()
        .into_iter()
        .filter(|s| s.mptcp_subflow && s.state == "ESTAB" && s.peer.ip() == remote)
        .map(|s| s.local.ip())
        .collect()
}

/// One request/reply through the bridge, then closed.
fn short_exchange(bridge: &Bridge, dest: SocketAddr) {
    let mut c = bridge
        .client_connect(dest)
        .expect("connect through the bridge");
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(&[b'q'; 1024]).unwrap();
    let mut buf = [0u8; 1024];
    c.read_exact(&mut buf).unwrap();
}

/// A server that answers each connection's 1 KB with 1 KB and closes.
fn echo_server(bridge: &Bridge) -> SocketAddr {
    let listener = bridge.server_listener(false);
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                if s.read_exact(&mut buf).is_ok() {
                    let _ = s.write_all(&buf);
                    // Held: the long connection of the test stays open.
                    let _ = s.read(&mut buf);
                }
            });
        }
    });
    addr
}

#[test]
fn on_demand_spares_short_connections_their_joins_and_gives_a_lasting_one_every_link() {
    let bridge = Bridge::start(Options {
        links: 2,
        local_paths: "subflows = \"on-demand\"\nsubflows_after_ms = 1500",
        ..Options::default()
    });
    let topo = &bridge.topo;
    assert!(
        bridge.local.output_text().contains("subflows: on demand"),
        "the daemon does not say which mode runs\n{}",
        bridge.logs()
    );
    assert!(is_userspace(&path_manager(topo)), "{}", path_manager(topo));
    // No in-kernel endpoints: they would do nothing for these connections.
    let endpoints = sh(topo, Node::RouterA, &["ip", "mptcp", "endpoint", "show"]);
    assert!(endpoints.trim().is_empty(), "{endpoints}");

    let dest = echo_server(&bridge);
    let joins = joins_received(topo);
    for _ in 0..20 {
        short_exchange(&bridge, dest);
    }
    // The last connections' joins would have come by now in kernel mode
    // (a join takes one round trip after the handshake).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        joins_received(topo),
        joins,
        "short connections were given extra subflows\n{}",
        bridge.logs()
    );

    // A connection that stays open gets a subflow on every link.
    let mut lasting = bridge.client_connect(dest).unwrap();
    lasting.write_all(&[b'q'; 1024]).unwrap();
    let mut buf = [0u8; 1024];
    lasting.read_exact(&mut buf).unwrap();
    let want: Vec<IpAddr> = (0..2).map(|i| topo.ra_link_addr(i, false)).collect();
    let mut seen = Vec::new();
    let every_link = wait_until(Duration::from_millis(1500) + IO_TIMEOUT, || {
        seen = subflow_sources(topo);
        want.iter().all(|a| seen.contains(a))
    });
    assert!(
        every_link,
        "subflows from {seen:?}, wanted {want:?}\n{}",
        bridge.logs()
    );
    drop(lasting);

    // On exit the namespace's in-kernel path manager is back.
    let mut bridge = bridge;
    bridge.local.terminate(IO_TIMEOUT);
    assert!(
        !is_userspace(&path_manager(&bridge.topo)),
        "{}\n{}",
        path_manager(&bridge.topo),
        bridge.logs()
    );
}

#[test]
fn kernel_mode_puts_back_the_in_kernel_path_manager_a_killed_daemon_left() {
    let topo = Topology::build_with(
        &mpbridge_lab::TopologySpec {
            links: vec![mpbridge_lab::LinkSpec::UNSHAPED; 2],
        },
        mpbridge_lab::LanRoutes::Static,
    )
    .unwrap();
    let set = |v: &str| {
        sh(
            &topo,
            Node::RouterA,
            &[
                "sh",
                "-c",
                &format!(
                    "echo {v} > /proc/sys/net/mptcp/path_manager 2>/dev/null || echo {} > /proc/sys/net/mptcp/pm_type",
                    if v == "userspace" { 1 } else { 0 }
                ),
            ],
        )
    };
    set("userspace");
    let mut bridge = Bridge::start_in(topo, Options::default());
    assert!(!is_userspace(&path_manager(&bridge.topo)));
    assert!(
        bridge
            .local
            .output_text()
            .contains("switching to the in-kernel path manager"),
        "{}",
        bridge.logs()
    );
    bridge.local.terminate(IO_TIMEOUT);
    // What it found, it leaves.
    assert!(is_userspace(&path_manager(&bridge.topo)));
}

/// A download server → client through the bridge until stopped, with the
/// longest time the client waited for bytes.
struct Download {
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<(u64, Instant, Duration)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Download {
    fn start(bridge: &Bridge) -> Download {
        let listener = bridge.server_listener(false);
        let dest = listener.local_addr().unwrap();
        let mut client: TcpStream = bridge.client_connect(dest).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // A connection that died ends the threads (and the test) soon.
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        server.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new((0u64, Instant::now(), Duration::ZERO)));
        let sender = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let buf = vec![7u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if server.write_all(&buf).is_err() {
                        return;
                    }
                }
            })
        };
        let receiver = {
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let now = Instant::now();
                    let mut p = progress.lock().unwrap();
                    p.2 = p.2.max(now - p.1);
                    p.1 = now;
                    p.0 += n as u64;
                }
            })
        };
        Download {
            stop,
            progress,
            threads: vec![sender, receiver],
        }
    }

    fn bytes(&self) -> u64 {
        self.progress.lock().unwrap().0
    }

    fn reset_gap(&self) {
        let mut p = self.progress.lock().unwrap();
        p.1 = Instant::now();
        p.2 = Duration::ZERO;
    }

    fn longest_gap(&self) -> Duration {
        let p = self.progress.lock().unwrap();
        p.2.max(p.1.elapsed())
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn rx(topo: &Topology, link: usize) -> u64 {
    topo.link_counters(link).unwrap().1
}

/// Fails link 0 under a download whose only subflow it carries, restores
/// it; returns (longest stall, time until link 0 carried it again).
fn young_connection_failover(bridge: &Bridge, failure: Failure) -> (Duration, Option<Duration>) {
    let topo = &bridge.topo;
    let download = Download::start(bridge);
    let base = rx(topo, 0);
    assert!(
        wait_until(IO_TIMEOUT, || rx(topo, 0) - base >= CARRYING),
        "link 0 never carried the download\n{}",
        bridge.logs()
    );
    download.reset_gap();
    failure.apply(topo, 0, true);
    let at = download.bytes();
    wait_until(IO_TIMEOUT, || download.bytes() - at >= 4 * CARRYING);
    let stall = download.longest_gap();
    failure.apply(topo, 0, false);
    let start = Instant::now();
    let base = rx(topo, 0);
    let regained =
        wait_until(IO_TIMEOUT, || rx(topo, 0) - base >= CARRYING).then(|| start.elapsed());
    assert!(
        download.bytes() > at,
        "the download died\n{}",
        bridge.logs()
    );
    (stall, regained)
}

fn a_young_connection_moves_at_once(failure: Failure) {
    // Never promoted by age: only the failure can give it a second subflow.
    let bridge = Bridge::start(Options {
        links: 2,
        local_paths: "subflows = \"on-demand\"\nsubflows_after_ms = 60000",
        ..Options::default()
    });
    for link in 0..2 {
        bridge.topo.set_rate(link, 50).unwrap();
    }
    let (stall, regained) = young_connection_failover(&bridge, failure);
    eprintln!("on demand, {failure:?} of link 0 under a young connection: stall {stall:?}, regained after {regained:?}");
    assert!(
        stall < MAX_STALL,
        "{failure:?}: stalled {stall:?}\n{}",
        bridge.logs()
    );
    let regained = regained
        .unwrap_or_else(|| panic!("link 0 not used again after its restore\n{}", bridge.logs()));
    assert!(regained < MAX_REGAIN, "link 0 regained after {regained:?}");
}

#[test]
fn a_young_connection_on_a_link_that_goes_down_moves_at_once_and_regains_it() {
    a_young_connection_moves_at_once(Failure::Down);
}

#[test]
fn a_young_connection_on_a_black_holed_link_moves_at_once_and_regains_it() {
    a_young_connection_moves_at_once(Failure::Blackhole);
}
