//! This host as the kernel shows it, and every call the daemon makes to it
//! below the safe crates.
//!
//! - [`view`]: the live [`HostView`] (links, addresses, connected
//!   prefixes), fed by the daemon's one rtnetlink subscription and shared
//!   as a `watch` channel.
//! - [`rtnetlink`]: plain rtnetlink requests, the crate's one wrapper:
//!   dumps, `ip route get`, routes, rules and nexthop objects.
//! - [`nexthop`]: nexthop objects and groups as rtnetlink messages (which
//!   netlink-packet-route lacks).
//! - `netlink`: the daemon's netlink socket: requests, acknowledgements,
//!   dumps, and the writer of messages and attributes.
//! - [`sys`]: socket options and syscalls the safe crates lack.
//! - [`rcvbuf`]: one budget for the fixed receive buffers of connections.

pub(crate) mod netlink;
pub mod nexthop;
pub mod rcvbuf;
pub mod rtnetlink;
pub mod sys;
pub mod view;

pub use view::{Host, HostView, Watch};

/// Runs `f` (a netlink exchange, a getsockopt per connection…) on tokio's
/// blocking threads, off the async workers, and returns what it returned;
/// `None` if the runtime shut down first. A panic in `f` goes on here.
///
/// `f` is boxed at once: every caller then shares one blocking-task type
/// and one future per result type, where each distinct closure would add a
/// copy of tokio's task machinery to the router binary.
pub fn unblock<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Option<T>> {
    unblock_boxed(Box::new(f))
}

async fn unblock_boxed<T: Send + 'static>(f: Box<dyn FnOnce() -> T + Send>) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = tx.send(f());
    });
    let done = tokio::task::spawn_blocking(job).await;
    if let Err(e) = done {
        if let Ok(panic) = e.try_into_panic() {
            std::panic::resume_unwind(panic);
        }
    }
    rx.await.ok()
}
