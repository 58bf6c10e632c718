//! Running Rust code inside a named network namespace: a fresh thread
//! `setns()`s into `/run/netns/NAME` and runs the closure. Also what only
//! works from such a thread: per-namespace sysctls and interface counters.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Runs `f` on a new thread that has joined the network namespace at
/// `ns_path`, and returns its result. Sockets `f` creates belong to that
/// namespace for their whole life, whichever thread uses them later.
/// A panic in `f` is resumed in the caller.
pub(crate) fn try_in_netns<T: Send>(
    ns_path: &Path,
    f: impl FnOnce() -> T + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("mpb-lab-netns".into())
            .spawn_scoped(scope, move || -> anyhow::Result<T> {
                let ns = File::open(ns_path)
                    .with_context(|| format!("cannot open {}", ns_path.display()))?;
                // Only this thread moves; the rest of the process stays put.
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                    .with_context(|| format!("setns({}) failed", ns_path.display()))?;
                Ok(f())
            })
            .context("cannot start a namespace thread")?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes a sysctl of the calling thread's network namespace
/// (`net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`). Must run
/// inside [`try_in_netns`]: `/proc/sys/net` follows the calling thread.
pub(crate) fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value)
        .with_context(|| format!("cannot set {key}={value} ({})", path.display()))
}

/// Reads `(tx_bytes, rx_bytes)` of `ifname` in the calling thread's
/// namespace. Must run inside [`try_in_netns`]: `/sys/class/net` shows the
/// namespace sysfs was mounted in, `/proc/thread-self/net` the thread's.
pub(crate) fn read_if_bytes(ifname: &str) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .context("cannot read /proc/thread-self/net/dev")?;
    parse_net_dev(&text, ifname)
        .with_context(|| format!("no counters for interface {ifname} in /proc/net/dev"))
}

/// Parses one interface's `(tx_bytes, rx_bytes)` out of `/proc/net/dev`.
fn parse_net_dev(text: &str, ifname: &str) -> Option<(u64, u64)> {
    text.lines().skip(2).find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        if name.trim() != ifname {
            return None;
        }
        let fields: Vec<u64> = fields
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // 8 receive columns (bytes first), then 8 transmit columns.
        Some((*fields.get(8)?, *fields.first()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  wan0: 5120361    3581    0    0    0     0          0         0 104857633   72339    0    0    0     0       0          0
  wan10: 7       1    0    0    0     0          0         0 9       1    0    0    0     0       0          0
";

    #[test]
    fn counters_are_read_for_the_named_interface_only() {
        assert_eq!(
            parse_net_dev(NET_DEV, "wan0"),
            Some((104_857_633, 5_120_361))
        );
        assert_eq!(parse_net_dev(NET_DEV, "wan10"), Some((9, 7)));
        assert_eq!(parse_net_dev(NET_DEV, "wan1"), None);
    }

    #[test]
    fn missing_namespace_is_an_error_not_a_panic() {
        let err = try_in_netns(Path::new("/run/netns/mpb-does-not-exist"), || ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("mpb-does-not-exist"), "{err}");
    }

    #[test]
    fn panic_in_the_closure_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            // Our own namespace: always there, setns into it is a no-op.
            try_in_netns(Path::new("/proc/self/ns/net"), || panic!("boom in ns"))
        });
        let payload = match caught {
            Err(payload) => payload,
            // Without CAP_SYS_ADMIN even this setns is refused.
            Ok(Err(_)) if !rustix::process::geteuid().is_root() => return,
            Ok(other) => panic!("closure did not run: {other:?}"),
        };
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in ns"));
    }
}
