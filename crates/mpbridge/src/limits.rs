//! The open-files limit a daemon needs for its `max_connections`.
//!
//! Service managers start daemons with the kernel's default, 1,024 soft and
//! 4,096 hard (procd on OpenWrt, a shell's `ulimit -n`), while each bridged
//! connection holds two sockets and, for a bulk direction, a pipe (two
//! descriptors) per direction. At start the daemon raises its soft limit to
//! the hard one, which needs no privilege, and says in one line when even
//! that cannot hold `max_connections`. The OpenWrt init script sets procd's
//! `limits nofile` from the same figure ([`fds_needed`]).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors one bridged connection may hold: two sockets, and two pipes
/// of two ends each when both directions carry bulk data.
pub const FDS_PER_CONNECTION: u64 = 6;
/// Descriptors besides the connections': standard streams, listeners, the
/// control socket, netlink sockets, the runtime's epoll and wakers.
pub const FDS_BASE: u64 = 64;

/// The open-files limit that lets `max_connections` connections all open.
pub fn fds_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(FDS_BASE)
}

/// What [`raise_nofile`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NofileOutcome {
    /// The soft limit before (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
    /// Descriptors `max_connections` may need.
    pub needed: u64,
}

impl NofileOutcome {
    /// The one line for the log when the limit is too low, else `None`.
    pub fn warning(&self, max_connections: usize) -> Option<String> {
        let now = self.now?;
        if now >= self.needed {
            return None;
        }
        let fit = now.saturating_sub(FDS_BASE) / FDS_PER_CONNECTION;
        let raised = match self.before {
            Some(b) if b != now => format!(" (raised from {b})"),
            _ => String::new(),
        };
        Some(format!(
            "the open-files limit is {now}{raised}, but max_connections = {max_connections} \
             needs up to {} descriptors: about {fit} connections can open before accept fails \
             with EMFILE; raise the hard limit (OpenWrt: the init script's procd \
             `limits nofile`; systemd: LimitNOFILE=; a shell: ulimit -Hn) or lower \
             limits.max_connections",
            self.needed
        ))
    }
}

/// Raises the soft open-files limit to the hard one and compares it with
/// what `max_connections` needs.
pub fn raise_nofile(max_connections: usize) -> NofileOutcome {
    let needed = fds_needed(max_connections);
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let mut now = current;
    if current.is_some() && current != maximum {
        let raised = Rlimit {
            current: maximum,
            maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            now = maximum;
        }
    }
    NofileOutcome {
        before: current,
        now,
        needed,
    }
}

/// At daemon start: raise the limit, and warn in one line when
/// `max_connections` cannot fit.
pub fn apply(max_connections: usize) {
    let outcome = raise_nofile(max_connections);
    if let Some(line) = outcome.warning(max_connections) {
        tracing::warn!("{line}");
    } else if outcome.before != outcome.now {
        tracing::debug!(
            before = ?outcome.before,
            now = ?outcome.now,
            "open-files soft limit raised to the hard limit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_max_connections_needs_more_than_the_kernel_default_hard_limit() {
        assert_eq!(fds_needed(4096), 4096 * 6 + 64);
        assert!(fds_needed(4096) > 4096);
        assert_eq!(fds_needed(usize::MAX), u64::MAX);
    }

    #[test]
    fn a_limit_below_the_need_gives_one_line_naming_both_figures() {
        let outcome = NofileOutcome {
            before: Some(1024),
            now: Some(4096),
            needed: fds_needed(4096),
        };
        let line = outcome.warning(4096).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains("limit is 4096 (raised from 1024)"), "{line}");
        assert!(line.contains("max_connections = 4096"), "{line}");
        assert!(line.contains("24640"), "{line}");
        // (4096 - 64) / 6
        assert!(line.contains("about 672 connections"), "{line}");
    }

    #[test]
    fn enough_or_unlimited_gives_no_warning() {
        let enough = NofileOutcome {
            before: Some(1024),
            now: Some(30_000),
            needed: fds_needed(4096),
        };
        assert_eq!(enough.warning(4096), None);
        let unlimited = NofileOutcome {
            before: None,
            now: None,
            needed: fds_needed(4096),
        };
        assert_eq!(unlimited.warning(4096), None);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // The test process's own limit: raising the soft limit to the hard
        // one is what any process may do, and is idempotent.
        let outcome = raise_nofile(1);
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(outcome.now, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
