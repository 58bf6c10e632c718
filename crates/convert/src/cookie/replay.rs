//! The bounded memory of cookies already accepted, so that a captured
//! cookie cannot be played again while its timestamp is still fresh.
//! Entries leave when their timestamp leaves the window, or when the cache
//! is full; either way a "floor" timestamp rises so nothing re-opens.

use std::collections::BTreeSet;
use std::fmt;

use super::{CookieError, NONCE_LEN};

/// Accepted cookies by (key id, nonce), plus the same entries ordered by
/// timestamp so the oldest can be dropped first.
///
/// Invariant: every cookie ever recorded is either still in the cache or
/// has a timestamp `<=` [`ReplayCache::floor`]. Since cookies at or below
/// the floor are refused, a replay is refused whichever way its entry left,
/// even if the caller's clock steps backwards.
///
/// Memory: each entry is one 17-byte key in `seen` and one 32-byte key in
/// `by_time`, inside B-tree nodes of up to 11 keys. Measured with a
/// counting allocator at steady state (oldest out, newest in, random
/// nonces): 84 bytes per entry, so a capacity of 100 000 holds about
/// 8.4 MB; half-empty nodes could push that towards 120 bytes per entry.
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: BTreeSet<(u8, [u8; NONCE_LEN])>,
    by_time: BTreeSet<(u64, u8, [u8; NONCE_LEN])>,
    floor: Option<u64>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            seen: BTreeSet::new(),
            by_time: BTreeSet::new(),
            floor: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_time.len()
    }

    pub(crate) fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Drops entries older than `window_secs` before `now`: a cookie with
    /// such a timestamp is refused as expired anyway.
    pub(crate) fn purge(&mut self, now: u64, window_secs: u64) {
        let Some(cutoff) = now.checked_sub(window_secs) else {
            return;
        };
        while let Some(&(timestamp, _, _)) = self.by_time.first() {
            if timestamp >= cutoff {
                break;
            }
            self.drop_oldest();
        }
    }

    /// Records a cookie that passed its MAC and window checks, or refuses
    /// it as a replay.
    pub(crate) fn record(
        &mut self,
        key_id: u8,
        nonce: [u8; NONCE_LEN],
        timestamp: u64,
    ) -> Result<(), CookieError> {
        if self.floor.is_some_and(|floor| timestamp <= floor) {
            return Err(CookieError::Replayed);
        }
        if !self.seen.insert((key_id, nonce)) {
            return Err(CookieError::Replayed);
        }
        self.by_time.insert((timestamp, key_id, nonce));
        while self.by_time.len() > self.capacity {
            self.drop_oldest();
        }
        Ok(())
    }

    fn drop_oldest(&mut self) {
        if let Some((timestamp, key_id, nonce)) = self.by_time.pop_first() {
            self.seen.remove(&(key_id, nonce));
            self.floor = Some(self.floor.map_or(timestamp, |f| f.max(timestamp)));
        }
    }
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("floor", &self.floor)
            .finish()
    }
}
