//! `mpbridge status`: the client of a daemon's control socket. It finds
//! the socket, asks for the state ([`crate::control::protocol`]) and prints
//! it; it shares nothing with the daemon but the protocol.
//!
//! - [`client`]: finding the sockets, asking, `--watch`.
//! - [`render`]: the table it prints.

pub mod client;
pub mod render;
