//! Carries out the planner's actions on the kernel, idempotently: an entry
//! that exists already is success, and so is one missing on delete. Also
//! turns the host's view of the links ([`HostView`]) into the planner's
//! snapshots, reading only what the view lacks (a link's gateway when no
//! peer is configured), and holds router A's prober sockets.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::mptcp::{Limits, Pm, FLAG_BACKUP};
use super::multipath::{self, Multipath};
use super::planner::{Action, LinkSnapshot, LinkSpec};
use super::probe::{ProbeKeys, ProbeSocket, ProbeTarget};
use super::route::{self, PROTOCOL};
use super::PathError;
use crate::host::rtnetlink::Rtnl;
use crate::host::view::{AddressScope, HostView, Link};

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
}

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
        }
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
            subflows: n.min(crate::config::MAX_LINKS as u32),
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
            } => {
                let ifname = name(link);
                let id = add_endpoint(&mut self.pm, addr, ifindex, flags, &ifname)?;
                self.endpoints.insert(addr, id);
                tracing::info!(link = %ifname, %addr, id, backup = flags & FLAG_BACKUP != 0, "MPTCP endpoint added");
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
