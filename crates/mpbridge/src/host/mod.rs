//! This host as the kernel shows it, and every call the daemon makes to it
//! below the safe crates: the netlink socket, socket options and syscalls.
//!
//! - `netlink`: the daemon's netlink socket: requests, acknowledgements,
//!   dumps, and the writer of messages and attributes.
//! - [`sys`]: socket options and syscalls the safe crates lack.

pub(crate) mod netlink;
pub mod sys;
