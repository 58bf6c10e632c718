//! The path manager: turns the `[[link]]`s into kernel MPTCP endpoints,
//! limits and per-link policy routing, keeps them in step with the links'
//! state and addresses (rtnetlink), takes links out of service and back as
//! their probes say, and removes everything it added on exit.
//!
//! On both routers it also owns the multipath routes by which traffic that
//! is not bridged crosses between them, over the links in service.
//!
//! - [`mptcp`]: endpoints and limits (generic netlink `mptcp_pm`).
//! - [`route`]: links, addresses, rules and routes (rtnetlink).
//! - [`nexthop`]: nexthop objects and groups as rtnetlink messages.
//! - [`multipath`]: the routes of non-bridged traffic over a nexthop group.
//!
//! They speak netlink on the daemon's own socket ([`crate::netlink`]).
//! - [`probe`]: authenticated UDP probes, link RTT, loss and up/down state
//!   (router A from its probes' answers, router B from their arrival).
//!
//! Recognising our own state after a crash: rules, routes and nexthops
//! carry routing protocol [`route::PROTOCOL`]; endpoints cannot carry a
//! tag, so at start every endpoint on a configured link (by device or by
//! address) is taken to be ours and removed. Links handed to mpbridge are
//! mpbridge's.

pub mod mptcp;
pub mod multipath;
pub mod nexthop;
pub mod probe;
pub mod route;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{DownAction, LinkConfig, PathSettings};
use crate::ratelimit::LogLimit;
use mptcp::{Limits, Pm, FLAG_BACKUP, FLAG_SUBFLOW};
use multipath::{Hop, LinkRoutes, Multipath};
use probe::{LinkHealth, LinkState, ProbeKeys, ProbeSettings, ProbeTarget};
use route::Rt;

/// Which daemon runs the path manager.
#[derive(Debug, Clone)]
pub enum Side {
    /// Router A: `subflow` endpoints; probes go to these remotes.
    Local { remotes: Vec<SocketAddr> },
    /// Router B: MPTCP limits, the probe responder (whose requests tell
    /// each link's health) and the multipath routes; no endpoints and no
    /// policy routing (see `Manager::reconcile`).
    Remote,
}

/// Why the path manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// A netlink family is missing (no MPTCP, or an emulator without
    /// generic netlink).
    #[error("cannot manage paths: {0}")]
    Unavailable(String),
    /// The kernel refused a change.
    #[error("cannot manage paths: {0}")]
    Kernel(String),
}

/// Whether opening a netlink socket failed because the system refuses the
/// netlink family itself (EPROTONOSUPPORT). Linux kernels always have
/// generic netlink, so this means an emulator: qemu-user passes only
/// NETLINK_ROUTE through.
pub fn family_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPROTONOSUPPORT)
}

/// One link as the path manager sees it, for the status view.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    pub interface: String,
    pub backup: bool,
    /// The interface exists, is up and has carrier.
    pub kernel_up: bool,
    /// The probes' verdict (`Unknown` while probing is off).
    pub health: LinkState,
    /// Carries traffic: kernel up and not declared down by probes.
    pub in_service: bool,
    /// Carries the multipath routes of the traffic that is not bridged
    /// right now (member of a group that a configured prefix is routed over).
    pub carries_routes: bool,
    pub addrs: Vec<IpAddr>,
    pub rtt: Option<std::time::Duration>,
    pub loss_percent: f32,
    /// When `in_service` last changed.
    pub changed_at: Instant,
}

/// A running path manager. [`PathManager::stop`] removes what it added.
pub struct PathManager {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    status: SharedStatus,
}

/// Each link's status and, while it is probed, its probes' live health.
type SharedStatus = Arc<Mutex<Vec<(LinkStatus, Option<watch::Receiver<LinkHealth>>)>>>;

impl PathManager {
    /// Sets the links up (after removing leftovers of an earlier run) and
    /// starts following them. `None` when no link is configured: then the
    /// daemon leaves MPTCP endpoints and routing to the operator. `None`
    /// too, said in one warning, where the system refuses generic netlink
    /// (qemu-user): the daemon then serves without a path manager, as with
    /// no link. On error whatever was added is removed again.
    pub async fn start(
        settings: &PathSettings,
        side: Side,
        auth: &crate::config::Auth,
    ) -> Result<Option<PathManager>, PathError> {
        if settings.links.is_empty() {
            return Ok(None);
        }
        let mut pm = match Pm::connect() {
            Ok(pm) => pm,
            Err(e) if family_refused(&e) => {
                tracing::warn!(
                    "path manager unavailable: this system refuses generic netlink ({e}; an \
                     emulator such as qemu-user?), so the {} configured link(s) get no MPTCP \
                     endpoints, limits, policy routing or probes from mpbridge; set them up \
                     from outside (ip mptcp endpoint, ip rule) or run on a real kernel",
                    settings.links.len()
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(PathError::Unavailable(format!(
                    "no generic netlink socket: {e}"
                )))
            }
        };
        let rt = Rt::connect()
            .map_err(|e| PathError::Unavailable(format!("no rtnetlink socket: {e}")))?;
        let saved_limits = pm.limits().map_err(|e| {
            PathError::Unavailable(format!(
                "the kernel's MPTCP path manager (generic netlink family mptcp_pm) does not answer: {e}"
            ))
        })?;
        let status: SharedStatus = Arc::new(Mutex::new(Vec::new()));
        let routes = &settings.routes;
        let multipath = (!routes.prefixes.is_empty()).then(|| Multipath::new(routes.clone()));
        let rates: Vec<Option<u32>> = settings.links.iter().map(|l| l.rate_mbit).collect();
        let keys = Arc::new(ProbeKeys::from_auth(auth));
        let probe = &settings.probe;
        // Router B answers probes on every link; router A probes the first
        // remote out of each link.
        let (responder, probe_dest) = match (&side, probe.enabled) {
            (_, false) => (None, None),
            (Side::Remote, true) => {
                let ifnames: Vec<String> =
                    settings.links.iter().map(|l| l.interface.clone()).collect();
                let responder = probe::spawn_responder(&ifnames, probe.port, Arc::clone(&keys))
                    .map_err(|e| {
                        PathError::Kernel(format!(
                            "cannot answer probes on UDP port {}: {e}",
                            probe.port
                        ))
                    })?;
                (Some(responder), None)
            }
            (Side::Local { remotes }, true) => (
                None,
                remotes
                    .first()
                    .map(|r| SocketAddr::new(r.ip().to_canonical(), probe.port)),
            ),
        };
        // Subscribe before the first look, so no change falls in between.
        let (events_tx, events) = mpsc::unbounded_channel();
        let watch = watch_kernel(events_tx.clone())
            .map_err(|e| PathError::Unavailable(format!("cannot watch rtnetlink: {e}")))?;
        let mut mgr = Manager {
            pm,
            rt,
            local: matches!(side, Side::Local { .. }),
            keys,
            probe_dest,
            events: events_tx,
            responder,
            settings: settings.clone(),
            links: settings
                .links
                .iter()
                .zip(multipath::weights(&rates))
                .enumerate()
                .map(|(i, (cfg, weight))| {
                    Link::new(cfg.clone(), settings.table_base + i as u32, weight)
                })
                .collect(),
            multipath,
            saved_limits,
            status: Arc::clone(&status),
        };
        if let Err(e) = mgr.setup() {
            mgr.cleanup();
            watch.abort();
            return Err(e);
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(mgr.run(events, stop_rx, watch));
        Ok(Some(PathManager {
            stop: Some(stop_tx),
            task: Some(task),
            status,
        }))
    }

    /// A snapshot of every link's state, RTT and loss as of now.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.reader().status()
    }

    /// A handle that reads the links' status while the manager runs (for
    /// the control socket, which outlives no manager but is no part of it).
    pub fn reader(&self) -> StatusReader {
        StatusReader(Arc::clone(&self.status))
    }

    /// Stops following the links and removes every endpoint, rule and
    /// route added, and restores the MPTCP limits found at start.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Reads the links' status; see [`PathManager::reader`].
#[derive(Clone)]
pub struct StatusReader(SharedStatus);

impl StatusReader {
    /// A snapshot of every link's state, RTT and loss as of now.
    pub fn status(&self) -> Vec<LinkStatus> {
        let links = self.0.lock().unwrap_or_else(|p| p.into_inner());
        links
            .iter()
            .map(|(status, health)| {
                let mut status = status.clone();
                if let Some(h) = health {
                    let h = h.borrow();
                    status.rtt = h.rtt;
                    status.loss_percent = h.loss_percent;
                }
                status
            })
            .collect()
    }
}

static WATCH_FAILED: LogLimit = LogLimit::new(std::time::Duration::from_secs(10));

/// Forwards every link and address change of the namespace as a wake-up:
/// one per burst of notifications. When the kernel dropped some (ENOBUFS:
/// the socket's buffer overflowed) the wake-up is sent all the same, and
/// since a wake-up makes the manager read every link afresh, that is the
/// full resync.
fn watch_kernel(events: mpsc::UnboundedSender<Event>) -> io::Result<JoinHandle<()>> {
    let sock = route::monitor()?;
    // SAFETY: the socket owns its fd and closes it only when dropped; the
    // AsyncFd owns the socket, so the fd stays open and the same for the
    // AsyncFd's whole life. (Reads use MSG_DONTWAIT: no O_NONBLOCK needed.)
    let sock = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(tokio::spawn(async move {
        let mut buf = Vec::new();
        loop {
            let mut ready = match sock.readable().await {
                Ok(r) => r,
                Err(e) => {
                    crate::warn_limited!(WATCH_FAILED, "stopped watching links: {e}");
                    return;
                }
            };
            let mut woken = false;
            loop {
                match Notice::of(sock.get_ref().try_recv(&mut buf)) {
                    Notice::Changed => woken = true,
                    Notice::Dropped => {
                        tracing::debug!("link notifications were dropped: reading every link");
                        woken = true;
                    }
                    Notice::Drained => {
                        ready.clear_ready();
                        break;
                    }
                    Notice::Failed(e) => {
                        crate::warn_limited!(WATCH_FAILED, "stopped watching links: {e}");
                        return;
                    }
                }
            }
            if woken && events.send(Event::Kernel).is_err() {
                return;
            }
        }
    }))
}

/// What one read of the watch socket says.
#[derive(Debug)]
enum Notice {
    /// A notification: something changed.
    Changed,
    /// The kernel dropped notifications (ENOBUFS): anything may have
    /// changed. The socket goes on; the manager looks at every link.
    Dropped,
    /// Nothing more queued.
    Drained,
    /// The socket is unusable.
    Failed(io::Error),
}

impl Notice {
    fn of(read: io::Result<()>) -> Notice {
        match read {
            Ok(()) => Notice::Changed,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Notice::Dropped,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Notice::Drained,
            Err(e) => Notice::Failed(e),
        }
    }
}

enum Event {
    /// Something changed on some link: look again.
    Kernel,
    /// Probes' new verdict on link `link`, from its prober `generation`.
    Health {
        link: usize,
        generation: u64,
        state: LinkState,
    },
}

/// What a link's prober watches: router A probes from the link's address,
/// router B follows the requests arriving on its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Source(IpAddr),
    Interface(u32),
}

/// A link's running prober.
struct Probing {
    watched: Watched,
    prober: probe::Prober,
    forward: JoinHandle<()>,
}

impl Drop for Probing {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// What the manager installed for one link.
struct Link {
    cfg: LinkConfig,
    table: u32,
    ifindex: Option<u32>,
    kernel_up: bool,
    addrs: Vec<IpAddr>,
    health: LinkState,
    probing: Option<Probing>,
    generation: u64,
    /// Reconciled at least once (so "came up" means "came back").
    seen: bool,
    /// Came back up while probed: in service once a probe got through.
    await_probe: bool,
    in_service: bool,
    changed_at: Instant,
    /// Its share of the multipath routes' flows.
    weight: u16,
    carries_routes: bool,
    /// Address → (endpoint id, flags).
    endpoints: BTreeMap<IpAddr, (u8, u32)>,
    /// Source addresses with a rule, and the table the rule points at.
    rules: Vec<IpAddr>,
}

impl Link {
    fn new(cfg: LinkConfig, table: u32, weight: u16) -> Link {
        Link {
            cfg,
            table,
            ifindex: None,
            kernel_up: false,
            addrs: Vec::new(),
            health: LinkState::Unknown,
            probing: None,
            generation: 0,
            seen: false,
            await_probe: false,
            in_service: false,
            changed_at: Instant::now(),
            weight,
            carries_routes: false,
            endpoints: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    fn status(&self) -> LinkStatus {
        LinkStatus {
            interface: self.cfg.interface.clone(),
            backup: self.cfg.backup,
            kernel_up: self.kernel_up,
            health: self.health,
            in_service: self.in_service,
            carries_routes: self.carries_routes,
            addrs: self.addrs.clone(),
            rtt: None,
            loss_percent: 0.0,
            changed_at: self.changed_at,
        }
    }
}

static RECONCILE_FAILED: LogLimit = LogLimit::new(std::time::Duration::from_secs(10));

struct Manager {
    pm: Pm,
    rt: Rt,
    local: bool,
    keys: Arc<ProbeKeys>,
    /// Where router A's probes go; `None` on router B or with probing off.
    probe_dest: Option<SocketAddr>,
    /// For probers' verdicts.
    events: mpsc::UnboundedSender<Event>,
    /// Router B's probe responder, stopped with the manager.
    responder: Option<probe::Responder>,
    settings: PathSettings,
    links: Vec<Link>,
    /// The routes of non-bridged traffic; `None` with `routes = "none"`.
    multipath: Option<Multipath>,
    saved_limits: Limits,
    status: SharedStatus,
}

impl Manager {
    /// Leftovers out, limits in, every link set up.
    fn setup(&mut self) -> Result<(), PathError> {
        let kernel = |what: &str, e: io::Error| PathError::Kernel(format!("{what}: {e}"));
        // Nexthops first: a group takes the routes through it along.
        let nexthops = match self.rt.flush_nexthops() {
            Ok(n) => n,
            Err(e) if multipath::unsupported(&e) => 0,
            Err(e) => return Err(kernel("cannot remove leftover nexthops", e)),
        };
        let flushed = self
            .rt
            .flush_tagged()
            .map_err(|e| kernel("cannot remove leftover rules and routes", e))?;
        let mut leftovers = 0;
        let mut ifindexes = Vec::new();
        let mut addrs = Vec::new();
        for link in &self.links {
            if let Ok(Some(state)) = self.rt.link(&link.cfg.interface) {
                ifindexes.push(state.index);
                addrs.extend(state.addrs);
            }
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
        let n = self.links.len() as u32;
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
                        "this kernel has no nexthop objects (Linux >= 5.3 has them): traffic                          that is not bridged is left to the system's routes"
                    );
                    self.multipath = None;
                }
                Err(e) => return Err(PathError::Kernel(e)),
            }
        }
        for i in 0..self.links.len() {
            self.reconcile(i)
                .map_err(|e| PathError::Kernel(e.to_string()))?;
        }
        if let Some(m) = &mut self.multipath {
            m.set_hash_policy();
            for link in &self.links {
                for v6 in m.families() {
                    if !link.cfg.peers.iter().any(|p| p.is_ipv6() == v6) {
                        tracing::info!(
                            link = %link.cfg.interface,
                            "no {} peer configured: the routes' next hop on this link is the \
                             gateway of its routes, else the link itself (right on \
                             point-to-point links; set [[link]] peer otherwise)",
                            if v6 { "IPv6" } else { "IPv4" }
                        );
                    }
                }
            }
        }
        self.reconcile_routes()
            .map_err(|e| PathError::Kernel(e.to_string()))?;
        self.publish();
        for link in &self.links {
            tracing::info!(
                link = %link.cfg.interface,
                up = link.kernel_up,
                addrs = ?link.addrs,
                table = link.table,
                backup = link.cfg.backup,
                "path set up"
            );
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut stop: oneshot::Receiver<()>,
        watch: JoinHandle<()>,
    ) {
        loop {
            let event = tokio::select! {
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(e) => e,
                    None => break,
                },
            };
            let mut kernel = matches!(event, Event::Kernel);
            let mut changed = Vec::new();
            self.apply_event(event, &mut changed);
            // A burst of notifications (a link going down drops its routes
            // and addresses one by one) costs one look.
            while let Ok(event) = events.try_recv() {
                kernel |= matches!(event, Event::Kernel);
                self.apply_event(event, &mut changed);
            }
            let todo: Vec<usize> = if kernel {
                (0..self.links.len()).collect()
            } else {
                changed
            };
            for i in todo {
                if let Err(e) = self.reconcile(i) {
                    crate::warn_limited!(RECONCILE_FAILED, link = %self.links[i].cfg.interface, "{e}");
                }
            }
            if let Err(e) = self.reconcile_routes() {
                crate::warn_limited!(RECONCILE_FAILED, "{e}");
            }
            self.publish();
        }
        watch.abort();
        self.cleanup();
    }

    fn apply_event(&mut self, event: Event, changed: &mut Vec<usize>) {
        if let Event::Health {
            link,
            generation,
            state,
        } = event
        {
            let l = &mut self.links[link];
            if generation != l.generation || l.health == state {
                return; // a replaced prober's last word, or no news
            }
            tracing::info!(link = %l.cfg.interface, state = state.name(), "probes changed the link's state");
            l.health = state;
            if !changed.contains(&link) {
                changed.push(link);
            }
        }
    }

    fn publish(&self) {
        let snapshot = self
            .links
            .iter()
            .map(|l| (l.status(), l.probing.as_ref().map(|p| p.prober.health())))
            .collect();
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Starts, replaces or stops link `i`'s prober: one per link while it
    /// is up (router A: and has an address of the remote's family), fresh
    /// after the link came back up or changed what is watched.
    fn update_prober(&mut self, i: usize, came_up: bool) {
        let link = &mut self.links[i];
        let watched = match (self.probe_dest, &self.responder) {
            (Some(dest), _) => link
                .addrs
                .iter()
                .find(|a| a.is_ipv6() == dest.is_ipv6())
                .map(|a| Watched::Source(*a)),
            (None, Some(_)) => link.ifindex.map(Watched::Interface),
            (None, None) => return,
        }
        .filter(|_| link.kernel_up);
        let current = link.probing.as_ref().map(|p| p.watched);
        if current == watched && !came_up {
            return;
        }
        link.probing = None;
        link.health = LinkState::Unknown;
        link.generation += 1;
        let Some(watched) = watched else { return };
        let probe = &self.settings.probe;
        let settings = ProbeSettings {
            interval: probe.interval,
            down_after: probe.down_after,
            up_after: probe.up_after,
        };
        let spawned = match (watched, self.probe_dest, &self.responder) {
            (Watched::Source(source), Some(dest), _) => {
                let target = ProbeTarget {
                    ifname: link.cfg.interface.clone(),
                    source: Some(source),
                    dest,
                };
                probe::spawn_prober(target, Arc::clone(&self.keys), settings)
            }
            (Watched::Interface(index), _, Some(responder)) => {
                Ok(responder.follow(index, settings))
            }
            _ => return,
        };
        let prober = match spawned {
            Ok(p) => p,
            Err(e) => {
                crate::warn_limited!(RECONCILE_FAILED, link = %link.cfg.interface, "cannot probe: {e}");
                return;
            }
        };
        let mut health = prober.health();
        let events = self.events.clone();
        let generation = link.generation;
        let forward = tokio::spawn(async move {
            let mut last = LinkState::Unknown;
            while health.changed().await.is_ok() {
                let state = health.borrow_and_update().state;
                if state != last {
                    last = state;
                    let event = Event::Health {
                        link: i,
                        generation,
                        state,
                    };
                    if events.send(event).is_err() {
                        break;
                    }
                }
            }
        });
        link.probing = Some(Probing {
            watched,
            prober,
            forward,
        });
    }

    /// Brings link `i`'s endpoints, routes and rules in line with the
    /// kernel's view of the link and the probes' verdict.
    fn reconcile(&mut self, i: usize) -> Result<(), String> {
        let name = self.links[i].cfg.interface.clone();
        let state = self
            .rt
            .link(&name)
            .map_err(|e| format!("cannot read link {name}: {e}"))?;
        let (ifindex, kernel_up, addrs) = match state {
            Some(s) => (Some(s.index), s.up, s.addrs),
            None => (None, false, Vec::new()),
        };
        let link = &mut self.links[i];
        if kernel_up != link.kernel_up || addrs != link.addrs {
            tracing::info!(link = %name, up = kernel_up, addrs = ?addrs, "link changed");
        }
        let came_up = kernel_up && !link.kernel_up;
        link.ifindex = ifindex;
        link.kernel_up = kernel_up;
        link.addrs = addrs.clone();
        let came_back = came_up && link.seen;
        link.seen = true;
        self.update_prober(i, came_up);
        let link = &mut self.links[i];
        // A link that comes back is used once a probe has crossed it: its
        // far end may not pass packets yet (a veth peer drops them until
        // the kernel's link watch has run, up to a second later), and a
        // subflow SYN lost then waits a full second to be retransmitted.
        if came_back && link.probing.is_some() {
            link.await_probe = true;
        }
        if link.health == LinkState::Up || link.probing.is_none() {
            link.await_probe = false;
        }
        let probed_down = link.health == LinkState::Down || link.await_probe;
        let in_service = kernel_up && !probed_down;
        if in_service != link.in_service {
            link.in_service = in_service;
            link.changed_at = Instant::now();
        }

        // Router B: limits and the probe responder only. It answers every
        // subflow from the address router A dialled, so routing its replies
        // by source would send them all over one link, where the subflows
        // bound to the other links' devices never see them; and announcing
        // its other addresses (signal endpoints) only made router A open a
        // second subflow over a link it already uses (measured in the lab,
        // 3 links: 4 subflows instead of 3, one of them a duplicate).
        if !self.local {
            return Ok(());
        }

        // Routes and rules before endpoints, so the first SYN of a subflow
        // that a new endpoint starts already leaves by its own link.
        //
        // Routes: the link's table holds its default route per family in
        // use. The kernel drops them when the link goes down; put them back.
        let table = self.links[i].table;
        if let (true, Some(index)) = (kernel_up, ifindex) {
            for v6 in [false, true] {
                if !addrs.iter().any(|a| a.is_ipv6() == v6) {
                    continue;
                }
                let configured = self.links[i]
                    .cfg
                    .peers
                    .iter()
                    .find(|p| p.is_ipv6() == v6)
                    .copied();
                let via = match configured {
                    Some(p) => Some(p),
                    None => self.rt.gateway(index, v6).unwrap_or(None),
                };
                self.rt
                    .replace_route(route::default_route(table, index, v6, via))
                    .map_err(|e| {
                        format!("cannot add the default route of table {table} ({name}): {e}")
                    })?;
            }
        }

        // Rules: one per address, `from ADDR lookup TABLE`.
        let priority = self.settings.rule_priority;
        let old: Vec<IpAddr> = self.links[i].rules.clone();
        for addr in old.iter().filter(|a| !addrs.contains(a)) {
            self.rt
                .delete_rule(route::source_rule(*addr, table, priority))
                .map_err(|e| format!("cannot remove the rule from {addr}: {e}"))?;
        }
        for addr in addrs.iter().filter(|a| !old.contains(a)) {
            self.rt
                .add_rule(route::source_rule(*addr, table, priority))
                .map_err(|e| format!("cannot add the rule from {addr} ({name}): {e}"))?;
        }
        self.links[i].rules = addrs.clone();

        // Endpoints: what there should be, by address.
        let link = &self.links[i];
        let mut flags = FLAG_SUBFLOW;
        if link.cfg.backup {
            flags |= FLAG_BACKUP;
        }
        let mut want: BTreeMap<IpAddr, u32> = BTreeMap::new();
        if kernel_up {
            for addr in &addrs {
                match (probed_down, self.settings.probe.down_action) {
                    (false, _) => {
                        want.insert(*addr, flags);
                    }
                    (true, DownAction::Backup) => {
                        want.insert(*addr, flags | FLAG_BACKUP);
                    }
                    (true, DownAction::Remove) => {}
                }
            }
        }
        let have: Vec<(IpAddr, u8, u32)> = link
            .endpoints
            .iter()
            .map(|(a, (id, f))| (*a, *id, *f))
            .collect();
        for (addr, id, have_flags) in have {
            match want.get(&addr) {
                None => {
                    self.pm.delete(id).or_else(ignore_missing).map_err(|e| {
                        format!("cannot remove MPTCP endpoint {addr} of {name}: {e}")
                    })?;
                    if self.local {
                        // The first subflow of a connection comes from no
                        // endpoint; this closes it too where it uses `addr`.
                        if let Err(e) = self.pm.delete_initial(addr) {
                            tracing::debug!(%addr, "no initial subflow closed: {e}");
                        }
                    }
                    self.links[i].endpoints.remove(&addr);
                    tracing::info!(link = %name, %addr, "MPTCP endpoint removed");
                }
                Some(&f) if f != have_flags => {
                    self.pm.set_flags(addr, f).map_err(|e| {
                        format!("cannot change MPTCP endpoint {addr} of {name}: {e}")
                    })?;
                    self.links[i].endpoints.insert(addr, (id, f));
                    tracing::info!(link = %name, %addr, backup = f & FLAG_BACKUP != 0, "MPTCP endpoint changed");
                }
                Some(_) => {}
            }
        }
        for (addr, f) in want {
            if self.links[i].endpoints.contains_key(&addr) {
                continue;
            }
            let id = match self.pm.add(addr, ifindex, f) {
                Ok(id) => id,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    // Someone else's endpoint on our link: ours now.
                    let ep = self
                        .pm
                        .endpoints()
                        .map_err(|e| format!("cannot list MPTCP endpoints: {e}"))?
                        .into_iter()
                        .find(|ep| ep.addr == addr)
                        .ok_or_else(|| format!("MPTCP endpoint {addr} exists and does not"))?;
                    self.pm
                        .delete(ep.id)
                        .or_else(ignore_missing)
                        .map_err(|e| format!("cannot replace MPTCP endpoint {addr}: {e}"))?;
                    self.pm
                        .add(addr, ifindex, f)
                        .map_err(|e| format!("cannot add MPTCP endpoint {addr} for {name}: {e}"))?
                }
                Err(e) => {
                    return Err(format!(
                        "cannot add MPTCP endpoint {addr} for {name}: the kernel refused ({e})"
                    ))
                }
            };
            self.links[i].endpoints.insert(addr, (id, f));
            tracing::info!(link = %name, %addr, id, backup = f & FLAG_BACKUP != 0, "MPTCP endpoint added");
        }

        Ok(())
    }

    /// Brings the multipath routes in line with every link's state.
    fn reconcile_routes(&mut self) -> Result<(), String> {
        if self.multipath.is_none() {
            return Ok(());
        }
        let mut views = Vec::with_capacity(self.links.len());
        for i in 0..self.links.len() {
            let mut hops = [None, None];
            for v6 in [false, true] {
                hops[usize::from(v6)] = self.hop(i, v6);
            }
            let link = &self.links[i];
            views.push(LinkRoutes {
                name: link.cfg.interface.clone(),
                hops,
                in_service: link.in_service,
                backup: link.cfg.backup,
                weight: link.weight,
            });
        }
        let m = self.multipath.as_mut().expect("checked above");
        let carries = m.apply(&mut self.rt, &views)?;
        for (link, carries) in self.links.iter_mut().zip(carries) {
            link.carries_routes = carries;
        }
        Ok(())
    }

    /// Where link `i`'s nexthop of one family leads: its configured peer of
    /// that family, else a gateway learned from its routes, else the link
    /// itself; `None` while the link is down or has no such address.
    fn hop(&mut self, i: usize, v6: bool) -> Option<Hop> {
        let link = &self.links[i];
        let index = link.ifindex.filter(|_| link.kernel_up)?;
        if !link.addrs.iter().any(|a| a.is_ipv6() == v6) {
            return None;
        }
        let peer = link.cfg.peers.iter().find(|p| p.is_ipv6() == v6).copied();
        let gateway = match peer {
            Some(p) => Some(p),
            None => self.rt.gateway(index, v6).unwrap_or(None),
        };
        Some(Hop {
            ifindex: index,
            gateway,
        })
    }

    /// Removes every endpoint, rule, route and nexthop added; restores the
    /// limits and the hash policy.
    fn cleanup(&mut self) {
        for link in &mut self.links {
            link.probing = None;
            for (addr, (id, _)) in std::mem::take(&mut link.endpoints) {
                if let Err(e) = self.pm.delete(id).or_else(ignore_missing) {
                    tracing::warn!(%addr, "cannot remove MPTCP endpoint: {e}");
                }
            }
            link.rules.clear();
        }
        if let Some(m) = &mut self.multipath {
            m.remove(&mut self.rt);
        }
        if let Err(e) = self.rt.flush_tagged() {
            tracing::warn!("cannot remove rules and routes: {e}");
        }
        if let Err(e) = self.pm.set_limits(self.saved_limits) {
            tracing::warn!("cannot restore the MPTCP limits: {e}");
        }
        tracing::info!("paths removed");
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_netlink_family_counts_as_an_emulator() {
        let err = io::Error::from_raw_os_error;
        assert!(family_refused(&err(libc::EPROTONOSUPPORT)));
        assert!(!family_refused(&err(libc::EPERM)));
        assert!(!family_refused(&err(libc::ENOENT)));
    }

    #[test]
    fn dropped_notifications_wake_the_manager_and_are_no_error() {
        let err = |errno| Err(io::Error::from_raw_os_error(errno));
        assert!(matches!(Notice::of(Ok(())), Notice::Changed));
        assert!(matches!(Notice::of(err(libc::ENOBUFS)), Notice::Dropped));
        assert!(matches!(Notice::of(err(libc::EAGAIN)), Notice::Drained));
        assert!(matches!(Notice::of(err(libc::EBADF)), Notice::Failed(_)));
    }
}
