//! MPTCP in the lab: reading a namespace's TCP sockets and MPTCP
//! connections back with `ss` (the daemons' path managers set the paths up).

use crate::plan::Node;
use crate::ss::{parse_ss_tcp, TcpSocket};
use crate::Topology;

impl Topology {
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
