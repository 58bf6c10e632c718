//! The daemon's one accept loop ([`accept_bounded`]), run by the proxy of
//! `local` and `remote`, the control socket and the metrics endpoint: a cap
//! on concurrent connections (over it: a refusal, never a crash), back-off
//! on accept errors such as EMFILE, and on shutdown a drain of open
//! connections with a deadline. [`serve`] is the proxy's use of it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use portable_atomic::Ordering;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::host::sys;
use crate::ratelimit::LogLimit;
use crate::stats::Stats;
use crate::warn_limited;

/// How the accept loop behaves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections open at once; beyond it new ones are reset.
    pub max_connections: usize,
    /// After shutdown, how long open connections may take to finish.
    pub drain: Duration,
}

/// What a handler receives with each connection.
pub struct Accepted {
    /// The accepted socket.
    pub stream: TcpStream,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Held for the connection's lifetime; dropping it frees a slot.
    pub permit: Slot,
}

/// One of the `max_connections` slots, counted in [`Stats::open`] while held.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _open: Open,
}

#[cfg(test)]
impl Slot {
    /// A slot of no accept loop, for tests of a connection's handler.
    pub fn for_tests(stats: &Arc<Stats>) -> Slot {
        Slot {
            _permit: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
            _open: Open::new(stats),
        }
    }
}

/// Counts a connection in [`Stats::open`] while it lives (also when its
/// task is aborted).
struct Open(Arc<Stats>);

impl Open {
    fn new(stats: &Arc<Stats>) -> Open {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(stats))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

static ACCEPT_ERRORS: LogLimit = LogLimit::refusals();
static OVER_LIMIT: LogLimit = LogLimit::refusals();

/// Accepts on every listener until `shutdown` completes, running `handler`
/// for each connection as its own task; then stops accepting, waits up to
/// the drain period for open connections, and aborts what is left.
///
/// Per connection it does only what cannot be done once: keepalive and
/// TCP_NODELAY are set on the listeners, and accepted sockets inherit them
/// (TCP and MPTCP alike).
/// The accept loop runs as a task of the runtime, not on the thread that
/// awaits this: a connection's task then starts on the worker that
/// accepted it, instead of being handed to another thread (a futex wake-up
/// and two context switches per connection, a quarter of the daemons' CPU
/// in the connection benchmark's profile).
pub async fn serve<H, F>(
    listeners: Vec<TcpListener>,
    options: ServeOptions,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Accepted) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    for listener in &listeners {
        sys::set_inherited_options(listener);
    }
    let bounds = Bounds {
        what: "proxy",
        max: options.max_connections,
        drain: options.drain,
    };
    let refused_stats = Arc::clone(&stats);
    let handle = move |(stream, peer): (TcpStream, SocketAddr), permit| {
        Stats::bump(&stats.accepted);
        let permit = Slot {
            _permit: permit,
            _open: Open::new(&stats),
        };
        handler(Accepted {
            stream,
            peer,
            permit,
        })
    };
    let max = options.max_connections;
    let refuse = move |(stream, peer): (TcpStream, SocketAddr), _: &mut JoinSet<()>| {
        Stats::bump(&refused_stats.refused_limit);
        warn_limited!(OVER_LIMIT, %peer, limit = max,
            "connection refused: max_connections are open");
        sys::arm_reset(&stream);
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        // A dropped sender (this future dropped) stops it too.
        let _ = stopped.await;
    };
    let mut accepting = AbortOnDrop(tokio::spawn(accept_bounded(
        listeners, bounds, stopped, handle, refuse,
    )));
    tokio::select! {
        () = shutdown => {
            let _ = stop.send(());
            let _ = (&mut accepting.0).await;
        }
        _ = &mut accepting.0 => {}
    }
}

/// The span of one proxied connection (client, then destination once
/// known), at debug level: at the default level it is never created, which
/// costs nothing per connection, where an enabled span cost about 5 % of
/// the daemons' CPU in the connection benchmark (a slab entry, its fields
/// formatted into a string, an enter and exit per poll). The warnings a
/// connection can end with name its client and destination themselves.
pub fn conn_span(client: SocketAddr) -> tracing::Span {
    tracing::debug_span!("conn", %client, dest = tracing::field::Empty)
}

/// Aborts a task when dropped: dropping [`serve`]'s future stops its accept
/// loop and connections, as when the loop ran inside it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A listening socket for [`accept_bounded`].
pub trait Listener {
    /// An accepted connection (with its peer's address where it has one).
    type Conn;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>>;
}

impl Listener for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>> {
        TcpListener::poll_accept(self, cx)
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        UnixListener::poll_accept(self, cx).map_ok(|(stream, _)| stream)
    }
}

/// What bounds one accept loop.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// What it serves, for the log ("proxy", "control socket", "metrics").
    pub what: &'static str,
    /// Connections handled at once.
    pub max: usize,
    /// After `shutdown`, how long handlers may take to finish.
    pub drain: Duration,
}

/// The one accept loop of the daemon: the proxy's listeners, the control
/// socket and the metrics endpoint all run it. Each connection takes one
/// of `max` permits and runs `handle` as its own task, holding the permit;
/// one over the cap goes to `refuse` at once (which may add a task to the
/// set, say, to tell the client it is busy), never queued, so a flood
/// costs nothing but the refusals. Accept errors for lack of resources
/// (EMFILE, ENOBUFS...) back off instead of spinning. When `shutdown`
/// completes it closes the listeners, waits up to `bounds.drain` for the
/// handlers and aborts what is left. Dropping the future aborts them all.
///
/// The permit is taken after `accept`, not before as in a server that
/// lets excess clients wait: a connection over the cap is answered (reset,
/// or told busy) rather than left in the backlog.
pub async fn accept_bounded<L, H, F, R>(
    listeners: Vec<L>,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
    mut handle: H,
    mut refuse: R,
) where
    L: Listener,
    H: FnMut(L::Conn, OwnedSemaphorePermit) -> F,
    F: Future<Output = ()> + Send + 'static,
    R: FnMut(L::Conn, &mut JoinSet<()>),
{
    let permits = Arc::new(Semaphore::new(bounds.max));
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::default();
    // Where the next look at the listeners starts, so that none starves.
    let mut first = 0;
    tokio::pin!(shutdown);
    loop {
        let accepted = std::future::poll_fn(|cx| {
            for i in 0..listeners.len() {
                let at = (first + i) % listeners.len();
                if let Poll::Ready(result) = listeners[at].poll_accept(cx) {
                    first = at + 1;
                    return Poll::Ready(result);
                }
            }
            Poll::Pending
        });
        tokio::select! {
            () = &mut shutdown => break,
            () = backoff.wait(), if backoff.active() => backoff.over(),
            result = accepted, if !backoff.active() => match result {
                Ok(conn) => {
                    backoff = Backoff::default();
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            connections.spawn(handle(conn, permit));
                        }
                        Err(_) => refuse(conn, &mut connections),
                    }
                }
                Err(e) => backoff.failed(bounds.what, &e),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Close the listeners before saying so.
    drop(listeners);
    drain(connections, &bounds).await;
}

/// Waits up to `bounds.drain` for the connections, then aborts the rest.
async fn drain(mut connections: JoinSet<()>, bounds: &Bounds) {
    let open = connections.len();
    tracing::info!(open, what = bounds.what, "stopped accepting");
    if open == 0 {
        return;
    }
    tracing::info!(
        open,
        drain_secs = bounds.drain.as_secs(),
        "draining open connections"
    );
    let drained = tokio::time::timeout(bounds.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "drain period over; closing the remaining connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The pause after an accept failed for lack of resources, doubling from
/// 10 ms up to a second while it goes on.
#[derive(Debug, Default)]
struct Backoff {
    /// The next pause, once one failed.
    next: Option<Duration>,
    /// Accepting again from then.
    until: Option<tokio::time::Instant>,
}

impl Backoff {
    fn active(&self) -> bool {
        self.until.is_some()
    }

    async fn wait(&self) {
        if let Some(until) = self.until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn over(&mut self) {
        self.until = None;
    }

    fn failed(&mut self, what: &'static str, e: &io::Error) {
        let resource = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !resource {
            // ECONNABORTED and the like concern one connection only.
            tracing::debug!(what, "accept failed: {e}");
            return;
        }
        let pause = self.next.unwrap_or(Duration::from_millis(10));
        warn_limited!(ACCEPT_ERRORS, what, error = %e, backoff_ms = pause.as_millis() as u64,
            "accept failed for lack of resources; backing off");
        self.until = Some(tokio::time::Instant::now() + pause);
        self.next = Some((pause * 2).min(Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;

    #[test]
    fn resource_errors_back_off_doubling_up_to_a_second_and_others_do_not() {
        let mut backoff = Backoff::default();
        backoff.failed("test", &io::Error::from_raw_os_error(libc::ECONNABORTED));
        assert!(
            !backoff.active(),
            "one aborted connection is no reason to pause"
        );
        // Each failure pauses for what the one before set as the next pause.
        let mut pauses = Vec::new();
        for _ in 0..9 {
            let before = tokio::time::Instant::now();
            let pause = backoff.next.unwrap_or(Duration::from_millis(10));
            backoff.failed("test", &io::Error::from_raw_os_error(libc::EMFILE));
            assert!(backoff.active());
            assert!(backoff.until.unwrap() >= before + pause);
            pauses.push(pause.as_millis());
            backoff.over();
            assert!(!backoff.active());
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[test]
    fn a_connection_costs_no_span_at_the_default_level() {
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let at = |level| tracing_subscriber::fmt().with_max_level(level).finish();
        tracing::subscriber::with_default(at(tracing::Level::INFO), || {
            assert!(conn_span(client).is_disabled(), "no span at info");
        });
        tracing::subscriber::with_default(at(tracing::Level::DEBUG), || {
            assert!(!conn_span(client).is_disabled(), "a span at debug");
        });
    }

    #[tokio::test]
    async fn every_listener_is_served_by_the_one_loop() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let bounds = Bounds {
            what: "test",
            max: 8,
            drain: Duration::from_secs(1),
        };
        let handle = move |(stream, _): (TcpStream, SocketAddr), _permit| {
            let _ = seen_tx.send(stream.local_addr().unwrap());
            async {}
        };
        let refuse = |_, _: &mut JoinSet<()>| panic!("under the cap");
        let server = tokio::spawn(accept_bounded(
            vec![a, b],
            bounds,
            std::future::pending(),
            handle,
            refuse,
        ));
        let mut seen = Vec::new();
        for addr in addrs.iter().chain(addrs.iter()) {
            let _conn = TcpStream::connect(addr).await.unwrap();
            seen.push(seen_rx.recv().await.unwrap());
        }
        assert_eq!(seen, [addrs[0], addrs[1], addrs[0], addrs[1]]);
        server.abort();
    }

    #[tokio::test]
    async fn beyond_the_limit_connections_are_reset_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (held_tx, mut held_rx) = mpsc::channel(8);
        let server = tokio::spawn(serve(
            vec![listener],
            ServeOptions {
                max_connections: 1,
                drain: Duration::from_secs(1),
            },
            stats.clone(),
            async {
                let _ = stop_rx.await;
            },
            move |a: Accepted| {
                let held_tx = held_tx.clone();
                async move {
                    // Hold the connection (and its slot) until told otherwise.
                    let _ = held_tx.send(()).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(a);
                }
            },
        ));
        let _first = TcpStream::connect(addr).await.unwrap();
        held_rx.recv().await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let err = second
            .read(&mut buf)
            .await
            .expect_err("over the limit: reset");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(stats.refused_limit.load(Ordering::Relaxed), 1);
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);

        // Shutdown drains for one second, then aborts the held connection.
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stats.open.load(Ordering::Relaxed),
            0,
            "aborted: no longer open"
        );
    }
}
