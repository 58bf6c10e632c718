//! Traffic of the benchmarks that iperf3 does not make: short
//! request/response connections (connection set-up rate and latency) and
//! many idle connections held open (the proxies' memory per connection),
//! from the client node to small servers on the server node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{Node, Topology};

/// First port of the request/response servers. Each proxy session gets a
/// server on a port of its own: a transparent proxy that stopped leaves its
/// connections' TIME_WAIT sockets in router A, and a later connection on the
/// same addresses and ports would meet one of them instead of being routed.
pub const RR_PORT: u16 = 7100;
/// First port of the servers that hold idle connections (as [`RR_PORT`]).
pub const IDLE_PORT: u16 = 7600;
/// Request and reply size.
pub const MESSAGE: usize = 1024;
/// How long one connection may take at any step before it counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A listening socket at `addr` in the server node, with room for
/// `backlog` clients waiting to be accepted.
pub fn listen_in_server(
    topo: &Topology,
    addr: SocketAddr,
    backlog: i32,
) -> anyhow::Result<TcpListener> {
    topo.enter(Node::Server, || {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        std::io::Result::Ok(TcpListener::from(socket))
    })
    .with_context(|| format!("cannot listen on {addr} in the server node"))
}

/// The request/response server: `threads` threads accepting on one
/// listener; each connection gets its reply, then the server closes first
/// (so TIME_WAIT sits on the server side and the client never runs out of
/// ports). Stopped and joined on drop.
pub struct RrServer {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl RrServer {
    /// Listens on the server's address at `RR_PORT + session`.
    pub fn start(topo: &Topology, threads: usize, session: u16) -> anyhow::Result<RrServer> {
        let addr = SocketAddr::new(topo.server_addr(false), RR_PORT + session);
        RrServer::start_at(topo, threads, addr)
    }

    /// Listens at `addr` in the server node, with a backlog for many
    /// clients at once.
    pub fn start_at(topo: &Topology, threads: usize, addr: SocketAddr) -> anyhow::Result<RrServer> {
        let listener = Arc::new(listen_in_server(topo, addr, 1024)?);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (listener, stop) = (Arc::clone(&listener), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let _ = answer(stream);
                            }
                            Err(_) if stop.load(Ordering::Relaxed) => return,
                            Err(_) => std::thread::sleep(Duration::from_millis(1)),
                        }
                    }
                })
            })
            .collect();
        Ok(RrServer {
            listener,
            stop,
            threads,
            addr,
        })
    }
}

impl Drop for RrServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // shutdown(2) on a listening socket wakes every thread in accept().
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Read);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One server-side exchange: the request, the reply, FIN, then the
/// client's FIN.
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; MESSAGE];
    stream.read_exact(&mut buf)?;
    stream.write_all(&[b'r'; MESSAGE])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    while stream.read(&mut buf)? > 0 {}
    Ok(())
}

/// What a run of short connections measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RrOutcome {
    /// Exchanges completed (connect, request, reply, close).
    pub completed: u64,
    /// Exchanges that failed or timed out.
    pub failed: u64,
    pub secs: f64,
    /// Completed exchanges per second.
    pub per_sec: f64,
    /// Median time of one exchange, milliseconds.
    pub median_ms: f64,
    /// 90th percentile, milliseconds.
    pub p90_ms: f64,
}

/// Runs `workers` clients in the client node, each doing one exchange after
/// the other with `server` for `secs` seconds or until `max_total`
/// exchanges were done in all.
pub fn run_clients(
    topo: &Topology,
    server: SocketAddr,
    workers: usize,
    secs: f64,
    max_total: u64,
) -> RrOutcome {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let per_worker = max_total.div_ceil(workers.max(1) as u64);
    let started = Instant::now();
    let results: Vec<(Vec<f64>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(move || {
                    topo.enter(Node::Client, || {
                        let mut times = Vec::new();
                        let mut failed = 0;
                        while Instant::now() < deadline && (times.len() as u64) < per_worker {
                            let t0 = Instant::now();
                            match exchange(server) {
                                Ok(()) => times.push(t0.elapsed().as_secs_f64() * 1e3),
                                Err(_) => failed += 1,
                            }
                        }
                        (times, failed)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut times: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let failed = results.iter().map(|r| r.1).sum();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if times.is_empty() {
            0.0
        } else {
            times[((times.len() - 1) as f64 * q).round() as usize]
        }
    };
    RrOutcome {
        completed: times.len() as u64,
        failed,
        secs,
        per_sec: times.len() as f64 / secs.max(1e-9),
        median_ms: pick(0.5),
        p90_ms: pick(0.9),
    }
}

/// One client-side exchange: connect, 1 KB request, 1 KB reply, the
/// server's FIN, close.
fn exchange(server: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&server, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(&[b'q'; MESSAGE])?;
    let mut buf = [0u8; MESSAGE];
    stream.read_exact(&mut buf)?;
    let mut rest = [0u8; 16];
    if stream.read(&mut rest)? != 0 {
        return Err(std::io::Error::other("more than the reply"));
    }
    Ok(())
}

/// `n` connections from the client node to the server node, each carried
/// one byte each way (so every proxy on the way has set its whole chain
/// up), then left idle until this is dropped.
pub struct IdleConnections {
    client_side: Vec<TcpStream>,
    listener: Arc<TcpListener>,
    release: Option<mpsc::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl IdleConnections {
    /// To a server at `IDLE_PORT + session`.
    pub fn open(topo: &Topology, n: usize, session: u16) -> anyhow::Result<IdleConnections> {
        let addr = SocketAddr::new(topo.server_addr(false), IDLE_PORT + session);
        let listener = topo
            .enter(Node::Server, || TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in the server node"))?;
        let listener = Arc::new(listener);
        let (release, released) = mpsc::channel::<()>();
        let accepting = Arc::clone(&listener);
        let server = std::thread::spawn(move || {
            let listener = accepting;
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                let Ok((mut s, _)) = listener.accept() else {
                    break;
                };
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
                    held.push(s);
                }
            }
            // Hold them until told (or the sender is dropped).
            let _ = released.recv();
        });
        let mut conns = IdleConnections {
            client_side: Vec::with_capacity(n),
            listener,
            release: Some(release),
            server: Some(server),
        };
        let opened = topo.enter(Node::Client, || -> std::io::Result<Vec<TcpStream>> {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.write_all(b"i")?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b)?;
                out.push(s);
            }
            Ok(out)
        });
        conns.client_side = opened.with_context(|| {
            format!("cannot open {n} idle connections to {addr} through the proxy")
        })?;
        Ok(conns)
    }

    pub fn len(&self) -> usize {
        self.client_side.len()
    }

    pub fn is_empty(&self) -> bool {
        self.client_side.is_empty()
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        self.client_side.clear();
        drop(self.release.take());
        // Wakes the server thread if it still waits in accept().
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Read);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}
