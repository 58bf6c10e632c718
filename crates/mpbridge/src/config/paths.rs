//! Path management: `[[link]]`, `[probe]` and `[paths]` (links, probing,
//! routing tables and the multipath routes).

use std::net::IpAddr;

use ipnet::IpNet;

use super::bounded::{
    NexthopBase, Port, ProbeCount, ProbeInterval, RateMbit, RouteMetric, RouteTable, RulePriority,
    SubflowsAfter, TableBase,
};
use super::error::ConfigError;
use super::fields::{check_ifname, parse_cidr};
use super::raw::{section, RawPaths};
use super::settings::{
    DownAction, LinkConfig, PathSettings, ProbeConfig, Role, RouteSettings, SlowLinks, SubflowMode,
    SubflowWord,
};
use super::{
    ConfigFile, DEFAULT_DOWN_AFTER, DEFAULT_LOCAL_ROUTES, DEFAULT_NEXTHOP_BASE,
    DEFAULT_PROBE_INTERVAL_MS, DEFAULT_ROUTE_TABLE, DEFAULT_RULE_PRIORITY, DEFAULT_SLOW_LINKS,
    DEFAULT_SUBFLOWS_AFTER_MS, DEFAULT_TABLE_BASE, DEFAULT_UP_AFTER, LOCAL_TABLE, MAX_LINKS,
};

impl ConfigFile {
    /// `[[link]]`, `[probe]` and `[paths]`; `default_port` is the remote's
    /// TCP port, where probes go unless `probe.port` says otherwise; `role`
    /// chooses the default of `paths.routes`.
    pub(super) fn paths(&self, default_port: u16, role: Role) -> Result<PathSettings, ConfigError> {
        let mut links: Vec<LinkConfig> = Vec::new();
        let raw_links = self.raw.link.as_ref();
        if let Some(list) = raw_links {
            if list.get_ref().len() > MAX_LINKS {
                return Err(self.invalid(
                    list.get_ref()[MAX_LINKS].span(),
                    format!("link[{MAX_LINKS}]"),
                    format!("too many links (expected at most {MAX_LINKS}, the kernel's MPTCP subflow limit)"),
                ));
            }
        }
        for (i, entry) in raw_links.iter().flat_map(|l| l.get_ref()).enumerate() {
            let raw = entry.get_ref();
            let name = raw.interface.get_ref();
            let field = format!("link[{i}].interface");
            check_ifname(name).map_err(|p| self.invalid(raw.interface.span(), &field, p))?;
            if let Some(j) = links.iter().position(|l| &l.interface == name) {
                return Err(self.invalid(
                    raw.interface.span(),
                    field,
                    format!("\"{name}\" is already link[{j}] (expected each interface once)"),
                ));
            }
            let peers = match &raw.peer {
                None => Vec::new(),
                Some(v) => parse_peers(v.get_ref())
                    .map_err(|p| self.invalid(v.span(), format!("link[{i}].peer"), p))?,
            };
            let rate_mbit = match &raw.rate_mbit {
                None => None,
                Some(r) => Some(
                    self.bounded::<RateMbit>(Some(r), &format!("link[{i}].rate_mbit"), 0)?
                        .get(),
                ),
            };
            links.push(LinkConfig {
                interface: name.clone(),
                peers,
                backup: raw.backup.as_ref().is_some_and(|b| *b.get_ref()),
                rate_mbit,
            });
        }
        // Weights compare rates: a link without one has nothing to compare.
        if let Some(rated) = links.iter().position(|l| l.rate_mbit.is_some()) {
            if let Some(i) = links.iter().position(|l| l.rate_mbit.is_none()) {
                let entry = &raw_links.expect("links were read").get_ref()[i];
                return Err(self.invalid(
                    entry.span(),
                    format!("link[{i}].rate_mbit"),
                    format!(
                        "required because link[{rated}] sets one (expected a rate on every link, \
                         so the routes can weigh them, or on none for equal shares)"
                    ),
                ));
            }
        }

        let (probe, _) = section(&self.raw.probe);
        let down_action =
            self.choice(&probe.down_action, "probe.down_action", DownAction::Remove)?;
        let probe = ProbeConfig {
            enabled: probe.enabled.as_ref().is_none_or(|b| *b.get_ref()),
            interval: self
                .bounded::<ProbeInterval>(
                    probe.interval_ms.as_ref(),
                    "probe.interval_ms",
                    DEFAULT_PROBE_INTERVAL_MS,
                )?
                .duration(),
            down_after: self
                .bounded::<ProbeCount>(
                    probe.down_after.as_ref(),
                    "probe.down_after",
                    DEFAULT_DOWN_AFTER,
                )?
                .get(),
            up_after: self
                .bounded::<ProbeCount>(probe.up_after.as_ref(), "probe.up_after", DEFAULT_UP_AFTER)?
                .get(),
            port: self
                .bounded::<Port>(
                    probe.port.as_ref(),
                    "probe.port",
                    i64::from(default_port.max(1)),
                )?
                .get(),
            down_action,
            interface_counter: probe
                .interface_counter
                .as_ref()
                .is_none_or(|b| *b.get_ref()),
            close_subflows: probe.close_subflows.as_ref().is_none_or(|b| *b.get_ref()),
        };
        let (paths, _) = section(&self.raw.paths);
        let routes = self.routes(&paths, role)?;
        let subflows = self.subflows(&paths, role)?;
        let slow_links = self.slow_links(&paths, role)?;
        Ok(PathSettings {
            links,
            probe,
            table_base: self
                .bounded::<TableBase>(
                    paths.table_base.as_ref(),
                    "paths.table_base",
                    DEFAULT_TABLE_BASE,
                )?
                .get(),
            rule_priority: self
                .bounded::<RulePriority>(
                    paths.rule_priority.as_ref(),
                    "paths.rule_priority",
                    DEFAULT_RULE_PRIORITY,
                )?
                .get(),
            routes,
            subflows,
            slow_links,
        })
    }

    /// `paths.slow_links`: router A's (it sets the backup flags, which
    /// router B follows through MP_PRIO).
    fn slow_links(&self, raw: &RawPaths, role: Role) -> Result<SlowLinks, ConfigError> {
        let default = match role {
            Role::Local => DEFAULT_SLOW_LINKS,
            Role::Remote => SlowLinks::Use,
        };
        let chosen = self.choice(&raw.slow_links, "paths.slow_links", default)?;
        match (chosen, role) {
            (SlowLinks::Bench, Role::Remote) => {
                let span = raw.slow_links.as_ref().map_or(0..0, |w| w.span());
                Err(self.invalid(
                    span,
                    "paths.slow_links",
                    "\"bench\" is for router A (mpbridge local), which flags its links backup; \
                     router B follows those flags (expected \"use\" or no key)",
                ))
            }
            (chosen, _) => Ok(chosen),
        }
    }

    /// `paths.subflows` and `paths.subflows_after_ms`.
    fn subflows(&self, raw: &RawPaths, role: Role) -> Result<SubflowMode, ConfigError> {
        let word = self.choice(&raw.subflows, "paths.subflows", SubflowWord::Kernel)?;
        let after = self
            .bounded::<SubflowsAfter>(
                raw.subflows_after_ms.as_ref(),
                "paths.subflows_after_ms",
                DEFAULT_SUBFLOWS_AFTER_MS,
            )?
            .duration();
        match (word, role) {
            (SubflowWord::Kernel, _) => Ok(SubflowMode::Kernel),
            (SubflowWord::OnDemand, Role::Local) => Ok(SubflowMode::OnDemand { after }),
            (SubflowWord::OnDemand, Role::Remote) => {
                let span = raw.subflows.as_ref().map_or(0..0, |w| w.span());
                Err(self.invalid(
                    span,
                    "paths.subflows",
                    "\"on-demand\" is for router A (mpbridge local), which opens the subflows; \
                     router B accepts them as they come (expected \"kernel\" or no key)",
                ))
            }
        }
    }

    /// `paths.routes`, `route_table`, `route_metric` and `nexthop_base`.
    pub(super) fn routes(&self, raw: &RawPaths, role: Role) -> Result<RouteSettings, ConfigError> {
        let prefixes = match &raw.routes {
            None => match role {
                Role::Local => DEFAULT_LOCAL_ROUTES
                    .iter()
                    .map(|p| p.parse().expect("a valid default prefix"))
                    .collect(),
                Role::Remote => Vec::new(),
            },
            Some(v) => {
                parse_routes(v.get_ref()).map_err(|(field, p)| self.invalid(v.span(), field, p))?
            }
        };
        let table: u32 = self
            .bounded::<RouteTable>(
                raw.route_table.as_ref(),
                "paths.route_table",
                DEFAULT_ROUTE_TABLE,
            )?
            .get();
        if i64::from(table) == LOCAL_TABLE {
            let span = raw.route_table.as_ref().map_or(0..0, |t| t.span());
            return Err(self.invalid(
                span,
                "paths.route_table",
                "255 is the kernel's table of local addresses (expected e.g. 254, the main table)",
            ));
        }
        let metric = match &raw.route_metric {
            None => None,
            Some(m) => Some(
                self.bounded::<RouteMetric>(Some(m), "paths.route_metric", 0)?
                    .get(),
            ),
        };
        Ok(RouteSettings {
            prefixes,
            table,
            metric,
            nexthop_base: self
                .bounded::<NexthopBase>(
                    raw.nexthop_base.as_ref(),
                    "paths.nexthop_base",
                    DEFAULT_NEXTHOP_BASE,
                )?
                .get(),
        })
    }
}

/// `peer`: one address, or an array of at most one address per family.
pub(super) fn parse_peers(value: &toml::Value) -> Result<Vec<IpAddr>, String> {
    const EXPECTED: &str =
        "expected an address, e.g. \"10.20.0.2\", or one per family, e.g. [\"10.20.0.2\", \"fd00:20::2\"]";
    let items: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut peers: Vec<IpAddr> = Vec::new();
    for item in items {
        let Some(text) = item.as_str() else {
            return Err(format!("found {} ({EXPECTED})", item.type_str()));
        };
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address ({EXPECTED})"))?;
        let ip = ip.to_canonical();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(format!("\"{text}\" cannot be a next hop ({EXPECTED})"));
        }
        if peers.iter().any(|p| p.is_ipv4() == ip.is_ipv4()) {
            return Err(format!(
                "\"{text}\": two peers of one family (expected at most one IPv4 and one IPv6 address)"
            ));
        }
        peers.push(ip);
    }
    if peers.is_empty() {
        return Err(format!("is empty ({EXPECTED})"));
    }
    Ok(peers)
}

/// `paths.routes`: an array of prefixes, or "none". The error names the
/// field (`paths.routes[1]`) and the problem.
pub(super) fn parse_routes(value: &toml::Value) -> Result<Vec<IpNet>, (String, String)> {
    const EXPECTED: &str = "expected prefixes, e.g. [\"0.0.0.0/0\", \"::/0\"], or \"none\"";
    let field = "paths.routes";
    let items = match value {
        toml::Value::String(s) if s == "none" => return Ok(Vec::new()),
        toml::Value::Array(items) => items,
        toml::Value::String(s) => {
            return Err((field.into(), format!("\"{s}\" is not a list ({EXPECTED})")))
        }
        other => {
            return Err((
                field.into(),
                format!("found {} ({EXPECTED})", other.type_str()),
            ))
        }
    };
    if items.is_empty() {
        return Err((field.into(), format!("is empty ({EXPECTED})")));
    }
    let mut prefixes: Vec<IpNet> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(text) = item.as_str() else {
            return Err((at, format!("found {} ({EXPECTED})", item.type_str())));
        };
        let net = parse_cidr(text).map_err(|p| (at.clone(), p))?;
        let addr = net.addr();
        if addr.is_multicast() || (addr.is_loopback() && net.prefix_len() > 0) {
            return Err((
                at,
                format!("\"{text}\" cannot be routed to a peer ({EXPECTED})"),
            ));
        }
        if prefixes.contains(&net) {
            return Err((at, format!("\"{text}\" is listed twice")));
        }
        prefixes.push(net);
    }
    Ok(prefixes)
}
