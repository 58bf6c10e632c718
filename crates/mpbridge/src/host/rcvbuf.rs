//! One budget, per process, for the fixed receive buffers of the bridged
//! MPTCP connections (`fastopen_rcvbuf`).
//!
//! A fixed buffer is also the most the kernel may queue for a connection
//! whose reader is slower than its sender, and the kernel doubles what it
//! is given (room for its bookkeeping): 100 slow readers at 16 MiB may pin
//! over 3 GB (measured: `mpbridge-lab bench --cases slow`), where a 256 MB
//! router's kernel lets all its TCP sockets together take about 20 MB
//! (`net.ipv4.tcp_mem`, sized from the RAM at boot) before it drops
//! packets for every connection, and caps an autotuned socket at 1/128 of
//! its free memory. So a connection gets `fastopen_rcvbuf` only while
//! half the budget's room left holds it; beyond, that half, and never
//! less than [`FLOOR`]. The buffers granted and not yet given back stay
//! under the budget plus [`FLOOR`] per connection over it. The budget
//! (`limits.rcvbuf_budget`) is by default a quarter of the kernel's
//! pressure threshold (`tcp_mem[1]`, read, never changed): doubled by the
//! kernel, half of it. Autotuning is no way out: it stalls connections
//! whose SYN carried data (see `fastopen_rcvbuf` in the example config).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The smallest buffer granted: doubled, the kernel's own starting buffer
/// (`tcp_rmem[1]`, 128 KiB); a window of about 64 KiB, 26 Mbit/s at 20 ms
/// round trip. Only connections beyond the budget get so little.
pub const FLOOR: usize = 64 * 1024;
/// The budget when `tcp_mem` cannot be read.
const FALLBACK: usize = 16 * 1024 * 1024;

/// Buffers granted against a total.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    used: AtomicUsize,
}

/// A granted buffer size, given back to its budget when dropped: keep it
/// as long as the connection.
#[derive(Debug)]
pub struct Grant {
    bytes: usize,
    budget: &'static Budget,
}

impl Grant {
    /// The receive buffer to set, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What a connection that asks for `want` bytes gets when `used` of
/// `total` is granted: `want` if half the room left holds it, else that
/// half, never less than [`FLOOR`] (nor more than `want`).
pub fn share(total: usize, used: usize, want: usize) -> usize {
    let half_room = total.saturating_sub(used) / 2;
    want.min(half_room.max(FLOOR))
}

impl Budget {
    pub const fn new(total: usize) -> Budget {
        Budget {
            total,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes this budget grants in all before connections get less.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes granted and not yet given back.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A buffer of at most `want` bytes ([`share`]).
    pub fn grant(&'static self, want: usize) -> Grant {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let bytes = share(self.total, used, want);
            match self.used.compare_exchange_weak(
                used,
                used.saturating_add(bytes),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Grant {
                        bytes,
                        budget: self,
                    }
                }
                Err(now) => used = now,
            }
        }
    }
}

/// A quarter of `tcp_mem`'s pressure threshold (its second field, in
/// pages), bytes.
pub fn budget_of_tcp_mem(text: &str, page: usize) -> Option<usize> {
    let pressure: usize = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pressure.saturating_mul(page) / 4)
}

/// This process's budget: `configured` bytes (`limits.rcvbuf_budget`), or
/// for 0 sized from `/proc/sys/net/ipv4/tcp_mem`. Decided on first use;
/// the kernel's TCP memory is one pool for the whole host, so one budget
/// per daemon.
pub fn global(configured: usize) -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let total = match configured {
            0 => std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
                .ok()
                .and_then(|t| budget_of_tcp_mem(&t, rustix::param::page_size()))
                .unwrap_or(FALLBACK),
            n => n,
        };
        tracing::debug!(bytes = total, "budget for fixed receive buffers");
        Budget::new(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_connection_gets_its_buffer_while_half_the_room_holds_it() {
        assert_eq!(share(100 * MIB, 0, 16 * MIB), 16 * MIB);
        assert_eq!(share(100 * MIB, 60 * MIB, 16 * MIB), 16 * MIB);
        assert_eq!(share(100 * MIB, 70 * MIB, 16 * MIB), 15 * MIB);
        assert_eq!(share(100 * MIB, 100 * MIB, 16 * MIB), FLOOR);
        assert_eq!(share(100 * MIB, 300 * MIB, 16 * MIB), FLOOR);
        // Never more than asked, even below the floor.
        assert_eq!(share(100 * MIB, 300 * MIB, 4096), 4096);
    }

    #[test]
    fn what_is_granted_stays_under_the_budget_plus_a_floor_each() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10 * MIB)));
        let grants: Vec<Grant> = (0..100).map(|_| budget.grant(16 * MIB)).collect();
        assert_eq!(grants[0].bytes(), 5 * MIB);
        assert!(grants.iter().all(|g| g.bytes() >= FLOOR));
        assert!(budget.used() <= 10 * MIB + 100 * FLOOR, "{}", budget.used());
        let sum: usize = grants.iter().map(Grant::bytes).sum();
        assert_eq!(sum, budget.used());
        drop(grants);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.grant(MIB).bytes(), MIB);
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_pressure_threshold_of_tcp_mem() {
        // A 256 MB router's defaults (pages of 4 KiB).
        assert_eq!(
            budget_of_tcp_mem("2556\t3409\t5112\n", 4096),
            Some(3409 * 4096 / 4)
        );
        assert_eq!(budget_of_tcp_mem("garbage", 4096), None);
        assert_eq!(budget_of_tcp_mem("", 4096), None);
    }
}
