//! The path manager: turns the `[[link]]`s into kernel MPTCP endpoints,
//! limits and per-link policy routing, keeps them in step with the links'
//! state and addresses (the host's view, [`crate::host::HostView`]), takes
//! links out of service and back as their probes say, and removes
//! everything it added on exit.
//!
//! On both routers it also owns the multipath routes by which traffic that
//! is not bridged crosses between them, over the links in service.
//!
//! - [`mptcp`]: endpoints and limits (generic netlink `mptcp_pm`).
//! - [`route`]: the rules and routes the path manager adds, as rtnetlink
//!   messages.
//! - [`multipath`]: the routes of non-bridged traffic over a nexthop group.
//!
//! They speak netlink through the host layer ([`crate::host::rtnetlink`],
//! [`crate::host::nexthop`]).
//! - [`probe`]: authenticated UDP probes, link RTT, loss and up/down state
//!   (router A from its probes' answers, router B from their arrival).
//! - [`subflows`]: subflows on demand (`paths.subflows = "on-demand"`):
//!   which connection gets which extra subflow, when, through the
//!   userspace path manager; the planner's endpoint actions then feed it
//!   instead of the kernel's endpoint list.
//! - [`regain`]: router A with the in-kernel path manager: a connection
//!   left without a subflow on a link in service gets one (the link's
//!   endpoints renewed).
//! - [`policy`]: router A's slow links (`paths.slow_links = "bench"`, its
//!   default): a link that makes the bridge slower under load is kept as
//!   a backup, measured, and brought back when it helps.
//! - [`planner`]: every decision (in service or not, endpoints, rules,
//!   routes, group members, when to probe) as a state machine without I/O
//!   or clock, unit-tested on a simulated clock.
//! - `executor`: carries out the planner's actions on the kernel,
//!   idempotently, and turns the host's view into the planner's snapshots.
//!
//! One task owns the planner, a receiver of the host's view, the probes'
//! sockets and a single timer: it feeds the planner what happened, hands
//! what the planner asks to the executor and publishes the links' status.
//!
//! Recognising our own state after a crash: rules, routes and nexthops
//! carry routing protocol [`route::PROTOCOL`]; endpoints cannot carry a
//! tag, so at start every endpoint on a configured link (by device or by
//! address) is taken to be ours and removed. Links handed to mpbridge are
//! mpbridge's.

mod executor;
pub mod mptcp;
pub mod multipath;
pub mod planner;
pub mod policy;
pub mod probe;
pub mod regain;
pub mod route;
mod sockdiag;
pub mod subflows;

/// Runs `f` on a thread of its own inside a new, empty network namespace
/// with only `lo` up, so what a test sends never leaves it.
#[cfg(test)]
pub(crate) fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: only the network namespace is unshared, by a thread
        // that shares nothing else the flag could split.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .expect("unshare(CLONE_NEWNET) needs root");
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        f()
    })
    .join()
    .expect("test thread")
}

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{PathSettings, Role, SlowLinks, SubflowMode};
use crate::host;
use crate::host::rtnetlink::Rtnl;
use crate::ratelimit::LogLimit;
use executor::Executor;
use mptcp::Pm;
use multipath::Multipath;
use planner::{Input, LinkSpec, Planner, PlannerConfig, Watch};
use probe::{Arrival, LinkState, ProbeKeys, ProbeSettings};

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
    looker: SharedLooker,
    delivered: SharedDelivered,
}

/// The proxy's connections, once it hands them over
/// ([`PathManager::follow_connections`]).
type SharedLooker = Arc<Mutex<Option<regain::Looker>>>;

/// The bytes the proxy's connections delivered so far, both ways.
pub type Delivered = Box<dyn Fn() -> u64 + Send>;

/// The proxy's count, once it hands it over
/// ([`PathManager::follow_delivered`]).
type SharedDelivered = Arc<Mutex<Option<Delivered>>>;

/// Each link's status, as of the task's latest turn.
type SharedStatus = Arc<Mutex<Vec<LinkStatus>>>;

impl PathManager {
    /// Sets the links up (after removing leftovers of an earlier run) and
    /// starts following them. `None` when no link is configured: then the
    /// daemon leaves MPTCP endpoints and routing to the operator. `None`
    /// too, said in one warning, where the system refuses generic netlink
    /// (qemu-user): the daemon then serves without a path manager, as with
    /// no link. On error whatever was added is removed again.
    ///
    /// `Role::Local` (router A) adds `subflow` endpoints and policy
    /// routing, and probes out of each link to the first of `remotes`.
    /// `Role::Remote` (router B; `remotes` unused) sets the MPTCP limits,
    /// answers probes (whose requests tell each link's health) and owns
    /// the multipath routes; no endpoints and no policy routing. It answers
    /// every subflow from the address router A dialled, so routing its
    /// replies by source would send them all over one link, where the
    /// subflows bound to the other links' devices never see them; and
    /// announcing its other addresses (signal endpoints) only made router
    /// A open a second subflow over a link it already uses (measured in the
    /// lab, 3 links: 4 subflows instead of 3, one of them a duplicate).
    ///
    /// The links' state and addresses come from `host`, the daemon's one
    /// view of this host; the manager follows its changes. `ports`: router
    /// B's listening ports, whose subflows it may close over a link that
    /// fell silent (`probe.close_subflows`); empty elsewhere.
    pub async fn start(
        settings: &PathSettings,
        role: Role,
        remotes: &[SocketAddr],
        ports: &[u16],
        auth: &crate::config::Auth,
        host: host::Watch,
    ) -> Result<Option<PathManager>, PathError> {
        if settings.links.is_empty() {
            return Ok(None);
        }
        let pm = match Pm::connect() {
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
        let mut pm = pm;
        let rt = Rtnl::open()
            .map_err(|e| PathError::Unavailable(format!("no rtnetlink socket: {e}")))?;
        let saved_limits = pm.limits().map_err(|e| {
            PathError::Unavailable(format!(
                "the kernel's MPTCP path manager (generic netlink family mptcp_pm) does not answer: {e}"
            ))
        })?;
        let routes = &settings.routes;
        let multipath = (!routes.prefixes.is_empty()).then(|| Multipath::new(routes.clone()));
        let rates: Vec<Option<u32>> = settings.links.iter().map(|l| l.rate_mbit).collect();
        let keys = Arc::new(ProbeKeys::from_auth(auth));
        let probe = &settings.probe;
        // Router B answers probes on every link; router A probes the first
        // remote out of each link.
        let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
        let (responder, probe_dest) = match (role, probe.enabled) {
            (_, false) => (None, None),
            (Role::Remote, true) => {
                let ifnames: Vec<String> =
                    settings.links.iter().map(|l| l.interface.clone()).collect();
                let responder =
                    probe::spawn_responder(&ifnames, probe.port, Arc::clone(&keys), arrivals_tx)
                        .map_err(|e| {
                            PathError::Kernel(format!(
                                "cannot answer probes on UDP port {}: {e}",
                                probe.port
                            ))
                        })?;
                (Some(responder), None)
            }
            (Role::Local, true) => (
                None,
                remotes
                    .first()
                    .map(|r| SocketAddr::new(r.ip().to_canonical(), probe.port)),
            ),
        };
        let watch = match (role, probe_dest) {
            (Role::Local, Some(dest)) => Watch::Probes { v6: dest.is_ipv6() },
            (Role::Remote, _) if responder.is_some() => Watch::Arrivals,
            _ => Watch::Nothing,
        };
        let links: Vec<LinkSpec> = settings
            .links
            .iter()
            .zip(multipath::weights(&rates))
            .enumerate()
            .map(|(i, (cfg, weight))| LinkSpec {
                interface: cfg.interface.clone(),
                backup: cfg.backup,
                peers: cfg.peers.clone(),
                table: settings.table_base + i as u32,
                weight,
            })
            .collect();
        let config = PlannerConfig {
            links,
            endpoints: role == Role::Local,
            watch,
            probe: ProbeSettings {
                interval: probe.interval,
                down_after: probe.down_after,
                up_after: probe.up_after,
            },
            down_action: probe.down_action,
            interface_counter: probe.interface_counter,
            close_subflows: probe.enabled && probe.close_subflows && role == Role::Remote,
            rule_priority: settings.rule_priority,
            multipath: multipath.is_some(),
        };
        let status: SharedStatus = Arc::new(Mutex::new(Vec::new()));
        let exec = Executor::new(
            pm,
            rt,
            &config.links,
            multipath,
            keys,
            probe_dest,
            saved_limits,
        )
        .with_subflows(settings.subflows)
        .with_close_ports(if config.close_subflows { ports } else { &[] });
        // Router A's endpoints carry the backup flag; router B follows it.
        let policy = (role == Role::Local && settings.slow_links == SlowLinks::Bench).then(|| {
            policy::Policy::new(
                settings.links.len(),
                policy::Settings::default(),
                Instant::now(),
            )
        });
        let regain = (role == Role::Local && settings.subflows == SubflowMode::Kernel).then(|| {
            regain::Regain::new(
                settings.links.len(),
                regain::Settings::default(),
                Instant::now(),
            )
        });
        let looker: SharedLooker = Arc::default();
        let delivered: SharedDelivered = Arc::default();
        let mut mgr = Manager {
            policy,
            regain,
            looker: Arc::clone(&looker),
            delivered: Arc::clone(&delivered),
            planner: Planner::new(config, Instant::now()),
            exec,
            _responder: responder,
            status: Arc::clone(&status),
        };
        let mut host = host;
        if let Err(e) = mgr.setup(&mut host) {
            mgr.exec.cleanup();
            return Err(e);
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(mgr.run(host, arrivals, stop_rx));
        Ok(Some(PathManager {
            stop: Some(stop_tx),
            task: Some(task),
            status,
            looker,
            delivered,
        }))
    }

    /// A snapshot of every link's state, RTT and loss as of now.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.reader().status()
    }

    /// Router A with the in-kernel path manager: `looker` hands out the
    /// proxy's connections and their working subflows, and a connection
    /// left without one on a link in service gets one ([`regain`]).
    /// Elsewhere it is never called.
    pub fn follow_connections(&self, looker: regain::Looker) {
        *self.looker.lock().unwrap_or_else(|p| p.into_inner()) = Some(looker);
    }

    /// Router A: `count` gives the bytes the proxy's connections delivered
    /// so far, which the slow-links policy compares with a link and
    /// without it (the links' counters also carry what MPTCP sends twice).
    pub fn follow_delivered(&self, count: Delivered) {
        *self.delivered.lock().unwrap_or_else(|p| p.into_inner()) = Some(count);
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
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Queued probe replies or requests taken in one turn at most.
const QUEUED_MAX: usize = 256;

static RECONCILE_FAILED: LogLimit = LogLimit::new(std::time::Duration::from_secs(10));

/// The one task's state: the planner and what carries out its actions.
struct Manager {
    planner: Planner,
    /// Router A's slow-links policy, when on.
    policy: Option<policy::Policy>,
    /// Router A's watch over connections that lost a link (in-kernel path
    /// manager), and what it looks at.
    regain: Option<regain::Regain>,
    looker: SharedLooker,
    /// What the proxy delivered, for the policy.
    delivered: SharedDelivered,
    exec: Executor,
    /// Router B's probe responder, stopped with the manager.
    _responder: Option<probe::Responder>,
    status: SharedStatus,
}

/// What woke the task.
enum Wake {
    Stop,
    /// The host's view changed (a link or an address): look again.
    Host,
    /// A reply to router A's probe `seq` on link `link`.
    Reply(usize, u32),
    /// A probe request arrived at router B.
    Arrival(Arrival),
    /// The planner's timer.
    Timer,
    /// The MPTCP path manager's events (subflows on demand).
    Events(Vec<mptcp::PmEvent>),
}

impl Manager {
    /// The first look at every link; any action refused is an error.
    /// Marks the view it looked at as seen: a later change wakes the task.
    fn setup(&mut self, host: &mut host::Watch) -> Result<(), PathError> {
        let view = Arc::clone(&host.borrow_and_update());
        self.exec.prepare(&view)?;
        if let Some(m) = &mut self.exec.multipath {
            m.set_hash_policy();
        }
        let snapshot = self.exec.snapshot(&view);
        self.planner.handle(Instant::now(), Input::Links(snapshot));
        self.execute(true)?;
        let status = self.planner.status();
        if let Some(m) = &self.exec.multipath {
            for link in &status {
                for v6 in m.families() {
                    if !self.has_peer(&link.interface, v6) {
                        tracing::info!(
                            link = %link.interface,
                            "no {} peer configured: the routes' next hop on this link is the \
                             gateway of its routes, else the link itself (right on \
                             point-to-point links; set [[link]] peer otherwise)",
                            if v6 { "IPv6" } else { "IPv4" }
                        );
                    }
                }
            }
        }
        self.publish();
        for (link, spec) in status.iter().zip(self.planner.links()) {
            tracing::info!(
                link = %link.interface,
                up = link.kernel_up,
                addrs = ?link.addrs,
                table = spec.table,
                backup = link.backup,
                "path set up"
            );
        }
        Ok(())
    }

    fn has_peer(&self, interface: &str, v6: bool) -> bool {
        self.planner
            .links()
            .iter()
            .any(|l| l.interface == interface && l.peers.iter().any(|p| p.is_ipv6() == v6))
    }

    /// Carries out every action the planner has; a refused one goes back
    /// to the planner (and, when `fatal`, fails the call).
    fn execute(&mut self, fatal: bool) -> Result<(), PathError> {
        while let Some(action) = self.planner.poll_action() {
            let applied = self.exec.apply(&action);
            if let (Ok(_), planner::Action::DeleteEndpoint { link, .. }) = (&applied, &action) {
                self.planner.endpoint_removed(*link, Instant::now());
            }
            if let Err(e) = applied {
                let probing = matches!(action, planner::Action::StartProbing { .. });
                if fatal && !probing {
                    return Err(PathError::Kernel(e));
                }
                let link = action_link(&action).and_then(|i| self.planner.links().get(i));
                match link {
                    Some(l) => crate::warn_limited!(RECONCILE_FAILED, link = %l.interface, "{e}"),
                    None => crate::warn_limited!(RECONCILE_FAILED, "{e}"),
                }
                self.planner.handle(Instant::now(), Input::Refused(action));
            }
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut host: host::Watch,
        mut arrivals: mpsc::UnboundedReceiver<Arrival>,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            let wake = self.wait(&mut host, &mut arrivals, &mut stop).await;
            let now = Instant::now();
            self.planner.woke(now);
            match wake {
                Wake::Stop => break,
                Wake::Host => {
                    // The view as of now: changes made while the task was
                    // busy (a link going down drops its addresses one by
                    // one) cost one look.
                    let view = Arc::clone(&host.borrow_and_update());
                    let snapshot = self.exec.snapshot(&view);
                    self.planner.handle(now, Input::Links(snapshot));
                }
                Wake::Reply(link, seq) => self.planner.handle(now, Input::ProbeReply { link, seq }),
                Wake::Arrival(a) => self.planner.handle(
                    now,
                    Input::Arrival {
                        ifindex: a.ifindex,
                        session: a.session,
                        seq: a.seq,
                        view: a.view,
                    },
                ),
                Wake::Timer => {}
                Wake::Events(events) => self.exec.handle_events(now, events),
            }
            // Replies and requests that came while the task was busy count
            // before the timer may call their probes lost: a daemon held up
            // for a few intervals must not take a link down.
            self.take_queued(now, &mut arrivals);
            // A link whose probes are being lost: does it still receive?
            for link in self.planner.wanting_received(now) {
                if let Some((packets, bytes)) = self.exec.received(link) {
                    let input = Input::Received {
                        link,
                        packets,
                        bytes,
                    };
                    self.planner.handle(now, input);
                }
            }
            // Also after any other wake: a busy turn never starves the timer.
            if self.planner.poll_timeout().is_some_and(|t| t <= now) {
                self.planner.handle_timeout(now);
            }
            self.exec.handle_subflow_timeout(now);
            self.apply_policy(now);
            self.look_for_stranded(now);
            let _ = self.execute(false);
            self.exec.drive_subflows(now);
            self.publish();
        }
        self.exec.cleanup();
    }

    /// Hands the planner the probe replies and requests already queued,
    /// without waiting (a bounded number, so a flood cannot hold the task).
    fn take_queued(&mut self, now: Instant, arrivals: &mut mpsc::UnboundedReceiver<Arrival>) {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..QUEUED_MAX {
            match self.exec.poll_reply(&mut cx) {
                Poll::Ready((link, seq)) => {
                    self.planner.handle(now, Input::ProbeReply { link, seq })
                }
                Poll::Pending => break,
            }
        }
        for _ in 0..QUEUED_MAX {
            let Ok(a) = arrivals.try_recv() else { break };
            self.planner.handle(
                now,
                Input::Arrival {
                    ifindex: a.ifindex,
                    session: a.session,
                    seq: a.seq,
                    view: a.view,
                },
            );
        }
    }

    /// Waits for the next thing to happen.
    async fn wait(
        &self,
        host: &mut host::Watch,
        arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Wake {
        let policy = self.policy.as_ref().map(policy::Policy::poll_timeout);
        let regain = self.regain.as_ref().map(regain::Regain::poll_timeout);
        let next = [
            self.planner.poll_timeout(),
            self.exec.subflow_timeout(),
            policy,
            regain,
        ]
        .into_iter()
        .flatten()
        .min();
        let timer = async {
            match next {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        let reply = poll_fn(|cx| match self.exec.poll_reply(cx) {
            Poll::Ready((link, seq)) => Poll::Ready(Wake::Reply(link, seq)),
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            _ = stop => Wake::Stop,
            // An error when the view's thread ended (said in its
            // warning): the links then change with the probes alone.
            Ok(()) = host.changed() => Wake::Host,
            Some(a) = arrivals.recv() => Wake::Arrival(a),
            wake = reply => wake,
            events = poll_fn(|cx| self.exec.poll_events(cx)) => Wake::Events(events),
            () = timer => Wake::Timer,
        }
    }

    /// When due: the links' counters and state to the slow-links
    /// policy, and its verdicts to the planner.
    fn apply_policy(&mut self, now: Instant) {
        let Some(policy) = &mut self.policy else {
            return;
        };
        if policy.poll_timeout() > now {
            return;
        }
        let samples: Vec<policy::Sample> = self
            .planner
            .status()
            .into_iter()
            .map(|l| policy::Sample {
                in_service: l.in_service,
                bytes: self
                    .exec
                    .rt
                    .link_bytes(&l.interface)
                    .ok()
                    .flatten()
                    .map(|(rx, tx)| rx + tx),
            })
            .collect();
        let delivered = self
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|count| count());
        policy.handle_sample(now, &samples, delivered);
        while let Some(change) = policy.poll_change() {
            self.planner.set_benched(change.link, change.benched, now);
        }
    }

    /// When due: the connections' subflows against the links in service,
    /// and the links that some connection lacks renewed ([`regain`]).
    fn look_for_stranded(&mut self, now: Instant) {
        let Some(regain) = &mut self.regain else {
            return;
        };
        if regain.poll_timeout() > now {
            return;
        }
        let conns = match &mut *self.looker.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(look) => look(),
            None => Vec::new(),
        };
        let links = self.planner.regain_links();
        for (link, connections) in regain.handle_look(now, &links, &conns) {
            tracing::info!(
                link = %self.planner.links()[link].interface,
                connections,
                "a connection has no subflow on this link in service: its MPTCP endpoints are \
                 renewed, so that every connection joins it again"
            );
            self.planner.renew_endpoints(link, now);
        }
    }

    fn publish(&self) {
        let mut status = self.planner.status();
        for (s, &carries) in status.iter_mut().zip(&self.exec.carries) {
            s.carries_routes = carries;
        }
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }
}

/// The link an action is about, for the log.
fn action_link(action: &planner::Action) -> Option<usize> {
    use planner::Action::*;
    match *action {
        StartProbing { link, .. }
        | StopProbing { link }
        | SendProbe { link, .. }
        | SetDefaultRoute { link, .. }
        | AddRule { link, .. }
        | DeleteRule { link, .. }
        | AddEndpoint { link, .. }
        | SetEndpointFlags { link, .. }
        | DeleteEndpoint { link, .. }
        | CloseSubflows { link, .. } => Some(link),
        SetGroups { .. } => None,
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
}
