//! The registry of connections being relayed: who, where to, since when,
//! their byte counters and the socket the kernel reports subflows of. A
//! connection enters once its relay starts and leaves when it ends; the
//! data path only bumps its atomic counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use portable_atomic::{AtomicU64, Ordering};

use super::Stats;
use crate::host::sys::Transport;
use crate::relay::{Counters, RelayEnd};

/// One connection being relayed.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    /// Router A: the LAN client; router B: router A's end of the bridge.
    pub client: SocketAddr,
    pub destination: SocketAddr,
    pub started: Instant,
    /// What the connection between the routers was opened as.
    pub transport: Transport,
    /// Bytes relayed each way, bumped by the relay.
    pub counters: Counters,
    /// Bits per second each way over the last sampling period (the sampler
    /// writes them).
    pub rate_up: AtomicU64,
    pub rate_down: AtomicU64,
    /// The socket between the routers while the relay holds it open; the
    /// lock is held while it is read, so it is never read once closed.
    socket: Mutex<Option<RawFd>>,
}

impl Conn {
    /// Runs `f` on the socket between the routers, if the connection still
    /// holds it.
    pub fn with_socket<T>(&self, f: impl FnOnce(RawFd) -> T) -> Option<T> {
        let socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        socket.map(f)
    }
}

/// The connections being relayed now.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: BTreeMap<u64, Arc<Conn>>,
}

/// What one look at the registry saw, consistent with the daemon's totals.
#[derive(Debug, Default)]
pub struct Live {
    /// In the order of their ids (the order they entered).
    pub connections: Vec<Arc<Conn>>,
    /// Bytes of finished and open connections, each way.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are being relayed.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live connections and the byte totals (finished ones from
    /// `stats` plus the live ones), read under the lock a connection takes
    /// to leave, so that no byte is counted twice or missed.
    pub fn look(&self, stats: &Stats) -> Live {
        let inner = self.lock();
        let mut live = Live {
            connections: inner.live.values().cloned().collect(),
            bytes_up: stats.bytes_up.load(Ordering::Relaxed),
            bytes_down: stats.bytes_down.load(Ordering::Relaxed),
        };
        for conn in &live.connections {
            live.bytes_up += conn.counters.up.load(Ordering::Relaxed);
            live.bytes_down += conn.counters.down.load(Ordering::Relaxed);
        }
        live
    }
}

/// Takes connections in turn when a look may take only so many: each look
/// starts after the last one the previous look took and wraps round, so
/// that every connection has its turn however many there are. Ids grow
/// and are never reused.
#[derive(Debug, Default)]
pub struct Turns {
    next_id: u64,
}

impl Turns {
    /// Puts `items` (in the order of their ids, as [`Live`] has them) in
    /// turn from where the last look stopped, keeps the first `max` of them
    /// and returns the others.
    pub fn take<T>(&mut self, items: &mut Vec<T>, max: usize, id: impl Fn(&T) -> u64) -> Vec<T> {
        let start = items.partition_point(|item| id(item) < self.next_id);
        items.rotate_left(start);
        let others = items.split_off(max.min(items.len()));
        self.next_id = items.last().map_or(0, |item| id(item) + 1);
        others
    }
}

impl Stats {
    /// Enters a connection whose relay starts now. `socket` is the one
    /// between the routers; the returned registration must be dropped
    /// before it is closed (declare it after the socket).
    pub fn register(
        self: &Arc<Self>,
        client: SocketAddr,
        destination: SocketAddr,
        socket: &impl AsRawFd,
        transport: Transport,
    ) -> Registration {
        let mut inner = self.live.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            client,
            destination,
            started: Instant::now(),
            transport,
            counters: Counters::default(),
            rate_up: AtomicU64::new(0),
            rate_down: AtomicU64::new(0),
            socket: Mutex::new(Some(socket.as_raw_fd())),
        });
        inner.live.insert(id, Arc::clone(&conn));
        Registration {
            stats: Arc::clone(self),
            conn,
        }
    }
}

/// A connection's place in the registry; dropping it takes the connection
/// out and adds its bytes to the daemon's totals.
#[derive(Debug)]
pub struct Registration {
    stats: Arc<Stats>,
    conn: Arc<Conn>,
}

impl Registration {
    /// The counters the relay bumps.
    pub fn counters(&self) -> &Counters {
        &self.conn.counters
    }

    /// The relay ended: counts a reset, logs the connection at debug and
    /// takes it out of the registry.
    pub fn finish(self, end: &RelayEnd) {
        if matches!(end, RelayEnd::Reset(_)) {
            Stats::bump(&self.stats.resets);
        }
        let up = self.conn.counters.up.load(Ordering::Relaxed);
        let down = self.conn.counters.down.load(Ordering::Relaxed);
        let secs = self.conn.started.elapsed().as_secs_f32();
        tracing::debug!(up, down, secs, ?end, "closed");
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // First the socket: a reader in the middle of a look finishes it,
        // and none starts after.
        *self.conn.socket.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut inner = self.stats.live.lock();
        inner.live.remove(&self.conn.id);
        let counters = &self.conn.counters;
        self.stats
            .bytes_up
            .fetch_add(counters.up.load(Ordering::Relaxed), Ordering::Relaxed);
        self.stats
            .bytes_down
            .fetch_add(counters.down.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_connection_leaves_when_its_registration_drops_and_its_bytes_stay_counted() {
        let stats = Arc::new(Stats::default());
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = stats.register(
            addr("10.10.0.2:4000"),
            addr("10.30.0.2:80"),
            &socket,
            Transport::Mptcp,
        );
        let b = stats.register(
            addr("10.10.0.2:4001"),
            addr("10.30.0.2:80"),
            &socket,
            Transport::Mptcp,
        );
        a.counters().up.fetch_add(100, Ordering::Relaxed);
        b.counters().down.fetch_add(7, Ordering::Relaxed);
        let look = stats.live.look(&stats);
        assert_eq!(look.connections.len(), 2);
        assert_ne!(look.connections[0].id, look.connections[1].id);
        assert_eq!((look.bytes_up, look.bytes_down), (100, 7));
        let conn = Arc::clone(&look.connections[0]);
        assert!(conn.with_socket(|_| ()).is_some());

        a.finish(&RelayEnd::Closed);
        // Gone from the registry, its socket no longer readable, its bytes
        // in the totals: the totals neither drop nor double.
        assert!(conn.with_socket(|_| ()).is_none());
        let look = stats.live.look(&stats);
        assert_eq!(look.connections.len(), 1);
        assert_eq!((look.bytes_up, look.bytes_down), (100, 7));
        drop(b); // an aborted task: no finish, still counted
        let look = stats.live.look(&stats);
        assert!(look.connections.is_empty());
        assert_eq!((look.bytes_up, look.bytes_down), (100, 7));
        assert_eq!(stats.resets.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn turns_go_round_every_connection_from_where_the_last_look_stopped() {
        let mut turns = Turns::default();
        let mut looks = Vec::new();
        let all = [1, 2, 3, 4, 5];
        for ids in [&all[..], &all, &all, &[1, 3, 6]] {
            let mut items = ids.to_vec();
            let others = turns.take(&mut items, 2, |&id| id);
            assert_eq!(items.len() + others.len(), ids.len());
            looks.push(items);
        }
        // The third look wraps round after 5; by the fourth 2 has gone
        // and 6 is new.
        assert_eq!(looks, [vec![1, 2], vec![3, 4], vec![5, 1], vec![3, 6]]);
    }
}
