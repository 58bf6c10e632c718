//! Link probing: `local` sends a small authenticated UDP probe out of each
//! link every 20 ms, `remote` answers it from the address it was sent to,
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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::SockRef;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{Interest, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Auth;
use crate::ratelimit::LogLimit;
use crate::warn_limited;

pub use arrivals::Arrivals;
pub use monitor::Monitor;
#[cfg(test)]
pub(crate) use monitor::IDLE_SILENCE;
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
    /// Every 20 ms, down after 3 lost, up after 3 answered: a black hole
    /// is named about 40 ms plus one loss window after it began (within
    /// about 110 ms on links of up to 30 ms one way, against 225 ms to
    /// 0.5 s at 100 ms probes); 50 probes of 60 bytes a second each way
    /// are 24 kbit/s per link. 10 ms was tried: no shorter stalls on the
    /// lab machine, more links taken down by a burst of queueing.
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_millis(20),
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

/// One link's prober socket: bound to the link's interface (and address),
/// with a session number of its own so that replies to an earlier prober
/// are told apart. The path manager's task sends on it and reads replies
/// from it; the timing is [`Monitor`]'s.
#[derive(Debug)]
pub struct ProbeSocket {
    socket: UdpSocket,
    target: ProbeTarget,
    keys: Arc<ProbeKeys>,
    session: u32,
}

impl ProbeSocket {
    /// Must run inside a tokio runtime. Fails if the socket cannot be
    /// bound to the interface or address (the interface is gone, the
    /// address not configured).
    pub fn open(target: ProbeTarget, keys: Arc<ProbeKeys>) -> io::Result<ProbeSocket> {
        let socket = prober_socket(&target)?;
        let mut session = [0u8; 4];
        rustix::rand::getrandom(&mut session, rustix::rand::GetRandomFlags::empty())?;
        Ok(ProbeSocket {
            socket,
            target,
            keys,
            session: u32::from_ne_bytes(session),
        })
    }

    /// Sends request `seq` carrying this side's verdict `view` (for the
    /// remote to follow). A probe that cannot be sent is as good as lost:
    /// the monitor counts it so; the error is logged, rarely.
    pub fn send(&self, seq: u32, view: LinkState) {
        let probe = Probe {
            kind: wire::Kind::Request,
            key_id: 0,
            view,
            session: self.session,
            seq,
        };
        let packet = probe.encode(self.keys.send.as_ref());
        // Straight to the kernel: tokio's `try_send_to` answers WouldBlock
        // until its reactor has seen the new socket writable, which would
        // lose the first probe of every prober (a link coming back would
        // wait for the second one, an interval later).
        let dest = socket2::SockAddr::from(self.target.dest);
        if let Err(e) = SockRef::from(&self.socket).send_to(&packet, &dest) {
            warn_limited!(SEND_ERRORS, link = %self.target.ifname, "probe not sent: {e}");
        }
    }

    /// The sequence number of the next reply of this prober's session;
    /// anything else arriving is read and dropped.
    pub fn poll_reply(&self, cx: &mut Context<'_>) -> Poll<u32> {
        let mut buf = [0u8; 64];
        // Bounded, so a socket that keeps failing cannot starve the task.
        for _ in 0..64 {
            let mut read = ReadBuf::new(&mut buf);
            let from = match self.socket.poll_recv_from(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(from)) => from,
                Poll::Ready(Err(_)) => continue,
            };
            match Probe::decode(read.filled(), self.keys.send_slice()) {
                Ok(p) if p.kind == wire::Kind::Reply && p.session == self.session => {
                    return Poll::Ready(p.seq)
                }
                Ok(_) => {} // an earlier run's reply, or not a reply
                Err(e) => {
                    warn_limited!(BAD_PROBES, link = %self.target.ifname, %from, "ignored a datagram on the probe socket: {e}")
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Send errors on a link that is down are expected; log them rarely.
static SEND_ERRORS: LogLimit = LogLimit::refusals();
/// Datagrams that are not valid probes (anyone can send them).
static BAD_PROBES: LogLimit = LogLimit::refusals();

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

/// The remote's probe responder; dropping it stops it.
#[derive(Debug)]
pub struct Responder {
    tasks: Vec<JoinHandle<()>>,
}

/// One valid request, for the path manager to follow its link by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The interface it arrived on.
    pub ifindex: u32,
    pub session: u32,
    pub seq: u32,
    /// The prober's verdict on the link.
    pub view: LinkState,
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
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> io::Result<Responder> {
    let allowed: Arc<Vec<String>> = Arc::new(ifnames.to_vec());
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    for v6 in [false, true] {
        match responder_socket(v6, port) {
            Ok(socket) => tasks.push(tokio::spawn(run_responder(
                socket,
                keys.clone(),
                allowed.clone(),
                arrivals.clone(),
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
    Ok(Responder { tasks })
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
    arrivals: mpsc::UnboundedSender<Arrival>,
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
        let arrival = Arrival {
            ifindex: received.ifindex,
            session: request.session,
            seq: request.seq,
            view: request.view,
        };
        if arrivals.send(arrival).is_err() {
            return; // nobody follows the links any more
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::in_fresh_netns;

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

    /// Drives a prober until its monitor says `want`; panics after `within`.
    async fn probe_until(
        socket: &ProbeSocket,
        monitor: &mut Monitor,
        within: Duration,
        want: LinkState,
    ) -> LinkHealth {
        let deadline = tokio::time::Instant::now() + within;
        while monitor.state() != want {
            let due = tokio::time::Instant::from_std(monitor.poll_timeout());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    panic!("not {want:?} within {within:?}: {:?}", monitor.health())
                }
                () = tokio::time::sleep_until(due) => {
                    if let Some(seq) = monitor.handle_timeout(Instant::now()) {
                        socket.send(seq, monitor.state());
                    }
                }
                seq = std::future::poll_fn(|cx| socket.poll_reply(cx)) => {
                    monitor.handle_reply(seq, Instant::now());
                }
            }
        }
        monitor.health()
    }

    /// A prober whose first probe is sent at once, in the same turn as
    /// the socket is opened (as the path manager does).
    fn prober(dest: &str, keys: &Arc<ProbeKeys>) -> (ProbeSocket, Monitor) {
        let socket = ProbeSocket::open(target(dest), Arc::clone(keys)).unwrap();
        let mut monitor = Monitor::new(ProbeSettings::default(), Instant::now());
        let seq = monitor.handle_timeout(Instant::now()).unwrap();
        socket.send(seq, monitor.state());
        (socket, monitor)
    }

    #[test]
    fn a_link_with_an_answering_remote_is_up_and_goes_down_when_it_stops() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let (arrived, mut arrivals) = mpsc::unbounded_channel();
                let responder = spawn_responder(&[], PORT, keys.clone(), arrived).unwrap();
                for dest in ["127.0.0.1:4443", "[::1]:4443"] {
                    let (socket, mut monitor) = prober(dest, &keys);
                    let up =
                        probe_until(&socket, &mut monitor, Duration::from_secs(1), LinkState::Up)
                            .await;
                    assert!(
                        up.rtt.is_some_and(|r| r < Duration::from_millis(50)),
                        "{up:?}"
                    );
                    assert_eq!(up.loss_percent, 0.0);
                    // Its very first probe went out and was answered (a
                    // link that comes back is in service after it).
                    assert_eq!((up.sent, up.answered), (1, 1), "{up:?}");
                }
                assert!(
                    arrivals.try_recv().is_ok(),
                    "the responder passes requests on"
                );
                let (socket, mut monitor) = prober("127.0.0.1:4443", &keys);
                probe_until(&socket, &mut monitor, Duration::from_secs(1), LinkState::Up).await;
                drop(responder);
                let stopped = Instant::now();
                let down = probe_until(
                    &socket,
                    &mut monitor,
                    Duration::from_secs(2),
                    LinkState::Down,
                )
                .await;
                // Three probes 20 ms apart, each lost 25 ms after it was
                // sent (the floor of the window over loopback): about 70 ms.
                let took = down.changed_at - stopped;
                assert!(took < Duration::from_millis(300), "down after {took:?}");
            })
        });
    }

    #[test]
    fn the_remote_passes_on_the_requests_arriving_on_a_link() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let (arrived, mut arrivals) = mpsc::unbounded_channel();
                let _responder = spawn_responder(&[], PORT, keys.clone(), arrived).unwrap();
                let lo = rustix::net::netdevice::name_to_index(
                    std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
                    "lo",
                )
                .unwrap();
                let (socket, mut monitor) = prober("127.0.0.1:4443", &keys);
                probe_until(&socket, &mut monitor, Duration::from_secs(1), LinkState::Up).await;
                // The next request carries the prober's verdict.
                let seq = monitor.handle_timeout(monitor.poll_timeout()).unwrap();
                socket.send(seq, monitor.state());
                let within = Duration::from_secs(1);
                let last = tokio::time::timeout(within, async {
                    loop {
                        let a = arrivals.recv().await.unwrap();
                        if a.seq == seq {
                            return a;
                        }
                    }
                })
                .await
                .expect("the request passed on");
                assert_eq!(last.ifindex, lo);
                assert_eq!(last.view, LinkState::Up);
            })
        });
    }

    #[test]
    fn a_remote_with_another_key_never_makes_a_link_up() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let theirs = Arc::new(ProbeKeys::new(Some((1, &[8; 32])), &[(1, &[8; 32])]));
                let (arrived, mut arrivals) = mpsc::unbounded_channel();
                let _responder = spawn_responder(&[], PORT, theirs, arrived).unwrap();
                let ours = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[]));
                let (socket, mut monitor) = prober("127.0.0.1:4443", &ours);
                let down = probe_until(
                    &socket,
                    &mut monitor,
                    Duration::from_secs(3),
                    LinkState::Down,
                )
                .await;
                assert_eq!(down.answered, 0);
                assert!(
                    arrivals.try_recv().is_err(),
                    "refused requests are not passed on"
                );
            })
        });
    }

    #[test]
    fn a_responder_answers_only_on_the_interfaces_it_is_given() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::new(Some((1, SECRET)), &[(1, SECRET)]));
                let (arrived, _arrivals) = mpsc::unbounded_channel();
                let _elsewhere =
                    spawn_responder(&["wan9".into()], PORT, keys.clone(), arrived.clone()).unwrap();
                let _here =
                    spawn_responder(&["lo".into()], PORT + 1, keys.clone(), arrived).unwrap();
                let (socket, mut monitor) = prober("127.0.0.1:4444", &keys);
                probe_until(&socket, &mut monitor, Duration::from_secs(1), LinkState::Up).await;
                let (socket, mut monitor) = prober("127.0.0.1:4443", &keys);
                let down = probe_until(
                    &socket,
                    &mut monitor,
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
                let err = ProbeSocket::open(t, keys).unwrap_err();
                assert!(err.to_string().contains("nosuch0"), "{err}");
            })
        });
    }

    #[test]
    fn unauthenticated_mode_works_both_ways() {
        in_fresh_netns(|| {
            runtime().block_on(async {
                let keys = Arc::new(ProbeKeys::from_auth(&Auth::None));
                let (arrived, _arrivals) = mpsc::unbounded_channel();
                let _responder = spawn_responder(&[], PORT, keys.clone(), arrived).unwrap();
                let (socket, mut monitor) = prober("127.0.0.1:4443", &keys);
                probe_until(&socket, &mut monitor, Duration::from_secs(1), LinkState::Up).await;
            })
        });
    }
}
