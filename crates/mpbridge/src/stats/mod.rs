//! The daemon's counters since start and the registry of the connections
//! it relays now: bumped by the accept loop ([`crate::server`]) and the
//! proxies (`local`, `remote`), read by the control socket and the exit log.
//! A leaf: it knows nothing of who bumps or reads it.
//!
//! - [`registry`]: the connections being relayed.

pub mod registry;

use portable_atomic::{AtomicU64, Ordering};

use registry::Registry;

/// Counters of one daemon since start, and the connections it relays now,
/// for logs and the status view.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and handed to a handler.
    pub accepted: AtomicU64,
    /// Connections being handled now (a gauge).
    pub open: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub refused_limit: AtomicU64,
    /// Refused: the cookie was missing, wrong, expired or replayed.
    pub refused_auth: AtomicU64,
    /// Refused: the destination policy forbids the destination.
    pub refused_policy: AtomicU64,
    /// Refused: malformed or too slow Convert header, or a loop.
    pub refused_malformed: AtomicU64,
    /// The next hop (remote or destination) could not be reached.
    pub dial_failed: AtomicU64,
    /// The remote refused with an Error TLV (router A).
    pub remote_refused: AtomicU64,
    /// The remote's reply was malformed, missing or late (router A).
    pub bad_reply: AtomicU64,
    /// Relays that ended in a reset rather than two FINs.
    pub resets: AtomicU64,
    /// Bytes relayed from clients towards destinations, by connections
    /// that have ended ([`Registry::look`] adds the live ones).
    pub bytes_up: AtomicU64,
    /// Bytes relayed from destinations back to clients, likewise.
    pub bytes_down: AtomicU64,
    /// The connections being relayed now.
    pub live: Registry,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One line for the log at exit.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "accepted {}, refused: limit {} auth {} policy {} malformed {}; dial failures {}, \
             resets {}; bytes up {} down {}",
            get(&self.accepted),
            get(&self.refused_limit),
            get(&self.refused_auth),
            get(&self.refused_policy),
            get(&self.refused_malformed),
            get(&self.dial_failed),
            get(&self.resets),
            get(&self.bytes_up),
            get(&self.bytes_down),
        )
    }
}
