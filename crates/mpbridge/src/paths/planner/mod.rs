//! The path manager's decisions as a state machine with the clock passed
//! in: which links are in service, which endpoints, rules, routes and
//! nexthop group members there should be, and when to probe. No sockets,
//! no netlink and no clock reads: the task that owns it feeds it what the
//! kernel and the probes say ([`Planner::handle`], [`Planner::handle_timeout`])
//! and carries out what it asks ([`Planner::poll_action`]) by the time
//! [`Planner::poll_timeout`] says.
//!
//! The planner assumes every action succeeds; the executor reports one
//! that did not ([`Input::Refused`]), and the planner forgets what it had
//! assumed, so the next look at the links tries again.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::mptcp::{FLAG_BACKUP, FLAG_SUBFLOW};
use super::multipath::{self, Hop, LinkRoutes, Member};
use super::probe::{Arrivals, LinkHealth, LinkState, Monitor};
use super::LinkStatus;
use crate::config::DownAction;

mod messages;
#[cfg(test)]
mod tests;

pub use messages::{Action, Input, LinkSnapshot, LinkSpec, PlannerConfig, Watch};

/// How long a link's endpoints stay out after they were removed, however
/// soon it returns. Removing an endpoint that carries subflows makes the
/// kernel tell the peer (RM_ADDR with the endpoint's id, or id 0 if the
/// connection's initial subflow came from its address), and the peer acts
/// on it later, from its path manager's work queue. An endpoint added
/// again at once starts its joins under the same id 0 (the kernel takes a
/// re-created endpoint of the initial subflow's address as that subflow's,
/// `mpc_endpoint_id`): the late RM_ADDR then closes the new subflow at the
/// peer, or the peer, still counting the old one, refuses the join at its
/// `subflows` limit. Either way the in-kernel path manager never tries that
/// endpoint again for the connection (tests/flaps.rs: 3 runs in 50 under
/// load left the download running through the flaps off the link;
/// scripts/repro/mptcp-endpoint-readd.sh, Linux 6.18 at load 8-14: 3
/// rounds in 30 lost back to back, 2 in 30 with 20 ms between removal and
/// add, none with 200 ms). Counted from the planner's decision: the
/// executor may carry the removal out later (100 ms seen at load 10, and a
/// 200 ms hold then lost the link in 1 run of 40), hence 300 ms, which
/// still lets tests/paths.rs see an address removed and added again
/// followed within its 500 ms. The kernel also hands a freed id to the
/// next endpoint added, whatever its address, so the hold covers all of
/// the link's endpoints. (A renewal, `down_action = "backup"`, still
/// removes and adds at once.)
pub const READD_AFTER: Duration = Duration::from_millis(300);

/// After every link fell silent at once, how long a link still silent
/// is kept once another answered again ([`Planner::verdict`]).
const AFTER_SILENCE_EVERYWHERE: Duration = Duration::from_millis(500);

/// A hold-up of the daemon gives what was queued behind it an interval
/// more at most this often ([`Planner::woke`]), and router B forgives a
/// hold-up of router A's prober no more often, unless it is longer than
/// those forgiven meanwhile ([`Planner::peer_held_up`]).
const HOLD_UP_GRACE_EVERY: Duration = Duration::from_secs(1);

/// A link's health source while it is watched.
#[derive(Debug)]
enum Health {
    Probes { source: IpAddr, monitor: Monitor },
    Arrivals { ifindex: u32, arrivals: Arrivals },
}

impl Health {
    fn state(&self) -> LinkState {
        match self {
            Health::Probes { monitor, .. } => monitor.state(),
            Health::Arrivals { arrivals, .. } => arrivals.state(),
        }
    }

    fn health(&self) -> LinkHealth {
        match self {
            Health::Probes { monitor, .. } => monitor.health(),
            Health::Arrivals { arrivals, .. } => arrivals.health(),
        }
    }

    fn poll_timeout(&self) -> Instant {
        match self {
            Health::Probes { monitor, .. } => monitor.poll_timeout(),
            Health::Arrivals { arrivals, .. } => arrivals.poll_timeout(),
        }
    }

    /// When a reading of the interface's counter would name the link
    /// ([`Monitor::counter_due`]).
    fn counter_due(&self) -> Option<Instant> {
        match self {
            Health::Probes { monitor, .. } => monitor.counter_due(),
            Health::Arrivals { arrivals, .. } => arrivals.counter_due(),
        }
    }

    fn counter_turn(&mut self, now: Instant) {
        match self {
            Health::Probes { monitor, .. } => monitor.counter_turn(now),
            Health::Arrivals { arrivals, .. } => arrivals.counter_turn(now),
        }
    }

    fn silent_since(&self) -> Option<Instant> {
        match self {
            Health::Probes { monitor, .. } => monitor.silent_since(),
            Health::Arrivals { arrivals, .. } => arrivals.silent_since(),
        }
    }

    fn heard(&self) -> Option<Instant> {
        match self {
            Health::Probes { monitor, .. } => monitor.heard(),
            Health::Arrivals { arrivals, .. } => arrivals.heard(),
        }
    }

    /// How much later than another link's this one's news of the same
    /// moment may come: router A's probes are timed by their sending, so
    /// none; router B's requests by their arrival ([`Arrivals::skew`]).
    fn skew(&self) -> Duration {
        match self {
            Health::Probes { .. } => Duration::ZERO,
            Health::Arrivals { arrivals, .. } => arrivals.skew(),
        }
    }

    fn held_up(&mut self, late: Duration, grace: Duration, now: Instant) {
        match self {
            Health::Probes { monitor, .. } => monitor.held_up(late, grace, now),
            Health::Arrivals { arrivals, .. } => arrivals.held_up(late, grace, now),
        }
    }

    fn wants_received(&self, now: Instant) -> bool {
        match self {
            Health::Probes { monitor, .. } => monitor.wants_received(now),
            Health::Arrivals { arrivals, .. } => arrivals.wants_received(now),
        }
    }

    /// Takes in the interface's counter; returns the standstill that names
    /// the link silent, and what went missing meanwhile (for the log).
    fn handle_received(
        &mut self,
        packets: u64,
        bytes: u64,
        now: Instant,
    ) -> (Duration, &'static str) {
        match self {
            Health::Probes { monitor, .. } => {
                monitor.handle_received(packets, now);
                monitor.handle_bytes(bytes, now);
                (monitor.silence(), "its probes went unanswered")
            }
            Health::Arrivals { arrivals, .. } => {
                arrivals.handle_received(packets, now);
                arrivals.handle_bytes(bytes, now);
                (arrivals.silence(), "router A's probes stopped coming")
            }
        }
    }
}

/// What the planner knows and has planned for one link.
#[derive(Debug)]
struct Link {
    spec: LinkSpec,
    kernel: LinkSnapshot,
    watched: Option<Health>,
    /// The verdict acted on (`Unknown` while not watched).
    health: LinkState,
    /// Looked at least once (so "came up" means "came back").
    seen: bool,
    /// Came back up while watched: in service once a probe got through.
    await_probe: bool,
    /// Its probes are lost, but so are every other link's: kept as it was
    /// (logged once).
    held: bool,
    /// Held while every other link was down too: once another answers,
    /// confirmed down if still silent [`AFTER_SILENCE_EVERYWHERE`] later
    /// (`confirm_at`).
    everywhere: bool,
    confirm_at: Option<Instant>,
    in_service: bool,
    changed_at: Instant,
    /// Address → flags of the endpoints planned (0: unknown, to be set).
    endpoints: BTreeMap<IpAddr, u32>,
    /// Its endpoints are kept, flagged backup, while it is out of service
    /// (`down_action = "backup"`): renewed when it returns.
    kept_down: bool,
    /// Addresses with a rule planned.
    rules: Vec<IpAddr>,
    /// Kept as a backup by the slow-links policy ([`Planner::set_benched`]).
    benched: bool,
    /// When an endpoint of the link was last removed.
    removed_at: Option<Instant>,
    /// Router B: its subflows were closed in this outage.
    closed: bool,
    /// Endpoints held back until then ([`READD_AFTER`]).
    readd_at: Option<Instant>,
}

/// The path manager's decisions; see the module doc.
#[derive(Debug)]
pub struct Planner {
    config: PlannerConfig,
    links: Vec<Link>,
    actions: VecDeque<Action>,
    /// When the daemon last ran again after a hold-up ([`Planner::woke`]).
    held_up_at: Option<Instant>,
    /// Router B: when a hold-up of router A's prober was last forgiven
    /// after [`HOLD_UP_GRACE_EVERY`] without one, and the longest forgiven
    /// since.
    peer_forgiven: Option<(Instant, Duration)>,
}

impl Planner {
    pub fn new(config: PlannerConfig, now: Instant) -> Planner {
        let links = config
            .links
            .iter()
            .map(|spec| Link {
                spec: spec.clone(),
                kernel: LinkSnapshot::default(),
                watched: None,
                health: LinkState::Unknown,
                seen: false,
                await_probe: false,
                held: false,
                everywhere: false,
                confirm_at: None,
                in_service: false,
                changed_at: now,
                endpoints: BTreeMap::new(),
                kept_down: false,
                rules: Vec::new(),
                benched: false,
                removed_at: None,
                closed: false,
                readd_at: None,
            })
            .collect();
        Planner {
            config,
            links,
            actions: VecDeque::new(),
            held_up_at: None,
            peer_forgiven: None,
        }
    }

    /// The task that drives the planner woke at `now`: call it first, before
    /// anything else that happened is handed in. A turn later than the
    /// probes' clocks asked for by more than a probe interval means the
    /// daemon, or its whole host, was held up meanwhile, and that time counts
    /// in no probe's window ([`Monitor::held_up`], [`Arrivals::held_up`]):
    /// nothing could watch it. (A daemon late at every turn stretches the
    /// windows, and still names a black hole.)
    pub fn woke(&mut self, now: Instant) {
        let due = self
            .links
            .iter()
            .filter_map(|l| l.watched.as_ref().map(Health::poll_timeout))
            .min();
        let Some(late) = due.map(|due| now.saturating_duration_since(due)) else {
            return;
        };
        let interval = self.config.probe.interval;
        if late <= interval {
            return;
        }
        // What was queued behind the hold-up (replies, requests, and on a
        // held-up host the packets its links held) gets an interval more
        // to come in, as the first lost probe's window would otherwise end
        // at this very turn; not again soon, so that a daemon late at every
        // turn still sees time pass.
        let recent = self
            .held_up_at
            .is_some_and(|at| now < at + HOLD_UP_GRACE_EVERY);
        let grace = if recent { Duration::ZERO } else { interval };
        self.held_up_at = Some(now);
        for health in self.links.iter_mut().filter_map(|l| l.watched.as_mut()) {
            health.held_up(late, grace, now);
        }
        self.log_hold_up("", late);
    }

    /// A hold-up of `who` (this daemon: "") for `late`; at info when long
    /// enough to have named a link.
    fn log_hold_up(&self, who: &str, late: Duration) {
        let ms = late.as_millis();
        if late >= self.config.probe.interval * self.config.probe.down_after {
            tracing::info!("{who}held up for {ms} ms: not counted in the probes' windows");
        } else {
            tracing::debug!("{who}held up for {ms} ms: not counted in the probes' windows");
        }
    }

    /// Router B: link `from`'s request says router A's prober was held up
    /// for `late` ([`Arrivals::handle_request`]), so the other links'
    /// requests are as late ([`Arrivals::peer_held_up`]). Not again within
    /// [`HOLD_UP_GRACE_EVERY`], so that a prober late at every turn still
    /// has a black hole named (each forgiving starts the links' missed
    /// intervals afresh), unless this hold-up is longer than every one
    /// forgiven meanwhile: under TCG router A's prober is held up 40–55 ms
    /// about once a second, and a longer one soon after, not forgiven,
    /// took the 60 ms link down (a lab VM run, 2026-12-07). A prober late
    /// ever longer sends ever more rarely, so that too ends.
    fn peer_held_up(&mut self, from: usize, late: Duration, now: Instant) {
        match &mut self.peer_forgiven {
            Some((since, longest)) if now < *since + HOLD_UP_GRACE_EVERY => {
                if late <= *longest {
                    return;
                }
                *longest = late;
            }
            forgiven => *forgiven = Some((now, late)),
        }
        for (j, link) in self.links.iter_mut().enumerate() {
            if let (true, Some(Health::Arrivals { arrivals, .. })) = (j != from, &mut link.watched)
            {
                arrivals.peer_held_up(late, now);
            }
        }
        self.log_hold_up("router A ", late);
    }

    /// Takes in what happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Links(snapshots) => {
                for (i, snapshot) in snapshots {
                    if i < self.links.len() {
                        self.observe(i, snapshot, now);
                    }
                }
                self.plan_groups();
            }
            Input::ProbeReply { link, seq } => {
                if let Some(Health::Probes { monitor, .. }) =
                    self.links.get_mut(link).and_then(|l| l.watched.as_mut())
                {
                    monitor.handle_reply(seq, now);
                    // This link's verdict only: whether the answer confirms
                    // another link's silence is judged at the next timer,
                    // once every reply queued meanwhile was taken in (after
                    // a stall of a daemon, the replies of all links come at
                    // once, and the first must not condemn the others).
                    if self.verdict(link, now) {
                        self.plan_groups();
                    }
                }
            }
            Input::Received {
                link,
                packets,
                bytes,
            } => {
                let Some(watched) = self.links.get_mut(link).and_then(|l| l.watched.as_mut())
                else {
                    return;
                };
                let was = watched.state();
                let (silence, what) = watched.handle_received(packets, bytes, now);
                if was != LinkState::Down && watched.state() == LinkState::Down {
                    let ms = silence.as_millis();
                    let name = &self.config.links[link].interface;
                    tracing::info!(link = %name, "its interface received nothing for {ms} ms while {what}");
                }
                if self.verdict(link, now) {
                    self.plan_groups();
                } else {
                    self.close_subflows(link);
                }
            }
            Input::Arrival {
                ifindex,
                session,
                seq,
                view,
            } => {
                let followed = self.links.iter().position(|l| {
                    matches!(l.watched, Some(Health::Arrivals { ifindex: i, .. }) if i == ifindex)
                });
                if let Some(link) = followed {
                    let mut peer_late = None;
                    if let Some(Health::Arrivals { arrivals, .. }) = &mut self.links[link].watched {
                        peer_late = arrivals.handle_request(now, session, seq, view);
                    }
                    if let Some(late) = peer_late {
                        self.peer_held_up(link, late, now);
                    }
                    if self.verdict(link, now) {
                        self.plan_groups();
                    }
                }
            }
            Input::Refused(action) => self.refused(action, now),
        }
    }

    /// The probed links whose interface's received-packet counter the
    /// next [`Planner::handle_timeout`] wants ([`Input::Received`]): those
    /// with probes unanswered, once a probe interval (a counter that
    /// stands still names a black hole), and those whose probes are being
    /// lost, at every turn (a link that still delivers does not go down
    /// for lost probes).
    pub fn wanting_received(&self, now: Instant) -> Vec<usize> {
        if !self.config.interface_counter {
            return Vec::new();
        }
        (0..self.links.len())
            .filter(|&i| {
                self.links[i]
                    .watched
                    .as_ref()
                    .is_some_and(|h| h.wants_received(now))
            })
            .collect()
    }

    /// Runs the probes' clocks: sends what is due, counts what is late.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            if let Some(health) = &mut link.watched {
                health.counter_turn(now);
            }
            match &mut link.watched {
                Some(Health::Probes { monitor, .. }) if monitor.poll_timeout() <= now => {
                    if let Some(seq) = monitor.handle_timeout(now) {
                        let view = monitor.state();
                        self.actions
                            .push_back(Action::SendProbe { link: i, seq, view });
                    }
                }
                Some(Health::Arrivals { arrivals, .. }) if arrivals.poll_timeout() <= now => {
                    arrivals.handle_timeout(now);
                }
                _ => {}
            }
        }
        for i in 0..self.links.len() {
            if self.links[i].readd_at.is_some_and(|t| t <= now) {
                self.plan_link(i, now);
            }
        }
        if self.verdicts(now) {
            self.plan_groups();
        }
    }

    /// Every link's verdict taken in; true if one changed.
    fn verdicts(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for i in 0..self.links.len() {
            changed |= self.verdict(i, now);
        }
        changed
    }

    /// The configured links, by index.
    pub fn links(&self) -> &[LinkSpec] {
        &self.config.links
    }

    /// The executor carried out the removal of one of link `link`'s
    /// endpoints at `now`. Under load (or under TCG, where a delete by id
    /// blocked in the kernel for up to 2 s) that is long after it was
    /// planned, and the hold before the link's endpoints come back
    /// ([`READD_AFTER`]) must count from the removal the peer was told of,
    /// not from the decision: counted from the decision, endpoints came back
    /// 20 ms after their removal in the Wi-Fi lab, and the links so re-added
    /// carried nothing more for their connections.
    pub fn endpoint_removed(&mut self, link: usize, now: Instant) {
        if let Some(l) = self.links.get_mut(link) {
            l.removed_at = l.removed_at.max(Some(now));
            if let Some(t) = &mut l.readd_at {
                *t = (*t).max(now + READD_AFTER);
            }
        }
    }

    /// Link `link`'s endpoints flagged backup (or not) by the slow-links
    /// policy ([`crate::paths::policy`]), whatever its configured flag.
    ///
    /// Benching also renews them ([`Planner::renew_endpoints`]): the flag
    /// alone stops new data, but what the scheduler already gave the
    /// link's subflows still has to cross it, and behind a slow lossy link
    /// that held the flow up for seconds (the lab's VM, 20 Mbit/s beside
    /// 5 Mbit/s at 60 ms with 5 % loss: link 1 still carried 0.5 Mbit/s
    /// and the flow stalled again and again for 15 s after the bench).
    /// Closing those subflows has the kernel send their data again over
    /// the others; the endpoints return as backups after the hold.
    pub fn set_benched(&mut self, link: usize, benched: bool, now: Instant) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        let newly = benched && !l.benched;
        l.benched = benched;
        self.plan_link(link, now);
        if newly {
            self.renew_endpoints(link, now);
        }
    }

    /// Each link as [`super::regain`] needs it: since when it has been in
    /// service with its endpoints in place, and their addresses.
    pub fn regain_links(&self) -> Vec<super::regain::LinkLook> {
        self.links
            .iter()
            .map(|l| {
                let placed = l.in_service && l.readd_at.is_none() && !l.endpoints.is_empty();
                let back = l.removed_at.map(|t| t + READD_AFTER);
                super::regain::LinkLook {
                    since: placed.then(|| l.changed_at.max(back.unwrap_or(l.changed_at))),
                    addrs: l.endpoints.keys().copied().collect(),
                }
            })
            .collect()
    }

    /// Removes link `link`'s endpoints and adds them again after
    /// [`READD_AFTER`]: the in-kernel path manager then opens a subflow on
    /// the link for every connection, those that lost theirs included
    /// ([`super::regain`]). Nothing while the link has none in place.
    pub fn renew_endpoints(&mut self, link: usize, now: Instant) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        if !self.config.endpoints || l.endpoints.is_empty() || l.readd_at.is_some() {
            return;
        }
        for &addr in l.endpoints.keys() {
            self.actions
                .push_back(Action::DeleteEndpoint { link, addr });
        }
        l.endpoints.clear();
        l.removed_at = Some(now);
        self.plan_link(link, now);
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Planner::handle_timeout`] must run next (after the counters
    /// [`Planner::wanting_received`] names then are read: a standstill may
    /// reach its bound before any probe is due); `None` while no link is
    /// watched and no endpoint held back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .iter()
            .flat_map(|l| {
                let watched = l.watched.as_ref();
                [
                    watched.map(Health::poll_timeout),
                    watched.and_then(Health::counter_due),
                    l.readd_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Every link's state for the status view (`carries_routes` is the
    /// executor's to tell).
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links
            .iter()
            .map(|l| {
                let health = l.watched.as_ref().map(Health::health);
                LinkStatus {
                    interface: l.spec.interface.clone(),
                    backup: l.spec.backup || l.benched,
                    kernel_up: l.kernel.up,
                    health: l.health,
                    in_service: l.in_service,
                    carries_routes: false,
                    addrs: l.kernel.addrs.clone(),
                    rtt: health.as_ref().and_then(|h| h.rtt),
                    loss_percent: health.map_or(0.0, |h| h.loss_percent),
                    changed_at: l.changed_at,
                }
            })
            .collect()
    }

    /// A fresh look at link `i`.
    fn observe(&mut self, i: usize, snapshot: LinkSnapshot, now: Instant) {
        let link = &mut self.links[i];
        // Down and up again since the last look (or deleted and made
        // again): it reads as before, but the kernel dropped its routes and
        // nexthops meanwhile, and its far end may not pass packets yet. It
        // comes back as from any down.
        let flapped = link.seen
            && snapshot.up
            && link.kernel.up
            && (snapshot.downs != link.kernel.downs || snapshot.index != link.kernel.index);
        if flapped {
            tracing::info!(link = %link.spec.interface, addrs = ?snapshot.addrs, "link went down and came back between two looks");
        } else if snapshot.up != link.kernel.up || snapshot.addrs != link.kernel.addrs {
            tracing::info!(link = %link.spec.interface, up = snapshot.up, addrs = ?snapshot.addrs, "link changed");
        }
        let came_up = snapshot.up && (!link.kernel.up || flapped);
        let came_back = came_up && link.seen;
        link.seen = true;
        link.kernel = snapshot;
        self.update_watch(i, came_up, now);
        let link = &mut self.links[i];
        // A link that comes back is used once a probe has crossed it: its
        // far end may not pass packets yet (a veth peer drops them until
        // the kernel's link watch has run, up to a second later), and a
        // subflow SYN lost then waits a full second to be retransmitted.
        if came_back && link.watched.is_some() {
            link.await_probe = true;
        }
        self.plan_link(i, now);
    }

    /// Starts, restarts or stops watching link `i`: watched while it is up
    /// (router A: and has an address of the remote's family), afresh after
    /// it came back up or what is watched changed.
    fn update_watch(&mut self, i: usize, came_up: bool, now: Instant) {
        let link = &mut self.links[i];
        let kernel = &link.kernel;
        let want = match self.config.watch {
            Watch::Nothing => None,
            Watch::Probes { v6 } => kernel
                .addrs
                .iter()
                .find(|a| a.is_ipv6() == v6)
                .map(|a| Watched::Source(*a)),
            Watch::Arrivals => kernel.index.map(Watched::Interface),
        }
        .filter(|_| kernel.up);
        let current = link.watched.as_ref().map(|h| match h {
            Health::Probes { source, .. } => Watched::Source(*source),
            Health::Arrivals { ifindex, .. } => Watched::Interface(*ifindex),
        });
        if current == want && !came_up {
            return;
        }
        let was_probing = matches!(link.watched, Some(Health::Probes { .. }));
        link.watched = None;
        link.health = LinkState::Unknown;
        let settings = self.config.probe;
        match want {
            Some(Watched::Source(source)) => {
                link.watched = Some(Health::Probes {
                    source,
                    monitor: Monitor::new(settings, now),
                });
                self.actions
                    .push_back(Action::StartProbing { link: i, source });
            }
            Some(Watched::Interface(ifindex)) => {
                link.watched = Some(Health::Arrivals {
                    ifindex,
                    arrivals: Arrivals::new(settings, now),
                });
            }
            None if was_probing => self.actions.push_back(Action::StopProbing { link: i }),
            None => {}
        }
    }

    /// Router B: link `i`'s subflows closed, once per outage, when it is
    /// out of service and its interface fell silent
    /// ([`Arrivals::fell_silent`]) or lost its carrier (nothing it sends
    /// leaves; router A learns of it from its own end).
    fn close_subflows(&mut self, i: usize) {
        let link = &mut self.links[i];
        let silent = matches!(&link.watched,
            Some(Health::Arrivals { arrivals, .. }) if arrivals.fell_silent());
        let lost = silent || (link.seen && !link.kernel.up);
        if !self.config.close_subflows || link.in_service || link.closed || !lost {
            return;
        }
        // Out of service by this silence, confirmed (`verdict`): a link
        // held because every link fell silent at once is still in service.
        if let Some(ifindex) = link.kernel.index {
            link.closed = true;
            self.actions
                .push_back(Action::CloseSubflows { link: i, ifindex });
        }
    }

    /// Takes in link `i`'s probes' verdict; true if it changed (and the
    /// link was planned anew).
    ///
    /// A link whose probes are lost is taken down only once another link
    /// has been heard from after its silence began: probes lost on every
    /// link at once come from the two daemons (one held up by a busy CPU,
    /// the peer gone), not from a link, and with no link answering there
    /// is nowhere to move the traffic to. On a busy machine both daemons
    /// missing a few 20 ms probes at once took every link down and back.
    /// After such a silence everywhere, the first answer (the shortest
    /// link's) does not condemn the others at once: a longer link's comes
    /// its delay later, so a link still silent is taken down only
    /// [`AFTER_SILENCE_EVERYWHERE`] after another answered. Router B
    /// starting before router A took the 60 ms link down and up again so
    /// in every lab run. And router B, which times requests by their
    /// arrival, takes only a request that came later than this link's
    /// silence began by more than its requests may be late
    /// ([`Arrivals::skew`]) as another link heard: a longer link still
    /// brings requests sent before the silence.
    fn verdict(&mut self, i: usize, now: Instant) -> bool {
        let others = || {
            self.links
                .iter()
                .enumerate()
                .filter(move |&(j, _)| j != i)
                .filter_map(|(_, l)| l.watched.as_ref())
        };
        let others_heard = others().filter_map(Health::heard).max();
        let others_down = others().all(|h| h.state() == LinkState::Down);
        let link = &mut self.links[i];
        let Some(health) = link.watched.as_ref() else {
            return false;
        };
        let mut state = health.state();
        // Held until another link is heard after this one fell silent, or
        // this one answers again (its prober then still needs `up_after`
        // answers to call it up: no reason to take it down meanwhile).
        let heard_after = |since: Instant| others_heard.is_some_and(|heard| heard > since);
        let (held, waits) = match (state, health.silent_since()) {
            (LinkState::Down, Some(since)) if !heard_after(since) => (true, true),
            (LinkState::Down, Some(_)) if link.held && link.everywhere => {
                let until = *link
                    .confirm_at
                    .get_or_insert(now + AFTER_SILENCE_EVERYWHERE);
                (true, now < until)
            }
            // Router B: heard after, but maybe only what a longer link
            // brought late.
            (LinkState::Down, Some(since)) => (
                false,
                others_heard.is_none_or(|h| h < since + health.skew()),
            ),
            (LinkState::Down, None) => (link.held, link.held),
            _ => (false, false),
        };
        if waits && link.health != LinkState::Down {
            if held && !link.held {
                tracing::info!(link = %link.spec.interface, "probes lost, but on every other link too: kept as it was until the others answer");
                link.held = true;
            }
            link.everywhere |= link.held && others_down;
            state = link.health;
        } else {
            link.held = false;
            link.everywhere = false;
            link.confirm_at = None;
        }
        if state == link.health {
            return false;
        }
        tracing::info!(link = %link.spec.interface, state = state.name(), "probes changed the link's state");
        link.health = state;
        self.plan_link(i, now);
        true
    }

    /// Brings link `i`'s planned routes, rules and endpoints in line with
    /// the kernel's view of the link and the probes' verdict.
    fn plan_link(&mut self, i: usize, now: Instant) {
        let link = &mut self.links[i];
        if link.health == LinkState::Up || link.watched.is_none() {
            link.await_probe = false;
        }
        let probed_down = link.health == LinkState::Down || link.await_probe;
        let in_service = link.kernel.up && !probed_down;
        if in_service != link.in_service {
            link.in_service = in_service;
            link.changed_at = now;
        }
        if in_service {
            link.closed = false;
        }
        if !self.config.endpoints {
            self.close_subflows(i);
            return;
        }
        let kernel = &link.kernel;
        let spec = &link.spec;
        // Endpoints: what there should be, by address.
        let mut flags = FLAG_SUBFLOW;
        if spec.backup || link.benched {
            flags |= FLAG_BACKUP;
        }
        // A backup link (configured, or benched by the slow-links policy)
        // keeps its endpoints when its probes fail, with `down_action =
        // "remove"` too (with "backup" every link keeps them, and is
        // renewed on its return, a backup link as well): its subflows
        // carry nothing while a regular link
        // is in service, and closing a subflow, even an idle one, makes the
        // kernel send the connection's whole unacknowledged window again
        // over the others (`__mptcp_retransmit_pending_data`). A benched
        // 5 Mbit/s link with 5 % loss flapped every few seconds beside a
        // 20 Mbit/s link, and every flap stalled the flow for 0.3 s while
        // the good link carried the copies (lab VM, Linux 6.12).
        let keep_backup = flags & FLAG_BACKUP != 0;
        let want: BTreeMap<IpAddr, u32> = match (probed_down, self.config.down_action) {
            _ if !kernel.up => BTreeMap::new(),
            (false, _) => kernel.addrs.iter().map(|&a| (a, flags)).collect(),
            (true, DownAction::Remove) if keep_backup => {
                kernel.addrs.iter().map(|&a| (a, flags)).collect()
            }
            (true, DownAction::Backup) => kernel
                .addrs
                .iter()
                .map(|&a| (a, flags | FLAG_BACKUP))
                .collect(),
            (true, DownAction::Remove) => BTreeMap::new(),
        };
        // Endpoints that go, first: each action below is a netlink round
        // trip (tens of ms on a busy router), and a link taken out of
        // service must stop carrying the connections at once.
        for &addr in link.endpoints.keys().filter(|a| !want.contains_key(a)) {
            self.actions
                .push_back(Action::DeleteEndpoint { link: i, addr });
            link.removed_at = Some(now);
        }
        // Routes and rules before endpoints, so the first SYN of a subflow
        // that a new endpoint starts already leaves by its own link.
        //
        // Routes: the link's table holds its default route per family in
        // use. The kernel drops them when the link goes down, so they are
        // put back at every look.
        if let (true, Some(ifindex)) = (kernel.up, kernel.index) {
            for v6 in [false, true] {
                if !kernel.addrs.iter().any(|a| a.is_ipv6() == v6) {
                    continue;
                }
                let via = spec.peers.iter().find(|p| p.is_ipv6() == v6).copied();
                self.actions.push_back(Action::SetDefaultRoute {
                    link: i,
                    table: spec.table,
                    ifindex,
                    v6,
                    via: via.or(kernel.gateways[usize::from(v6)]),
                });
            }
        }
        // Rules: one per address, `from ADDR lookup TABLE`.
        let (table, priority) = (spec.table, self.config.rule_priority);
        for &addr in link.rules.iter().filter(|a| !kernel.addrs.contains(a)) {
            self.actions.push_back(Action::DeleteRule {
                link: i,
                addr,
                table,
                priority,
            });
        }
        for &addr in kernel.addrs.iter().filter(|a| !link.rules.contains(a)) {
            self.actions.push_back(Action::AddRule {
                link: i,
                addr,
                table,
                priority,
            });
        }
        link.rules = kernel.addrs.clone();
        // Back in service after its endpoints were kept: renewed, not just
        // flagged anew. Its subflows may have died meanwhile (an access
        // point restarted, a station lost its association), and the
        // in-kernel path manager opens subflows for an endpoint only when
        // it is added; one that survived is closed and opened again (one
        // MP_JOIN per connection, as `down_action = "remove"` costs at
        // every return).
        let kept = kernel.up && probed_down && self.config.down_action == DownAction::Backup;
        let renew = link.kept_down && kernel.up && !probed_down;
        link.kept_down = kept;
        for (&addr, &have) in &link.endpoints {
            match want.get(&addr) {
                None => {}
                Some(&flags) if renew => self.actions.push_back(Action::AddEndpoint {
                    link: i,
                    addr,
                    ifindex: kernel.index,
                    flags,
                    renew: true,
                }),
                Some(&flags) if flags != have => self.actions.push_back(Action::SetEndpointFlags {
                    link: i,
                    addr,
                    flags,
                }),
                Some(_) => {}
            }
        }
        // New ones: not before READD_AFTER since the last removal.
        let mut want = want;
        let hold = link
            .removed_at
            .map(|t| t + READD_AFTER)
            .filter(|&t| t > now);
        link.readd_at = None;
        for (&addr, &flags) in &want {
            if link.endpoints.contains_key(&addr) {
                continue;
            }
            if hold.is_some() {
                link.readd_at = hold;
                continue;
            }
            self.actions.push_back(Action::AddEndpoint {
                link: i,
                addr,
                ifindex: kernel.index,
                flags,
                renew: false,
            });
        }
        if link.readd_at.is_some() {
            want.retain(|addr, _| link.endpoints.contains_key(addr));
        }
        link.endpoints = want;
    }

    /// The multipath groups' members from every link's state.
    fn plan_groups(&mut self) {
        if !self.config.multipath {
            return;
        }
        let views: Vec<LinkRoutes> = self
            .links
            .iter()
            .map(|l| LinkRoutes {
                name: l.spec.interface.clone(),
                hops: [false, true].map(|v6| hop(l, v6)),
                in_service: l.in_service,
                backup: l.spec.backup,
                weight: l.spec.weight,
            })
            .collect();
        let members = [false, true].map(|v6| {
            multipath::members(&views, v6)
                .into_iter()
                .filter_map(|i| {
                    Some(Member {
                        link: i,
                        hop: views[i].hops[usize::from(v6)]?,
                        weight: views[i].weight,
                    })
                })
                .collect()
        });
        self.actions.push_back(Action::SetGroups { members });
    }

    /// Forgets what `action` was to have done, so the next look retries.
    fn refused(&mut self, action: Action, now: Instant) {
        match action {
            Action::StartProbing { link, source } => {
                // Unwatched, the link follows the kernel alone until a
                // look at the links starts its prober again.
                let l = &mut self.links[link];
                if matches!(l.watched, Some(Health::Probes { source: s, .. }) if s == source) {
                    self.actions
                        .retain(|a| !matches!(a, Action::SendProbe { link: l, .. } if *l == link));
                    l.watched = None;
                    l.health = LinkState::Unknown;
                    self.plan_link(link, now);
                    self.plan_groups();
                }
            }
            Action::AddRule { link, addr, .. } => self.links[link].rules.retain(|a| *a != addr),
            Action::DeleteRule { link, addr, .. } => self.links[link].rules.push(addr),
            Action::AddEndpoint { link, addr, .. } => {
                self.links[link].endpoints.remove(&addr);
            }
            Action::SetEndpointFlags { link, addr, .. } | Action::DeleteEndpoint { link, addr } => {
                self.links[link].endpoints.insert(addr, 0);
            }
            // Once per outage: the kernel's retransmissions and router A's
            // REMOVE_ADDR still move the data, later.
            Action::CloseSubflows { .. } => {}
            // Sent again at every look anyway.
            Action::StopProbing { .. }
            | Action::SendProbe { .. }
            | Action::SetDefaultRoute { .. }
            | Action::SetGroups { .. } => {}
        }
    }
}

/// What a link's health is learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Source(IpAddr),
    Interface(u32),
}

/// Where link `l`'s nexthop of one family leads: its configured peer of
/// that family, else its routes' gateway, else the link itself; `None`
/// while the link is down or has no such address.
fn hop(l: &Link, v6: bool) -> Option<Hop> {
    let ifindex = l.kernel.index.filter(|_| l.kernel.up)?;
    if !l.kernel.addrs.iter().any(|a| a.is_ipv6() == v6) {
        return None;
    }
    let peer = l.spec.peers.iter().find(|p| p.is_ipv6() == v6).copied();
    Some(Hop {
        ifindex,
        gateway: peer.or(l.kernel.gateways[usize::from(v6)]),
    })
}
