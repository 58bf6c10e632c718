//! The daemon's one accept loop ([`accept_bounded`]), run by the proxy of
//! `local` and `remote`, the control socket and the metrics endpoint: a cap
//! on concurrent connections (over it: a refusal, never a crash), back-off
//! on accept errors such as EMFILE, and on shutdown a drain of open
//! connections with a deadline. [`serve`] is the proxy's use of it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portable_atomic::Ordering;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::ratelimit::LogLimit;
use crate::stats::Stats;
use crate::{sys, warn_limited};

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
pub async fn serve<H, F>(
    listeners: Vec<TcpListener>,
    options: ServeOptions,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Accepted) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let bounds = Bounds {
        what: "proxy",
        max: options.max_connections,
        drain: options.drain,
    };
    let handle = |(stream, peer): (TcpStream, SocketAddr), permit| {
        Stats::bump(&stats.accepted);
        sys::enable_keepalive(&stream);
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
    let refuse = |(stream, peer): (TcpStream, SocketAddr), why| {
        if why == Refusal::Full {
            Stats::bump(&stats.refused_limit);
            warn_limited!(OVER_LIMIT, %peer, limit = options.max_connections,
                "connection refused: max_connections are open");
        }
        sys::arm_reset(&stream);
        None::<std::future::Ready<()>>
    };
    accept_bounded(listeners, bounds, shutdown, handle, refuse).await;
}

/// A listening socket for [`accept_bounded`].
pub trait Listener: Send + 'static {
    /// An accepted connection (with its peer's address where it has one).
    type Conn: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Listener for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept(&self) -> impl Future<Output = io::Result<Self::Conn>> + Send {
        TcpListener::accept(self)
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Why [`accept_bounded`] did not hand a connection to its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max` connections are being handled.
    Full,
    /// Accepted, but the loop was told to stop before handling it.
    Stopping,
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
/// one over the cap goes to `refuse` (which may return a task, say, to
/// tell the client it is busy) at once, never queued, so a flood costs
/// nothing but the refusals. Accept errors for lack of resources (EMFILE,
/// ENOBUFS...) back off instead of spinning. When `shutdown` completes it
/// closes the listeners, refuses what was accepted but not handled, waits
/// up to `bounds.drain` for the handlers and aborts what is left. Dropping
/// the future aborts every handler.
///
/// The permit is taken after `accept`, not before as in a server that
/// lets excess clients wait: a connection over the cap is answered (reset,
/// or told busy) rather than left in the backlog.
pub async fn accept_bounded<L, H, F, R, G>(
    listeners: Vec<L>,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
    mut handle: H,
    mut refuse: R,
) where
    L: Listener,
    H: FnMut(L::Conn, OwnedSemaphorePermit) -> F,
    F: Future<Output = ()> + Send + 'static,
    R: FnMut(L::Conn, Refusal) -> Option<G>,
    G: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(bounds.max));
    let (tx, mut rx) = mpsc::channel::<L::Conn>(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept_loop(listener, bounds.what, tx.clone()));
    }
    drop(tx);

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = rx.recv() => {
                let Some(conn) = next else { break };
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(handle(conn, permit));
                    }
                    Err(_) => {
                        if let Some(task) = refuse(conn, Refusal::Full) {
                            connections.spawn(task);
                        }
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Close the listeners (they live in the acceptor tasks) before saying so.
    acceptors.abort_all();
    while acceptors.join_next().await.is_some() {}
    rx.close();
    while let Ok(conn) = rx.try_recv() {
        drop(refuse(conn, Refusal::Stopping));
    }
    let open = connections.len();
    tracing::info!(open, what = bounds.what, "stopped accepting");
    if open > 0 {
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
}

/// Accepts forever, backing off on resource errors instead of spinning.
async fn accept_loop<L: Listener>(listener: L, what: &'static str, tx: mpsc::Sender<L::Conn>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(conn) => {
                backoff = Duration::from_millis(10);
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if resource {
                    warn_limited!(ACCEPT_ERRORS, what, error = %e, backoff_ms = backoff.as_millis() as u64,
                        "accept failed for lack of resources; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                } else {
                    // ECONNABORTED and the like concern one connection only.
                    tracing::debug!(what, "accept failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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
