//! MPTCP in the lab: the hand-made path set-up that stands in for the
//! daemon's path manager (endpoints, limits, per-link policy routing), and
//! reading a namespace's TCP subflows back with `ss`.

use std::sync::atomic::Ordering;

use crate::plan::{self, Node};
use crate::ss::{parse_ss_tcp, TcpSocket};
use crate::Topology;

/// Subflow and ADD_ADDR limits set on both routers.
pub const MPTCP_LIMIT: u32 = 8;

impl Topology {
    /// LAB-SETUP: until the path manager lands.
    ///
    /// Does by hand what the daemon's path manager will do: on router A, an
    /// MPTCP `subflow` endpoint for every link but the first (IPv4 and
    /// IPv6), limits of 8, and source-based policy routing so that each
    /// subflow leaves by its own link (table 100+i holds link i's default
    /// route, selected by a rule `from <ra addr i>`); on router B, limits of
    /// 8. Calling it again does nothing.
    pub fn mptcp_setup_manual(&self) -> anyhow::Result<()> {
        if self.mptcp_manual.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let limits =
            format!("mptcp limits set subflows {MPTCP_LIMIT} add_addr_accepted {MPTCP_LIMIT}");
        let mut lines = vec![limits.clone()];
        for link in 1..self.link_count() {
            let ifname = plan::link_ifname(link);
            for v6 in [false, true] {
                lines.push(format!(
                    "mptcp endpoint add {} dev {ifname} subflow",
                    plan::ra_link_addr(link, v6)
                ));
            }
        }
        let rules = |v6| -> Vec<String> {
            (0..self.link_count())
                .map(|link| {
                    format!(
                        "rule add from {} table {}",
                        plan::ra_link_addr(link, v6),
                        plan::link_table(link)
                    )
                })
                .collect()
        };
        for link in 0..self.link_count() {
            lines.extend(policy_route_lines(link));
        }
        lines.extend(rules(false));
        let result = self
            .ip_batch(Node::RouterA, &lines)
            .and_then(|()| self.ip_batch_with(Node::RouterA, &["-6"], &rules(true)))
            .and_then(|()| self.ip_batch(Node::RouterB, &[limits]));
        if result.is_err() {
            self.mptcp_manual.store(false, Ordering::SeqCst);
        }
        result
    }

    /// The TCP sockets of `node` as `ss -tni` shows them, MPTCP subflows
    /// marked. A subflow the in-kernel path manager opened for an endpoint
    /// with `dev` shows that device in [`TcpSocket::bound_dev`].
    pub fn tcp_sockets(&self, node: Node) -> anyhow::Result<Vec<TcpSocket>> {
        let out = self.run(node, &["ss", "-tniH"])?;
        Ok(parse_ss_tcp(&out))
    }

    /// `ss -Mni` in `node`, verbatim. On Linux 6.18 its `subflows:N` counts
    /// the subflows *added* to a connection, not counting the first one:
    /// a connection over two links shows `subflows:1`.
    pub fn mptcp_ss(&self, node: Node) -> anyhow::Result<String> {
        self.run(node, &["ss", "-Mni"])
    }
}

/// Link `link`'s policy table on router A: its default routes (idempotent,
/// so `link_up` can restore them after the kernel dropped them).
pub(crate) fn policy_route_lines(link: usize) -> Vec<String> {
    [false, true]
        .map(|v6| {
            format!(
                "route replace default via {} dev {} table {}",
                plan::rb_link_addr(link, v6),
                plan::link_ifname(link),
                plan::link_table(link)
            )
        })
        .to_vec()
}
