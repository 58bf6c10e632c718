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

// ---------------------------------------------------------------------------
// Measurement (not a test): both modes side by side in one run.
// ---------------------------------------------------------------------------

/// One mode's figures over the rounds.
#[derive(Default)]
struct Figures {
    direct_per_sec: Vec<f64>,
    per_sec: Vec<f64>,
    p90_ms: Vec<f64>,
    local_us: Vec<f64>,
    remote_us: Vec<f64>,
    joins_per_conn: Vec<f64>,
    failed: u64,
    /// (what, stall ms, regain ms)
    failover: Vec<(String, f64, f64)>,
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn cpu(pid: u32) -> f64 {
    mpbridge_lab::scenario::cpu_seconds(pid).unwrap_or(f64::NAN)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Connection rate and CPU per connection at 4 clients (1 KB each way,
/// unshaped links, as the bench's case), then a long download at 50 Mbit/s
/// per link with each link going down and black-holed in turn, for the
/// in-kernel path manager and subflows on demand, alternating, `ROUNDS`
/// (3) times. With `MPBRIDGE_BIN` the daemons are that binary (e.g. the
/// router build):
/// MPBRIDGE_BIN=$CARGO_TARGET_DIR/router/mpbridge cargo test -p mpbridge --test ondemand -- --ignored --nocapture subflow_modes_side_by_side
#[test]
#[ignore]
fn subflow_modes_side_by_side() {
    use mpbridge_lab::bench::rr::{run_clients, RrServer};
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let secs: f64 = std::env::var("RR_SECS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5.0);
    let binary = std::env::var_os("MPBRIDGE_BIN").map(std::path::PathBuf::from);
    let program = binary
        .clone()
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mpbridge").into());
    let modes: [(&str, &'static str); 2] =
        [("kernel", ""), ("on-demand", "subflows = \"on-demand\"")];
    let mut figures: Vec<Figures> = modes.iter().map(|_| Figures::default()).collect();
    eprintln!("load average at start: {}", loadavg());
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for &m in &order {
            let (name, local_paths) = modes[m];
            let f = &mut figures[m];
            // Short connections: direct first, then through the bridge, in
            // one topology.
            let topo = Topology::build_with(
                &mpbridge_lab::TopologySpec {
                    links: vec![mpbridge_lab::LinkSpec::UNSHAPED; 2],
                },
                mpbridge_lab::LanRoutes::Static,
            )
            .unwrap();
            let direct_server = RrServer::start(&topo, 4, 0).unwrap();
            let direct = run_clients(&topo, direct_server.addr, 4, secs.min(3.0), u64::MAX);
            drop(direct_server);
            f.direct_per_sec.push(direct.per_sec);
            // The daemons log at "info", as the bench runs them.
            let daemons = mpbridge_lab::bridge::Bridge::start(
                &topo,
                &program,
                &mpbridge_lab::bridge::BridgeOptions {
                    local_paths: local_paths.into(),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
            let server = RrServer::start(&topo, 4, 1).unwrap();
            run_clients(&topo, server.addr, 4, 1.0, u64::MAX);
            let (l0, r0, j0) = (
                cpu(daemons.local.pid()),
                cpu(daemons.remote.pid()),
                joins_received(&topo),
            );
            let out = run_clients(&topo, server.addr, 4, secs, u64::MAX);
            let (l1, r1, j1) = (
                cpu(daemons.local.pid()),
                cpu(daemons.remote.pid()),
                joins_received(&topo),
            );
            let n = out.completed.max(1) as f64;
            f.per_sec.push(out.per_sec);
            f.p90_ms.push(out.p90_ms);
            f.local_us.push((l1 - l0) / n * 1e6);
            f.remote_us.push((r1 - r0) / n * 1e6);
            f.joins_per_conn.push((j1 - j0) as f64 / n);
            f.failed += out.failed;
            eprintln!(
                "round {round} {name}: {:.0}/s (direct {:.0}/s), p90 {:.2} ms, local {:.0} µs, remote {:.0} µs per connection, {:.2} joins per connection, {} failed; load {}",
                out.per_sec,
                direct.per_sec,
                out.p90_ms,
                (l1 - l0) / n * 1e6,
                (r1 - r0) / n * 1e6,
                (j1 - j0) as f64 / n,
                out.failed,
                loadavg()
            );
            drop(server);
            daemons.stop(IO_TIMEOUT);
            drop(topo);

            // Failover of one long download.
            let bridge = Bridge::start(Options {
                links: 2,
                local_paths,
                binary: binary.clone(),
                ..Options::default()
            });
            let topo = &bridge.topo;
            for link in 0..2 {
                topo.set_rate(link, 50).unwrap();
            }
            let download = Download::start(&bridge);
            for link in 0..2 {
                let base = rx(topo, link);
                assert!(
                    wait_until(IO_TIMEOUT, || rx(topo, link) - base >= CARRYING),
                    "{name}: link {link} never carried the download\n{}",
                    bridge.logs()
                );
            }
            for failure in [Failure::Down, Failure::Blackhole] {
                for link in 0..2 {
                    download.reset_gap();
                    failure.apply(topo, link, true);
                    let at = download.bytes();
                    wait_until(IO_TIMEOUT, || download.bytes() - at >= 4 * CARRYING);
                    let stall = download.longest_gap();
                    failure.apply(topo, link, false);
                    let start = Instant::now();
                    let base = rx(topo, link);
                    let regain = if wait_until(IO_TIMEOUT, || rx(topo, link) - base >= CARRYING) {
                        start.elapsed().as_secs_f64() * 1e3
                    } else {
                        f64::NAN
                    };
                    let what = format!("{failure:?} link {link}");
                    eprintln!(
                        "round {round} {name}: {what}: stall {:.0} ms, regained after {regain:.0} ms",
                        stall.as_secs_f64() * 1e3
                    );
                    f.failover.push((what, stall.as_secs_f64() * 1e3, regain));
                    // Settle: the restored link in full use again.
                    let base = rx(topo, link);
                    wait_until(IO_TIMEOUT, || rx(topo, link) - base >= 8 * CARRYING);
                }
            }
            drop(download);
        }
    }
    eprintln!("\nload average at end: {}", loadavg());
    eprintln!("medians over {rounds} rounds, 4 clients, 1 KB each way, 2 unshaped links; failover at 50 Mbit/s per link");
    eprintln!(
        "{:<10} {:>9} {:>9} {:>7} {:>8} {:>10} {:>11} {:>6} {:>6}",
        "subflows",
        "conn/s",
        "direct/s",
        "% dir",
        "p90 ms",
        "local µs",
        "remote µs",
        "joins",
        "failed"
    );
    for ((name, _), f) in modes.iter().zip(&figures) {
        eprintln!(
            "{:<10} {:>9.0} {:>9.0} {:>6.1}% {:>8.2} {:>10.0} {:>11.0} {:>6.2} {:>6}",
            name,
            median(&f.per_sec),
            median(&f.direct_per_sec),
            100.0 * median(&f.per_sec) / median(&f.direct_per_sec),
            median(&f.p90_ms),
            median(&f.local_us),
            median(&f.remote_us),
            median(&f.joins_per_conn),
            f.failed
        );
    }
    for ((name, _), f) in modes.iter().zip(&figures) {
        let mut whats: Vec<&String> = f.failover.iter().map(|x| &x.0).collect();
        whats.dedup();
        whats.sort();
        whats.dedup();
        for what in whats {
            let stalls: Vec<f64> = f
                .failover
                .iter()
                .filter(|x| &x.0 == what)
                .map(|x| x.1)
                .collect();
            let regains: Vec<f64> = f
                .failover
                .iter()
                .filter(|x| &x.0 == what)
                .map(|x| x.2)
                .collect();
            eprintln!(
                "{name:<10} {what:<16} stall median {:>5.0} ms (max {:>5.0}), regained median {:>5.0} ms",
                median(&stalls),
                stalls.iter().copied().fold(0.0, f64::max),
                median(&regains)
            );
        }
    }
}
