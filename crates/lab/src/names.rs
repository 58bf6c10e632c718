//! Namespace names: `mpb{pid}x{serial}{role}`, unique per process through an
//! atomic counter and across processes through the PID, which
//! [`clean_leftovers`] parses back to find namespaces whose creator died.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::io::Errno;
use rustix::process::{test_kill_process, Pid};

use crate::exec;
use crate::plan::Node;

/// Every namespace the lab creates starts with this.
pub const PREFIX: &str = "mpb";

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// A fresh `(pid, serial)` pair, never handed out twice in this process.
pub(crate) fn next_id() -> (u32, u32) {
    (std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn ns_name(pid: u32, serial: u32, node: Node) -> String {
    format!("{PREFIX}{pid}x{serial}{}", node.role())
}

pub(crate) fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The work directory of topology `(pid, serial)`.
pub(crate) fn workdir(pid: u32, serial: u32) -> PathBuf {
    std::env::temp_dir().join(format!("mpblab-{pid}x{serial}"))
}

/// The `(pid, serial)` of a namespace named by [`ns_name`], or `None` for
/// any other name.
pub(crate) fn parse(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    let role = rest.chars().last()?;
    let serial = &rest[..rest.len() - role.len_utf8()];
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(serial) || !"cabs".contains(role) {
        return None;
    }
    Some((pid.parse().ok()?, serial.parse().ok()?))
}

/// Whether a process with this PID exists (a zombie counts).
fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    // EPERM means it exists but is not ours to signal.
    !matches!(test_kill_process(pid), Err(Errno::SRCH))
}

/// Deletes the lab namespaces whose creating process is gone (left behind by
/// a test run that was killed), and those topologies' work dirs; returns
/// the namespace names removed. Namespaces of live processes, including
/// this one, are never touched. (A work dir kept with `MPB_KEEP=1` has no
/// namespaces left, so it stays.)
pub fn clean_leftovers() -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot list {NETNS_DIR}: {e}")),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some((pid, serial)) = parse(&name) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let dir = workdir(pid, serial);
        if dir.exists() {
            // Best effort: a concurrent cleaner may be removing it too.
            let _ = std::fs::remove_dir_all(&dir);
        }
        match exec::run("ip", &["netns", "delete", &name], None) {
            Ok(_) => removed.push(name),
            // Another process cleaning up at the same time got there first.
            Err(_) if !ns_path(&name).exists() => {}
            Err(e) => return Err(e),
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_creator() {
        for node in Node::ALL {
            let name = ns_name(4242, 17, node);
            assert_eq!(parse(&name), Some((4242, 17)), "{name}");
        }
        assert_eq!(ns_name(1, 2, Node::RouterA), "mpb1x2a");
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "",
            "mpb",
            "mpbx1c",
            "mpb12x",
            "mpb12xc",
            "mpb12x3",
            "mpb12x3z",
            "mpb1a2x3c",
            "foo12x3c",
            "mpb12x3cc",
            "mpb12x-3c",
        ] {
            assert_eq!(parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn ids_never_repeat_across_threads() {
        let ids: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..100).map(|_| next_id().1).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn this_process_is_alive_and_an_impossible_pid_is_not() {
        assert!(process_alive(std::process::id()));
        // Above the kernel's largest possible pid_max (2^22).
        assert!(!process_alive(4_194_305));
    }
}
