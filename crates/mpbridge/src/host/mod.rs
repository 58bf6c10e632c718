//! This host as the kernel shows it, and every call the daemon makes to it
//! below the safe crates.
//!
//! - [`view`]: the live [`HostView`] (links, addresses, connected
//!   prefixes), fed by the daemon's one rtnetlink subscription and shared
//!   as a `watch` channel.
//! - [`rtnetlink`]: plain rtnetlink requests: dumps, `ip route get`.
//! - `netlink`: the daemon's netlink socket: requests, acknowledgements,
//!   dumps, and the writer of messages and attributes.
//! - [`sys`]: socket options and syscalls the safe crates lack.

pub(crate) mod netlink;
pub mod rtnetlink;
pub mod sys;
pub mod view;

pub use view::{Host, HostView, Watch};
