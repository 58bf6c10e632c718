//! The connection cases of issue 16, each runnable alone
//! (`mpbridge-lab bench --cases connections,held,slow`): short connections
//! at 1, 4 and 64 concurrent clients (rate, latency, CPU per connection of
//! each daemon), connections held open by the thousand (none refused or
//! reset, memory per connection), and slow readers ([`super::slow`]). All
//! on one unshaped two-link lab, direct routing, mpbridge and the peer
//! alternating round by round.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};

use super::doc::fig;
use super::{memory_kib, order, peer, rr, slow, subjects, Case, Figure, Options, Running, Subject};
use crate::bridge::{Bridge, BridgeOptions};
use crate::measure::Progress;
use crate::{Node, Topology};

/// Concurrent clients of the connection benchmark.
pub const CLIENTS: [usize; 3] = [1, 4, 64];
/// Connections held open at once, in steps (the first ones stay open).
pub const HELD: [usize; 2] = [1_000, 10_000];
/// The smaller steps of `--quick`.
pub const HELD_QUICK: [usize; 2] = [200, 1_000];
/// First port of the servers of these cases (one per proxy session, as
/// [`rr::RR_PORT`] explains).
const PORT: u16 = 8100;
/// `max_connections` mpbridge runs with here: the default (4,096) is below
/// the 10,000 held.
const MAX_CONNECTIONS: usize = 12_000;
/// Open-files limit of the bench process (and so of the daemons it starts):
/// each held connection is two descriptors here (client and server side).
const NOFILE: u64 = 65_536;
/// Threads opening the held connections at once.
const OPENERS: usize = 8;
/// How long one step of a held connection may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the held connections stay idle before they are checked.
const IDLE: Duration = Duration::from_secs(2);

/// What these cases measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnsReport {
    /// Seconds each connection-rate run lasts.
    pub secs: f64,
    /// The open-files limit the bench and the daemons ran with: where it
    /// is below what a step needs, that step is cut to what fits.
    #[serde(default)]
    pub nofile: u64,
    pub rates: Vec<RateRow>,
    pub held: Vec<HeldRow>,
    pub slow: Vec<slow::SlowRow>,
}

/// Short connections through one path with `clients` clients at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateRow {
    pub clients: usize,
    /// `Limit` is direct routing.
    pub subject: Subject,
    pub per_sec: Figure,
    pub p50_ms: Figure,
    pub p90_ms: Figure,
    /// CPU µs per completed connection of each of the proxy's processes.
    pub cpu_us: Vec<ProcFigure>,
    pub failed: u64,
    /// SYNs the client namespace's kernel sent again during the row's runs
    /// (`TcpExt TCPSynRetrans`): a SYN that went unanswered, or was
    /// answered wrongly (a stale TIME_WAIT on the way acknowledges it).
    #[serde(default)]
    pub syn_resent: u64,
}

/// A figure of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcFigure {
    pub process: String,
    pub value: Figure,
}

/// `connections` held open at once through one proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldRow {
    pub subject: Subject,
    /// The step (1,000 or 10,000).
    #[serde(default)]
    pub wanted: usize,
    /// Connections opened: `wanted`, unless the open-files limit holds
    /// fewer ([`held_capacity`]).
    pub connections: usize,
    /// Connections that could not be opened (connect or first byte failed).
    pub refused: u64,
    /// Open connections found closed or reset after the idle time.
    pub reset: u64,
    /// Why connections were refused: each distinct error and its count.
    #[serde(default)]
    pub errors: Vec<(String, u64)>,
    pub memory: Vec<HeldMemory>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldMemory {
    pub process: String,
    /// VmRSS before any connection, KiB.
    pub rss_start_kib: Figure,
    /// VmRSS with the connections open, KiB.
    pub rss_kib: Figure,
    /// Of it, anonymous memory (heap, stacks: not the binary's pages),
    /// KiB; before and with the connections.
    #[serde(default)]
    pub anon_start_kib: Figure,
    #[serde(default)]
    pub anon_kib: Figure,
}

impl HeldMemory {
    /// KiB per held connection (median growth over the connections).
    pub fn per_connection_kib(&self, connections: usize) -> f64 {
        (self.rss_kib.median() - self.rss_start_kib.median()) / connections.max(1) as f64
    }
}

/// The held-connection steps of this run.
pub fn held_steps(options: &Options) -> &'static [usize] {
    if options.quick {
        &HELD_QUICK
    } else {
        &HELD
    }
}

/// Cases `connections`, `held` and `slow` on `topo` (unshaped links).
pub fn run(
    topo: &Topology,
    options: &Options,
    progress: &Progress,
    report: &mut ConnsReport,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let nofile = raise_nofile(NOFILE);
    report.nofile = nofile;
    report.secs = if options.quick { 1.0 } else { 3.0 };
    let mut session: u16 = 0;
    for round in 0..options.rounds {
        for subject in order(round, &subjects(options, true)) {
            session += 1;
            progress.phase(&format!(
                "connection cases, round {}/{}: {subject:?}",
                round + 1,
                options.rounds
            ));
            let running = start(topo, subject, options, "")?;
            let result = (|| {
                if options.has(Case::Connections) {
                    rates(topo, &running, subject, session, report, failures)?;
                }
                if options.has(Case::Held) && subject != Subject::Limit {
                    held(topo, options, &running, subject, session, report, failures)?;
                }
                if options.has(Case::Slow) {
                    // One proxy that cannot take the transfers must not end the run.
                    let slow = slow::run(
                        topo,
                        subject,
                        session,
                        options.quick,
                        None,
                        &mut report.slow,
                    );
                    if let Err(e) = slow {
                        let e = format!("{e:#}");
                        failures.push(format!(
                            "slow readers, round {}, {subject:?}: {}",
                            round + 1,
                            e.lines().next().unwrap_or("")
                        ));
                    }
                }
                anyhow::Ok(())
            })();
            let result = result.map_err(|e| {
                let logs = running.logs();
                e.context(format!("while {subject:?} ran; its logs:\n{logs}"))
            });
            running.stop(topo);
            result?;
        }
    }
    if options.has(Case::Slow) {
        for ram in EMULATED_ROUTERS_MIB {
            for subject in subjects(options, false) {
                session += 1;
                progress.phase(&format!(
                    "slow readers as on a {ram} MB router: {subject:?}"
                ));
                if let Err(e) = slow_as_router(topo, options, subject, session, ram, report) {
                    let e = format!("{e:#}");
                    failures.push(format!(
                        "slow readers as on a {ram} MB router, {subject:?}: {}",
                        e.lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Routers emulated in the slow-reader case, MiB of RAM.
pub const EMULATED_ROUTERS_MIB: [u64; 2] = [128, 256];

/// The slow-reader case through `subject` with router A's and router B's
/// per-socket limits those of a router with `ram` MiB (and mpbridge's
/// receive-buffer budget what it would size from that router's `tcp_mem`).
fn slow_as_router(
    topo: &Topology,
    options: &Options,
    subject: Subject,
    session: u16,
    ram: u64,
    report: &mut ConnsReport,
) -> anyhow::Result<()> {
    let before = slow::emulate_router(topo, ram)?;
    // A build from before `limits.rcvbuf_budget` refuses the key: this
    // leaves it out, to measure such a build under the same emulation.
    let limits = match std::env::var_os("MPBRIDGE_LAB_NO_RCVBUF_BUDGET") {
        Some(_) => String::new(),
        None => format!("rcvbuf_budget = {}\n", tcp_mem_of_router(ram).0 / 4),
    };
    let result = (|| {
        let running = start(topo, subject, options, &limits)?;
        let r = slow::run(
            topo,
            subject,
            session,
            options.quick,
            Some(ram),
            &mut report.slow,
        );
        let r = r.map_err(|e| e.context(format!("its logs:\n{}", running.logs())));
        running.stop(topo);
        r
    })();
    slow::restore_router(topo, &before);
    result
}

/// Starts `subject`; mpbridge with room for the held connections.
/// `limits` are extra lines for mpbridge's `[limits]` section.
fn start(
    topo: &Topology,
    subject: Subject,
    options: &Options,
    limits: &str,
) -> anyhow::Result<Running> {
    Ok(match subject {
        Subject::Limit => Running::Nothing,
        Subject::Mpbridge => {
            let bridge_options = BridgeOptions {
                local_extra: options.local_extra.clone(),
                paths_extra: format!("[limits]\nmax_connections = {MAX_CONNECTIONS}\n{limits}"),
                ..BridgeOptions::default()
            };
            Running::Mpbridge(Bridge::start(topo, &options.mpbridge, &bridge_options)?)
        }
        Subject::Peer => {
            let install = options.peer.as_ref().context("the peer is not installed")?;
            Running::Peer(peer::Peer::start(topo, install, &options.mpbridge)?)
        }
    })
}

/// Raises this process's open-files limit towards `want` (root with
/// CAP_SYS_RESOURCE may raise the hard limit too; without, the soft limit
/// goes up to the hard one); the daemons started afterwards inherit it.
/// Returns the soft limit now.
fn raise_nofile(want: u64) -> u64 {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_none_or(|c| c >= want) {
        return current.unwrap_or(u64::MAX);
    }
    let raised = Rlimit {
        current: Some(want),
        maximum: maximum.map(|m| m.max(want)),
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        return want;
    }
    let to_hard = Rlimit {
        current: maximum,
        maximum,
    };
    if setrlimit(Resource::Nofile, to_hard).is_ok() {
        return maximum.unwrap_or(u64::MAX);
    }
    current.unwrap_or(u64::MAX)
}

/// Connections each process (this one, each daemon) can hold under an
/// open-files limit of `nofile`: two descriptors per connection (client
/// and server side here; the client's and the bridge's socket in a
/// daemon), and some left for everything else.
pub fn held_capacity(nofile: u64) -> usize {
    (nofile.saturating_sub(NOFILE_SPARE) / 2) as usize
}

/// Descriptors left aside for listeners, logs, netlink, epoll…
const NOFILE_SPARE: u64 = 200;

fn cpu(pid: u32) -> f64 {
    super::cpu(pid)
}

/// The connection benchmark at each client count.
fn rates(
    topo: &Topology,
    running: &Running,
    subject: Subject,
    session: u16,
    report: &mut ConnsReport,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let procs = running.processes();
    let server = rr::RrServer::start_at(
        topo,
        *CLIENTS.iter().max().unwrap_or(&64),
        SocketAddr::new(topo.server_addr(false), PORT + session),
    )?;
    for clients in CLIENTS {
        let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu(*p)).collect();
        let syn0 = syn_resent(topo);
        let outcome = rr::run_clients(topo, server.addr, clients, report.secs, 1_000_000);
        let syn1 = syn_resent(topo);
        let cpu1: Vec<f64> = procs.iter().map(|(_, p)| cpu(*p)).collect();
        let row = rate_row(&mut report.rates, clients, subject);
        row.failed += outcome.failed;
        row.syn_resent += syn1.saturating_sub(syn0);
        if outcome.completed == 0 {
            failures.push(format!(
                "connections, {clients} clients, {subject:?}: none completed ({} failed)",
                outcome.failed
            ));
            continue;
        }
        row.per_sec.push(outcome.per_sec);
        row.p50_ms.push(outcome.median_ms);
        row.p90_ms.push(outcome.p90_ms);
        for (((name, _), c0), c1) in procs.iter().zip(cpu0).zip(cpu1) {
            let us = (c1 - c0) * 1e6 / outcome.completed as f64;
            match row.cpu_us.iter_mut().find(|p| p.process == *name) {
                Some(p) => p.value.push(us),
                None => row.cpu_us.push(ProcFigure {
                    process: (*name).into(),
                    value: Figure { samples: vec![us] },
                }),
            }
        }
    }
    Ok(())
}

/// The client namespace's `TcpExt TCPSynRetrans` (0 if it cannot be read).
fn syn_resent(topo: &Topology) -> u64 {
    let text = topo
        .run(Node::Client, &["cat", "/proc/net/netstat"])
        .unwrap_or_default();
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt: "));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "TCPSynRetrans")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn rate_row(rows: &mut Vec<RateRow>, clients: usize, subject: Subject) -> &mut RateRow {
    if let Some(i) = rows
        .iter()
        .position(|r| r.clients == clients && r.subject == subject)
    {
        return &mut rows[i];
    }
    rows.push(RateRow {
        clients,
        subject,
        per_sec: Figure::default(),
        p50_ms: Figure::default(),
        p90_ms: Figure::default(),
        cpu_us: Vec::new(),
        failed: 0,
        syn_resent: 0,
    });
    rows.sort_by_key(|r| (r.clients, r.subject as u8));
    let i = rows
        .iter()
        .position(|r| r.clients == clients && r.subject == subject)
        .unwrap_or(0);
    &mut rows[i]
}

/// Opens the held connections step by step (the earlier ones stay open),
/// measuring the daemons' memory and checking that none was refused or
/// reset at each step.
fn held(
    topo: &Topology,
    options: &Options,
    running: &Running,
    subject: Subject,
    session: u16,
    report: &mut ConnsReport,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let procs = running.processes();
    wait_for_time_wait(topo, Node::RouterA);
    let start: Vec<(u64, u64)> = procs.iter().map(|(_, p)| rss_and_anon_kib(*p)).collect();
    let addr = SocketAddr::new(topo.server_addr(false), PORT + 500 + session);
    let mut holder = Held::listen(topo, addr)?;
    let capacity = held_capacity(report.nofile);
    for &wanted in held_steps(options) {
        // Cut to what the open-files limit holds (the report says so).
        let n = wanted.min(capacity);
        let (refused, errors) = holder.open_to(topo, n);
        std::thread::sleep(IDLE);
        let rss: Vec<(u64, u64)> = procs.iter().map(|(_, p)| rss_and_anon_kib(*p)).collect();
        let reset = holder.count_dead();
        if refused + reset > 0 {
            let why: Vec<String> = errors.iter().map(|(e, k)| format!("{k} × {e}")).collect();
            failures.push(format!(
                "held, {n} connections through {subject:?}: {refused} refused ({}), {reset} reset",
                why.join("; ")
            ));
        }
        let i = match report
            .held
            .iter()
            .position(|r| r.subject == subject && r.wanted == wanted)
        {
            Some(i) => i,
            None => {
                report.held.push(HeldRow {
                    subject,
                    wanted,
                    connections: n,
                    refused: 0,
                    reset: 0,
                    errors: Vec::new(),
                    memory: Vec::new(),
                });
                report.held.len() - 1
            }
        };
        let row = &mut report.held[i];
        row.refused += refused;
        row.reset += reset;
        for (e, k) in errors {
            match row.errors.iter_mut().find(|(x, _)| *x == e) {
                Some((_, count)) => *count += k,
                None => row.errors.push((e, k)),
            }
        }
        for (((name, _), s), r) in procs.iter().zip(&start).zip(&rss) {
            let m = match row.memory.iter().position(|m| m.process == *name) {
                Some(j) => &mut row.memory[j],
                None => {
                    row.memory.push(HeldMemory {
                        process: (*name).into(),
                        rss_start_kib: Figure::default(),
                        rss_kib: Figure::default(),
                        anon_start_kib: Figure::default(),
                        anon_kib: Figure::default(),
                    });
                    row.memory.last_mut().expect("just pushed")
                }
            };
            m.rss_start_kib.push(s.0 as f64);
            m.rss_kib.push(r.0 as f64);
            m.anon_start_kib.push(s.1 as f64);
            m.anon_kib.push(r.1 as f64);
        }
    }
    Ok(())
}

/// (VmRSS, RssAnon) of a process in KiB; 0 where unreadable.
fn rss_and_anon_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let rss = memory_kib(pid).0.max(field("VmRSS:"));
    (rss, field("RssAnon:"))
}

/// Waits (at most [`TIME_WAIT_GRACE`]) until `node` holds fewer than
/// [`TIME_WAIT_FEW`] sockets in TIME_WAIT. A proxy on router A opens every
/// connection from its one address to the one remote address and port: an
/// earlier round's 9,900 connections, closed by router A first, hold that
/// many of its ephemeral ports for 60 s, and the next round's connections
/// then fail with EADDRNOTAVAIL (seen: 5,346 and 7,914 of 9,900).
fn wait_for_time_wait(topo: &Topology, node: Node) {
    let started = std::time::Instant::now();
    while started.elapsed() < TIME_WAIT_GRACE {
        let listed = topo
            .run(node, &["ss", "-tanH", "state", "time-wait"])
            .unwrap_or_default();
        if listed.lines().count() < TIME_WAIT_FEW {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// See [`wait_for_time_wait`].
const TIME_WAIT_FEW: usize = 500;
const TIME_WAIT_GRACE: Duration = Duration::from_secs(70);

/// Connections from the client node to a server in the server node, each
/// carried one byte each way, then held idle until this is dropped.
pub struct Held {
    addr: SocketAddr,
    listener: Arc<TcpListener>,
    client_side: Vec<TcpStream>,
    server_side: Arc<Mutex<Vec<TcpStream>>>,
    /// Accepted connections whose byte did not arrive or could not be echoed.
    server_failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptors: Vec<std::thread::JoinHandle<()>>,
}

impl Held {
    /// Listens at `addr` in the server node (four accepting threads).
    pub fn listen(topo: &Topology, addr: SocketAddr) -> anyhow::Result<Held> {
        let listener = Arc::new(rr::listen_in_server(topo, addr, 4096)?);
        let server_side = Arc::new(Mutex::new(Vec::new()));
        let server_failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptors = (0..4)
            .map(|_| {
                let listener = Arc::clone(&listener);
                let held = Arc::clone(&server_side);
                let failed = Arc::clone(&server_failed);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((mut s, _)) = listener.accept() else {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                        let mut b = [0u8; 1];
                        if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
                            held.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Ok(Held {
            addr,
            listener,
            client_side: Vec::new(),
            server_side,
            server_failed,
            stop,
            acceptors,
        })
    }

    /// Opens connections until `n` are held (from [`OPENERS`] threads);
    /// returns how many attempts failed, and why (each distinct error with
    /// its count).
    pub fn open_to(&mut self, topo: &Topology, n: usize) -> (u64, Vec<(String, u64)>) {
        let want = n.saturating_sub(self.client_side.len());
        let addr = self.addr;
        let errors: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
        let opened: Vec<Vec<TcpStream>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..OPENERS)
                .map(|k| {
                    let count = want / OPENERS + usize::from(k < want % OPENERS);
                    let errors = &errors;
                    scope.spawn(move || {
                        topo.enter(Node::Client, || {
                            let mut out = Vec::with_capacity(count);
                            for _ in 0..count {
                                match open_one(addr) {
                                    Ok(s) => out.push(s),
                                    Err(e) => {
                                        let e = e.to_string();
                                        let mut errors =
                                            errors.lock().unwrap_or_else(|p| p.into_inner());
                                        match errors.iter_mut().find(|(x, _)| *x == e) {
                                            Some((_, k)) => *k += 1,
                                            None => errors.push((e, 1)),
                                        }
                                    }
                                }
                            }
                            out
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for batch in opened {
            self.client_side.extend(batch);
        }
        let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
        (errors.iter().map(|(_, k)| k).sum(), errors)
    }

    /// Held connections that are no longer open at either end: readable
    /// (an EOF or a reset) where nothing more was sent, or an accepted
    /// connection that failed its byte.
    pub fn count_dead(&self) -> u64 {
        let server = self.server_side.lock().unwrap_or_else(|p| p.into_inner());
        let dead = self
            .client_side
            .iter()
            .chain(server.iter())
            .filter(|s| !is_open(s))
            .count() as u64;
        dead + self.server_failed.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.client_side.len()
    }

    pub fn is_empty(&self) -> bool {
        self.client_side.is_empty()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.client_side.clear();
        self.stop.store(true, Ordering::Relaxed);
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Read);
        for t in self.acceptors.drain(..) {
            let _ = t.join();
        }
        self.server_side
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Connect, one byte each way.
fn open_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"h")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(s)
}

/// Whether nothing (no data, no FIN, no reset) is waiting on `s`.
fn is_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let open = matches!(s.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    let _ = s.set_nonblocking(false);
    open
}

/// The memory a router's kernel lets TCP (and MPTCP) sockets take before
/// it enters memory pressure and before it drops, bytes, for `ram_mib` of
/// RAM: Linux sets `net.ipv4.tcp_mem` at boot from the free pages (its
/// `tcp_init_mem`: pressure at 1/16 of them, the hard limit at 3/32). The
/// free pages are taken as 85 % of the RAM (the kernel and its image use
/// the rest on a small router): an estimate, said so in the report.
pub fn tcp_mem_of_router(ram_mib: u64) -> (u64, u64) {
    let free = ram_mib * 1024 * 1024 * 85 / 100;
    (free / 16, free * 3 / 32)
}

/// Median of `f` or 0.
fn med(f: &Figure) -> f64 {
    let m = f.median();
    if m.is_finite() {
        m
    } else {
        0.0
    }
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() && b != 0.0 {
        format!("{r:.2}×")
    } else {
        "—".into()
    }
}

fn path_name(s: Subject) -> &'static str {
    match s {
        Subject::Limit => "direct",
        Subject::Mpbridge => "mpbridge",
        Subject::Peer => "peer",
    }
}

fn slow_path(row: &slow::SlowRow) -> String {
    match row.router_ram_mib {
        None => path_name(row.subject).into(),
        Some(ram) => format!("{}, as a {ram} MB router", path_name(row.subject)),
    }
}

/// Router A's and router B's process of a path (by position: the local
/// side first).
fn side_cpu(row: &RateRow, side: usize) -> f64 {
    row.cpu_us.get(side).map_or(f64::NAN, |p| p.value.median())
}

/// The sections of these cases in docs/BENCHMARKS.md.
pub fn markdown(r: &ConnsReport, o: &mut String) {
    use std::fmt::Write as _;
    if !r.rates.is_empty() {
        let _ = writeln!(
            o,
            "## 8. Connections at 1, 4 and 64 clients\n\nEach client does one exchange after the \
             other for {} s (connect, 1 KB request, 1 KB reply, the server closes, the client \
             closes), over unshaped links; direct routing, mpbridge and the peer in the same run. \
             CPU: user + system time of each proxy process per completed connection (router A: \
             `mpbridge local` / `sslocal`; router B: `mpbridge remote` / `ssserver`).\n\n\
             SYNs resent: the client's `TcpExt TCPSynRetrans` during the row's runs.\n\n\
             | clients | path | connections / s | p50 ms | p90 ms | CPU µs A | CPU µs B | failed \
             | SYNs resent | of direct | ÷ peer | p90 ÷ direct | CPU A ÷ peer | CPU B ÷ peer |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            r.secs
        );
        for row in &r.rates {
            let find = |s: Subject| {
                r.rates
                    .iter()
                    .find(|x| x.clients == row.clients && x.subject == s)
            };
            let direct = find(Subject::Limit);
            let peer = find(Subject::Peer);
            let cpu = |side: usize| {
                row.cpu_us
                    .get(side)
                    .map_or("—".into(), |p| fig(&p.value, 0))
            };
            let (of_direct, p90_direct) = match (direct, row.subject) {
                (Some(d), Subject::Mpbridge | Subject::Peer) => (
                    ratio(row.per_sec.median(), d.per_sec.median()),
                    ratio(row.p90_ms.median(), d.p90_ms.median()),
                ),
                _ => ("".into(), "".into()),
            };
            let (per_peer, cpu_a, cpu_b) = match (peer, row.subject) {
                (Some(p), Subject::Mpbridge) => (
                    ratio(row.per_sec.median(), p.per_sec.median()),
                    ratio(side_cpu(row, 0), side_cpu(p, 0)),
                    ratio(side_cpu(row, 1), side_cpu(p, 1)),
                ),
                _ => ("".into(), "".into(), "".into()),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {of_direct} | {per_peer} \
                 | {p90_direct} | {cpu_a} | {cpu_b} |",
                row.clients,
                path_name(row.subject),
                fig(&row.per_sec, 0),
                fig(&row.p50_ms, 2),
                fig(&row.p90_ms, 2),
                cpu(0),
                cpu(1),
                row.failed,
                row.syn_resent,
            );
        }
        let _ = writeln!(o);
    }
    if !r.held.is_empty() {
        let _ = writeln!(
            o,
            "## 9. Connections held open\n\nConnections opened from the client (8 at a time), \
             each carrying one byte each way, then idle {} s; the first step's stay open while \
             the next opens. Refused: connect or the first byte failed; reset: found closed or \
             reset at either end after the idle time. VmRSS of each proxy process (KiB; the \
             kernel's socket memory is not in it), and of it the anonymous memory (`RssAnon`: \
             heap and stacks, without the binary's own pages).",
            IDLE.as_secs()
        );
        if r.held.iter().any(|h| h.connections < h.wanted) {
            let _ = writeln!(
                o,
                "\nA step with fewer than wanted: each process here (the bench, each daemon) \
                 holds two descriptors per connection, and the open-files limit was {} (a hard \
                 limit this machine did not let the bench raise), so {} fit.",
                r.nofile,
                held_capacity(r.nofile)
            );
        }
        let _ = writeln!(
            o,
            "\n| held | path | refused | reset | process | VmRSS before | VmRSS held | KiB per \
             connection | anonymous before | anonymous held |\n| --- | --- | --- | --- | --- | \
             --- | --- | --- | --- | --- |"
        );
        for row in &r.held {
            for m in &row.memory {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
                    if row.connections < row.wanted {
                        format!("{} ({} wanted)", row.connections, row.wanted)
                    } else {
                        row.connections.to_string()
                    },
                    path_name(row.subject),
                    row.refused,
                    row.reset,
                    m.process,
                    fig(&m.rss_start_kib, 0),
                    fig(&m.rss_kib, 0),
                    m.per_connection_kib(row.connections),
                    fig(&m.anon_start_kib, 0),
                    fig(&m.anon_kib, 0)
                );
            }
        }
        let _ = writeln!(o);
    }
    if !r.slow.is_empty() {
        let _ = writeln!(
            o,
            "## 10. Slow readers: the routers' socket memory\n\n{} transfers at once over \
             unshaped links, the sender writing as fast as it can, the receiver reading {} bytes \
             per connection every {} ms (download: the clients read slowly; upload: the server \
             does). Each router's TCP and MPTCP sockets (`ss -tmnH`, `ss -MmnH` in its \
             namespace), summed once the memory stopped growing: charged = r + w + f, what the \
             kernel counts against `net.ipv4.tcp_mem`. Host TCP mem: `/proc/net/sockstat` read \
             in the namespace, which reports the whole host's figure (not per namespace).\n\n\
             | direction | path | router | charged MiB | KiB per transfer | receive queues MiB \
             | send queues MiB | sockets | host TCP mem MiB | filled in s |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            slow::TRANSFERS,
            slow::READ_BYTES,
            slow::READ_EVERY.as_millis()
        );
        const MIB: f64 = 1048576.0;
        for row in &r.slow {
            for m in &row.routers {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {} |",
                    row.direction,
                    slow_path(row),
                    m.router,
                    med(&m.charged) / MIB,
                    m.per_transfer(row.transfers) / 1024.0,
                    med(&m.receive) / MIB,
                    med(&m.send) / MIB,
                    med(&m.sockets),
                    med(&m.host_tcp_mem) / MIB,
                    fig(&row.fill_s, 1)
                );
            }
        }
        let _ = writeln!(
            o,
            "\nWhat a router can carry: Linux sizes `net.ipv4.tcp_mem` from the RAM at boot \
             (pressure at 1/16 of the free pages, drops at 3/32); taking 85 % of the RAM as free, \
             the number of slow readers per router before its TCP memory reaches pressure \
             (every socket's buffers shrink) and the hard limit (packets dropped for every \
             connection on the router). \"As a N MB router\": the routers' namespaces had that \
             router's per-socket ceilings (`tcp_rmem`, `tcp_wmem`: 1/128 of its free memory) and \
             mpbridge the receive-buffer budget it sizes from that router's `tcp_mem`; such a \
             row counts only for its own size.\n\n| direction | path | router | 128 MB: \
             pressure / limit | 256 MB: pressure / limit |\n| --- | --- | --- | --- | --- |"
        );
        for row in &r.slow {
            for m in &row.routers {
                let per = m.per_transfer(row.transfers);
                let carry = |ram: u64| {
                    let (pressure, limit) = tcp_mem_of_router(ram);
                    if per <= 0.0 || !per.is_finite() {
                        return "—".to_string();
                    }
                    if row.router_ram_mib.is_some_and(|r| r != ram) {
                        return "".to_string();
                    }
                    format!("{:.0} / {:.0}", pressure as f64 / per, limit as f64 / per)
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    row.direction,
                    slow_path(row),
                    m.router,
                    carry(128),
                    carry(256)
                );
            }
        }
        let _ = writeln!(o);
    }
}

/// Issue 16's targets that these cases measure: (what, figure, met).
pub fn targets(r: &ConnsReport) -> Vec<(&'static str, String, Option<bool>)> {
    let mut out = Vec::new();
    let at4 = |s: Subject| r.rates.iter().find(|x| x.clients == 4 && x.subject == s);
    if let (Some(m), Some(p)) = (at4(Subject::Mpbridge), at4(Subject::Peer)) {
        let v = m.per_sec.median() / p.per_sec.median();
        out.push((
            "connections per second ≥ 2× the peer's at 4 clients",
            format!("{v:.2}×"),
            Some(v >= 2.0),
        ));
        for (side, router) in [(0, "A"), (1, "B")] {
            let v = side_cpu(m, side) / side_cpu(p, side);
            out.push((
                if side == 0 {
                    "CPU per connection ≤ 0.5× the peer's, router A (4 clients)"
                } else {
                    "CPU per connection ≤ 0.5× the peer's, router B (4 clients)"
                },
                format!(
                    "{v:.2}× ({:.0} against {:.0} µs, router {router})",
                    side_cpu(m, side),
                    side_cpu(p, side)
                ),
                Some(v <= 0.5),
            ));
        }
    }
    if let (Some(m), Some(d)) = (at4(Subject::Mpbridge), at4(Subject::Limit)) {
        let v = m.per_sec.median() / d.per_sec.median();
        out.push((
            "connections per second ≥ 30 % of direct at 4 clients",
            format!("{:.0} %", 100.0 * v),
            Some(v >= 0.3),
        ));
        let v = m.p90_ms.median() / d.p90_ms.median();
        out.push((
            "p90 connection time ≤ 3× direct (4 clients)",
            format!(
                "{v:.2}× ({:.2} against {:.2} ms)",
                m.p90_ms.median(),
                d.p90_ms.median()
            ),
            Some(v <= 3.0),
        ));
    }
    for row in r.held.iter().filter(|h| h.subject == Subject::Mpbridge) {
        let (bound_mb, what) = match row.wanted {
            1_000 => (8.0, "RSS ≤ 8 MB per daemon with 1,000 connections open"),
            10_000 => (40.0, "RSS ≤ 40 MB per daemon with 10,000 connections open"),
            _ => continue,
        };
        if row.wanted == 10_000 {
            let failed = row.refused + row.reset;
            out.push((
                "10,000 connections open: none refused or reset",
                format!(
                    "{} refused, {} reset (of {})",
                    row.refused, row.reset, row.connections
                ),
                Some(failed == 0),
            ));
        }
        let worst = row
            .memory
            .iter()
            .map(|m| m.rss_kib.median() * 1024.0 / 1e6)
            .fold(f64::NAN, f64::max);
        out.push((
            what,
            format!(
                "{worst:.1} MB (the larger daemon, {} connections)",
                row.connections
            ),
            worst.is_finite().then_some(worst <= bound_mb),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[f64]) -> Figure {
        Figure {
            samples: v.to_vec(),
        }
    }

    fn rate(clients: usize, subject: Subject, per_sec: f64, p90: f64, cpu: [f64; 2]) -> RateRow {
        RateRow {
            clients,
            subject,
            per_sec: f(&[per_sec]),
            p50_ms: f(&[p90 / 2.0]),
            p90_ms: f(&[p90]),
            cpu_us: if subject == Subject::Limit {
                Vec::new()
            } else {
                ["a", "b"]
                    .iter()
                    .zip(cpu)
                    .map(|(p, c)| ProcFigure {
                        process: (*p).into(),
                        value: f(&[c]),
                    })
                    .collect()
            },
            failed: 0,
            syn_resent: 3,
        }
    }

    #[test]
    fn the_targets_are_ratios_at_4_clients_and_the_held_steps() {
        let report = ConnsReport {
            secs: 3.0,
            nofile: 20_000,
            rates: vec![
                rate(4, Subject::Limit, 20_000.0, 0.3, [0.0; 2]),
                rate(4, Subject::Mpbridge, 8_000.0, 0.6, [40.0, 30.0]),
                rate(4, Subject::Peer, 2_000.0, 3.0, [80.0, 90.0]),
            ],
            held: vec![HeldRow {
                subject: Subject::Mpbridge,
                wanted: 10_000,
                connections: 9_900,
                refused: 0,
                reset: 1,
                errors: Vec::new(),
                memory: vec![HeldMemory {
                    process: "mpbridge local".into(),
                    rss_start_kib: f(&[6000.0]),
                    rss_kib: f(&[36000.0]),
                    anon_start_kib: f(&[2000.0]),
                    anon_kib: f(&[31000.0]),
                }],
            }],
            slow: Vec::new(),
        };
        let t = targets(&report);
        let met = |what: &str| {
            t.iter()
                .find(|x| x.0.contains(what))
                .unwrap_or_else(|| panic!("no {what}: {t:?}"))
                .2
        };
        assert_eq!(met("≥ 2× the peer"), Some(true)); // 4×
        assert_eq!(met("router A"), Some(true)); // 0.5×
        assert_eq!(met("router B"), Some(true)); // 0.33×
        assert_eq!(met("30 % of direct"), Some(true)); // 40 %
        assert_eq!(met("p90"), Some(true)); // 2×
        assert_eq!(met("none refused or reset"), Some(false));
        assert_eq!(met("≤ 40 MB"), Some(true)); // 36.9 MB
        assert!((report.held[0].memory[0].per_connection_kib(9_900) - 3.03).abs() < 0.01);

        let mut md = String::new();
        markdown(&report, &mut md);
        assert!(
            md.contains("| 9900 (10000 wanted) | mpbridge | 0 | 1 |"),
            "{md}"
        );
        assert!(md.contains("the open-files limit was 20000"), "{md}");
        assert!(md.contains("| 4 | mpbridge | 8000 | 0.30 | 0.60 | 40 | 30 | 0 | 3 | 0.40× | 4.00× | 2.00× | 0.50× | 0.33× |"), "{md}");
    }

    #[test]
    fn a_router_s_tcp_memory_scales_with_its_ram() {
        let (pressure, limit) = tcp_mem_of_router(256);
        assert_eq!(pressure, 256 * 1024 * 1024 * 85 / 100 / 16);
        assert!(limit.abs_diff(pressure * 3 / 2) <= 1, "{limit} {pressure}");
        assert_eq!(held_capacity(20_000), 9_900);
        assert_eq!(held_capacity(100), 0);
    }
}
