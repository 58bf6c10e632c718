//! The daemon's control socket: what a daemon tells about its links,
//! totals and connections, as JSON on a Unix socket for people and scripts
//! (`mpbridge status`, in [`crate::status`]), and as Prometheus metrics
//! (cargo feature `metrics`).
//!
//! - [`protocol`]: the requests and responses (docs/CONTROL.md).
//! - [`kernel`]: a connection's subflows, as the kernel reports them.
//! - [`socket`]: the daemon's Unix socket.
//! - `metrics`: the Prometheus endpoint (feature `metrics`).

pub mod kernel;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod protocol;
pub mod sndbuf;
pub mod socket;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_atomic::Ordering;
use tokio::task::JoinHandle;

use crate::config::{ControlSettings, PathSettings, Role};
use crate::host::rtnetlink::Rtnl;
use crate::host::sys::Transport;
use crate::host::{HostView, Watch};
use crate::paths::probe::LinkState as Health;
use crate::paths::{LinkStatus, PathManager, StatusReader};
use crate::ratelimit::LogLimit;
use crate::stats::registry::Conn;
use crate::stats::Stats;
use crate::warn_limited;
use protocol::{
    Connection, Errors, Link, LinkState, ProbeState, Refused, Request, Response, Status, Subflow,
    TcpState, Totals,
};

pub use socket::ControlError;

static NO_RTNETLINK: LogLimit = LogLimit::new(Duration::from_secs(3600));

/// How often link and connection rates are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a daemon shows of itself: its counters and connections, its
/// links' state (from the path manager) and the rates sampled from them.
pub struct Observed {
    mode: Role,
    started: Instant,
    stats: Arc<Stats>,
    links: Option<StatusReader>,
    /// This daemon judges its links by probes (`probe.enabled`): router A
    /// sends them, router B follows those arriving.
    probing: bool,
    samples: Mutex<Samples>,
    /// Link counters and route lookups; opened when first needed.
    rt: Mutex<Option<Rtnl>>,
    /// This host's links and addresses, by which subflows are put on links.
    host: Option<Watch>,
}

/// The last sample of every counter a rate is made from.
#[derive(Debug, Default)]
struct Samples {
    at: Option<Instant>,
    links: HashMap<String, LinkSample>,
    /// Connection id → bytes up and down.
    conns: HashMap<u64, (u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct LinkSample {
    rx_bytes: u64,
    tx_bytes: u64,
    rx_bits_per_sec: Option<u64>,
    tx_bits_per_sec: Option<u64>,
}

fn bits_per_sec(now: u64, before: u64, elapsed: Duration) -> u64 {
    (now.saturating_sub(before) as f64 * 8.0 / elapsed.as_secs_f64()) as u64
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Observed {
    /// `links`: the path manager's, when the daemon manages paths.
    pub fn new(
        mode: Role,
        stats: Arc<Stats>,
        links: Option<StatusReader>,
        probing: bool,
    ) -> Observed {
        Observed {
            mode,
            started: Instant::now(),
            stats,
            links,
            probing,
            samples: Mutex::new(Samples::default()),
            rt: Mutex::new(None),
            host: None,
        }
    }

    /// A daemon's: its counters, its path manager's links if it runs one,
    /// and this host's links and addresses.
    pub fn of_daemon(
        mode: Role,
        stats: &Arc<Stats>,
        paths: Option<&PathManager>,
        settings: &PathSettings,
        host: Watch,
    ) -> Arc<Observed> {
        let mut observed = Observed::new(
            mode,
            Arc::clone(stats),
            paths.map(PathManager::reader),
            settings.probe.enabled,
        );
        observed.host = Some(host);
        Arc::new(observed)
    }

    /// Runs `f` on the rtnetlink socket (opening it if need be).
    fn with_rt<T>(&self, f: impl FnOnce(&mut Rtnl) -> T) -> Option<T> {
        let mut rt = self.rt.lock().unwrap_or_else(|p| p.into_inner());
        if rt.is_none() {
            *rt = Rtnl::open()
                .map_err(|e| {
                    warn_limited!(
                        NO_RTNETLINK,
                        "status: no rtnetlink socket ({e}): no link rates"
                    )
                })
                .ok();
        }
        rt.as_mut().map(f)
    }

    fn link_status(&self) -> Vec<LinkStatus> {
        self.links
            .as_ref()
            .map(StatusReader::status)
            .unwrap_or_default()
    }

    /// Reads the links' byte counters and the connections' counters, and
    /// turns what changed since the last call into rates.
    pub fn sample(&self) {
        let names: Vec<String> = self
            .link_status()
            .into_iter()
            .map(|l| l.interface)
            .collect();
        let counters: Vec<(String, (u64, u64))> = if names.is_empty() {
            Vec::new()
        } else {
            self.with_rt(|rt| {
                names
                    .into_iter()
                    .filter_map(|name| Some((name.clone(), rt.link_bytes(&name).ok()??)))
                    .collect()
            })
            .unwrap_or_default()
        };
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = samples
            .at
            .map(|at| now - at)
            .filter(|d| *d >= Duration::from_millis(10));
        let mut links = HashMap::new();
        for (name, (rx, tx)) in counters {
            let before = samples.links.get(&name);
            let rate = |now: u64, field: fn(&LinkSample) -> u64| {
                Some(bits_per_sec(now, field(before?), elapsed?))
            };
            let sample = LinkSample {
                rx_bytes: rx,
                tx_bytes: tx,
                rx_bits_per_sec: rate(rx, |s| s.rx_bytes),
                tx_bits_per_sec: rate(tx, |s| s.tx_bytes),
            };
            links.insert(name, sample);
        }
        samples.links = links;
        let live = self.stats.live.look(&self.stats);
        let mut conns = HashMap::with_capacity(live.connections.len());
        for conn in &live.connections {
            let up = conn.counters.up.load(Ordering::Relaxed);
            let down = conn.counters.down.load(Ordering::Relaxed);
            // Since the last sample; a connection first seen: since it began.
            let (before, over) = match (samples.conns.get(&conn.id), elapsed) {
                (Some(&before), Some(elapsed)) => (before, elapsed),
                (Some(_), None) => ((up, down), Duration::ZERO),
                (None, _) => ((0, 0), now.saturating_duration_since(conn.started)),
            };
            if over >= Duration::from_millis(10) {
                conn.rate_up
                    .store(bits_per_sec(up, before.0, over), Ordering::Relaxed);
                conn.rate_down
                    .store(bits_per_sec(down, before.1, over), Ordering::Relaxed);
            }
            conns.insert(conn.id, (up, down));
        }
        samples.conns = conns;
        samples.at = Some(now);
    }

    /// The daemon's state now; `limit` keeps the fastest connections only.
    /// Reads every connection's subflows from the kernel (a getsockopt
    /// each): call it off the async threads.
    pub fn snapshot(&self, limit: Option<usize>) -> Status {
        let live = self.stats.live.look(&self.stats);
        let support = kernel::support();
        let host: Arc<HostView> = self
            .host
            .as_ref()
            .map(|h| Arc::clone(&h.borrow()))
            .unwrap_or_default();
        let mut links = kernel::LinkFinder::new(&host, |local, remote| {
            self.with_rt(|rt| rt.route_interface(remote, Some(local)))
                .and_then(Result::ok)
                .flatten()
        });
        let mut connections: Vec<Connection> = live
            .connections
            .iter()
            .map(|conn| connection(conn, support.is_ok(), &mut links))
            .collect();
        let links = self.links(&connections, support.is_ok());
        connections.sort_by_key(|c| {
            (
                Reverse(c.up_bits_per_sec + c.down_bits_per_sec),
                Reverse(c.bytes_up + c.bytes_down),
                c.id,
            )
        });
        let omitted = limit.map_or(0, |l| connections.len().saturating_sub(l));
        connections.truncate(connections.len() - omitted);
        let get = |c: &portable_atomic::AtomicU64| c.load(Ordering::Relaxed);
        let stats = &self.stats;
        Status {
            mode: self.mode,
            pid: std::process::id(),
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.started.elapsed().as_secs(),
            links,
            totals: Totals {
                connections_open: get(&stats.open),
                connections_total: get(&stats.accepted),
                bytes_up: live.bytes_up,
                bytes_down: live.bytes_down,
                refused: Refused {
                    auth: get(&stats.refused_auth),
                    policy: get(&stats.refused_policy),
                    limit: get(&stats.refused_limit),
                    malformed: get(&stats.refused_malformed),
                },
                errors: Errors {
                    dial: get(&stats.dial_failed),
                    remote_refused: get(&stats.remote_refused),
                    bad_reply: get(&stats.bad_reply),
                    reset: get(&stats.resets),
                },
            },
            connections,
            connections_omitted: omitted,
            subflows_unavailable: support.err().map(str::to_owned),
        }
    }

    /// The links as the path manager sees them, with the sampled rates and
    /// the subflows `connections` have on each.
    fn links(&self, connections: &[Connection], subflows_known: bool) -> Vec<Link> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        self.link_status()
            .into_iter()
            .map(|l| {
                let sample = samples.links.get(&l.interface).copied();
                let subflows = connections
                    .iter()
                    .flat_map(|c| c.subflows.iter().flatten())
                    .filter(|s| matches!(s.state, TcpState::Established | TcpState::Unknown))
                    .filter(|s| s.link.as_deref() == Some(l.interface.as_str()))
                    .count() as u32;
                let state = match (l.in_service, l.backup) {
                    (false, _) => LinkState::Down,
                    (true, true) => LinkState::Backup,
                    (true, false) => LinkState::Up,
                };
                Link {
                    state,
                    state_secs: l.changed_at.elapsed().as_secs(),
                    backup: l.backup,
                    kernel_up: l.kernel_up,
                    probe: match (self.probing, l.health) {
                        (false, _) => ProbeState::Off,
                        (true, Health::Up) => ProbeState::Up,
                        (true, Health::Down) => ProbeState::Down,
                        (true, Health::Unknown) => ProbeState::Unknown,
                    },
                    rtt_ms: l.rtt.filter(|_| self.probing).map(millis),
                    loss_percent: self
                        .probing
                        .then_some((f64::from(l.loss_percent) * 10.0).round() / 10.0),
                    tx_bits_per_sec: sample.and_then(|s| s.tx_bits_per_sec),
                    rx_bits_per_sec: sample.and_then(|s| s.rx_bits_per_sec),
                    tx_bytes: sample.map(|s| s.tx_bytes),
                    rx_bytes: sample.map(|s| s.rx_bytes),
                    subflows: subflows_known.then_some(subflows),
                    carries_routes: l.carries_routes,
                    addresses: l.addrs,
                    interface: l.interface,
                }
            })
            .collect()
    }
}

/// One connection as the status shows it, its subflows read from the kernel.
fn connection(
    conn: &Conn,
    subflows_readable: bool,
    links: &mut kernel::LinkFinder<'_, impl FnMut(IpAddr, IpAddr) -> Option<u32>>,
) -> Connection {
    let reading = match conn.transport {
        Transport::Mptcp if subflows_readable => {
            conn.with_socket(kernel::read).and_then(Result::ok)
        }
        Transport::Tcp | Transport::Mptcp => None,
    };
    let (fallback, subflows) = match reading {
        Some(kernel::Reading::Fallback) => (Some(true), Some(Vec::new())),
        Some(kernel::Reading::Subflows(list)) => (
            Some(false),
            Some(
                list.into_iter()
                    .map(|s| Subflow {
                        link: links.link(s.local.ip(), s.remote.ip()),
                        local: s.local,
                        remote: s.remote,
                        state: TcpState::from_kernel(s.state),
                        rtt_ms: s.rtt.map(millis),
                        bytes_sent: s.bytes_acked,
                        bytes_received: s.bytes_received,
                    })
                    .collect(),
            ),
        ),
        None => (None, None),
    };
    Connection {
        id: conn.id,
        client: conn.client,
        destination: conn.destination,
        age_secs: conn.started.elapsed().as_secs(),
        bytes_up: conn.counters.up.load(Ordering::Relaxed),
        bytes_down: conn.counters.down.load(Ordering::Relaxed),
        up_bits_per_sec: conn.rate_up.load(Ordering::Relaxed),
        down_bits_per_sec: conn.rate_down.load(Ordering::Relaxed),
        transport: conn.transport,
        fallback,
        subflows,
    }
}

/// The control socket and metrics listener, bound at start before the
/// daemon changes anything, so that a socket in use stops it cleanly.
pub struct Endpoints {
    socket: Option<socket::Bound>,
    #[cfg(feature = "metrics")]
    metrics: Option<tokio::net::TcpListener>,
}

/// Binds what `settings` asks for. Must run inside a tokio runtime.
pub fn bind(settings: &ControlSettings) -> Result<Endpoints, ControlError> {
    let socket = settings
        .socket
        .as_deref()
        .map(socket::Bound::bind)
        .transpose()?;
    #[cfg(feature = "metrics")]
    let metrics = match settings.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).map_err(|e| ControlError::Metrics(addr, e))?),
        None => None,
    };
    Ok(Endpoints {
        socket,
        #[cfg(feature = "metrics")]
        metrics,
    })
}

/// The running control socket, metrics endpoint and sampler.
pub struct Control {
    tasks: Vec<JoinHandle<()>>,
}

impl Endpoints {
    /// Starts serving `observed` on whatever was bound, and sampling rates.
    pub fn serve(self, observed: Arc<Observed>) -> Control {
        let mut tasks = Vec::new();
        #[cfg(feature = "metrics")]
        let metrics = self.metrics;
        #[cfg(not(feature = "metrics"))]
        let metrics: Option<()> = None;
        if self.socket.is_none() && metrics.is_none() {
            return Control { tasks };
        }
        tasks.push(tokio::spawn(sample_every_second(Arc::clone(&observed))));
        if let Some(bound) = self.socket {
            tracing::info!(path = %bound.path().display(), "control socket ready");
            let observed = Arc::clone(&observed);
            tasks.push(tokio::spawn(bound.serve(move |request| {
                let observed = Arc::clone(&observed);
                async move { answer(observed, request).await }
            })));
        }
        #[cfg(feature = "metrics")]
        if let Some(listener) = metrics {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics at http://{addr}/metrics");
            }
            tasks.push(tokio::spawn(metrics::serve(listener, observed)));
        }
        Control { tasks }
    }
}

impl Control {
    /// Stops serving and removes the socket file, waiting until it is gone.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Control {
    /// Stops serving without waiting (see [`Control::stop`]).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Answers one request (the snapshot is built off the async threads, by
/// [`crate::host::unblock`]: one blocking-task type for the whole crate).
pub async fn answer(observed: Arc<Observed>, request: Request) -> Response {
    let Request::Status { limit } = request;
    match crate::host::unblock(move || observed.snapshot(limit)).await {
        Some(status) => Response::status(status),
        None => Response::error(&protocol::RequestError::Internal(
            "the daemon is shutting down".into(),
        )),
    }
}

/// Samples rates every [`SAMPLE_INTERVAL`] for as long as it runs.
async fn sample_every_second(observed: Arc<Observed>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Link counters are netlink requests: off the async workers.
        let observed = Arc::clone(&observed);
        crate::host::unblock(move || observed.sample()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RelayEnd;

    #[test]
    fn a_snapshot_counts_open_bytes_refusals_and_orders_by_rate() {
        let stats = Arc::new(Stats::default());
        let observed = Observed::new(Role::Remote, Arc::clone(&stats), None, true);
        Stats::bump(&stats.refused_auth);
        Stats::bump(&stats.accepted);
        Stats::bump(&stats.accepted);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = "10.20.0.1:1000".parse().unwrap();
        let d = "10.30.0.2:80".parse().unwrap();
        let slow = stats.register(a, d, &socket, Transport::Tcp);
        let fast = stats.register(a, d, &socket, Transport::Tcp);
        observed.sample();
        slow.counters().up.fetch_add(1_000, Ordering::Relaxed);
        fast.counters().down.fetch_add(1_000_000, Ordering::Relaxed);
        // The next sample needs some time to have passed.
        std::thread::sleep(Duration::from_millis(20));
        observed.sample();
        let status = observed.snapshot(Some(1));
        assert_eq!(status.mode, Role::Remote);
        assert_eq!(status.totals.refused.auth, 1);
        assert_eq!(status.totals.connections_total, 2);
        assert_eq!(status.totals.bytes_up, 1_000);
        assert_eq!(status.totals.bytes_down, 1_000_000);
        // Only the fastest, the other counted as omitted.
        assert_eq!(status.connections.len(), 1);
        assert_eq!(status.connections_omitted, 1);
        let c = &status.connections[0];
        assert_eq!(c.bytes_down, 1_000_000);
        assert!(c.down_bits_per_sec > 0);
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!((c.fallback, c.subflows.as_ref()), (None, None));
        fast.finish(&RelayEnd::Closed);
        drop(slow);
        let status = observed.snapshot(None);
        assert!(status.connections.is_empty());
        assert_eq!(status.totals.bytes_down, 1_000_000, "finished bytes stay");
    }
}
