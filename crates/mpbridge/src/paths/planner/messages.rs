//! What goes into the planner and what comes out of it: plain data, so
//! that any source (the path manager's own rtnetlink reads today, a shared
//! view of the host later, a test) can feed it.

use std::net::IpAddr;

use crate::config::DownAction;
use crate::paths::multipath::Member;
use crate::paths::probe::{LinkState, ProbeSettings};

/// One configured link as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub interface: String,
    /// Used only when no regular link is in service.
    pub backup: bool,
    /// The configured next hops, at most one per family.
    pub peers: Vec<IpAddr>,
    /// The link's own routing table (router A).
    pub table: u32,
    /// Its share of the multipath routes' flows.
    pub weight: u16,
}

/// How link health is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Not at all: links follow the kernel's link state only.
    Nothing,
    /// Router A: probes from each link's address of this family (IPv6 or
    /// not) to the remote's responder.
    Probes { v6: bool },
    /// Router B: the probe requests arriving on each link's interface.
    Arrivals,
}

/// What the planner is asked to do.
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    pub links: Vec<LinkSpec>,
    /// Router A: each link gets its routing table, `from ADDR` rules and
    /// MPTCP `subflow` endpoints. Router B gets none of them (see
    /// `PathManager::start`, `Role::Remote`).
    pub endpoints: bool,
    pub watch: Watch,
    pub probe: ProbeSettings,
    pub down_action: DownAction,
    /// Whether links' received-packet counters are read
    /// ([`super::Planner::wanting_received`]); `probe.interface_counter`.
    pub interface_counter: bool,
    /// Router B: close the subflows over a link whose interface fell
    /// silent while it carried a flow ([`Action::CloseSubflows`]);
    /// `probe.close_subflows`.
    pub close_subflows: bool,
    pub rule_priority: u32,
    /// Multipath routes are managed: plan the nexthop groups.
    pub multipath: bool,
}

/// What the kernel says about one link right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSnapshot {
    /// The interface's index; `None` while it does not exist.
    pub index: Option<u32>,
    /// Administratively up with carrier.
    pub up: bool,
    /// Its usable addresses.
    pub addrs: Vec<IpAddr>,
    /// Per family (IPv4, IPv6): the gateway its routes use, if any.
    pub gateways: [Option<IpAddr>; 2],
    /// How many times the interface went down ([`crate::host::HostView::downs`]):
    /// grown while it reads up as before, it went down and up between two
    /// looks, and the kernel dropped its routes meanwhile.
    pub downs: u32,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A fresh look at some links (index into the configured links, what
    /// the kernel says); links not listed are as last seen.
    Links(Vec<(usize, LinkSnapshot)>),
    /// An authenticated reply to link `link`'s probe `seq` (of the prober
    /// the latest [`Action::StartProbing`] of that link started).
    ProbeReply { link: usize, seq: u32 },
    /// Link `link`'s interface has received `packets` in all, and
    /// received and sent `bytes` (read when
    /// [`super::Planner::wanting_received`] named the link).
    Received {
        link: usize,
        packets: u64,
        bytes: u64,
    },
    /// Router B: a valid probe request arrived on interface `ifindex`.
    Arrival {
        ifindex: u32,
        session: u32,
        seq: u32,
        view: LinkState,
    },
    /// The executor could not carry out `action` (it has said why).
    Refused(Action),
}

/// What the executor must do. Every action is idempotent: an entry that
/// exists already, or one missing on delete, is success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open link `link`'s prober, sending from `source` out of its
    /// interface; replaces one open already.
    StartProbing { link: usize, source: IpAddr },
    /// Close link `link`'s prober.
    StopProbing { link: usize },
    /// Send probe `seq` on link `link`'s prober, carrying its verdict.
    SendProbe {
        link: usize,
        seq: u32,
        view: LinkState,
    },
    /// Replace the default route of family `v6` in the link's table.
    SetDefaultRoute {
        link: usize,
        table: u32,
        ifindex: u32,
        v6: bool,
        via: Option<IpAddr>,
    },
    /// `from ADDR lookup TABLE` at `priority`.
    AddRule {
        link: usize,
        addr: IpAddr,
        table: u32,
        priority: u32,
    },
    DeleteRule {
        link: usize,
        addr: IpAddr,
        table: u32,
        priority: u32,
    },
    /// An MPTCP endpoint for `addr` with `flags`. With `renew`, the one
    /// there is (kept, flagged backup, while its link was down) is removed
    /// first: the in-kernel path manager opens subflows only for an
    /// endpoint added, so a connection whose subflow on the link died
    /// meanwhile gets none otherwise. Subflows on demand have no endpoint
    /// to renew: they take it as a change of flags, and join where a
    /// subflow is missing.
    AddEndpoint {
        link: usize,
        addr: IpAddr,
        ifindex: Option<u32>,
        flags: u32,
        renew: bool,
    },
    SetEndpointFlags {
        link: usize,
        addr: IpAddr,
        flags: u32,
    },
    /// Remove the endpoint of `addr` and the initial subflows using it.
    DeleteEndpoint { link: usize, addr: IpAddr },
    /// The multipath groups' members, per family (IPv4, IPv6); an empty
    /// group is removed. Sent at every look, so what the kernel dropped on
    /// its own (a device's nexthops when it goes down) comes back.
    SetGroups { members: [Vec<Member>; 2] },
    /// Router B: close this host's MPTCP subflows that leave by interface
    /// `ifindex` (link `link`, silent or without carrier), each only where
    /// its connection has a subflow on another interface. The kernel then
    /// sends their unacknowledged data again over the others at once,
    /// instead of when router A's REMOVE_ADDR arrives over another link,
    /// or when the subflows' own retransmission timers run out.
    CloseSubflows { link: usize, ifindex: u32 },
}
