//! Carries out the planner's actions on the kernel, idempotently: an entry
//! that exists already is success, and so is one missing on delete. Also
//! turns the host's view of the links ([`HostView`]) into the planner's
//! snapshots, reading only what the view lacks (a link's gateway when no
//! peer is configured), and holds router A's prober sockets.
//!
//! With subflows on demand, endpoint actions do not reach the kernel's
//! endpoint list: they tell [`OnDemand`] which link addresses are in
//! service, and the executor carries out its joins and closes per
//! connection (userspace path manager), fed by the `mptcp_pm` events.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::mptcp::{Limits, Pm, PmEvent, FLAG_BACKUP};
use super::multipath::{self, Multipath};
use super::planner::{Action, LinkSnapshot, LinkSpec};
use super::probe::{ProbeKeys, ProbeSocket, ProbeTarget};
use super::route::{self, PROTOCOL};
use super::sockdiag::{Closer, SockDiag, CANNOT_CLOSE};
use super::subflows::{OnDemand, PmSysctl, SubflowAction};
use super::PathError;
use crate::config::SubflowMode;
use crate::host::netlink as nl;
use crate::host::rtnetlink::Rtnl;
use crate::host::view::{AddressScope, HostView, Link};
use crate::ratelimit::LogLimit;

/// The MPTCP `subflows` limit both routers set: the kernel's maximum
/// (`MPTCP_PM_ADDR_MAX`), not the number of links. The limit counts a
/// connection's joined subflows, and a subflow that died unseen still
/// counts until its end learns of it: on router B, the subflow of a link
/// whose router A end vanished (a station interface deleted, with the
/// RM_ADDR or reset meant for it) may count until B's next backed-off
/// retransmission over the returned link, seconds later. With the limit at
/// the number of links router B refused the join of the link's return
/// (`MPJoinRejected`), and the in-kernel path manager tries each endpoint
/// once per connection: the link carried nothing more for that connection
/// (`tests/flaps.rs`). The endpoints (one per link address) still bound how
/// many subflows a connection opens.
pub const SUBFLOWS_LIMIT: u32 = 8;
/// The kernel side of the path manager.
pub(super) struct Executor {
    pub(super) pm: Pm,
    pub(super) rt: Rtnl,
    /// The configured links' interfaces, by link index.
    names: Vec<String>,
    /// Per link and family (IPv4, IPv6): whether a peer is configured, so
    /// that the gateway need not be learned from the routes (a dump of
    /// every route at each look).
    peers: Vec<[bool; 2]>,
    /// The routes of non-bridged traffic; `None` with `routes = "none"`
    /// or on a kernel without nexthop objects.
    pub(super) multipath: Option<Multipath>,
    /// Per link: whether it carries the multipath routes now.
    pub(super) carries: Vec<bool>,
    /// Endpoints added: address → id.
    endpoints: BTreeMap<IpAddr, u8>,
    /// Router A's open probers, by link index.
    probes: Vec<Option<ProbeSocket>>,
    keys: Arc<ProbeKeys>,
    /// Where router A's probes go.
    probe_dest: Option<SocketAddr>,
    saved_limits: Limits,
    subflows: SubflowMode,
    /// The namespace's path-manager sysctl as found, put back on exit
    /// when the daemon changed it.
    pm_sysctl: Option<(PmSysctl, bool)>,
    /// Subflows on demand, once [`Executor::prepare`] has set them up.
    ondemand: Option<Subflows>,
    /// Router B: the listening ports whose subflows
    /// [`Action::CloseSubflows`] closes (empty: none), and the thread that
    /// closes them, once the kernel was found able to.
    close_ports: Vec<u16>,
    closer: Option<Closer>,
}

/// Subflows on demand: the decisions and the kernel's events.
struct Subflows {
    state: OnDemand,
    events: AsyncFd<nl::Socket>,
    /// The `mptcp_pm` family id events carry.
    family: u16,
}

/// Room for the path manager's events: a connection costs about 3 events
/// of ~100 bytes (their skbs count more), so 4 MiB holds some thousands of
/// connections' worth while the task is busy.
const EVENT_QUEUE: usize = 4 << 20;

static EVENTS_LOST: LogLimit = LogLimit::new(Duration::from_secs(10));
static SUBFLOW_FAILED: LogLimit = LogLimit::new(Duration::from_secs(10));

impl Executor {
    pub(super) fn new(
        pm: Pm,
        rt: Rtnl,
        links: &[LinkSpec],
        multipath: Option<Multipath>,
        keys: Arc<ProbeKeys>,
        probe_dest: Option<SocketAddr>,
        saved_limits: Limits,
    ) -> Executor {
        let n = links.len();
        let names = links.iter().map(|l| l.interface.clone()).collect();
        let peers = links
            .iter()
            .map(|l| [false, true].map(|v6| l.peers.iter().any(|p| p.is_ipv6() == v6)))
            .collect();
        Executor {
            pm,
            rt,
            names,
            peers,
            multipath,
            carries: vec![false; n],
            endpoints: BTreeMap::new(),
            probes: (0..n).map(|_| None).collect(),
            keys,
            probe_dest,
            saved_limits,
            subflows: SubflowMode::Kernel,
            pm_sysctl: None,
            ondemand: None,
            close_ports: Vec::new(),
            closer: None,
        }
    }

    /// Router B: whether its subflows over a failed link can be closed,
    /// said at start (the first failure is no time to learn it); if so,
    /// the thread that will close them.
    fn prepare_closing(&mut self) {
        if self.close_ports.is_empty() {
            return;
        }
        let able = SockDiag::open().and_then(|mut d| Ok((d.can_destroy()?, d)));
        match able {
            Ok((true, diag)) => match Closer::spawn(diag, self.close_ports.clone()) {
                Ok(closer) => {
                    self.closer = Some(closer);
                    tracing::info!(
                        "router B closes its MPTCP subflows over a link that fails \
                         (probe.close_subflows)"
                    );
                }
                Err(e) => tracing::warn!(
                    "cannot start closing subflows ({e}): router B leaves the subflows over a \
                     failed link to router A's REMOVE_ADDR"
                ),
            },
            Ok((false, _)) => tracing::warn!("{CANNOT_CLOSE}"),
            Err(e) => tracing::warn!(
                "cannot list this host's sockets ({e}): router B leaves the subflows over a \
                 failed link to router A's REMOVE_ADDR"
            ),
        }
    }

    /// Router B: the ports whose subflows [`Action::CloseSubflows`] closes.
    pub(super) fn with_close_ports(mut self, ports: &[u16]) -> Executor {
        self.close_ports = ports.to_vec();
        self
    }

    /// Who opens the subflows (before [`Executor::prepare`]; default kernel).
    pub(super) fn with_subflows(mut self, mode: SubflowMode) -> Executor {
        self.subflows = mode;
        self
    }

    /// Selects the namespace's path manager for the subflow mode, and with
    /// subflows on demand subscribes to its events. Says which mode runs.
    fn prepare_subflows(&mut self) -> Result<(), PathError> {
        let kernel = |what: &str, e: io::Error| PathError::Kernel(format!("{what}: {e}"));
        let after = match self.subflows {
            SubflowMode::OnDemand { after } => Some(after),
            SubflowMode::Kernel => None,
        };
        let sysctl = match PmSysctl::read() {
            Ok(s) => Some(s),
            // Before 5.19 there is only the in-kernel path manager.
            Err(e) if after.is_none() && e.kind() == io::ErrorKind::Unsupported => None,
            Err(e) => {
                return Err(PathError::Unavailable(format!(
                    "subflows on demand need the userspace path manager: {e}"
                )))
            }
        };
        if let Some(sysctl) = sysctl {
            let want = after.is_some();
            let changed = sysctl.is_userspace() != want;
            if changed {
                if !want {
                    tracing::warn!(
                        "{} (left by a killed daemon in on-demand mode, or set for mptcpd): \
                         switching to the in-kernel path manager, which paths.subflows = \
                         \"kernel\" needs; put back on exit",
                        sysctl.describe()
                    );
                }
                sysctl
                    .set(want)
                    .map_err(|e| kernel("cannot select the MPTCP path manager", e))?;
            }
            self.pm_sysctl = Some((sysctl, changed));
        }
        let Some(after) = after else {
            tracing::info!(
                "subflows: kernel (the in-kernel path manager opens one per link on every connection)"
            );
            return Ok(());
        };
        let events = self
            .pm
            .events(EVENT_QUEUE)
            .map_err(|e| kernel("cannot subscribe to the MPTCP path manager's events", e))?;
        let family = self.pm.family_id().unwrap_or_default();
        let events = events
            .into_async()
            .map_err(|e| kernel("cannot watch the MPTCP path manager's events", e))?;
        self.ondemand = Some(Subflows {
            state: OnDemand::new(after),
            events,
            family,
        });
        tracing::info!(
            after_ms = after.as_millis() as u64,
            "subflows: on demand (userspace path manager: a connection gets one per link once it \
             has lived subflows_after_ms, or at once when a failed link leaves it without one)"
        );
        Ok(())
    }

    /// Leftovers of an earlier run out, the limits in.
    pub(super) fn prepare(&mut self, view: &HostView) -> Result<(), PathError> {
        let kernel = |what: &str, e: io::Error| PathError::Kernel(format!("{what}: {e}"));
        // Nexthops first: a group takes the routes through it along.
        let nexthops = match self.rt.flush_nexthops(PROTOCOL) {
            Ok(n) => n,
            Err(e) if multipath::unsupported(&e) => 0,
            Err(e) => return Err(kernel("cannot remove leftover nexthops", e)),
        };
        let flushed = self
            .rt
            .flush_protocol(PROTOCOL)
            .map_err(|e| kernel("cannot remove leftover rules and routes", e))?;
        let mut leftovers = 0;
        let mut ifindexes = Vec::new();
        let mut addrs = Vec::new();
        for link in self.names.iter().filter_map(|name| view.link_named(name)) {
            ifindexes.push(link.index);
            addrs.extend(usable_addresses(view, link.index));
        }
        let endpoints = self
            .pm
            .endpoints()
            .map_err(|e| kernel("cannot list MPTCP endpoints", e))?;
        for ep in endpoints {
            let on_link = ep.ifindex.is_some_and(|i| ifindexes.contains(&i));
            if on_link || addrs.contains(&ep.addr) {
                self.pm
                    .delete(ep.id)
                    .map_err(|e| kernel(&format!("cannot remove leftover {ep}"), e))?;
                leftovers += 1;
            }
        }
        let flushed = flushed + nexthops;
        if flushed + leftovers > 0 {
            tracing::info!(
                rules_and_routes = flushed,
                endpoints = leftovers,
                "removed leftovers of an earlier run"
            );
        }
        let n = self.names.len() as u32;
        let limits = Limits {
            subflows: SUBFLOWS_LIMIT,
            add_addr_accepted: n.min(crate::config::MAX_LINKS as u32),
        };
        self.pm.set_limits(limits).map_err(|e| {
            kernel(
                &format!(
                    "cannot set MPTCP limits (subflows {}, add_addr_accepted {})",
                    limits.subflows, limits.add_addr_accepted
                ),
                e,
            )
        })?;
        self.prepare_subflows()?;
        self.prepare_closing();
        if let Some(m) = &self.multipath {
            match m.check(&mut self.rt) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "this kernel has no nexthop objects (Linux >= 5.3 has them): traffic \
                         that is not bridged is left to the system's routes"
                    );
                    self.multipath = None;
                }
                Err(e) => return Err(PathError::Kernel(e)),
            }
        }
        Ok(())
    }

    /// Link `link`'s interface's received-packet counter, and its bytes
    /// received and sent together; `None` when they cannot be read (no
    /// such interface).
    pub(super) fn received(&mut self, link: usize) -> Option<(u64, u64)> {
        let name = self.names.get(link)?;
        self.rt.link_traffic(name).ok().flatten()
    }

    /// What the host's view says about every configured link, with the
    /// gateway of each family where no peer is configured for it read
    /// from the main table (a dump of that family's routes: the view does
    /// not follow routes, and the planner needs them only then).
    pub(super) fn snapshot(&mut self, view: &HostView) -> Vec<(usize, LinkSnapshot)> {
        let mut out = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let snapshot = match view.link_named(name) {
                None => LinkSnapshot::default(),
                Some(&Link {
                    index,
                    up,
                    lower_up,
                    ..
                }) => {
                    let up = up && lower_up;
                    let addrs = usable_addresses(view, index);
                    let mut gateways = [None, None];
                    for v6 in [false, true] {
                        let configured = self.peers.get(i).is_some_and(|p| p[usize::from(v6)]);
                        if up && !configured && addrs.iter().any(|a| a.is_ipv6() == v6) {
                            gateways[usize::from(v6)] =
                                self.rt.gateway(index, v6, PROTOCOL).unwrap_or(None);
                        }
                    }
                    LinkSnapshot {
                        index: Some(index),
                        up,
                        addrs,
                        gateways,
                        downs: view.downs(index),
                    }
                }
            };
            out.push((i, snapshot));
        }
        out
    }

    /// Carries out one action; the error says what failed, for the log.
    pub(super) fn apply(&mut self, action: &Action) -> Result<(), String> {
        let names = &self.names;
        let name = |link: usize| names.get(link).cloned().unwrap_or_default();
        match *action {
            Action::StartProbing { link, source } => {
                let Some(dest) = self.probe_dest else {
                    return Ok(());
                };
                let target = ProbeTarget {
                    ifname: name(link),
                    source: Some(source),
                    dest,
                };
                let socket = ProbeSocket::open(target, Arc::clone(&self.keys))
                    .map_err(|e| format!("cannot probe: {e}"))?;
                self.probes[link] = Some(socket);
            }
            Action::StopProbing { link } => self.probes[link] = None,
            Action::SendProbe { link, seq, view } => {
                if let Some(p) = &self.probes[link] {
                    p.send(seq, view);
                }
            }
            Action::SetDefaultRoute {
                link,
                table,
                ifindex,
                v6,
                via,
            } => {
                self.rt
                    .replace_route(&route::default_route(table, ifindex, v6, via))
                    .map_err(|e| {
                        format!(
                            "cannot add the default route of table {table} ({}): {e}",
                            name(link)
                        )
                    })?;
            }
            Action::AddRule {
                link,
                addr,
                table,
                priority,
            } => {
                self.rt
                    .add_rule(&route::source_rule(addr, table, priority))
                    .map_err(|e| {
                        format!("cannot add the rule from {addr} ({}): {e}", name(link))
                    })?;
            }
            Action::DeleteRule {
                addr,
                table,
                priority,
                ..
            } => {
                self.rt
                    .delete_rule(&route::source_rule(addr, table, priority))
                    .map_err(|e| format!("cannot remove the rule from {addr}: {e}"))?;
            }
            Action::AddEndpoint {
                link,
                addr,
                ifindex,
                flags,
                ..
            } if self.ondemand.is_some() => {
                if let Some(od) = &mut self.ondemand {
                    let backup = flags & FLAG_BACKUP != 0;
                    od.state
                        .set_local(Instant::now(), addr, link, ifindex, backup);
                }
                tracing::info!(link = %name(link), %addr, backup = flags & FLAG_BACKUP != 0, "carries subflows on demand");
            }
            Action::SetEndpointFlags { link, addr, flags } if self.ondemand.is_some() => {
                if let Some(od) = &mut self.ondemand {
                    od.state
                        .set_backup(Instant::now(), addr, flags & FLAG_BACKUP != 0);
                }
                tracing::info!(link = %name(link), %addr, backup = flags & FLAG_BACKUP != 0, "subflows on demand changed");
            }
            Action::DeleteEndpoint { link, addr } if self.ondemand.is_some() => {
                if let Some(od) = &mut self.ondemand {
                    od.state.remove_local(Instant::now(), addr);
                }
                tracing::info!(link = %name(link), %addr, "carries no subflows");
            }
            Action::AddEndpoint {
                link,
                addr,
                ifindex,
                flags,
                renew,
            } => {
                let ifname = name(link);
                let old = if renew {
                    self.endpoints.remove(&addr)
                } else {
                    None
                };
                if let Some(old) = old {
                    self.pm.delete(old).or_else(ignore_missing).map_err(|e| {
                        format!("cannot renew MPTCP endpoint {addr} of {ifname}: {e}")
                    })?;
                }
                let id = add_endpoint(&mut self.pm, addr, ifindex, flags, &ifname)?;
                self.endpoints.insert(addr, id);
                match old {
                    Some(old) => {
                        tracing::info!(link = %ifname, %addr, id, old, "MPTCP endpoint renewed (its link returned)")
                    }
                    None => {
                        tracing::info!(link = %ifname, %addr, id, backup = flags & FLAG_BACKUP != 0, "MPTCP endpoint added")
                    }
                }
            }
            Action::SetEndpointFlags { link, addr, flags } => {
                self.pm.set_flags(addr, flags).map_err(|e| {
                    format!("cannot change MPTCP endpoint {addr} of {}: {e}", name(link))
                })?;
                tracing::info!(link = %name(link), %addr, backup = flags & FLAG_BACKUP != 0, "MPTCP endpoint changed");
            }
            Action::DeleteEndpoint { link, addr } => {
                if let Some(&id) = self.endpoints.get(&addr) {
                    self.pm.delete(id).or_else(ignore_missing).map_err(|e| {
                        format!("cannot remove MPTCP endpoint {addr} of {}: {e}", name(link))
                    })?;
                    self.endpoints.remove(&addr);
                }
                // The first subflow of a connection comes from no
                // endpoint; this closes it too where it uses `addr`.
                if let Err(e) = self.pm.delete_initial(addr) {
                    tracing::debug!(%addr, "no initial subflow closed: {e}");
                }
                tracing::info!(link = %name(link), %addr, "MPTCP endpoint removed");
            }
            Action::SetGroups { ref members } => {
                if let Some(m) = &mut self.multipath {
                    self.carries = m.apply(&mut self.rt, &self.names, members)?;
                }
            }
            Action::CloseSubflows { link, ifindex } => {
                // Listing every socket takes long on a router with many
                // connections: its own thread does it, and says how it went.
                if let Some(closer) = &self.closer {
                    closer.close(name(link), ifindex);
                }
            }
        }
        Ok(())
    }

    /// The next reply on any open prober: (link, sequence number).
    pub(super) fn poll_reply(&self, cx: &mut Context<'_>) -> Poll<(usize, u32)> {
        for (link, probe) in self.probes.iter().enumerate() {
            if let Some(p) = probe {
                if let Poll::Ready(seq) = p.poll_reply(cx) {
                    return Poll::Ready((link, seq));
                }
            }
        }
        Poll::Pending
    }

    /// The next batch of path-manager events, read from the kernel.
    pub(super) fn poll_events(&self, cx: &mut Context<'_>) -> Poll<Vec<PmEvent>> {
        let Some(od) = &self.ondemand else {
            return Poll::Pending;
        };
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let mut guard = match ready!(od.events.poll_read_ready(cx)) {
                Ok(g) => g,
                Err(_) => return Poll::Pending,
            };
            match guard.try_io(|fd| fd.get_ref().try_recv(&mut buf)) {
                Ok(Ok(())) => {
                    out.extend(
                        nl::messages(&buf)
                            .filter(|m| m.kind == od.family)
                            .filter_map(|m| PmEvent::parse(m.payload)),
                    );
                    // A bounded batch: the task looks at its other work too.
                    if out.len() >= 256 {
                        return Poll::Ready(out);
                    }
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    crate::warn_limited!(
                        EVENTS_LOST,
                        "the kernel dropped MPTCP path-manager events (queue full): connections \
                         opened meanwhile may get no extra subflows"
                    );
                }
                Ok(Err(e)) => {
                    crate::warn_limited!(EVENTS_LOST, "cannot read MPTCP path-manager events: {e}");
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        Poll::Ready(out)
                    };
                }
                // Would block: everything queued is read.
                Err(_) => {
                    if !out.is_empty() {
                        return Poll::Ready(out);
                    }
                }
            }
        }
    }

    /// Feeds events to the subflows on demand.
    pub(super) fn handle_events(&mut self, now: Instant, events: Vec<PmEvent>) {
        if let Some(od) = &mut self.ondemand {
            for e in events {
                od.state.handle_event(now, e);
            }
        }
    }

    /// When the subflows on demand want [`Executor::handle_subflow_timeout`].
    pub(super) fn subflow_timeout(&self) -> Option<Instant> {
        self.ondemand
            .as_ref()
            .and_then(|od| od.state.poll_timeout())
    }

    pub(super) fn handle_subflow_timeout(&mut self, now: Instant) {
        if let Some(od) = &mut self.ondemand {
            if od.state.poll_timeout().is_some_and(|t| t <= now) {
                od.state.handle_timeout(now);
            }
        }
    }

    /// Carries out the joins and closes the subflows on demand ask for.
    pub(super) fn drive_subflows(&mut self, now: Instant) {
        let Some(od) = &mut self.ondemand else {
            return;
        };
        while let Some(action) = od.state.poll_action() {
            let result = match action {
                SubflowAction::Create {
                    token,
                    local,
                    info,
                    remote,
                } => {
                    let flags = if info.backup { FLAG_BACKUP } else { 0 };
                    self.pm
                        .subflow_create(token, info.id, local, info.ifindex, flags, remote)
                }
                SubflowAction::Remove { token, id } => self.pm.remove_id(token, id),
                SubflowAction::Destroy {
                    token,
                    local,
                    remote,
                } => self.pm.subflow_destroy(token, local, remote),
                SubflowAction::SetBackup {
                    token,
                    local,
                    remote,
                    backup,
                } => self.pm.subflow_set_backup(token, local, remote, backup),
            };
            let Err(e) = result else {
                continue;
            };
            od.state.refused(now, &action);
            // EINVAL: the token is unknown (the connection closed meanwhile)
            // or not the userspace path manager's; ESRCH: the subflow to
            // close is gone. Neither is worth a line.
            match e.raw_os_error() {
                Some(libc::EINVAL) => {
                    if let SubflowAction::Create { token, .. } = action {
                        od.state.forget(token);
                    }
                    tracing::debug!(?action, "subflow action on a connection gone: {e}");
                    continue;
                }
                Some(libc::ESRCH) => continue,
                _ => {}
            }
            match action {
                // Before Linux 6.12 or so id 0 cannot be removed: the
                // subflow is still closed, the peer learns it later.
                SubflowAction::Remove { token, id } => {
                    tracing::debug!(token, id, "no RM_ADDR sent: {e}")
                }
                SubflowAction::Create { local, remote, .. } => crate::warn_limited!(
                    SUBFLOW_FAILED,
                    "cannot open a subflow from {local} to {remote}: {e}"
                ),
                SubflowAction::Destroy { local, remote, .. } => crate::warn_limited!(
                    SUBFLOW_FAILED,
                    "cannot close the subflow {local} → {remote}: {e}"
                ),
                SubflowAction::SetBackup { local, backup, .. } => crate::warn_limited!(
                    SUBFLOW_FAILED,
                    "cannot set backup={backup} on the subflows from {local}: {e}"
                ),
            }
        }
    }

    /// Removes every endpoint, rule, route and nexthop added; restores the
    /// limits and the hash policy.
    pub(super) fn cleanup(&mut self) {
        self.probes.iter_mut().for_each(|p| *p = None);
        for (addr, id) in std::mem::take(&mut self.endpoints) {
            if let Err(e) = self.pm.delete(id).or_else(ignore_missing) {
                tracing::warn!(%addr, "cannot remove MPTCP endpoint: {e}");
            }
        }
        if let Some(m) = &mut self.multipath {
            m.remove(&mut self.rt);
        }
        if let Err(e) = self.rt.flush_protocol(PROTOCOL) {
            tracing::warn!("cannot remove rules and routes: {e}");
        }
        if let Err(e) = self.pm.set_limits(self.saved_limits) {
            tracing::warn!("cannot restore the MPTCP limits: {e}");
        }
        self.ondemand = None;
        if let Some((sysctl, true)) = self.pm_sysctl.take() {
            match sysctl.restore() {
                Ok(()) => tracing::info!("MPTCP path manager put back: {}", sysctl.describe()),
                Err(e) => tracing::warn!("cannot put the MPTCP path manager back: {e}"),
            }
        }
        tracing::info!("paths removed");
    }
}

/// The addresses of interface `index` that can carry subflows: global
/// scope, not tentative, once each.
fn usable_addresses(view: &HostView, index: u32) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in view.addresses() {
        let usable = a.index == index && a.scope == AddressScope::Universe && !a.tentative;
        if usable && !out.contains(&a.addr) {
            out.push(a.addr);
        }
    }
    out
}

/// Adds an endpoint; one of someone else on the same address becomes ours
/// (deleted and added again with our flags).
fn add_endpoint(
    pm: &mut Pm,
    addr: IpAddr,
    ifindex: Option<u32>,
    flags: u32,
    name: &str,
) -> Result<u8, String> {
    match pm.add(addr, ifindex, flags) {
        Ok(id) => Ok(id),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let ep = pm
                .endpoints()
                .map_err(|e| format!("cannot list MPTCP endpoints: {e}"))?
                .into_iter()
                .find(|ep| ep.addr == addr)
                .ok_or_else(|| format!("MPTCP endpoint {addr} exists and does not"))?;
            pm.delete(ep.id)
                .or_else(ignore_missing)
                .map_err(|e| format!("cannot replace MPTCP endpoint {addr}: {e}"))?;
            pm.add(addr, ifindex, flags)
                .map_err(|e| format!("cannot add MPTCP endpoint {addr} for {name}: {e}"))
        }
        Err(e) => Err(format!(
            "cannot add MPTCP endpoint {addr} for {name}: the kernel refused ({e})"
        )),
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}
