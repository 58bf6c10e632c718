//! The mpbridge lab: a whole test bed in network namespaces on one machine,
//!
//! ```text
//! client ── lan0 ── ra ══ wan0 … wanN-1 ══ rb ── lan0 ── server
//! 10.10.0.2   10.10.0.1  10.20.i.1 | 10.20.i.2  10.30.0.1   10.30.0.2
//! ```
//!
//! (IPv6 alike: `fd00:10::/64`, `fd00:20:i::/64`, `fd00:30::/64`), with
//! shaped links, failure injection, and processes and Rust code run inside
//! any node. It is the harness of the integration tests, the `lab` CLI and
//! the benchmarks. Everything needs root; nothing outside the lab's own
//! namespaces is changed.
//!
//! # Layout
//!
//! - [`bench`]: `mpbridge-lab bench`, mpbridge against shadowsocks-rust
//!   and the physical limit, and docs/BENCHMARKS.md.
//! - [`bridge`]: the real `mpbridge` daemons started in a topology.
//! - [`iperf`]: iperf3 servers and clients, their JSON reports.
//! - [`scenario`]: aggregation, failover, integrity and throughput runs.
//! - [`measure`]: per-link counters every 100 ms, the live progress line.
//! - [`transfer`]: a SHA-256-checked transfer both ways through the bridge.
//! - [`flow`]: a one-way flow whose receiver times every silence (failover).
//! - [`checks`]: what the operator asked for and what the machine has,
//!   checked before anything is created.
//! - [`report`]: the terminal table and the JSON of a run; [`plot`]: its SVG.
//! - [`links`]: what a link is like (rate, schedule, delay, jitter, loss)
//!   and the `--links` syntax.
//! - [`vm`]: running a scenario inside an x86_64 VM (for netem).
//! - [`wifi`]: the links as real 802.11 (four `mac80211_hwsim` radios,
//!   hostapd and wpa_supplicant in 4-address mode) and their failures.
//! - [`plan`]: what to build ([`TopologySpec`]) and the fixed address plan.
//! - `topology`: [`Topology`]: build, run/spawn/enter, faults, teardown.
//! - `mptcp`: subflow inspection with `ss`.
//! - `process`: [`Proc`], a child with captured output.
//! - `names`: unique namespace names and [`clean_leftovers`].
//! - `netns`: running a closure inside a namespace (`setns`).
//! - [`shaping`]: tbf parameters; `faults`: the nftables drop rules.
//! - [`ss`]: parsing `ss -tni`; `exec`: running `ip`/`tc`/`nft`.

pub mod bench;
pub mod bridge;
pub mod checks;
pub mod delayline;
mod exec;
mod faults;
pub mod flow;
pub mod iperf;
pub mod links;
pub mod measure;
mod mptcp;
mod names;
mod netns;
pub mod plan;
pub mod plot;
mod process;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod shaping;
pub mod ss;
mod topology;
pub mod transfer;
pub mod vm;
pub mod wifi;

use std::time::{Duration, Instant};

pub use faults::TABLE as NFT_TABLE;
pub use names::{clean_leftovers, PREFIX as NS_PREFIX};
pub use plan::{LanRoutes, LinkSpec, Node, TopologySpec};
pub use process::Proc;
pub use ss::TcpSocket;
pub use topology::{Topology, KEEP_ENV};

/// Locks `m`, taking the data as it is if a thread panicked holding it:
/// the lab's shared state stays usable for cleanup after a failure.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `f` about every 10 ms until it returns true (→ `true`) or
/// `timeout` has passed (→ `false`). `f` runs at least once. Tests wait for
/// conditions with this, never with fixed sleeps.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_as_soon_as_the_condition_holds() {
        let mut calls = 0;
        let start = Instant::now();
        assert!(wait_until(Duration::from_secs(10), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn wait_until_gives_up_after_the_timeout() {
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn wait_until_checks_at_least_once() {
        assert!(wait_until(Duration::ZERO, || true));
    }
}
