//! The routes of the traffic that is not bridged (UDP, ICMP, DNS, the
//! routers' own): per family a kernel nexthop per link in use and a
//! multipath group of them, the configured prefixes routed over the group,
//! and the per-flow (L4) multipath hash that spreads flows over its members.
//!
//! Which links are members: those in service (kernel up, not declared down
//! by probes), regular ones first and `backup` ones only when no regular
//! one is. When no link at all is in service the group holds every link
//! the kernel reports up: probes failing on every link at once more likely
//! mean the peer's daemon stopped than that every link died, and routes
//! over links that may work beat no route. A link the kernel takes down
//! leaves the group by itself: the kernel deletes nexthops of a device that
//! goes down or loses carrier (and a group with its last member, and the
//! routes through it), which the next look repairs.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;

use super::route::{self, PROTOCOL};
use crate::config::{RouteSettings, MAX_LINKS};
use crate::host::nexthop::{Nexthop, NexthopKind, MAX_WEIGHT};
use crate::host::rtnetlink::Rtnl;

/// Where a link's nexthop of one family leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub ifindex: u32,
    /// The peer's address, or `None` for destinations on the link itself.
    pub gateway: Option<IpAddr>,
}

/// One link as the routes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRoutes {
    pub name: String,
    /// Per family (IPv4, IPv6): where its nexthop leads, if the link is up
    /// in the kernel and has an address of that family.
    pub hops: [Option<Hop>; 2],
    /// Kernel up and not declared down by probes.
    pub in_service: bool,
    pub backup: bool,
    /// Its share of the flows, 1..=[`MAX_WEIGHT`].
    pub weight: u16,
}

/// One member of a multipath group: a link, where its nexthop leads and
/// its share of the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub link: usize,
    pub hop: Hop,
    pub weight: u16,
}

/// The members of one family's group, by link index: the first of these
/// that is not empty — regular links in service, backup links in service,
/// regular links up, backup links up.
pub fn members(links: &[LinkRoutes], v6: bool) -> Vec<usize> {
    let family = usize::from(v6);
    let tiers: [fn(&LinkRoutes) -> bool; 4] = [
        |l| l.in_service && !l.backup,
        |l| l.in_service && l.backup,
        |l| !l.backup,
        |l| l.backup,
    ];
    for tier in tiers {
        let chosen: Vec<usize> = (0..links.len())
            .filter(|&i| links[i].hops[family].is_some() && tier(&links[i]))
            .collect();
        if !chosen.is_empty() {
            return chosen;
        }
    }
    Vec::new()
}

/// Each link's weight from the configured rates: proportional, the fastest
/// link [`MAX_WEIGHT`], none below 1; equal without rates.
pub fn weights(rates: &[Option<u32>]) -> Vec<u16> {
    let fastest = rates.iter().flatten().copied().max().unwrap_or(0);
    rates
        .iter()
        .map(|r| match (r, fastest) {
            (Some(r), f) if f > 0 => {
                let w = (u64::from(*r) * u64::from(MAX_WEIGHT) + u64::from(f) / 2) / u64::from(f);
                w.clamp(1, u64::from(MAX_WEIGHT)) as u16
            }
            _ => 1,
        })
        .collect()
}

fn family_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The multipath routes as installed, kept in step with the links by
/// [`Multipath::apply`] and removed by [`Multipath::remove`].
#[derive(Debug)]
pub struct Multipath {
    settings: RouteSettings,
    /// Per family: the group's members (link index, weight) as installed.
    groups: [Vec<(usize, u16)>; 2],
    /// Prefixes whose route is in place.
    routed: BTreeSet<IpNet>,
    /// Prefix → the foreign route in its way, as last reported.
    conflicts: BTreeMap<IpNet, String>,
    /// Sysctls changed, with the values to restore.
    saved: Vec<(&'static str, String)>,
}

impl Multipath {
    pub fn new(settings: RouteSettings) -> Multipath {
        Multipath {
            settings,
            groups: [Vec::new(), Vec::new()],
            routed: BTreeSet::new(),
            conflicts: BTreeMap::new(),
            saved: Vec::new(),
        }
    }

    /// The families (IPv6 or not) of the prefixes routed.
    pub fn families(&self) -> Vec<bool> {
        let mut out: Vec<bool> = self
            .settings
            .prefixes
            .iter()
            .map(|p| p.addr().is_ipv6())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn link_id(&self, link: usize, v6: bool) -> u32 {
        self.settings.nexthop_base + 2 * link as u32 + u32::from(v6)
    }

    fn group_id(&self, v6: bool) -> u32 {
        self.settings.nexthop_base + 2 * MAX_LINKS as u32 + u32::from(v6)
    }

    fn ours(&self, id: u32) -> bool {
        let base = self.settings.nexthop_base;
        (base..base + RouteSettings::nexthop_ids()).contains(&id)
    }

    /// At start, after leftovers are gone: refuses if another owner holds
    /// a nexthop id of ours (replacing it would take it over). `Ok(false)`
    /// when the kernel has no nexthop objects (before Linux 5.3).
    pub fn check(&self, rt: &mut Rtnl) -> Result<bool, String> {
        let nexthops = match rt.nexthops() {
            Ok(n) => n,
            Err(e) if unsupported(&e) => return Ok(false),
            Err(e) => return Err(format!("cannot list nexthops: {e}")),
        };
        if let Some(nh) = nexthops.iter().find(|nh| self.ours(nh.id)) {
            return Err(format!(
                "nexthop id {} belongs to another owner (proto {}): set paths.nexthop_base to the \
                 first of {} free ids (now {})",
                nh.id,
                route::protocol_name(nh.protocol),
                RouteSettings::nexthop_ids(),
                self.settings.nexthop_base
            ));
        }
        Ok(true)
    }

    /// Sets both families' `fib_multipath_hash_policy` to 1 (addresses,
    /// ports and protocol), so that each flow keeps one link while many
    /// flows use all of them. These sysctls belong to the daemon's network
    /// namespace. The old values come back in [`Multipath::remove`].
    pub fn set_hash_policy(&mut self) {
        for (name, path) in HASH_POLICY {
            let old = match std::fs::read_to_string(path) {
                Ok(v) => v.trim().to_owned(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!("no {name} (no IPv6?)");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot read {name}: {e}; flows may all take one link");
                    continue;
                }
            };
            if old == "1" {
                continue;
            }
            match std::fs::write(path, "1") {
                Ok(()) => {
                    tracing::info!(
                        "{name}: {old} -> 1 (each flow hashed by addresses, ports and protocol \
                         onto one link); restored on exit"
                    );
                    self.saved.push((path, old));
                }
                Err(e) => {
                    tracing::warn!("cannot set {name} to 1: {e}; flows may all take one link")
                }
            }
        }
    }

    /// Brings nexthops, groups and routes in line with `groups` (per
    /// family, IPv4 then IPv6; `names` are the links' for the logs);
    /// returns, per link, whether it carries routes now. On error the next
    /// call starts again from what the kernel holds.
    pub fn apply(
        &mut self,
        rt: &mut Rtnl,
        names: &[String],
        groups: &[Vec<Member>; 2],
    ) -> Result<Vec<bool>, String> {
        let kernel = self.listed(rt)?;
        self.apply_listed(rt, names, groups, &kernel)
    }

    /// [`Multipath::apply`] from `kernel`, our nexthops as listed a moment
    /// ago by [`Multipath::listed`]; public so that a test can play a list
    /// read just before an interface went.
    #[doc(hidden)]
    pub fn apply_listed(
        &mut self,
        rt: &mut Rtnl,
        names: &[String],
        groups: &[Vec<Member>; 2],
        kernel: &BTreeMap<u32, Nexthop>,
    ) -> Result<Vec<bool>, String> {
        let mut carries = vec![false; names.len()];
        for v6 in [false, true] {
            let family = usize::from(v6);
            self.apply_family(rt, names, v6, &groups[family], kernel)?;
            if self.routed.iter().any(|p| p.addr().is_ipv6() == v6) {
                for &(i, _) in &self.groups[family] {
                    if let Some(c) = carries.get_mut(i) {
                        *c = true;
                    }
                }
            }
        }
        Ok(carries)
    }

    fn apply_family(
        &mut self,
        rt: &mut Rtnl,
        names: &[String],
        v6: bool,
        chosen: &[Member],
        kernel: &BTreeMap<u32, Nexthop>,
    ) -> Result<(), String> {
        let family = usize::from(v6);
        let group_id = self.group_id(v6);
        let prefixes: Vec<IpNet> = self
            .settings
            .prefixes
            .iter()
            .filter(|p| p.addr().is_ipv6() == v6)
            .copied()
            .collect();
        if prefixes.is_empty() {
            return Ok(());
        }
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        let mut fresh = None;
        let want = match self.install(rt, names, v6, chosen, kernel) {
            Ok(want) => want,
            // The kernel deletes a device's nexthops with the device (and
            // drops them from the group): a member listed a moment ago is
            // gone if its interface was deleted since, as a Wi-Fi station's
            // is on disassociation. Look again and leave out the members
            // the kernel removed in between, rather than wait for the next
            // round with a refused group.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
                let now = self.listed(rt)?;
                let gone = |m: &&Member| {
                    let id = self.link_id(m.link, v6);
                    kernel.contains_key(&id) && !now.contains_key(&id)
                };
                for m in chosen.iter().filter(gone) {
                    tracing::debug!(
                        link = %name(m.link),
                        "its {} nexthop went with its device: left out of the group",
                        family_name(v6)
                    );
                }
                let left: Vec<Member> = chosen.iter().filter(|m| !gone(m)).copied().collect();
                let want = self.install(rt, names, v6, &left, &now).map_err(|e| {
                    format!("cannot set the {} multipath group: {e}", family_name(v6))
                })?;
                fresh = Some(now);
                want
            }
            Err(e) => {
                return Err(format!(
                    "cannot set the {} multipath group: {e}",
                    family_name(v6)
                ))
            }
        };
        let kernel = fresh.as_ref().unwrap_or(kernel);
        let group_in_kernel = kernel.get(&group_id).map(|nh| &nh.kind);
        if group_in_kernel.is_none() {
            // Gone with its last member, and the routes through it too.
            self.routed.retain(|p| p.addr().is_ipv6() != v6);
        }
        if want.is_empty() && group_in_kernel.is_some() {
            rt.delete_nexthop(group_id)
                .map_err(|e| format!("cannot remove the {} group: {e}", family_name(v6)))?;
            self.routed.retain(|p| p.addr().is_ipv6() != v6);
        }
        let chosen: Vec<usize> = want.iter().map(|&(i, _)| i).collect();
        if want != self.groups[family] {
            let names: Vec<&str> = want.iter().map(|&(i, _)| name(i)).collect();
            if names.is_empty() {
                tracing::warn!(
                    "no link can carry {} traffic that is not bridged: its routes are gone",
                    family_name(v6)
                );
            } else {
                tracing::info!(
                    "{} traffic that is not bridged goes over {}",
                    family_name(v6),
                    names.join(", ")
                );
            }
            self.groups[family] = want;
        }
        // Nexthops of links that left: no longer in the group, so free.
        for (&id, nh) in kernel {
            let is_link = matches!(nh.kind, NexthopKind::Link { v6: f, .. } if f == v6);
            let member = chosen.iter().any(|&i| self.link_id(i, v6) == id);
            if is_link && !member {
                // Already gone with its device: as wanted.
                match rt.delete_nexthop(id) {
                    Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                        return Err(format!("cannot remove nexthop {id}: {e}"))
                    }
                    _ => {}
                }
            }
        }
        if chosen.is_empty() {
            return Ok(());
        }
        for prefix in prefixes {
            if !self.routed.contains(&prefix) {
                self.route(rt, prefix, group_id)?;
            }
        }
        Ok(())
    }

    /// The nexthops of the group's members, then the group naming them
    /// (unless `kernel` shows it so already); returns the members set,
    /// (link, weight). A link whose nexthop the kernel refuses (a peer off
    /// the link's subnet, say) is left out, not the whole family; the
    /// error is the group's refusal.
    fn install(
        &self,
        rt: &mut Rtnl,
        names: &[String],
        v6: bool,
        chosen: &[Member],
        kernel: &BTreeMap<u32, Nexthop>,
    ) -> io::Result<Vec<(usize, u16)>> {
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        // Members' nexthops first: a group names only nexthops that exist.
        let mut want = Vec::with_capacity(chosen.len());
        for m in chosen {
            let nh = Nexthop {
                id: self.link_id(m.link, v6),
                protocol: PROTOCOL,
                kind: NexthopKind::Link {
                    ifindex: m.hop.ifindex,
                    v6,
                    gateway: m.hop.gateway,
                },
            };
            if kernel.get(&nh.id) != Some(&nh) {
                if let Err(e) = rt.replace_nexthop(&nh) {
                    crate::warn_limited!(
                        NEXTHOP_REFUSED,
                        link = %name(m.link),
                        "cannot add its {} nexthop ({}): {e}; the link carries no routes",
                        family_name(v6),
                        m.hop.gateway.map_or_else(|| "on-link".to_owned(), |g| format!("via {g}"))
                    );
                    continue;
                }
            }
            want.push((m.link, m.weight));
        }
        if want.is_empty() {
            return Ok(want);
        }
        let group_id = self.group_id(v6);
        let members = want
            .iter()
            .map(|&(i, w)| (self.link_id(i, v6), w))
            .collect();
        let group = NexthopKind::Group(members);
        if kernel.get(&group_id).map(|nh| &nh.kind) != Some(&group) {
            rt.replace_nexthop(&Nexthop {
                id: group_id,
                protocol: PROTOCOL,
                kind: group,
            })?;
        }
        Ok(want)
    }

    /// Our nexthops in the kernel, by id.
    pub fn listed(&self, rt: &mut Rtnl) -> Result<BTreeMap<u32, Nexthop>, String> {
        Ok(rt
            .nexthops()
            .map_err(|e| format!("cannot list nexthops: {e}"))?
            .into_iter()
            .filter(|nh| nh.protocol == PROTOCOL && self.ours(nh.id))
            .map(|nh| (nh.id, nh))
            .collect())
    }

    /// Routes `prefix` over group `group`, unless a route of another owner
    /// is in the way: that one is reported (once) and left alone.
    fn route(&mut self, rt: &mut Rtnl, prefix: IpNet, group: u32) -> Result<(), String> {
        let table = self.settings.table;
        let metric = self.settings.metric;
        let foreign: Vec<route::RouteEntry> = route::routes_to(rt, prefix, table)
            .map_err(|e| format!("cannot list the routes to {prefix}: {e}"))?
            .into_iter()
            .filter(|r| r.protocol != PROTOCOL && metric.is_none_or(|m| m == r.metric))
            .collect();
        if let Some(r) = foreign.first() {
            let text = format!(
                "{} (proto {}, metric {})",
                r.summary,
                route::protocol_name(r.protocol),
                r.metric
            );
            if self.conflicts.get(&prefix) != Some(&text) {
                tracing::warn!(
                    "route {prefix} in table {table} is not mpbridge's: {text}; left alone, so \
                     traffic to {prefix} does not follow the links' health (remove it, or set \
                     paths.routes or paths.route_metric)"
                );
                self.conflicts.insert(prefix, text);
            }
            return Ok(());
        }
        if self.conflicts.remove(&prefix).is_some() {
            tracing::info!("the route in the way of {prefix} is gone");
        }
        let msg = route::multipath_route(prefix, table, metric, group);
        // EEXIST with no foreign route found: ours already.
        rt.add_route(&msg)
            .map_err(|e| format!("cannot add the route to {prefix} in table {table}: {e}"))?;
        tracing::info!(%prefix, table, "routed over the links in service");
        self.routed.insert(prefix);
        Ok(())
    }

    /// Removes the routes, groups and nexthops added and restores the
    /// hash policy; errors are logged.
    pub fn remove(&mut self, rt: &mut Rtnl) {
        for prefix in std::mem::take(&mut self.routed) {
            let group = self.group_id(prefix.addr().is_ipv6());
            let msg =
                route::multipath_route(prefix, self.settings.table, self.settings.metric, group);
            if let Err(e) = rt.delete_route(&msg) {
                tracing::warn!(%prefix, "cannot remove the route: {e}");
            }
        }
        if let Err(e) = rt.flush_nexthops(PROTOCOL) {
            if !unsupported(&e) {
                tracing::warn!("cannot remove nexthops: {e}");
            }
        }
        self.groups = [Vec::new(), Vec::new()];
        for (path, old) in std::mem::take(&mut self.saved) {
            if let Err(e) = std::fs::write(path, &old) {
                tracing::warn!("cannot restore {path} to {old}: {e}");
            }
        }
    }
}

static NEXTHOP_REFUSED: crate::ratelimit::LogLimit =
    crate::ratelimit::LogLimit::new(std::time::Duration::from_secs(10));

/// The per-family hash policy sysctls, by name and file.
const HASH_POLICY: [(&str, &str); 2] = [
    (
        "net.ipv4.fib_multipath_hash_policy",
        "/proc/sys/net/ipv4/fib_multipath_hash_policy",
    ),
    (
        "net.ipv6.fib_multipath_hash_policy",
        "/proc/sys/net/ipv6/fib_multipath_hash_policy",
    ),
];

/// The kernel has no nexthop objects.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::EPROTONOSUPPORT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(in_service: bool, backup: bool, up: bool) -> LinkRoutes {
        let hop = up.then_some(Hop {
            ifindex: 20,
            gateway: None,
        });
        LinkRoutes {
            name: "wan".into(),
            hops: [hop, hop],
            in_service,
            backup,
            weight: 1,
        }
    }

    #[test]
    fn the_links_in_service_are_the_members() {
        let links = [
            link(true, false, true),
            link(false, false, true),
            link(true, false, true),
        ];
        assert_eq!(members(&links, false), vec![0, 2]);
        assert_eq!(members(&links, true), vec![0, 2]);
    }

    #[test]
    fn backup_links_take_over_only_when_no_regular_link_is_in_service() {
        let mut links = [
            link(true, false, true),
            link(true, false, true),
            link(true, true, true),
        ];
        assert_eq!(members(&links, false), vec![0, 1]);
        links[0].in_service = false;
        assert_eq!(members(&links, false), vec![1]);
        links[1].in_service = false;
        assert_eq!(members(&links, false), vec![2]);
        // The backup link fails too: every regular link the kernel has up.
        links[2].in_service = false;
        assert_eq!(members(&links, false), vec![0, 1]);
        // Regular links gone from the kernel: the backup, then nothing.
        links[0].hops = [None, None];
        links[1].hops = [None, None];
        assert_eq!(members(&links, false), vec![2]);
        links[2].hops = [None, None];
        assert!(members(&links, false).is_empty());
    }

    #[test]
    fn a_link_without_an_address_of_a_family_is_no_member_of_its_group() {
        let mut links = [link(true, false, true), link(true, false, true)];
        links[1].hops[1] = None;
        assert_eq!(members(&links, false), vec![0, 1]);
        assert_eq!(members(&links, true), vec![0]);
    }

    #[test]
    fn weights_follow_the_rates_or_are_equal() {
        assert_eq!(weights(&[None, None, None]), vec![1, 1, 1]);
        assert_eq!(
            weights(&[Some(100), Some(50), Some(20)]),
            vec![256, 128, 51]
        );
        assert_eq!(weights(&[Some(1_000_000), Some(1)]), vec![256, 1]);
        assert_eq!(weights(&[Some(40), Some(40)]), vec![256, 256]);
    }

    fn settings(base: u32) -> RouteSettings {
        RouteSettings {
            prefixes: vec!["0.0.0.0/0".parse().unwrap()],
            table: 254,
            metric: None,
            nexthop_base: base,
        }
    }

    #[test]
    fn nexthop_ids_stay_within_their_range() {
        let m = Multipath::new(settings(7700));
        let mut ids = BTreeSet::new();
        for link in 0..MAX_LINKS {
            for v6 in [false, true] {
                assert!(ids.insert(m.link_id(link, v6)));
            }
        }
        for v6 in [false, true] {
            assert!(ids.insert(m.group_id(v6)));
        }
        assert_eq!(ids.len() as u32, RouteSettings::nexthop_ids());
        assert!(ids.iter().all(|&id| m.ours(id)));
        assert!(!m.ours(7699) && !m.ours(7700 + RouteSettings::nexthop_ids()));
    }
}
