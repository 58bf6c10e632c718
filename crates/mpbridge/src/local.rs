//! `mpbridge local` (router A): accepts the clients' diverted TCP, opens an
//! MPTCP connection to the remote whose SYN carries the Convert header
//! (destination + cookie), relays, and turns a refusal into a client RST.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convert::{ErrorCode, Message};
use portable_atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::checks::CheckError;
use crate::config::{Auth, ConfigError, FirewallMode, LocalSettings, Role};
use crate::control::{self, ControlError, Observed};
use crate::daemon::{Daemon, StartError};
use crate::firewall::{self, FirewallError, Plan, SharedFirewall};
use crate::header::{self, ReadError};
use crate::host::rcvbuf::{self, Grant};
use crate::host::sys::{self, Transport};
use crate::host::Watch;
use crate::intercept;
use crate::paths::PathError;
use crate::ratelimit::LogLimit;
use crate::relay::{self, PumpError, RelayEnd};
use crate::server::{self, Accepted, ServeOptions};
use crate::stats::Stats;
use crate::{checks, warn_limited};

static NO_DESTINATION: LogLimit = LogLimit::refusals();
static REMOTE_DOWN: LogLimit = LogLimit::refusals();
static REMOTE_REFUSED_AUTH: LogLimit = LogLimit::refusals();
static BAD_REPLY: LogLimit = LogLimit::refusals();

/// What went wrong with the remote's Convert reply.
#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error("the remote refused: {0}")]
    Refused(ErrorCode),
    #[error("malformed reply from the remote: {0}")]
    Malformed(#[from] convert::DecodeError),
    #[error("the remote closed before replying")]
    Closed,
    #[error("no reply from the remote within {0:?}")]
    Timeout(Duration),
    #[error("reading the reply failed: {0}")]
    Io(io::Error),
}

/// Either direction of a local relay failed.
#[derive(Debug, thiserror::Error)]
enum LocalRelayError {
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Pump(#[from] PumpError),
}

/// Shared by every connection task.
struct Shared {
    settings: LocalSettings,
    key: Option<convert::cookie::Key>,
    /// Listener addresses, to refuse connections that would loop.
    listeners: Vec<SocketAddr>,
    /// This host's addresses, for the same check.
    host: Watch,
    /// Index of the remote that answered last; tried first.
    preferred: AtomicUsize,
    stats: Arc<Stats>,
}

/// Why `mpbridge local` could not start: what both daemons share, or its
/// interception rules.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Start(#[from] StartError),
    /// The interception rules could not be installed, or would loop.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

impl From<CheckError> for LocalError {
    fn from(e: CheckError) -> LocalError {
        LocalError::Start(e.into())
    }
}

impl From<ControlError> for LocalError {
    fn from(e: ControlError) -> LocalError {
        LocalError::Start(e.into())
    }
}

impl From<PathError> for LocalError {
    fn from(e: PathError) -> LocalError {
        LocalError::Start(e.into())
    }
}

/// Binds the transparent listeners. A host without IPv6 skips the IPv6 ones.
pub fn bind(settings: &LocalSettings) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for addr in &settings.listen {
        match intercept::bind(*addr, settings.interception.mode) {
            Ok(l) => listeners.push(l),
            Err(e) if addr.is_ipv6() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                tracing::warn!(%addr, "IPv6 is not available on this host; not listening there");
            }
            Err(e) => return Err(StartError::Bind(*addr, e)),
        }
    }
    if listeners.is_empty() {
        return Err(StartError::Unavailable(format!(
            "no listen address could be used ({}): this host has no IPv6; \
             add an IPv4 address to local.listen",
            settings
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(listeners)
}

/// Rereads the configuration on SIGHUP (the binary passes its file loader).
pub type Reload = Box<dyn Fn() -> Result<LocalSettings, ConfigError> + Send + Sync>;

/// Router A's own parts of the [`Daemon`], fields in teardown order: the
/// SIGHUP follower, then the address follower, then the rules themselves.
#[derive(Default)]
struct LocalParts {
    /// Aborted when dropped.
    hangups: tokio::task::JoinSet<()>,
    /// The task keeping the `local` sets equal to this host's prefixes;
    /// aborted when dropped.
    following: tokio::task::JoinSet<()>,
    firewall: Option<InstalledRules>,
}

/// Removes the interception rules when dropped, whoever else still holds
/// the table (the followers let go of it later). Teardown blocks here for
/// one netlink exchange: a drop cannot wait for a blocking task.
struct InstalledRules(SharedFirewall);

impl Drop for InstalledRules {
    fn drop(&mut self) {
        self.0.remove_now();
        tracing::info!("interception rules removed");
    }
}

/// Starts `mpbridge local`: checks the kernel, binds, installs the
/// interception rules (once the listeners listen), serves until
/// `shutdown`, then removes the rules. On SIGHUP, `reload` rereads the
/// config and `local.bypass` replaces the bypass set. Whatever was set up
/// is torn down on every way out, in the order [`Daemon`] holds it.
pub async fn run(
    settings: LocalSettings,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> Result<(), LocalError> {
    let stats = Arc::new(Stats::default());
    let mut daemon = Daemon::<LocalParts>::default();
    let served = start_and_serve(&mut daemon, settings, &stats, shutdown, reload).await;
    daemon.stop().await;
    served?;
    tracing::info!("stopped: {}", stats.summary());
    Ok(())
}

async fn start_and_serve(
    daemon: &mut Daemon<LocalParts>,
    settings: LocalSettings,
    stats: &Arc<Stats>,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> Result<(), LocalError> {
    if settings.mptcp {
        checks::mptcp_available()?;
    } else {
        tracing::warn!("mptcp = false: connections to the remote use plain TCP over one link");
    }
    let mut settings = settings;
    let lacks = checks::report_lacks(|s| checks::local_lacks(s, settings.mptcp, settings.fastopen));
    if lacks.contains(&checks::Lack::FastopenConnect) {
        // Said once above; no futile option per connection.
        settings.fastopen = false;
    }
    if settings.fastopen {
        checks::fastopen_client();
    }
    report_port_budget();
    // Installed before the rules exist: SIGHUP's default action is to exit.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // First: a second daemon finds the first one's control socket (a
    // clearer error than its busy listen port) before changing anything.
    let endpoints = control::bind(&settings.common.control)?;
    let listeners = bind(&settings)?;
    let host = checks::host_view().await?;
    let paths = crate::paths::PathManager::start(
        &settings.common.paths,
        Role::Local,
        &settings.remotes,
        &[],
        &settings.common.auth,
        host.watch(),
    )
    .await?;
    let paths = daemon.hold_paths(paths);
    // A connection that lost a link in service gets it back: the
    // in-kernel path manager never makes its subflow again on its own.
    if let (Some(paths), Ok(())) = (paths, control::kernel::support()) {
        paths.follow_connections(control::kernel::looker(Arc::clone(stats)));
    }
    // The slow-links policy judges a link by what the bridge delivers.
    if let Some(paths) = paths {
        let stats = Arc::clone(stats);
        paths.follow_delivered(Box::new(move || {
            let live = stats.live.look(&stats);
            live.bytes_up + live.bytes_down
        }));
    }
    let observed = Observed::of_daemon(
        Role::Local,
        stats,
        paths,
        &settings.common.paths,
        host.watch(),
    );
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let firewall: Option<SharedFirewall> = match settings.interception.firewall {
        FirewallMode::Nftables => {
            let plan = Plan {
                mode: settings.interception.mode,
                lan_interfaces: settings.interception.lan_interfaces.clone(),
                listeners: bound.clone(),
                remotes: settings.remotes.clone(),
                bypass: settings.interception.bypass.clone(),
                quic: settings.interception.quic,
            };
            let fw = SharedFirewall::install(plan, host.now()).await?;
            daemon.role().firewall = Some(InstalledRules(fw.clone()));
            Some(fw)
        }
        FirewallMode::None => {
            tracing::info!(
                "local.firewall = \"none\": the system's firewall diverts client TCP here \
                 (see docs/FIREWALL.md)"
            );
            None
        }
    };
    daemon.hold_control(endpoints.serve(observed));
    for addr in &bound {
        tracing::info!(%addr, intercept = %settings.interception.mode, "local listening");
    }
    if let Some(fw) = &firewall {
        let follower = fw.clone().follow_addresses(host.watch());
        daemon.role().following.spawn(follower);
    }
    if let (Some(hangup), Some(reload)) = (hangup, reload) {
        let follower = follow_hangups(hangup, reload, firewall.clone());
        daemon.role().hangups.spawn(follower);
    }
    let stop_diverting = firewall;
    let shutdown = async move {
        shutdown.await;
        if let Some(fw) = &stop_diverting {
            fw.stop_diverting().await;
        }
    };
    serve(settings, listeners, stats.clone(), host.watch(), shutdown).await;
    Ok(())
}

/// How long Linux holds a closed connection's four-tuple in TIME_WAIT.
const TIME_WAIT_SECS: u32 = 60;

/// Says once at start how many new connections a second this host can open
/// to one remote address and port when clients close first: router A then
/// holds each subflow in TIME_WAIT, each on one four-tuple, for 60 s. Only
/// read, never changed: both sysctls are the host's.
fn report_port_budget() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let reuse = sys::read_sysctl("net.ipv4.tcp_tw_reuse");
    let (Ok(range), Ok(reuse)) = (range, reuse) else {
        return;
    };
    if let Some(line) = port_budget(&range, reuse) {
        tracing::info!("{line}");
    }
}

/// The line of [`report_port_budget`] for the sysctls' text and value;
/// `None` when `tcp_tw_reuse` = 1 (a port in TIME_WAIT serves again after
/// a second) or the range cannot be read.
fn port_budget(range: &str, tw_reuse: i64) -> Option<String> {
    let mut bounds = range.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    if tw_reuse == 1 || high < low {
        return None;
    }
    let ports = high - low + 1;
    Some(format!(
        "when clients close first, about {} new connections a second to each remote \
         address and port: each subflow holds one of {ports} ephemeral ports \
         (net.ipv4.ip_local_port_range) per link address for {TIME_WAIT_SECS} s in TIME_WAIT; \
         `sysctl -w net.ipv4.tcp_tw_reuse=1` lets a port serve again after 1 s \
         (net.ipv4.tcp_tw_reuse is {tw_reuse})",
        ports / TIME_WAIT_SECS
    ))
}

/// On SIGHUP: rereads the config and replaces the bypass set; a config
/// that does not validate is reported once and the old set stays.
async fn follow_hangups(
    mut hangup: tokio::signal::unix::Signal,
    reload: Reload,
    fw: Option<SharedFirewall>,
) {
    while hangup.recv().await.is_some() {
        let settings = match reload() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("SIGHUP: config not reloaded, the bypass set is unchanged: {e}");
                continue;
            }
        };
        let bypass = &settings.interception.bypass;
        match &fw {
            None => tracing::info!("SIGHUP: local.firewall = \"none\": no rules to update"),
            Some(fw) => match fw.set_bypass(bypass.clone()).await {
                Ok(()) => tracing::info!(prefixes = bypass.len(), "SIGHUP: bypass set updated"),
                Err(e) => tracing::error!("SIGHUP: cannot update the bypass set: {e}"),
            },
        }
    }
}

/// Runs the local side on already bound listeners until `shutdown`;
/// `host` tells this host's addresses.
pub async fn serve(
    settings: LocalSettings,
    listeners: Vec<TcpListener>,
    stats: Arc<Stats>,
    host: Watch,
    shutdown: impl Future<Output = ()>,
) {
    let key = match &settings.common.auth {
        Auth::None => None,
        Auth::Psk { send, .. } => Some(checks::cookie_key(send)),
    };
    let bound = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let options = ServeOptions {
        max_connections: settings.common.limits.max_connections,
        drain: settings.common.limits.drain,
    };
    let sizer = control::sndbuf::spawn(settings.sndbuf, &stats);
    let shared = Arc::new(Shared {
        settings,
        key,
        listeners: bound,
        host,
        preferred: AtomicUsize::new(0),
        stats: stats.clone(),
    });
    server::serve(listeners, options, stats, shutdown, move |accepted| {
        let shared = shared.clone();
        let span = server::conn_span(accepted.peer);
        handle(shared, accepted).instrument(span)
    })
    .await;
    sizer.inspect(tokio::task::JoinHandle::abort);
}

async fn handle(shared: Arc<Shared>, accepted: Accepted) {
    let Accepted {
        stream: client,
        peer,
        permit: _permit,
    } = accepted;
    // Declared after the sockets, dropped before them: every way out of
    // here but a relay that ended on its own (a refusal, a failed dial, a
    // relay error, the drain deadline) resets the client instead of a FIN.
    let client_guard = relay::ResetOnDrop::new(&client);
    let settings = &shared.settings;
    let mode = settings.interception.mode;
    let dest = match intercept::original_destination(&client, mode).and_then(|d| {
        let own = shared.host.borrow();
        intercept::check_loop(d, &shared.listeners, own.own_addresses()).map(|()| d)
    }) {
        Ok(dest) => dest,
        Err(e) => {
            Stats::bump(&shared.stats.refused_malformed);
            warn_limited!(NO_DESTINATION, client = %peer, "refused: {e}");
            return;
        }
    };
    tracing::Span::current().record("dest", tracing::field::display(dest));

    // The receive buffer's grant is held until the connection ends.
    // The dial's future on the heap: a held connection's future then
    // carries room for its relay only.
    let (upstream, _rcvbuf) = match Box::pin(dial_any(&shared, dest)).await {
        Ok(dialled) => dialled,
        Err(e) => {
            Stats::bump(&shared.stats.dial_failed);
            warn_limited!(REMOTE_DOWN, client = %peer, %dest, "no remote reachable: {e}");
            return;
        }
    };

    let upstream_guard = relay::ResetOnDrop::new(&upstream);
    // Declared after the sockets: leaves the registry before they close.
    let conn = shared
        .stats
        .register(peer, dest, &upstream, transport(settings));
    let counters = conn.counters();
    let pipe = settings.common.limits.pipe_size;
    let up = async {
        relay::pump(&client, &upstream, pipe, &counters.up)
            .await
            .map_err(LocalRelayError::from)
    };
    let down = async {
        let leftover = tokio::time::timeout(settings.reply_timeout, read_reply(&upstream))
            .await
            .map_err(|_| ReplyError::Timeout(settings.reply_timeout))??;
        relay::write_all(&client, &leftover)
            .await
            .map_err(PumpError::Write)?;
        counters
            .down
            .fetch_add(leftover.len() as u64, portable_atomic::Ordering::Relaxed);
        relay::pump(&upstream, &client, pipe, &counters.down)
            .await
            .map_err(LocalRelayError::from)
    };
    let result = tokio::try_join!(up, down).map(|_| ());
    let end = match result {
        Ok(()) => {
            client_guard.disarm();
            upstream_guard.disarm();
            RelayEnd::Closed
        }
        Err(e) => {
            // The guards reset both sides when they go out of scope.
            report_failure(&shared.stats, &e, peer, dest);
            RelayEnd::Reset(match e {
                LocalRelayError::Pump(p) => p,
                LocalRelayError::Reply(r) => PumpError::Read(io::Error::other(r.to_string())),
            })
        }
    };
    conn.finish(&end);
}

/// Counts and logs why a relay ended badly: refusals the operator must act
/// on at warn, the destination's own answers (refused, unreachable) at debug.
fn report_failure(stats: &Stats, e: &LocalRelayError, client: SocketAddr, dest: SocketAddr) {
    match e {
        LocalRelayError::Reply(ReplyError::Refused(_)) => Stats::bump(&stats.remote_refused),
        LocalRelayError::Reply(
            ReplyError::Malformed(_) | ReplyError::Closed | ReplyError::Timeout(_),
        ) => Stats::bump(&stats.bad_reply),
        LocalRelayError::Reply(ReplyError::Io(_)) | LocalRelayError::Pump(_) => {}
    }
    match e {
        LocalRelayError::Reply(ReplyError::Refused(code @ ErrorCode::NotAuthorized))
        | LocalRelayError::Reply(ReplyError::Refused(code @ ErrorCode::MissingCookie)) => {
            warn_limited!(REMOTE_REFUSED_AUTH, %client, %dest,
                "the remote refused: {code} (wrong key, clocks more than the cookie window apart, \
                 or its destination policy forbids this destination)");
        }
        LocalRelayError::Reply(ReplyError::Refused(code)) => {
            tracing::debug!(%client, %dest, "the remote refused: {code}");
        }
        LocalRelayError::Reply(other) => {
            warn_limited!(BAD_REPLY, %client, %dest, "{other}");
        }
        LocalRelayError::Pump(p) => tracing::debug!(%client, %dest, "relay reset: {p}"),
    }
}

/// The Convert header for `dest`: a Connect TLV, and a Cookie TLV proving
/// that we hold the pre-shared key.
fn request_header(shared: &Shared, dest: SocketAddr) -> Vec<u8> {
    let cookie = shared.key.as_ref().map(|key| {
        let mut nonce = [0u8; 16];
        fill_random(&mut nonce);
        convert::cookie::sign(key, dest, header::unix_now(), nonce).to_vec()
    });
    let mut out = Vec::with_capacity(64);
    // A Connect TLV plus a 48-byte Cookie TLV is far below the size limit.
    Message::request(dest, cookie)
        .encode(&mut out)
        .expect("a Connect and a Cookie TLV always fit");
    out
}

/// Fills `buf` from the kernel's random source (getrandom(2)).
fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom failed: {e}"),
        }
    }
}

/// Tries the remotes in turn, starting with the one that answered last.
/// Each attempt has a header of its own: a remote that read the header of
/// a failed attempt (its answer lost) has put that cookie's nonce in its
/// replay cache, and would refuse it again.
async fn dial_any(shared: &Shared, dest: SocketAddr) -> io::Result<(TcpStream, Option<Grant>)> {
    let remotes = &shared.settings.remotes;
    let first = shared.preferred.load(Ordering::Relaxed) % remotes.len();
    let mut last_error = io::Error::other("no remote configured");
    for i in 0..remotes.len() {
        let index = (first + i) % remotes.len();
        let remote = remotes[index];
        let header = request_header(shared, dest);
        match dial(&shared.settings, remote, &header).await {
            Ok(dialled) => {
                shared.preferred.store(index, Ordering::Relaxed);
                return Ok(dialled);
            }
            Err(e) => {
                tracing::debug!(%remote, "remote unreachable: {e}");
                last_error = io::Error::new(e.kind(), format!("{remote}: {e}"));
            }
        }
    }
    Err(last_error)
}

/// What the connections to the remotes are opened as.
fn transport(settings: &LocalSettings) -> Transport {
    if settings.mptcp {
        Transport::Mptcp
    } else {
        Transport::Tcp
    }
}

/// Opens the connection to one remote. With TCP Fast Open the header rides
/// in the SYN; otherwise it is the first thing written once connected.
/// Returns the receive buffer's grant with the stream, when it has one.
async fn dial(
    settings: &LocalSettings,
    remote: SocketAddr,
    header: &[u8],
) -> io::Result<(TcpStream, Option<Grant>)> {
    let transport = transport(settings);
    let socket = sys::stream_socket(&remote, transport).map_err(io::Error::other)?;
    // Our own connection: the interception rules never divert this mark.
    let _ = sys::set_mark(&socket, firewall::OWN_MARK);
    let _ = socket.set_tcp_nodelay(true);
    // The joins of this connection take their ports as connect(2) does, per
    // four-tuple, instead of each holding one of the range for itself while
    // in TIME_WAIT (README, "A kernel behaviour worth knowing": the
    // seventh, clients closing first). Older kernels refuse it on MPTCP sockets: nothing is lost.
    let _ = sys::set_bind_address_no_port(&socket);
    sys::enable_keepalive(&socket);
    // Uploads leave through this socket (`sndbuf` in the example config).
    control::sndbuf::apply(&socket, settings.sndbuf);
    if let Some(name) = &settings.congestion {
        sys::set_congestion(&socket, name);
    }
    let mut sent = 0;
    let mut connecting = false;
    let mut grant = None;
    if settings.fastopen && sys::enable_fastopen_no_cookie(&socket).is_ok() {
        if transport == Transport::Mptcp && settings.fastopen_rcvbuf > 0 {
            // Works around MPTCP's receive window stalling after TFO (see
            // `fastopen_rcvbuf` in the example config). A fixed buffer is
            // also what a slow reader behind router A may pin: the sum is
            // bounded by `limits.rcvbuf_budget`, as on the remote.
            let granted = rcvbuf::global(settings.common.limits.rcvbuf_budget)
                .grant(settings.fastopen_rcvbuf);
            sys::set_recv_buffer(&socket, granted.bytes());
            grant = Some(granted);
        }
        match sys::sendto_fastopen(&socket, header, remote) {
            Ok(n) => {
                sent = n;
                connecting = true;
            }
            // TFO disabled by sysctl: connect the ordinary way.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    if !connecting {
        match socket.connect(&remote.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
    }
    let stream = TcpStream::from_std(socket.into())?;
    tokio::time::timeout(settings.connect_timeout, stream.writable())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.peer_addr()?; // ENOTCONN if the handshake failed without an error
    relay::write_all(&stream, &header[sent..]).await?;
    Ok((stream, grant))
}

/// Reads the remote's Convert reply; returns the stream bytes after it.
async fn read_reply(upstream: &TcpStream) -> Result<Vec<u8>, ReplyError> {
    match header::read_message(upstream).await {
        Ok((message, payload)) => match message.error() {
            Some(error) => Err(ReplyError::Refused(error.code)),
            None => Ok(payload),
        },
        Err(ReadError::Malformed(e)) => Err(ReplyError::Malformed(e)),
        Err(ReadError::Closed) => Err(ReplyError::Closed),
        Err(ReadError::Io(e)) => Err(ReplyError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_budget_follows_the_range_and_tw_reuse() {
        let line = port_budget("32768\t60999\n", 2).unwrap();
        assert!(line.contains("about 470 new connections"), "{line}");
        assert!(line.contains("28232 ephemeral ports"), "{line}");
        assert!(!line.contains("  "), "{line}");
        assert_eq!(port_budget("32768\t60999\n", 1), None);
        assert_eq!(port_budget("garbage", 0), None);
        assert_eq!(port_budget("60999 32768", 0), None);
    }
}
