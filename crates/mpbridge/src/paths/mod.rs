//! Paths: the links between the two routers as MPTCP paths, and how
//! healthy each one is.
//!
//! - [`probe`]: authenticated UDP probes, link RTT, loss and up/down state.

pub mod probe;
