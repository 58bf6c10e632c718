//! Link probing: `local` sends a small authenticated UDP probe out of each
//! link every 100 ms, `remote` answers it from the address it was sent to,
//! and each link's RTT, loss and up/down state follow from the answers.
//!
//! - `wire`: the 32-byte packet and its MAC.
//! - `monitor`: the per-link state machine (clock passed in).
//! - `arrivals`: the remote's view of a link, from the requests arriving.
//! - `pktinfo`: receiving with destination address, answering from it.

mod arrivals;
mod monitor;
mod pktinfo;
mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::SockRef;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Auth;
use crate::ratelimit::LogLimit;
use crate::warn_limited;

pub use arrivals::Arrivals;
pub use monitor::Monitor;
pub use wire::{Probe, ProbeError, ProbeKey, PACKET_LEN};

/// How often to probe and when to change a link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between two probes on one link.
    pub interval: Duration,
    /// Lost probes in a row that take a link down.
    pub down_after: u32,
    /// Answered probes in a row that bring a down link back.
    pub up_after: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_millis(100),
            down_after: 3,
            up_after: 3,
        }
    }
}

/// The keys probes are signed and checked with: the same pre-shared keys
/// as the cookies, under their own MAC context.
#[derive(Debug, Clone, Default)]
pub struct ProbeKeys {
    /// Signs this side's requests (and checks their replies).
    send: Option<ProbeKey>,
    /// Requests signed with any of these are answered.
    accept: Vec<ProbeKey>,
}

impl ProbeKeys {
    /// From the config's `[auth]`; `mode = "none"` makes probes
    /// unauthenticated, like the cookies.
    pub fn from_auth(auth: &Auth) -> ProbeKeys {
        match auth {
            Auth::None => ProbeKeys::default(),
            Auth::Psk { send, accept, .. } => ProbeKeys {
                send: Some(ProbeKey::new(send.id, send.secret.expose())),
                accept: accept
                    .iter()
                    .map(|k| ProbeKey::new(k.id, k.secret.expose()))
                    .collect(),
            },
        }
    }

    /// Keys made from raw secrets (tests, tools).
    pub fn new(send: Option<(u8, &[u8])>, accept: &[(u8, &[u8])]) -> ProbeKeys {
        ProbeKeys {
            send: send.map(|(id, secret)| ProbeKey::new(id, secret)),
            accept: accept
                .iter()
                .map(|&(id, secret)| ProbeKey::new(id, secret))
                .collect(),
        }
    }

    fn send_slice(&self) -> &[ProbeKey] {
        self.send.as_slice()
    }
}

/// A link's state as the probes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No probe answered or lost enough yet to say.
    Unknown,
    Up,
    Down,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::Down => "down",
        }
    }
}

/// One link's health, for the path manager and the status view.
#[derive(Debug, Clone)]
pub struct LinkHealth {
    pub state: LinkState,
    /// Smoothed round-trip time of the probes.
    pub rtt: Option<Duration>,
    /// The latest probe's round-trip time.
    pub last_rtt: Option<Duration>,
    /// Lost share of the last 50 probes, in percent.
    pub loss_percent: f32,
    pub sent: u64,
    pub answered: u64,
    /// When `state` last changed.
    pub changed_at: Instant,
}

/// What one prober sends from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The link's interface: probes leave by it whatever the routes say.
    pub ifname: String,
    /// The link's own address, if probes must carry it as source (policy
    /// routing picks the link's table by it).
    pub source: Option<IpAddr>,
    /// The remote's probe responder.
    pub dest: SocketAddr,
}

/// A running prober; dropping it stops it.
#[derive(Debug)]
pub struct Prober {
    health: watch::Receiver<LinkHealth>,
    task: JoinHandle<()>,
}

impl Prober {
    /// The link's health, updated at every probe sent, answered or lost.
    pub fn health(&self) -> watch::Receiver<LinkHealth> {
        self.health.clone()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Send errors on a link that is down are expected; log them rarely.
static SEND_ERRORS: LogLimit = LogLimit::refusals();
/// Datagrams that are not valid probes (anyone can send them).
static BAD_PROBES: LogLimit = LogLimit::refusals();

/// Starts probing `target.dest` out of `target.ifname`. Must run inside a
/// tokio runtime. Fails if the socket cannot be bound to the interface or
/// address (the interface is gone, the address not configured).
pub fn spawn_prober(
    target: ProbeTarget,
    keys: Arc<ProbeKeys>,
    settings: ProbeSettings,
) -> io::Result<Prober> {
    let socket = prober_socket(&target)?;
    let now = Instant::now();
    let monitor = Monitor::new(settings, now);
    let (tx, rx) = watch::channel(monitor.health());
    let mut session = [0u8; 4];
    rustix::rand::getrandom(&mut session, rustix::rand::GetRandomFlags::empty())?;
    let session = u32::from_ne_bytes(session);
    let task = tokio::spawn(run_prober(socket, target, keys, monitor, session, tx));
    Ok(Prober { health: rx, task })
}

fn prober_socket(target: &ProbeTarget) -> io::Result<UdpSocket> {
    let domain = Domain::for_address(target.dest);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if target.dest.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket
        .bind_device(Some(target.ifname.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("binding to {}: {e}", target.ifname)))?;
    let unspecified = match target.dest {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let local = SocketAddr::new(target.source.unwrap_or(unspecified), 0);
    socket
        .bind(&local.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding to {local}: {e}")))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run_prober(
    socket: UdpSocket,
    target: ProbeTarget,
    keys: Arc<ProbeKeys>,
    mut monitor: Monitor,
    session: u32,
    tx: watch::Sender<LinkHealth>,
) {
    let mut buf = [0u8; 64];
    let send_key = keys.send.as_ref();
    loop {
        let deadline = tokio::time::Instant::from_std(monitor.poll_timeout());
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                if let Some(seq) = monitor.handle_timeout(Instant::now()) {
                    // The verdict travels along, for the remote to follow.
                    let view = monitor.state();
                    let probe = Probe { kind: wire::Kind::Request, key_id: 0, view, session, seq };
                    if let Err(e) = socket.send_to(&probe.encode(send_key), target.dest).await {
                        warn_limited!(SEND_ERRORS, link = %target.ifname, "probe not sent: {e}");
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                match Probe::decode(&buf[..len], keys.send_slice()) {
                    Ok(p) if p.kind == wire::Kind::Reply && p.session == session => {
                        monitor.handle_reply(p.seq, Instant::now());
                    }
                    Ok(_) => {} // an earlier run's reply, or not a reply
                    Err(e) => warn_limited!(BAD_PROBES, link = %target.ifname, %from, "ignored a datagram on the probe socket: {e}"),
                }
            }
        }
        let health = monitor.health();
        tx.send_if_modified(|old| {
            let changed = old.sent != health.sent
                || old.answered != health.answered
                || old.state != health.state
                || old.loss_percent != health.loss_percent;
            *old = health;
            changed
        });
        if tx.is_closed() {
            return;
        }
    }
}

/// The remote's probe responder; dropping it stops it.
#[derive(Debug)]
pub struct Responder {
    tasks: Vec<JoinHandle<()>>,
    seen: watch::Receiver<HashMap<u32, Instant>>,
    followers: Followers,
}

/// One valid request, as a follower of its link sees it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    session: u32,
    seq: u32,
    view: LinkState,
}

/// Interface index → the follower of the requests arriving on it.
type Followers = Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<Arrival>>>>;

impl Responder {
    /// When a valid probe last arrived, by interface index.
    pub fn last_seen(&self) -> HashMap<u32, Instant> {
        self.seen.borrow().clone()
    }

    /// Follows the requests arriving on interface `ifindex` ([`Arrivals`]):
    /// the link's health as this side sees it, expecting a request every
    /// `settings.interval`. Replaces an earlier follower of that interface;
    /// dropping the returned handle stops it.
    pub fn follow(&self, ifindex: u32, settings: ProbeSettings) -> Prober {
        let arrivals = Arrivals::new(settings, Instant::now());
        let (tx, rx) = watch::channel(arrivals.health());
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        lock(&self.followers).insert(ifindex, arrived_tx);
        let task = tokio::spawn(run_follower(arrived, arrivals, tx));
        Prober { health: rx, task }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_follower(
    mut arrived: mpsc::UnboundedReceiver<Arrival>,
    mut arrivals: Arrivals,
    tx: watch::Sender<LinkHealth>,
) {
    loop {
        let deadline = tokio::time::Instant::from_std(arrivals.poll_timeout());
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => arrivals.handle_timeout(Instant::now()),
            a = arrived.recv() => match a {
                Some(a) => arrivals.handle_request(a.at, a.session, a.seq, a.view),
                None => return,
            },
        }
        let health = arrivals.health();
        tx.send_if_modified(|old| {
            let changed = old.state != health.state
                || old.answered != health.answered
                || old.loss_percent != health.loss_percent;
            *old = health;
            changed
        });
        if tx.is_closed() {
            return;
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Answers authenticated probes arriving on UDP `port`, IPv4 and IPv6,
/// each from the address it was sent to (so NAT and policy routing see the
/// address they expect). With `ifnames`, only probes arriving on those
/// interfaces are answered. Must run inside a tokio runtime.
pub fn spawn_responder(
    ifnames: &[String],
    port: u16,
    keys: Arc<ProbeKeys>,
) -> io::Result<Responder> {
    let (seen_tx, seen) = watch::channel(HashMap::new());
    let seen_tx = Arc::new(seen_tx);
    let followers: Followers = Arc::default();
    let allowed: Arc<Vec<String>> = Arc::new(ifnames.to_vec());
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for v6 in [false, true] {
        match responder_socket(v6, port) {
            Ok(socket) => tasks.push(tokio::spawn(run_responder(
                socket,
                keys.clone(),
                allowed.clone(),
                seen_tx.clone(),
                followers.clone(),
            ))),
            Err(e) => errors.push(e),
        }
    }
    if tasks.is_empty() {
        return Err(errors.remove(0));
    }
    for e in errors {
        tracing::info!("probe responder without IPv6: {e}");
    }
    Ok(Responder {
        tasks,
        seen,
        followers,
    })
}

fn responder_socket(v6: bool, port: u16) -> io::Result<UdpSocket> {
    let (domain, any) = if v6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        socket.set_only_v6(true)?;
    }
    pktinfo::enable(&socket, v6)?;
    let addr = SocketAddr::new(any, port);
    socket.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("binding the probe responder to {addr}: {e}"),
        )
    })?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run_responder(
    socket: UdpSocket,
    keys: Arc<ProbeKeys>,
    allowed: Arc<Vec<String>>,
    seen: Arc<watch::Sender<HashMap<u32, Instant>>>,
    followers: Followers,
) {
    let mut buf = [0u8; 64];
    // Interface index → allowed, looked up once per index.
    let mut verdicts: HashMap<u32, bool> = HashMap::new();
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let received = match socket.try_io(Interest::READABLE, || {
            pktinfo::recv(&SockRef::from(&socket), &mut buf)
        }) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn_limited!(BAD_PROBES, "probe responder: {e}");
                continue;
            }
        };
        if !allowed.is_empty() {
            let ok = *verdicts.entry(received.ifindex).or_insert_with(|| {
                rustix::net::netdevice::index_to_name(&socket, received.ifindex)
                    .is_ok_and(|name| allowed.contains(&name))
            });
            if !ok {
                continue;
            }
        }
        let request = match Probe::decode(&buf[..received.len], &keys.accept) {
            Ok(p) if p.kind == wire::Kind::Request => p,
            Ok(_) => continue,
            Err(e) => {
                warn_limited!(BAD_PROBES, from = %received.from, "refused a probe: {e}");
                continue;
            }
        };
        let key = keys.accept.iter().find(|k| k.id() == request.key_id);
        let reply = request.reply().encode(key);
        if let Err(e) =
            pktinfo::send_from(&SockRef::from(&socket), &reply, received.from, received.to)
        {
            warn_limited!(SEND_ERRORS, to = %received.from, "probe reply not sent: {e}");
        }
        let now = Instant::now();
        seen.send_modify(|m| {
            m.insert(received.ifindex, now);
        });
        let arrival = Arrival {
            at: now,
            session: request.session,
            seq: request.seq,
            view: request.view,
        };
        let mut followers = lock(&followers);
        if let Some(follower) = followers.get(&received.ifindex) {
            if follower.send(arrival).is_err() {
                followers.remove(&received.ifindex);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own inside a new, empty network
    /// namespace with only `lo` up, so probes never leave the test.
    fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: only the network namespace is unshared, by a thread
            // that shares nothing else the flag could split.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("unshare(CLONE_NEWNET) needs root");
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success());
            f()
        })
        .join()
        .expect("test thread")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const PORT: u16 = 4443;
    const SECRET: &[u8] = &[7; 32];

    fn target(dest: &str) -> ProbeTarget {
        ProbeTarget {
            ifname: "lo".into(),
            source: None,
            dest: dest.parse().unwrap(),
        }
    }

    async fn wait_for(
        rx: &mut watch::Receiver<LinkHealth>,
        within: Duration,
        want: LinkState,
    ) -> LinkHealth {
        let got = tokio::time::timeout(within, rx.wait_for(|h| h.state == want))
            .await
            .map(|r| r.map(|h| h.clone()));
        match got {
            Ok(Ok(h)) => h,
            _ => panic!("not {want:?} within {within:?}: {:?}", rx.borrow()),
        }
    }

    #[test]
    fn a_link_with_an_answering_remote_is_up_and_goes_down_when_it_stops() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let responder = spawn_responder(&[], PORT, keys.clone()).unwrap();
                for dest in ["127.0.0.1:4443", "[::1]:4443"] {
                    let prober =
                        spawn_prober(target(dest), keys.clone(), ProbeSettings::default()).unwrap();
                    let mut health = prober.health();
                    let up = wait_for(&mut health, Duration::from_secs(1), LinkState::Up).await;
                    assert!(
                        up.rtt.is_some_and(|r| r < Duration::from_millis(50)),
                        "{up:?}"
                    );
                    assert_eq!(up.loss_percent, 0.0);
                }
                assert!(!responder.last_seen().is_empty());
                let prober =
                    spawn_prober(target("127.0.0.1:4443"), keys, ProbeSettings::default()).unwrap();
                let mut health = prober.health();
                wait_for(&mut health, Duration::from_secs(1), LinkState::Up).await;
                drop(responder);
                let stopped = Instant::now();
                let down = wait_for(&mut health, Duration::from_secs(2), LinkState::Down).await;
                // Three probes at 100 ms, each lost 25 ms after it was sent.
                let took = down.changed_at - stopped;
                assert!(took < Duration::from_millis(600), "down after {took:?}");
            })
        });
    }

    #[test]
    fn the_remote_follows_a_link_by_the_requests_arriving_on_it() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let responder = spawn_responder(&[], PORT, keys.clone()).unwrap();
                let lo = rustix::net::netdevice::name_to_index(
                    std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
                    "lo",
                )
                .unwrap();
                let follower = responder.follow(lo, ProbeSettings::default());
                let mut seen = follower.health();
                let prober =
                    spawn_prober(target("127.0.0.1:4443"), keys, ProbeSettings::default()).unwrap();
                let up = wait_for(&mut seen, Duration::from_secs(1), LinkState::Up).await;
                assert!(up.answered >= 1 && up.rtt.is_none(), "{up:?}");
                drop(prober);
                let stopped = Instant::now();
                let down = wait_for(&mut seen, Duration::from_secs(2), LinkState::Down).await;
                // Three intervals and a half without a request.
                let took = down.changed_at - stopped;
                assert!(took < Duration::from_millis(600), "down after {took:?}");
            })
        });
    }

    #[test]
    fn a_remote_with_another_key_never_makes_a_link_up() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let theirs = Arc::new(ProbeKeys::new(Some((1, &[8; 32])), &[(1, &[8; 32])]));
                let _responder = spawn_responder(&[], PORT, theirs).unwrap();
                let ours = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[]));
                let prober =
                    spawn_prober(target("127.0.0.1:4443"), ours, ProbeSettings::default()).unwrap();
                let mut health = prober.health();
                let down = wait_for(&mut health, Duration::from_secs(3), LinkState::Down).await;
                assert_eq!(down.answered, 0);
            })
        });
    }

    #[test]
    fn a_responder_answers_only_on_the_interfaces_it_is_given() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let _elsewhere = spawn_responder(&["wan9".into()], PORT, keys.clone()).unwrap();
                let _here = spawn_responder(&["lo".into()], PORT + 1, keys.clone()).unwrap();
                let ignored = spawn_prober(
                    target("127.0.0.1:4443"),
                    keys.clone(),
                    ProbeSettings::default(),
                )
                .unwrap();
                let answered =
                    spawn_prober(target("127.0.0.1:4444"), keys, ProbeSettings::default()).unwrap();
                wait_for(
                    &mut answered.health(),
                    Duration::from_secs(1),
                    LinkState::Up,
                )
                .await;
                let down = wait_for(
                    &mut ignored.health(),
                    Duration::from_secs(3),
                    LinkState::Down,
                )
                .await;
                assert_eq!(down.answered, 0);
            })
        });
    }

    #[test]
    fn a_prober_on_a_missing_interface_fails_to_start() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::default());
                let mut t = target("127.0.0.1:4443");
                t.ifname = "nosuch0".into();
                let err = spawn_prober(t, keys, ProbeSettings::default()).unwrap_err();
                assert!(err.to_string().contains("nosuch0"), "{err}");
            })
        });
    }

    #[test]
    fn unauthenticated_mode_works_both_ways() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::from_auth(&Auth::None));
                let _responder = spawn_responder(&[], PORT, keys.clone()).unwrap();
                let prober =
                    spawn_prober(target("127.0.0.1:4443"), keys, ProbeSettings::default()).unwrap();
                let mut health = prober.health();
                wait_for(&mut health, Duration::from_secs(1), LinkState::Up).await;
            })
        });
    }
}
