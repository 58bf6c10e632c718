//! The planner on a simulated clock, millisecond by millisecond, with a
//! fake kernel that does what the actions say and a remote that answers
//! probes (or not) after a fixed RTT.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::paths::probe::{ProbeSettings, IDLE_SILENCE};

const MS: Duration = Duration::from_millis(1);
const RTT: Duration = Duration::from_millis(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Link `i`: interface `wan{i}`, index 10+i, address 10.0.{i}.1, table 100+i.
fn spec(i: usize, backup: bool) -> LinkSpec {
    LinkSpec {
        interface: format!("wan{i}"),
        backup,
        peers: vec![ip(&format!("10.0.{i}.2"))],
        table: 100 + i as u32,
        weight: 1,
    }
}

fn up(i: usize) -> LinkSnapshot {
    LinkSnapshot {
        index: Some(10 + i as u32),
        up: true,
        addrs: vec![addr(i)],
        gateways: [None, None],
        downs: 0,
    }
}

fn addr(i: usize) -> IpAddr {
    ip(&format!("10.0.{i}.1"))
}

/// Router B on two plain links.
fn router_b_config() -> PlannerConfig {
    config(vec![spec(0, false), spec(1, false)], Watch::Arrivals)
}

fn config(links: Vec<LinkSpec>, watch: Watch) -> PlannerConfig {
    PlannerConfig {
        links,
        endpoints: watch != Watch::Arrivals,
        watch,
        probe: ProbeSettings {
            interval: Duration::from_millis(100),
            down_after: 3,
            up_after: 3,
        },
        down_action: DownAction::Remove,
        interface_counter: true,
        close_subflows: true,
        rule_priority: 7700,
        multipath: true,
    }
}

/// The planner, the clock, the kernel as the actions leave it, and the far
/// end: router B answering router A's probes, or router A's requests
/// arriving at router B.
struct Sim {
    planner: Planner,
    t0: Instant,
    now: Instant,
    /// Per link: whether what is sent now gets through.
    through: Vec<bool>,
    /// Router B: the verdict router A's requests carry, per link.
    view: Vec<LinkState>,
    /// Replies (router A) or requests (router B) on their way: due, link, seq.
    in_flight: Vec<(Instant, usize, u32)>,
    /// Router B: the next request of each link is sent then.
    next_request: Vec<Instant>,
    /// The latest request's sequence number on each link (router B): each
    /// link's prober counts its own, as router A's do.
    seq: Vec<u32>,
    probing: BTreeMap<usize, IpAddr>,
    endpoints: BTreeMap<IpAddr, u32>,
    rules: BTreeSet<IpAddr>,
    routes: BTreeSet<(u32, bool)>,
    groups: [Vec<usize>; 2],
    /// Every action, with the milliseconds since the start.
    log: Vec<(u64, Action)>,
    /// Actions of these kinds are refused once (by a name of the variant).
    refuse: Vec<&'static str>,
    /// Round trip of router A's probes.
    rtt: Duration,
    /// Router A: each link interface's received-packet counter, fed to
    /// the planner when it wants it (`None`: never read). A reply that
    /// arrives counts one; a `busy` link's flow one a millisecond while it
    /// gets through.
    counters: Option<Vec<u64>>,
    busy: Vec<bool>,
    /// Per link, when set: the round trip (router A) or one-way delay
    /// (router B) instead of `rtt` or [`RTT`].
    delays: Vec<Duration>,
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::StartProbing { .. } => "StartProbing",
        Action::StopProbing { .. } => "StopProbing",
        Action::SendProbe { .. } => "SendProbe",
        Action::SetDefaultRoute { .. } => "SetDefaultRoute",
        Action::AddRule { .. } => "AddRule",
        Action::DeleteRule { .. } => "DeleteRule",
        Action::AddEndpoint { .. } => "AddEndpoint",
        Action::SetEndpointFlags { .. } => "SetEndpointFlags",
        Action::DeleteEndpoint { .. } => "DeleteEndpoint",
        Action::SetGroups { .. } => "SetGroups",
        Action::CloseSubflows { .. } => "CloseSubflows",
    }
}

impl Sim {
    /// Every link comes up at 0 ms, with the far end answering.
    fn new(config: PlannerConfig) -> Sim {
        let n = config.links.len();
        let t0 = Instant::now();
        let mut sim = Sim {
            planner: Planner::new(config, t0),
            t0,
            now: t0,
            through: vec![true; n],
            view: vec![LinkState::Up; n],
            in_flight: Vec::new(),
            next_request: vec![t0; n],
            seq: vec![0; n],
            probing: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            rules: BTreeSet::new(),
            routes: BTreeSet::new(),
            groups: [Vec::new(), Vec::new()],
            log: Vec::new(),
            refuse: Vec::new(),
            rtt: RTT,
            counters: None,
            busy: vec![false; n],
            delays: Vec::new(),
        };
        sim.kernel((0..n).map(|i| (i, up(i))).collect());
        sim
    }

    fn ms(&self) -> u64 {
        (self.now - self.t0).as_millis() as u64
    }

    fn kernel(&mut self, links: Vec<(usize, LinkSnapshot)>) {
        self.planner.handle(self.now, Input::Links(links));
        self.drain();
    }

    /// Does what the planner asks, as an executor on a kernel that
    /// accepts everything (but what `refuse` names, once).
    fn drain(&mut self) {
        while let Some(action) = self.planner.poll_action() {
            self.log.push((self.ms(), action.clone()));
            if let Some(pos) = self.refuse.iter().position(|k| *k == kind(&action)) {
                self.refuse.remove(pos);
                self.planner.handle(self.now, Input::Refused(action));
                continue;
            }
            match action {
                Action::StartProbing { link, source } => {
                    self.probing.insert(link, source);
                }
                Action::StopProbing { link } => {
                    self.probing.remove(&link);
                }
                Action::SendProbe { link, seq, .. } => {
                    assert!(self.probing.contains_key(&link), "probe on a closed prober");
                    if self.through[link] {
                        let rtt = self.delays.get(link).copied().unwrap_or(self.rtt);
                        self.in_flight.push((self.now + rtt, link, seq));
                    }
                }
                Action::SetDefaultRoute { table, v6, .. } => {
                    self.routes.insert((table, v6));
                }
                Action::AddRule { addr, .. } => {
                    self.rules.insert(addr);
                }
                Action::DeleteRule { addr, .. } => {
                    self.rules.remove(&addr);
                }
                Action::AddEndpoint { addr, flags, .. }
                | Action::SetEndpointFlags { addr, flags, .. } => {
                    self.endpoints.insert(addr, flags);
                }
                Action::DeleteEndpoint { addr, .. } => {
                    self.endpoints.remove(&addr);
                }
                Action::SetGroups { members } => {
                    self.groups = members.map(|g| g.iter().map(|m| m.link).collect());
                }
                Action::CloseSubflows { link, ifindex } => {
                    assert_eq!(ifindex, 10 + link as u32);
                }
            }
        }
    }

    /// Both links' interface counters are read from now on, each moved by
    /// a flow (`busy`) or only by the probes.
    fn read_counters(&mut self, busy: bool) {
        self.counters = Some(vec![0; 2]);
        self.busy = vec![busy; 2];
    }

    /// `link` falls into a black hole: nothing crosses it from now on, and
    /// what was on its way is lost.
    fn black_hole(&mut self, link: usize) {
        self.through[link] = false;
        self.in_flight.retain(|&(_, l, _)| l != link);
    }

    /// The whole host (both daemons, both kernels) held up for `ms`: nothing
    /// runs, nothing is sent; what was on its way and due meanwhile
    /// arrives at the next step, all at once (as the lab VM's netem queues
    /// give it out when the VM runs again).
    fn hold_up(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// One millisecond: what is due arrives, the timer fires if due.
    fn step(&mut self) {
        let now = self.now;
        self.planner.woke(now);
        let remote = self.planner.config.watch == Watch::Arrivals;
        if remote {
            let interval = self.planner.config.probe.interval;
            for link in 0..self.through.len() {
                if self.next_request[link] <= now {
                    // Router A's cadence, never a burst after a hold-up.
                    self.next_request[link] += interval;
                    if self.next_request[link] <= now {
                        self.next_request[link] = now + interval;
                    }
                    self.seq[link] += 1;
                    if self.through[link] {
                        let delay = self.delays.get(link).copied().unwrap_or(RTT);
                        self.in_flight.push((now + delay, link, self.seq[link]));
                    }
                }
            }
        }
        let (due, later) = self.in_flight.drain(..).partition(|&(at, _, _)| at <= now);
        self.in_flight = later;
        for (_, link, seq) in due {
            let input = if remote {
                Input::Arrival {
                    ifindex: 10 + link as u32,
                    session: 1,
                    seq,
                    view: self.view[link],
                }
            } else {
                Input::ProbeReply { link, seq }
            };
            if let Some(c) = self.counters.as_mut() {
                c[link] += 1;
            }
            self.planner.handle(now, input);
        }
        if let Some(c) = self.counters.as_mut() {
            for (count, (&busy, &through)) in c.iter_mut().zip(self.busy.iter().zip(&self.through))
            {
                *count += u64::from(busy && through);
            }
            for link in self.planner.wanting_received(now) {
                let packets = c[link];
                // Each packet counted as 150 bytes in and out, a probe's:
                // an idle link carries no flow, a busy one (20 packets an
                // interval) does.
                let bytes = packets * 150;
                let input = Input::Received {
                    link,
                    packets,
                    bytes,
                };
                self.planner.handle(now, input);
            }
        }
        if self.planner.poll_timeout().is_some_and(|t| t <= now) {
            self.planner.handle_timeout(now);
        }
        self.drain();
        self.now += MS;
    }

    fn run_to(&mut self, ms: u64) {
        while self.ms() < ms {
            self.step();
        }
    }

    fn in_service(&self) -> Vec<bool> {
        self.planner.status().iter().map(|s| s.in_service).collect()
    }

    /// When (ms) endpoints were renewed (removed and added) since `from` ms.
    fn renewals(&self, from: u64) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(t, a)| *t >= from && matches!(a, Action::AddEndpoint { renew: true, .. }))
            .map(|(t, _)| *t)
            .collect()
    }

    /// When (ms) actions of kind `k` were asked since `from` ms.
    fn times(&self, k: &str, from: u64) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(t, a)| *t >= from && kind(a) == k)
            .map(|(t, _)| *t)
            .collect()
    }
}

const SUBFLOW: u32 = FLAG_SUBFLOW;
/// [`READD_AFTER`] in milliseconds.
const HOLD: u64 = READD_AFTER.as_millis() as u64;
const BACKUP: u32 = FLAG_SUBFLOW | FLAG_BACKUP;

#[test]
fn a_link_up_at_start_gets_its_route_rule_endpoint_and_prober_in_that_order() {
    let sim = Sim::new(config(vec![spec(0, false)], Watch::Probes { v6: false }));
    let kinds: Vec<&str> = sim.log.iter().map(|(_, a)| kind(a)).collect();
    assert_eq!(
        kinds,
        [
            "StartProbing",
            "SetDefaultRoute",
            "AddRule",
            "AddEndpoint",
            "SetGroups"
        ]
    );
    assert_eq!(sim.probing[&0], addr(0));
    assert!(sim.routes.contains(&(100, false)));
    assert_eq!(sim.endpoints, BTreeMap::from([(addr(0), SUBFLOW)]));
    assert_eq!(sim.groups, [vec![0], vec![]]);
    // Before any verdict the link is in service.
    assert_eq!(sim.in_service(), [true]);
    assert_eq!(sim.planner.poll_timeout(), Some(sim.t0));
}

#[test]
fn a_black_holed_link_is_down_one_window_after_its_third_lost_probe_was_sent() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
    // Up in the kernel, but nothing comes back.
    sim.through[0] = false;
    sim.run_to(1232);
    assert!(sim.endpoints.contains_key(&addr(0)));
    sim.step();
    // Probes sent at 1000, 1100 and 1200, each lost 32 ms after (the RTT
    // and the slack): down at 1232, its endpoint and group membership gone.
    assert_eq!(sim.times("DeleteEndpoint", 0), [1232]);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.endpoints, BTreeMap::from([(addr(1), SUBFLOW)]));
    assert_eq!(sim.groups[0], [1]);
    // The rule and the route stay: the probes still leave by the link.
    assert!(sim.rules.contains(&addr(0)));
    assert_eq!(sim.planner.status()[0].health, LinkState::Down);
}

#[test]
fn two_lost_probes_keep_a_link_in_service() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Probes { v6: false }));
    sim.run_to(500);
    sim.through[0] = false;
    sim.run_to(650); // the probes of 500 and 600 are lost
    sim.through[0] = true;
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true]);
    assert!(sim.times("DeleteEndpoint", 0).is_empty());
    assert!(sim.planner.status()[0].loss_percent > 0.0);
}

#[test]
fn a_down_link_is_back_in_service_at_its_third_answer_in_a_row() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(500);
    sim.through[0] = false;
    sim.run_to(1500);
    assert_eq!(sim.in_service(), [false, true]);
    sim.through[0] = true;
    sim.run_to(1701);
    assert_eq!(sim.in_service(), [false, true]);
    sim.step();
    // Answers to the probes of 1500, 1600 and 1700: back when the third
    // returns, one RTT later.
    assert_eq!(sim.times("AddEndpoint", 1000), [1701]);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
}

#[test]
fn a_flapping_link_stays_out_until_three_answers_in_a_row() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(500);
    sim.through[0] = false;
    sim.run_to(1000);
    assert_eq!(sim.in_service(), [false, true]);
    // For 3 s, two probes of three answered: never three in a row, and
    // never three lost in a row either.
    while sim.ms() < 4000 {
        let slot = (sim.ms() / 100) % 3;
        sim.through[0] = slot != 2;
        sim.step();
        assert_eq!(sim.in_service(), [false, true], "back at {} ms", sim.ms());
    }
    assert!(sim.times("AddEndpoint", 1000).is_empty());
    sim.through[0] = true;
    sim.run_to(4500);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.times("AddEndpoint", 1000).len(), 1);
    assert_eq!(sim.times("DeleteEndpoint", 0).len(), 1);
}

#[test]
fn a_link_the_kernel_takes_down_leaves_at_once_and_returns_after_a_probe() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    let down = LinkSnapshot { up: false, ..up(0) };
    sim.kernel(vec![(0, down)]);
    // Same millisecond: endpoint gone, prober closed, out of the group.
    assert_eq!(sim.times("DeleteEndpoint", 0), [1000]);
    assert_eq!(sim.times("StopProbing", 0), [1000]);
    assert!(!sim.probing.contains_key(&0));
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.groups[0], [1]);
    assert!(sim.planner.status()[0].health == LinkState::Unknown);
    sim.run_to(2000);
    sim.kernel(vec![(0, up(0))]);
    // Back in the kernel: a fresh prober at once, but in service only once
    // a probe crossed the link (its far end may not pass packets yet).
    assert_eq!(sim.times("StartProbing", 2000), [2000]);
    assert_eq!(sim.in_service(), [false, true]);
    assert!(sim.times("AddEndpoint", 1000).is_empty());
    sim.run_to(2002);
    assert_eq!(sim.times("AddEndpoint", 1000), [2001]);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
}

/// Two probed links; link 0's interface goes down at 1000 ms and its
/// endpoint is deleted then.
fn two_links_link_0_down_at_1000() -> Sim {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    sim.kernel(vec![(0, LinkSnapshot { up: false, ..up(0) })]);
    assert_eq!(sim.times("DeleteEndpoint", 1000), [1000]);
    sim
}

#[test]
fn an_endpoint_removed_is_not_added_again_before_the_peer_dropped_its_subflows() {
    let mut sim = two_links_link_0_down_at_1000();
    sim.run_to(1050);
    sim.kernel(vec![(0, up(0))]);
    // In service once a probe crossed, routes and group member back...
    sim.run_to(1060);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
    assert!(sim.routes.contains(&(100, false)));
    // ...but the endpoint only READD_AFTER its removal: the peer may not
    // have acted yet on the RM_ADDR the removal sent, and would close the
    // new subflows (same id) or refuse them (old ones still counted).
    assert!(sim.times("AddEndpoint", 1000).is_empty());
    assert!(!sim.endpoints.contains_key(&addr(0)));
    sim.run_to(1000 + HOLD + 1);
    assert_eq!(sim.times("AddEndpoint", 1000), [1000 + HOLD]);
    assert_eq!(sim.endpoints[&addr(0)], SUBFLOW);
    // Another look afterwards changes nothing: one add.
    sim.kernel(vec![(0, up(0))]);
    assert_eq!(sim.times("AddEndpoint", 1000), [1000 + HOLD]);
}

#[test]
fn the_hold_counts_from_when_the_removal_was_carried_out() {
    let mut sim = two_links_link_0_down_at_1000();
    // The executor got the kernel's answer to the delete only at 1800 (a
    // slow kernel, a starved VM): that is when the peer was told.
    let done = sim.t0 + Duration::from_millis(1800);
    sim.planner.endpoint_removed(0, done);
    sim.run_to(1850);
    sim.kernel(vec![(0, up(0))]);
    sim.run_to(1800 + HOLD - 1);
    assert!(sim.times("AddEndpoint", 1000).is_empty());
    sim.run_to(1800 + HOLD + 1);
    assert_eq!(sim.times("AddEndpoint", 1000), [1800 + HOLD]);
}

#[test]
fn a_link_that_is_gone_is_forgotten_and_found_again() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Probes { v6: false }));
    sim.run_to(300);
    sim.kernel(vec![(0, LinkSnapshot::default())]);
    assert!(sim.endpoints.is_empty() && sim.rules.is_empty());
    assert!(sim.groups.iter().all(Vec::is_empty));
    assert_eq!(sim.planner.poll_timeout(), None);
    sim.kernel(vec![(0, up(0))]);
    sim.run_to(310);
    assert!(sim.rules.contains(&addr(0)));
    // Its endpoint once the one removed at 300 is surely gone at the peer.
    sim.run_to(300 + HOLD + 1);
    assert_eq!(sim.times("AddEndpoint", 300), [300 + HOLD]);
    assert_eq!(sim.endpoints, BTreeMap::from([(addr(0), SUBFLOW)]));
}

#[test]
fn a_changed_address_moves_the_rule_the_endpoint_and_the_prober() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Probes { v6: false }));
    sim.run_to(1000);
    let new = ip("10.0.0.9");
    sim.kernel(vec![(
        0,
        LinkSnapshot {
            addrs: vec![new],
            ..up(0)
        },
    )]);
    assert_eq!(sim.rules, BTreeSet::from([new]));
    assert!(sim.endpoints.is_empty());
    assert_eq!(sim.probing[&0], new);
    // Not a link coming back: it stays in service while the new prober
    // starts from scratch.
    assert_eq!(sim.in_service(), [true]);
    assert_eq!(sim.planner.status()[0].health, LinkState::Unknown);
    sim.run_to(1100);
    assert_eq!(sim.planner.status()[0].health, LinkState::Up);
    // The new endpoint READD_AFTER the old one's removal (the kernel may
    // give it the old one's id).
    sim.run_to(1000 + HOLD + 1);
    assert_eq!(sim.endpoints, BTreeMap::from([(new, SUBFLOW)]));
}

#[test]
fn an_address_of_the_other_family_is_served_but_not_probed_from() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Probes { v6: false }));
    let v6 = ip("fd00::1");
    sim.kernel(vec![(
        0,
        LinkSnapshot {
            addrs: vec![addr(0), v6],
            ..up(0)
        },
    )]);
    assert_eq!(sim.probing[&0], addr(0));
    assert_eq!(sim.endpoints.len(), 2);
    assert!(sim.routes.contains(&(100, true)));
    assert_eq!(sim.groups, [vec![0], vec![0]]);
    // Only the IPv6 address left: nothing to probe the IPv4 remote from.
    sim.kernel(vec![(
        0,
        LinkSnapshot {
            addrs: vec![v6],
            ..up(0)
        },
    )]);
    assert!(!sim.probing.contains_key(&0));
    assert_eq!(sim.planner.poll_timeout(), None);
    assert_eq!(sim.endpoints, BTreeMap::from([(v6, SUBFLOW)]));
}

#[test]
fn a_backup_link_carries_routes_only_when_every_regular_link_is_down() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, true)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    // Its endpoint is there all along, flagged backup (MPTCP uses it only
    // when no other subflow can).
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    assert_eq!(sim.groups[0], [0]);
    sim.through[0] = false;
    sim.run_to(1500);
    assert_eq!(sim.groups[0], [1]);
    assert_eq!(sim.endpoints, BTreeMap::from([(addr(1), BACKUP)]));
    sim.through[0] = true;
    sim.run_to(2000);
    assert_eq!(sim.groups[0], [0]);
    // The backup link's own probes failing take it out of service (no
    // routes) but leave its endpoint: its subflows carry nothing, and
    // closing them would have the kernel send every connection's window
    // again over link 0.
    sim.through[1] = false;
    sim.run_to(3000);
    assert_eq!(sim.in_service(), [true, false]);
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    assert!(sim.times("DeleteEndpoint", 2000).is_empty());
    sim.through[1] = true;
    sim.run_to(4000);
    assert_eq!(sim.in_service(), [true, true]);
    assert!(sim.renewals(0).is_empty());
}

#[test]
fn when_every_link_fails_at_once_nothing_moves() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false), spec(2, true)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    sim.through = vec![false; 3];
    sim.run_to(2000);
    // Probes failing everywhere at once mean the peer's daemon stopped or
    // one of the two was held up: there is no link to move to, and a
    // subflow taken away would have to start afresh. Everything stays.
    assert_eq!(sim.in_service(), [true, true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
    assert_eq!(sim.endpoints.len(), 3);
    assert!(sim.times("DeleteEndpoint", 0).is_empty());
    // The status still shows what the probes see.
    assert!(sim.planner.status().iter().all(|s| s.loss_percent > 0.0));
    // Once the kernel has no regular link up, the backup carries them.
    let down = |i| (i, LinkSnapshot { up: false, ..up(i) });
    sim.kernel(vec![down(0), down(1)]);
    assert_eq!(sim.groups[0], [2]);
}

#[test]
fn a_link_is_taken_down_only_once_another_answered_after_its_silence_began() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    // Both daemons held up for 400 ms: every probe of both links lost.
    sim.through = vec![false; 2];
    sim.run_to(1400);
    assert_eq!(sim.in_service(), [true, true]);
    // Link 1 answers again (its probe sent at 1400, at 1401), link 0
    // stays silent: now it is link 0's, once it had half a second to
    // answer too.
    sim.through[1] = true;
    sim.run_to(1900);
    assert_eq!(sim.in_service(), [true, true]);
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.times("DeleteEndpoint", 0).len(), 1);
}

/// Two links with a 250 ms round trip whose interfaces' counters are read
/// (`counted`) or not; link 0 falls into a black hole at 1000 ms that
/// eats what was on its way too. When (ms) its endpoint was removed.
fn black_hole_on_a_slow_link(counted: bool, busy: bool) -> Vec<u64> {
    let mut cfg = config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    );
    cfg.interface_counter = counted;
    let mut sim = Sim::new(cfg);
    sim.rtt = 250 * MS;
    sim.read_counters(busy);
    sim.run_to(1000);
    assert_eq!(sim.in_service(), [true, true]);
    sim.black_hole(0);
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [false, true]);
    // Router A closes its subflows by removing the link's endpoints.
    assert!(sim.times("CloseSubflows", 0).is_empty());
    sim.times("DeleteEndpoint", 0)
}

#[test]
fn a_link_whose_interface_falls_silent_is_down_before_its_probes_loss_windows_end() {
    // Probes every 100 ms; those sent at 800 and 900 were on their way.
    // The probes' rule names the black hole when the window of the third
    // lost one (sent at 1000: the 250 ms round trip, 4 × its variation
    // and 30 ms) ends, at 1347; the counter, standing still from the
    // reading at 1000 on, three intervals later. Loaded or idle (only the
    // replies move it), alike.
    assert_eq!(black_hole_on_a_slow_link(false, true), [1347]);
    assert_eq!(black_hole_on_a_slow_link(true, true), [1300]);
    assert_eq!(black_hole_on_a_slow_link(true, false), [1300]);
}

#[test]
fn interface_counters_standing_still_on_every_link_at_once_take_nothing_away() {
    // Router B gone, or both daemons and kernels held up: nothing arrives
    // on any link. Named silent everywhere, but nowhere to move to.
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.rtt = 250 * MS;
    sim.read_counters(true);
    sim.run_to(1000);
    sim.through = vec![false; 2];
    sim.in_flight.clear();
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true, true]);
    assert!(sim.times("DeleteEndpoint", 0).is_empty());
}

/// Two links at the default 20 ms probe interval, a short one and a long
/// one (router A: 10 and 120 ms round trip; router B: router A's requests
/// 5 and 60 ms on their way), their counters read (moved by a flow,
/// `busy`, or only by the probes), and from 2 s on the whole host held up
/// four times (60–400 ms), as the lab's VM is under TCG. `black_hole`:
/// link 1 falls into one as the 250 ms hold-up begins. The simulation at
/// 7 s.
fn host_held_up(watch: Watch, busy: bool, black_hole: bool) -> Sim {
    let mut cfg = config(vec![spec(0, false), spec(1, false)], watch);
    cfg.probe.interval = 20 * MS;
    let mut sim = Sim::new(cfg);
    sim.delays = match watch {
        Watch::Arrivals => vec![5 * MS, 60 * MS],
        _ => vec![10 * MS, 120 * MS],
    };
    sim.read_counters(busy);
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true, true]);
    for (at, ms) in [(2000, 60), (3000, 150), (4000, 250), (5000, 400)] {
        sim.run_to(at);
        if black_hole && ms == 250 {
            sim.black_hole(1);
        }
        sim.hold_up(ms);
    }
    sim.run_to(7000);
    sim
}

#[test]
fn a_host_held_up_takes_no_link_down_whatever_its_delay() {
    // Counted lost as the host ran again, every link's probes were missing
    // at once; the short link answered first, and that confirmed the long
    // one's silence: in the lab's VM the 60 ms link was taken down and up
    // again 3–16 times in 24 s. The hold-up counts in no window now.
    for watch in [Watch::Probes { v6: false }, Watch::Arrivals] {
        for busy in [false, true] {
            let sim = host_held_up(watch, busy, false);
            let changes = sim.times("SetGroups", 2000);
            assert!(changes.is_empty(), "{watch:?}, busy {busy}: {changes:?}");
            assert_eq!(sim.in_service(), [true, true]);
        }
    }
}

#[test]
fn a_black_hole_that_begins_while_the_host_is_held_up_is_named_after_it() {
    // Link 1 falls into a black hole at 4000 ms, as the host stops for
    // 250 ms: named after the hold-up as it would be without it, by the
    // counter's standstill (three intervals; an idle link's IDLE_SILENCE)
    // or the missing requests.
    for watch in [Watch::Probes { v6: false }, Watch::Arrivals] {
        for busy in [false, true] {
            let sim = host_held_up(watch, busy, true);
            assert_eq!(sim.in_service(), [true, false], "{watch:?}, busy {busy}");
            let named = sim.times("SetGroups", 4000);
            let first = named.first().copied();
            let latest = match busy {
                true => 4450,
                false => 4250 + IDLE_SILENCE.as_millis() as u64,
            };
            assert!(
                first.is_some_and(|t| (4250..=latest).contains(&t)),
                "{watch:?}, busy {busy}: {named:?}"
            );
        }
    }
}

#[test]
fn a_daemon_late_at_every_turn_still_names_a_black_hole() {
    // Every turn 45 ms after the one before, at a 20 ms interval: each
    // comes 25 ms late, a hold-up each time, and time must still pass for
    // the probes: the long link's black hole is named within half a
    // second (270 ms for router A, whose probes are every 45 ms then).
    for watch in [Watch::Probes { v6: false }, Watch::Arrivals] {
        let mut sim = host_held_up(watch, false, false);
        sim.black_hole(1);
        while sim.ms() < 8000 {
            sim.hold_up(44);
            sim.step();
        }
        let named = sim.times("SetGroups", 7000);
        assert!(
            named.first().is_some_and(|&t| t < 7500),
            "{watch:?}: {named:?}"
        );
        assert_eq!(sim.in_service(), [true, false], "{watch:?}");
    }
}

/// Router B at a 20 ms interval, its links 5 and `long` ms from router A,
/// loaded (`busy`) or idle, from 2000 ms on; router A's prober (not router
/// B, nor the host) held up at each (at, for) ms: its requests stop on
/// every link at once and resume one an interval.
fn router_a_prober_held_up(busy: bool, long: u32, hold_ups: &[(u64, u64)]) -> Sim {
    let mut cfg = router_b_config();
    cfg.probe.interval = 20 * MS;
    let mut sim = Sim::new(cfg);
    sim.delays = vec![5 * MS, long * MS];
    sim.read_counters(busy);
    sim.run_to(2000);
    for &(at, ms) in hold_ups {
        sim.run_to(at);
        sim.next_request = vec![sim.now + Duration::from_millis(ms); 2];
    }
    sim
}

#[test]
fn router_b_takes_no_link_down_when_router_a_alone_was_held_up() {
    // Router A's daemon (not router B's, nor the host) held up 100–400 ms,
    // four times: its requests stop on every link at once and resume one
    // an interval; the longer link still brings those on their way after
    // the shorter fell silent. In the lab's VM (router A's debug build
    // held up 241 ms) that confirmed the shorter link's silence, or the
    // shorter link's first request after it the longer one's. Covered
    // while the links' delays differ by less than what a link's requests
    // may be late by: 55 ms (5 and 60 ms) under a flow, whose packets keep
    // the counters moving; 35 ms idle, where the counter names a link
    // sooner (5 and 40 ms; at 5 and 60 ms idle the 5 ms link still
    // flaps). Then at 6000 a 200 ms hold-up with link 1 falling into a
    // black hole: both links fell silent, so it is named half a second
    // after link 0 is heard again (at 6205).
    for (busy, long) in [(true, 60), (false, 40)] {
        let hold_ups = [(2000, 100), (3000, 150), (4000, 250), (5000, 400)];
        let mut sim = router_a_prober_held_up(busy, long, &hold_ups);
        sim.run_to(6000);
        let changes = sim.times("SetGroups", 2000);
        assert!(changes.is_empty(), "busy {busy}: {changes:?}");
        sim.next_request = vec![sim.now + 200 * MS; 2];
        sim.black_hole(1);
        sim.run_to(7000);
        assert_eq!(sim.in_service(), [true, false], "busy {busy}");
        let named = sim.times("SetGroups", 6000);
        let first = named.first().copied();
        assert!(first.is_some_and(|t| t <= 6800), "busy {busy}: {named:?}");
    }
}

/// Router B, its links 5 and `long` ms from router A, loaded (`busy`):
/// router A's prober held up 45 ms at 2000, then `second` ms `gap` ms
/// later. When (ms) a link left service.
fn router_a_held_up_twice(busy: bool, long: u32, gap: u64, second: u64) -> Vec<u64> {
    let mut sim = router_a_prober_held_up(busy, long, &[(2000, 45), (2000 + gap, second)]);
    sim.run_to(4000);
    sim.times("SetGroups", 2000)
}

#[test]
fn router_b_forgives_a_longer_hold_up_of_router_a_soon_after_a_short_one() {
    // Under TCG router A's prober is held up 40–55 ms about once a second,
    // and router B forgave one hold-up a second: a longer one soon after
    // was not forgiven, and unless it was long enough to silence every
    // link at once (150 ms and more here), the longer link was taken down
    // and up again (in the lab's VM: router A held up 94 ms, and router
    // B's counter named the 60 ms link 60 ms later). Before, 6 of these
    // 18 cases flapped, every one with a second hold-up of 60 or 94 ms
    // (e.g. busy, 60 ms, 94 ms 300 ms later: [2445, 2494]). A longer
    // hold-up than any forgiven within the second is forgiven too; one no
    // longer still once a second only, so that a prober late at every turn
    // still has a black hole named. The delays as in the test above.
    for (busy, long) in [(true, 60), (false, 40)] {
        for gap in [100, 300, 800] {
            for second in [60, 94, 150] {
                let changes = router_a_held_up_twice(busy, long, gap, second);
                assert!(
                    changes.is_empty(),
                    "busy {busy}, {long} ms, {second} ms hold-up {gap} ms after: {changes:?}"
                );
            }
        }
    }
}

/// Router B at the default 20 ms interval, its links 5 and 60 ms from
/// router A, whose prober starts a second after router B's daemon; link
/// 1 passes nothing if `dead`. When (ms) link 1 was first out of service.
fn router_b_before_router_a(dead: bool) -> Option<u64> {
    let mut cfg = router_b_config();
    cfg.probe.interval = 20 * MS;
    let mut sim = Sim::new(cfg);
    sim.delays = vec![5 * MS, 60 * MS];
    sim.next_request = vec![sim.t0 + 1000 * MS; 2];
    sim.through[1] = !dead;
    let mut out = None;
    while sim.ms() < 3000 {
        sim.step();
        let in_service = sim.in_service();
        assert!(in_service[0], "link 0 out at {} ms", sim.ms());
        if !in_service[1] {
            out = out.or(Some(sim.ms()));
        }
    }
    out
}

#[test]
fn router_b_started_first_takes_no_link_down_as_the_requests_begin() {
    // Every link silent until 1000 ms (held: nowhere to move to); then
    // link 0's first request, and link 1's 55 ms later. Link 1 used to be
    // taken down and up again in between, in every lab run.
    assert_eq!(router_b_before_router_a(false), None);
    // A link dead from the start is still taken out, half a second after
    // the others were first heard.
    let out = router_b_before_router_a(true);
    assert!(out.is_some_and(|t| (1500..=1600).contains(&t)), "{out:?}");
}

#[test]
fn with_down_action_backup_a_lost_link_keeps_its_endpoint_flagged_backup() {
    let mut cfg = config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    );
    cfg.down_action = DownAction::Backup;
    let mut sim = Sim::new(cfg);
    sim.run_to(500);
    sim.through[0] = false;
    sim.run_to(1000);
    assert_eq!(sim.endpoints[&addr(0)], BACKUP);
    assert!(sim.times("DeleteEndpoint", 0).is_empty());
    assert_eq!(sim.times("SetEndpointFlags", 0), [732]);
    sim.through[0] = true;
    sim.run_to(1500);
    assert_eq!(sim.endpoints[&addr(0)], SUBFLOW);
}

#[test]
fn with_down_action_backup_a_returning_link_renews_its_kept_endpoint() {
    let mut cfg = config(
        vec![spec(0, false), spec(1, true)],
        Watch::Probes { v6: false },
    );
    cfg.down_action = DownAction::Backup;
    let mut sim = Sim::new(cfg);
    sim.run_to(500);
    // Both lose their probes; link 1 is a backup link, flagged so already.
    sim.through = vec![false, false];
    sim.run_to(510);
    sim.through[1] = true;
    sim.run_to(1000);
    sim.through = vec![false, true];
    sim.run_to(1500);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.endpoints[&addr(0)], BACKUP);
    // Link 0 returns: its endpoint is removed and added again (the
    // in-kernel path manager then opens its subflows anew), not merely
    // flagged; once, then left alone.
    assert!(sim.renewals(0).is_empty());
    sim.through[0] = true;
    sim.run_to(2500);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.endpoints[&addr(0)], SUBFLOW);
    assert_eq!(sim.renewals(1500).len(), 1);
    assert_eq!(sim.times("SetEndpointFlags", 1500), Vec::<u64>::new());
    // A backup link keeps its flags through the down, and is renewed all
    // the same when it returns.
    sim.through[1] = false;
    sim.run_to(3500);
    assert_eq!(sim.in_service(), [true, false]);
    assert!(sim.times("SetEndpointFlags", 2500).is_empty());
    sim.through[1] = true;
    sim.run_to(4500);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    assert_eq!(sim.renewals(2500).len(), 1);
    assert!(sim.times("DeleteEndpoint", 0).is_empty());
}

#[test]
fn with_down_action_remove_nothing_is_renewed() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(500);
    sim.through[0] = false;
    sim.run_to(1500);
    sim.through[0] = true;
    sim.run_to(2500);
    assert_eq!(sim.in_service(), [true, true]);
    assert!(sim.renewals(0).is_empty());
    assert_eq!(sim.times("AddEndpoint", 1).len(), 1);
}

/// Link 0 as the kernel shows it after a down and up between two looks.
fn flapped(downs: u32) -> LinkSnapshot {
    LinkSnapshot { downs, ..up(0) }
}

#[test]
fn a_down_and_up_between_two_looks_is_a_return_of_the_link() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(1000);
    // The same look again changes nothing.
    sim.kernel(vec![(0, up(0))]);
    assert!(sim.times("StartProbing", 1000).is_empty());
    // Reads the same but went down meanwhile: the kernel dropped its route
    // and nexthop. A fresh prober, out of the group until a probe crossed,
    // its endpoint removed, then everything back.
    sim.routes.clear();
    sim.kernel(vec![(0, flapped(1))]);
    assert_eq!(sim.times("StartProbing", 1000), [1000]);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.groups[0], [1]);
    assert!(sim.routes.contains(&(100, false)));
    assert_eq!(sim.times("DeleteEndpoint", 1000), [1000]);
    sim.run_to(1010);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
    // The endpoint last, READD_AFTER its removal.
    assert!(sim.times("AddEndpoint", 1000).is_empty());
    sim.run_to(1000 + HOLD + 1);
    assert_eq!(sim.times("AddEndpoint", 1000), [1000 + HOLD]);
    // Deleted and made again under the same name (a new index): the same.
    sim.kernel(vec![(
        0,
        LinkSnapshot {
            index: Some(42),
            ..flapped(1)
        },
    )]);
    assert_eq!(
        sim.times("StartProbing", 1000 + HOLD + 1),
        [1000 + HOLD + 1]
    );
    assert_eq!(sim.in_service(), [false, true]);
}

#[test]
fn router_b_takes_a_flapped_link_out_until_its_requests_cross_it_again() {
    let mut sim = Sim::new(router_b_config());
    sim.run_to(1000);
    assert_eq!(sim.groups[0], [0, 1]);
    sim.kernel(vec![(0, flapped(1))]);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.groups[0], [1]);
    sim.run_to(1200);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
}

#[test]
fn without_probes_a_link_follows_the_kernel_alone() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Nothing));
    assert_eq!(sim.planner.poll_timeout(), None);
    assert!(sim.times("StartProbing", 0).is_empty());
    sim.kernel(vec![(0, LinkSnapshot { up: false, ..up(0) })]);
    assert_eq!(sim.in_service(), [false]);
    // Back up: in service at once, there is no probe to wait for.
    sim.kernel(vec![(0, up(0))]);
    assert_eq!(sim.in_service(), [true]);
    // Its endpoint READD_AFTER it was removed: the timer says when.
    assert!(sim.endpoints.is_empty());
    assert_eq!(sim.planner.poll_timeout(), Some(sim.t0 + READD_AFTER));
    sim.run_to(HOLD + 1);
    assert_eq!(sim.endpoints.len(), 1);
}

#[test]
fn router_b_takes_a_link_out_when_its_requests_stop_and_back_when_they_resume() {
    let mut sim = Sim::new(router_b_config());
    // Router B: no endpoints, rules, tables or probes of its own.
    assert!(sim.endpoints.is_empty() && sim.rules.is_empty() && sim.routes.is_empty());
    assert!(sim.times("StartProbing", 0).is_empty());
    sim.run_to(1000);
    assert_eq!(sim.groups[0], [0, 1]);
    sim.through[0] = false;
    sim.run_to(1251);
    assert_eq!(sim.in_service(), [true, true]);
    sim.step();
    // The last request arrived at 901: intervals end at 1051, 1151, 1251.
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.groups[0], [1]);
    sim.through[0] = true;
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.groups[0], [0, 1]);
    assert!(sim.times("SendProbe", 0).is_empty());
}

#[test]
fn router_b_follows_router_a_verdict_at_once() {
    let mut sim = Sim::new(router_b_config());
    sim.run_to(1000);
    // Router A's probes over link 1 go unanswered (the B → A direction),
    // and its requests say so.
    sim.view[1] = LinkState::Down;
    sim.run_to(1002);
    assert_eq!(sim.in_service(), [true, false]);
    assert_eq!(sim.groups[0], [0]);
    sim.view[1] = LinkState::Up;
    sim.run_to(1102);
    assert_eq!(sim.in_service(), [true, true]);
}

#[test]
fn router_b_ignores_requests_on_interfaces_it_does_not_follow() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Arrivals));
    let before = sim.planner.poll_timeout();
    sim.planner.handle(
        sim.now,
        Input::Arrival {
            ifindex: 99,
            session: 1,
            seq: 1,
            view: LinkState::Down,
        },
    );
    sim.drain();
    assert_eq!(sim.planner.poll_timeout(), before);
    assert_eq!(sim.in_service(), [true]);
}

/// Router B with two links whose interfaces' counters are read, each
/// carrying a flow (`busy`) or not; link 0 falls into a black hole at 1000
/// ms and comes back at 1600, then again at 2500 for good. Returns the
/// simulation at 3500 ms.
fn router_b_black_hole(cfg: PlannerConfig, busy: bool) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.read_counters(busy);
    sim.run_to(1000);
    assert_eq!(sim.in_service(), [true, true]);
    sim.black_hole(0);
    sim.run_to(1600);
    assert_eq!(sim.in_service(), [false, true]);
    assert_eq!(sim.groups[0], [1]);
    sim.through[0] = true;
    sim.run_to(2500);
    assert_eq!(sim.in_service(), [true, true]);
    sim.black_hole(0);
    sim.run_to(3500);
    assert_eq!(sim.in_service(), [false, true]);
    sim
}

/// When (ms) router B closed link 0's subflows in [`router_b_black_hole`]
/// with the defaults: once an outage.
fn closes_in_black_holes(busy: bool) -> Vec<u64> {
    let cfg = router_b_config();
    let closed = router_b_black_hole(cfg, busy).times("CloseSubflows", 0);
    assert_eq!(closed.len(), 2, "once per outage: {closed:?}");
    closed
}

#[test]
fn router_b_closes_the_subflows_of_a_link_that_falls_silent_under_a_flow_once_an_outage() {
    // The counter, read about every interval while the link carries a
    // flow, stands still from the first reading after the black hole
    // began; three intervals (300 ms) later the subflows are closed: at
    // most one reading late, once per outage. (The missing requests took
    // the link out meanwhile, at 1251 and 2751: with 100 ms intervals
    // their grace is half an interval; with the default 20 ms it is 30 ms
    // and more under jitter, a silence of 60 ms names the link first.)
    let closed = closes_in_black_holes(true);
    assert!((1300..=1400).contains(&closed[0]), "{closed:?}");
    assert!((2800..=2900).contains(&closed[1]), "{closed:?}");
}

#[test]
fn router_b_closes_the_subflows_of_an_idle_link_once_its_counter_confirms_the_silence() {
    // Only the requests move the counter: read every fourth interval until
    // one is overdue (at 1026), then every interval; three intervals of
    // silence from that reading.
    let closed = closes_in_black_holes(false);
    assert!((1326..=1426).contains(&closed[0]), "{closed:?}");
}

/// Router B on two links that carry flows, at 1000 ms.
fn router_b_under_flows() -> Sim {
    let mut sim = Sim::new(router_b_config());
    sim.read_counters(true);
    sim.run_to(1000);
    sim
}

#[test]
fn router_b_closes_nothing_when_requests_stop_but_the_interface_still_receives() {
    // Router A's daemon held up on one link's prober, or its requests
    // lost while the link still carries the flow: out of service by the
    // missing requests, but the subflows there are alive.
    let mut sim = router_b_under_flows();
    sim.through[0] = false;
    // The flow still gets through: its packets move the counter.
    let mut c = sim.counters.take().unwrap();
    while sim.ms() < 2000 {
        c[0] += 1;
        sim.counters = Some(c.clone());
        sim.step();
        c = sim.counters.take().unwrap();
    }
    assert_eq!(sim.in_service(), [false, true]);
    assert!(sim.times("CloseSubflows", 0).is_empty());
}

#[test]
fn router_b_closes_the_subflows_of_a_link_that_loses_its_carrier_at_once() {
    let mut sim = Sim::new(router_b_config());
    sim.run_to(1000);
    let down = LinkSnapshot { up: false, ..up(0) };
    sim.kernel(vec![(0, down)]);
    assert_eq!(sim.times("CloseSubflows", 0), [1000]);
    assert_eq!(sim.in_service(), [false, true]);
    sim.run_to(1500);
    assert_eq!(sim.times("CloseSubflows", 0), [1000], "once an outage");
    sim.kernel(vec![(0, up(0))]);
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.times("CloseSubflows", 0), [1000]);
}

#[test]
fn router_b_closes_no_subflows_when_told_not_to() {
    let mut cfg = router_b_config();
    cfg.close_subflows = false;
    let sim = router_b_black_hole(cfg, true);
    assert!(sim.times("CloseSubflows", 0).is_empty());
}

#[test]
fn router_b_closes_nothing_when_every_link_falls_silent_at_once() {
    // Router A gone, or its kernel held up: there is nowhere to move to.
    let mut sim = router_b_under_flows();
    sim.through = vec![false; 2];
    sim.in_flight.clear();
    sim.run_to(2000);
    assert_eq!(sim.in_service(), [true, true]);
    assert!(sim.times("CloseSubflows", 0).is_empty());
}

#[test]
fn a_refused_endpoint_or_rule_is_tried_again_at_the_next_look() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Nothing));
    sim.refuse = vec!["AddEndpoint", "AddRule"];
    let other = LinkSnapshot {
        addrs: vec![addr(0), ip("10.0.0.7")],
        ..up(0)
    };
    sim.kernel(vec![(0, other.clone())]);
    assert!(!sim.endpoints.contains_key(&ip("10.0.0.7")));
    assert!(!sim.rules.contains(&ip("10.0.0.7")));
    // Nothing changed in the kernel; the next look alone repairs it.
    sim.kernel(vec![(0, other)]);
    assert!(sim.endpoints.contains_key(&ip("10.0.0.7")));
    assert!(sim.rules.contains(&ip("10.0.0.7")));
    // A delete refused is tried again too.
    sim.refuse = vec!["DeleteEndpoint"];
    sim.kernel(vec![(0, up(0))]);
    assert!(sim.endpoints.contains_key(&ip("10.0.0.7")));
    sim.kernel(vec![(0, up(0))]);
    assert!(!sim.endpoints.contains_key(&ip("10.0.0.7")));
}

#[test]
fn a_prober_that_cannot_start_leaves_the_link_to_the_kernel_until_the_next_look() {
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Nothing));
    sim.planner.config.watch = Watch::Probes { v6: false };
    sim.refuse = vec!["StartProbing"];
    sim.kernel(vec![(0, up(0))]);
    assert_eq!(sim.planner.poll_timeout(), None);
    assert_eq!(sim.in_service(), [true]);
    sim.kernel(vec![(0, up(0))]);
    assert_eq!(sim.probing[&0], addr(0));
    assert!(sim.planner.poll_timeout().is_some());
}

#[test]
fn the_default_route_and_the_groups_are_asked_for_again_at_every_look() {
    // The kernel drops a link's routes and nexthops when it goes down;
    // a look after a quick flap must put them back.
    let mut sim = Sim::new(config(vec![spec(0, false)], Watch::Nothing));
    sim.kernel(vec![(0, up(0))]);
    assert_eq!(sim.times("SetDefaultRoute", 0).len(), 2);
    assert_eq!(sim.times("SetGroups", 0).len(), 2);
}

#[test]
fn a_nexthop_leads_to_the_peer_else_the_gateway_else_the_link() {
    let mut no_peer = spec(1, false);
    no_peer.peers.clear();
    let mut third = spec(2, false);
    third.peers.clear();
    let mut planner = Planner::new(
        config(vec![spec(0, false), no_peer, third], Watch::Nothing),
        Instant::now(),
    );
    let gw = ip("10.0.1.254");
    let mut learned = up(1);
    learned.gateways = [Some(gw), None];
    planner.handle(
        Instant::now(),
        Input::Links(vec![(0, up(0)), (1, learned), (2, up(2))]),
    );
    let mut groups = None;
    let mut routes = Vec::new();
    while let Some(a) = planner.poll_action() {
        match a {
            Action::SetGroups { members } => groups = Some(members),
            Action::SetDefaultRoute { via, .. } => routes.push(via),
            _ => {}
        }
    }
    let gateways: Vec<Option<IpAddr>> = groups.unwrap()[0].iter().map(|m| m.hop.gateway).collect();
    let want = [Some(ip("10.0.0.2")), Some(gw), None];
    assert_eq!(gateways, want);
    assert_eq!(routes, want);
}

#[test]
fn the_timer_is_the_earliest_probe_due_on_any_link() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(50);
    sim.kernel(vec![(1, LinkSnapshot { up: false, ..up(1) })]);
    sim.kernel(vec![(1, up(1))]);
    // Link 1's fresh prober is due at once.
    assert_eq!(sim.planner.poll_timeout(), Some(sim.now));
    sim.step();
    // Then link 0's next probe at 100 comes first: link 1's waits for its
    // answer up to 1 s (no RTT known yet) and sends again at 150.
    assert_eq!(sim.planner.poll_timeout(), Some(sim.t0 + 100 * MS));
    sim.run_to(102); // its answer is in
    assert_eq!(sim.planner.poll_timeout(), Some(sim.t0 + 150 * MS));
}

#[test]
fn a_benched_link_keeps_its_endpoint_flagged_backup_even_across_a_failure() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(500);
    sim.planner.set_benched(1, true, sim.now);
    sim.drain();
    // Renewed: removed (its subflows and what they hold go), then back
    // as a backup after the hold.
    assert_eq!(sim.times("DeleteEndpoint", 0), [500]);
    assert!(!sim.endpoints.contains_key(&addr(1)));
    sim.run_to(500 + HOLD + 1);
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    assert!(sim.planner.status()[1].backup && sim.planner.status()[1].in_service);
    // Benched again while benched: nothing more.
    sim.planner.set_benched(1, true, sim.now);
    sim.drain();
    assert_eq!(sim.times("DeleteEndpoint", 0), [500]);
    // Taken down by its probes: out of service, but its endpoint stays
    // (removing it would close its idle subflows, and the kernel then sends
    // each connection's whole window again), and nothing is renewed when
    // it returns.
    sim.through[1] = false;
    sim.run_to(1300);
    assert_eq!(sim.in_service(), [true, false]);
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    sim.through[1] = true;
    sim.run_to(2100);
    assert_eq!(sim.in_service(), [true, true]);
    assert_eq!(sim.endpoints[&addr(1)], BACKUP);
    assert_eq!(sim.times("DeleteEndpoint", 0), [500]);
    assert!(sim.renewals(600).is_empty());
    sim.planner.set_benched(1, false, sim.now);
    sim.drain();
    assert_eq!(sim.endpoints[&addr(1)], SUBFLOW);
    assert!(!sim.planner.status()[1].backup);
}

#[test]
fn a_renewal_removes_the_links_endpoints_and_adds_them_back_after_the_hold() {
    let mut sim = Sim::new(config(
        vec![spec(0, false), spec(1, false)],
        Watch::Probes { v6: false },
    ));
    sim.run_to(5000);
    let look = sim.planner.regain_links();
    assert_eq!(look[0].addrs, [addr(0)]);
    assert!(look[0].since.is_some_and(|t| t <= sim.now));
    sim.planner.renew_endpoints(0, sim.now);
    sim.drain();
    assert_eq!(sim.times("DeleteEndpoint", 0), [5000]);
    assert!(!sim.endpoints.contains_key(&addr(0)));
    // Held back: not a link to look at meanwhile, and a second renewal
    // asked now does nothing.
    assert_eq!(sim.planner.regain_links()[0].since, None);
    sim.planner.renew_endpoints(0, sim.now);
    sim.drain();
    assert_eq!(sim.times("DeleteEndpoint", 0), [5000]);
    sim.run_to(5000 + HOLD + 1);
    assert_eq!(sim.times("AddEndpoint", 5000), [5000 + HOLD]);
    assert_eq!(sim.endpoints[&addr(0)], SUBFLOW);
    // In service all along; looked at again from when they came back.
    assert_eq!(sim.in_service(), [true, true]);
    let since = sim.planner.regain_links()[0].since.unwrap();
    assert_eq!(since, sim.t0 + Duration::from_millis(5000 + HOLD));
    // The other link's endpoint was left alone.
    assert_eq!(sim.times("DeleteEndpoint", 0), [5000]);
}
