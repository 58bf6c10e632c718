//! Subflows on demand (`paths.subflows = "on-demand"`, router A): with the
//! kernel's userspace path manager a connection starts with its initial
//! subflow alone, and the daemon adds one per link in service only once the
//! connection has lived `after` (a short request is over by then: one
//! handshake instead of one per link), or at once when it is left without a
//! working subflow because a link failed. Subflows on a link that leaves
//! service are closed, and a link that returns gets a subflow on every
//! connection that has them on every link.
//!
//! [`OnDemand`] decides, as a state machine without I/O or clock: it is fed
//! the path manager's events ([`PmEvent`]) and the link addresses in service
//! (from the planner's endpoint actions), and hands out [`SubflowAction`]s
//! by the time [`OnDemand::poll_timeout`] says. [`PmSysctl`] switches the
//! namespace's path manager and puts it back.
//!
//! The default threshold, 200 ms: a 1 KB request and reply through the
//! bridge takes 2.5 ms at the 90th percentile on a quiet lab machine and
//! 12–15 ms on one at load 20, so such connections never reach it, while a
//! download loses the other links' share only for its first 200 ms (1.25 MB
//! at 50 Mbit/s). Measured side by side (`tests/ondemand.rs`,
//! `subflow_modes_side_by_side`): on demand no join per short connection
//! instead of one per extra link and failover within the kernel's spread,
//! but connections per second only within noise of the kernel's (+13 % in
//! one run, −2 % in another) for twice router A's CPU per connection (the
//! events it is sent), which is why the in-kernel path manager stays the
//! default.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::mptcp::{EventAddrs, PmEvent};

/// How long a failed join waits before it is asked again.
pub const RETRY: Duration = Duration::from_secs(1);

/// A link address that can carry subflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The link's index in the configuration (for the log).
    pub link: usize,
    /// The address's id in every connection (non-zero; 0 is the initial
    /// subflow's).
    pub id: u8,
    /// Subflows from it are bound to this device.
    pub ifindex: Option<u32>,
    /// Subflows from it are MPTCP backups.
    pub backup: bool,
}

/// What the kernel must do for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubflowAction {
    /// A new subflow of `token` from `local` to `remote`.
    Create {
        token: u32,
        local: IpAddr,
        info: Local,
        remote: SocketAddr,
    },
    /// Tell the peer (RM_ADDR) that local address `id` of `token` is gone:
    /// it closes its end of those subflows at once and resends their data
    /// over the others (a black-holed link would hold them for its RTOs).
    Remove { token: u32, id: u8 },
    /// Close the subflow `local` → `remote` of `token`.
    Destroy {
        token: u32,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Mark the subflows of `token` from `local` to `remote` backup or not.
    SetBackup {
        token: u32,
        local: IpAddr,
        remote: IpAddr,
        backup: bool,
    },
}

/// One connection this host opened.
#[derive(Debug)]
struct Conn {
    /// Where new subflows go: the initial subflow's remote end.
    remote: SocketAddr,
    created: Instant,
    /// Fully established: subflows may join.
    established: bool,
    /// Wants a subflow on every link in service.
    promoted: bool,
    /// Established subflows, as the events name them (initial included).
    subflows: Vec<(SocketAddr, SocketAddr)>,
    /// The local address id each local address has in this connection
    /// (0 for the initial subflow's).
    local_ids: Vec<(IpAddr, u8)>,
    /// Local addresses of the joins asked for and not yet established.
    pending: Vec<IpAddr>,
    /// No join is asked before this (after a failed one).
    retry_at: Option<Instant>,
}

/// The decisions of subflows on demand; see the module doc.
#[derive(Debug)]
pub struct OnDemand {
    after: Duration,
    /// Link addresses in service.
    locals: BTreeMap<IpAddr, Local>,
    /// Every address a link ever had, with its latest id: subflows from one of
    /// these are ours to manage; others (a route the links do not carry)
    /// are left alone and count as working.
    ids: BTreeMap<IpAddr, u8>,
    conns: HashMap<u32, Conn>,
    /// The next local address id to hand out (1..=255).
    next_id: u8,
    /// Promotion deadlines and retries: (when, token), earliest first.
    timers: BTreeSet<(Instant, u32)>,
    actions: VecDeque<SubflowAction>,
}

impl OnDemand {
    /// Connections get a subflow on every link once they have lived `after`.
    pub fn new(after: Duration) -> OnDemand {
        OnDemand {
            after,
            locals: BTreeMap::new(),
            ids: BTreeMap::new(),
            conns: HashMap::new(),
            next_id: 1,
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
        }
    }

    /// How many connections are followed (for the log and tests).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A fresh id for `addr`, which comes into service (again): not the one
    /// it had before, which the peer may still hold for subflows it has not
    /// yet closed, nor one an address in service has.
    fn fresh_id(&mut self, addr: IpAddr) -> u8 {
        let in_use: Vec<u8> = self.locals.values().map(|l| l.id).collect();
        let mut id = self.next_id;
        while in_use.contains(&id) {
            id = id % 255 + 1;
        }
        self.next_id = id % 255 + 1;
        self.ids.insert(addr, id);
        id
    }

    /// Link `link`'s address `addr` carries subflows (again, or with
    /// another backup flag).
    pub fn set_local(
        &mut self,
        now: Instant,
        addr: IpAddr,
        link: usize,
        ifindex: Option<u32>,
        backup: bool,
    ) {
        let id = match self.locals.get(&addr) {
            Some(l) => l.id,
            None => self.fresh_id(addr),
        };
        let local = Local {
            link,
            id,
            ifindex,
            backup,
        };
        let before = self.locals.insert(addr, local);
        if let Some(before) = before {
            if before.backup != backup {
                for (&token, conn) in &self.conns {
                    for &(l, r) in conn.subflows.iter().filter(|(l, _)| l.ip() == addr) {
                        self.actions.push_back(SubflowAction::SetBackup {
                            token,
                            local: l.ip(),
                            remote: r.ip(),
                            backup,
                        });
                    }
                }
            }
        }
        self.plan_all(now);
    }

    /// `addr`'s subflows become backups or regular ones.
    pub fn set_backup(&mut self, now: Instant, addr: IpAddr, backup: bool) {
        if let Some(l) = self.locals.get(&addr).copied() {
            self.set_local(now, addr, l.link, l.ifindex, backup);
        }
    }

    /// `addr` no longer carries subflows: they are closed, and connections
    /// left without a working one get subflows on the other links.
    pub fn remove_local(&mut self, now: Instant, addr: IpAddr) {
        if self.locals.remove(&addr).is_some() {
            self.plan_all(now);
        }
    }

    /// What the kernel's path manager said.
    pub fn handle_event(&mut self, now: Instant, event: PmEvent) {
        match event {
            PmEvent::Created { conn, server_side } => {
                if !server_side {
                    self.follow(now, conn);
                }
            }
            PmEvent::Established { conn, server_side } => {
                if server_side {
                    return;
                }
                // Its creation was missed (the daemon started after it).
                self.follow(now, conn);
                if let Some(c) = self.conns.get_mut(&conn.token) {
                    c.established = true;
                    if now >= c.created + self.after {
                        c.promoted = true;
                    }
                }
                self.plan(now, conn.token);
            }
            PmEvent::Closed { token } => {
                self.conns.remove(&token);
            }
            PmEvent::SubEstablished { sub, id, .. } => {
                if let Some(c) = self.conns.get_mut(&sub.token) {
                    c.local_ids.retain(|(a, _)| *a != sub.local.ip());
                    c.local_ids.push((sub.local.ip(), id));
                    c.pending.retain(|a| *a != sub.local.ip());
                    if !c.subflows.contains(&(sub.local, sub.remote)) {
                        c.subflows.push((sub.local, sub.remote));
                    }
                    // Destroyed meanwhile? Its link is gone: close it.
                    self.plan(now, sub.token);
                }
            }
            PmEvent::SubClosed { sub } => self.subflow_closed(now, sub),
        }
    }

    fn follow(&mut self, now: Instant, conn: EventAddrs) {
        if self.conns.contains_key(&conn.token) {
            return;
        }
        self.conns.insert(
            conn.token,
            Conn {
                remote: conn.remote,
                created: now,
                established: false,
                promoted: false,
                subflows: vec![(conn.local, conn.remote)],
                local_ids: vec![(conn.local.ip(), 0)],
                pending: Vec::new(),
                retry_at: None,
            },
        );
        self.timers.insert((now + self.after, conn.token));
    }

    fn subflow_closed(&mut self, now: Instant, sub: EventAddrs) {
        let Some(c) = self.conns.get_mut(&sub.token) else {
            return;
        };
        let had = c.subflows.len();
        c.subflows.retain(|s| *s != (sub.local, sub.remote));
        let was_pending = c.pending.contains(&sub.local.ip());
        if c.subflows.len() == had && was_pending {
            // A join that failed: ask again later.
            c.pending.retain(|a| *a != sub.local.ip());
            self.retry_later(now, sub.token);
        } else if c.subflows.len() < had && self.locals.contains_key(&sub.local.ip()) {
            // Closed by the peer or the network on a link in service:
            // open it again, not at once (no storm on a flapping link).
            self.retry_later(now, sub.token);
        }
        self.plan(now, sub.token);
    }

    fn retry_later(&mut self, now: Instant, token: u32) {
        if let Some(c) = self.conns.get_mut(&token) {
            let at = now + RETRY;
            c.retry_at = Some(at);
            self.timers.insert((at, token));
        }
    }

    /// The executor could not carry `action` out.
    pub fn refused(&mut self, now: Instant, action: &SubflowAction) {
        if let SubflowAction::Create { token, local, .. } = *action {
            if let Some(c) = self.conns.get_mut(&token) {
                c.pending.retain(|a| *a != local);
                self.retry_later(now, token);
            }
        }
    }

    /// Connection `token` is gone (the kernel no longer knows its token: its
    /// CLOSED event was lost) or is not the userspace path manager's (it
    /// was opened before the switch): nothing more is asked for it.
    pub fn forget(&mut self, token: u32) {
        self.conns.remove(&token);
    }

    /// When [`OnDemand::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, token)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let after = self.after;
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            if now >= c.created + after {
                c.promoted = true;
            }
            if c.retry_at.is_some_and(|r| r <= now) {
                c.retry_at = None;
            }
            self.plan(now, token);
        }
    }

    pub fn poll_action(&mut self) -> Option<SubflowAction> {
        self.actions.pop_front()
    }

    fn plan_all(&mut self, now: Instant) {
        let tokens: Vec<u32> = self.conns.keys().copied().collect();
        for token in tokens {
            self.plan(now, token);
        }
    }

    /// Whether a subflow from `local` carries traffic: from an address no
    /// link has (left alone), or from one in service that is no backup
    /// unless every address of its family is a backup.
    fn working(&self, local: IpAddr) -> bool {
        if !self.ids.contains_key(&local) {
            return true;
        }
        match self.locals.get(&local) {
            None => false,
            Some(l) if !l.backup => true,
            Some(_) => !self
                .locals
                .iter()
                .any(|(a, l)| a.is_ipv4() == local.is_ipv4() && !l.backup),
        }
    }

    /// The joins and closes connection `token` needs now: joins first (a
    /// connection never loses its last subflow before a new one is asked).
    fn plan(&mut self, now: Instant, token: u32) {
        let Some(c) = self.conns.get(&token) else {
            return;
        };
        let closing: Vec<(SocketAddr, SocketAddr)> = c
            .subflows
            .iter()
            .filter(|(l, _)| self.ids.contains_key(&l.ip()) && !self.locals.contains_key(&l.ip()))
            .copied()
            .collect();
        let stranded = c.established
            && !c.subflows.iter().any(|(l, _)| self.working(l.ip()))
            && !c.pending.iter().any(|a| self.working(*a));
        let may_join = c.established && c.retry_at.is_none_or(|r| r <= now);
        let promoted = c.promoted || stranded;
        let remote = SocketAddr::new(c.remote.ip().to_canonical(), c.remote.port());
        let mut joins = Vec::new();
        if promoted && may_join {
            for (&addr, &info) in &self.locals {
                let used = c
                    .subflows
                    .iter()
                    .any(|(l, _)| l.ip().to_canonical() == addr)
                    || c.pending.contains(&addr);
                if !used && addr.is_ipv4() == remote.is_ipv4() {
                    joins.push((addr, info));
                }
            }
        }
        let c = self.conns.get_mut(&token).expect("looked up above");
        c.promoted = promoted;
        for (addr, info) in joins {
            c.pending.push(addr);
            self.actions.push_back(SubflowAction::Create {
                token,
                local: addr,
                info,
                remote,
            });
        }
        let mut removed: Vec<u8> = Vec::new();
        for (local, _) in &closing {
            let id = c
                .local_ids
                .iter()
                .find(|(a, _)| *a == local.ip())
                .map(|(_, id)| *id);
            if let Some(id) = id.filter(|id| !removed.contains(id)) {
                removed.push(id);
                self.actions.push_back(SubflowAction::Remove { token, id });
            }
            c.local_ids.retain(|(a, _)| *a != local.ip());
        }
        for (local, remote) in closing {
            c.subflows.retain(|s| *s != (local, remote));
            self.actions.push_back(SubflowAction::Destroy {
                token,
                local,
                remote,
            });
        }
    }
}

/// The namespace's choice of MPTCP path manager: `net.mptcp.path_manager`
/// ("kernel" or "userspace", Linux 6.15+) or before it `net.mptcp.pm_type`
/// (0 or 1, Linux 5.19+). Only new connections follow a change.
///
/// The file stays open: a net sysctl belongs to the namespace of whoever
/// opened it, so the value is put back in the namespace it was read in,
/// whichever thread restores it.
#[derive(Debug)]
pub struct PmSysctl {
    path: &'static str,
    file: std::fs::File,
    /// The value found, put back by [`PmSysctl::restore`].
    saved: String,
}

const PATH_MANAGER: &str = "/proc/sys/net/mptcp/path_manager";
const PM_TYPE: &str = "/proc/sys/net/mptcp/pm_type";

impl PmSysctl {
    /// Reads the current choice; an error names what this kernel lacks.
    pub fn read() -> io::Result<PmSysctl> {
        use std::io::Read;
        for path in [PATH_MANAGER, PM_TYPE] {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path);
            let mut file = match opened {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot open {path}: {e}"))),
            };
            let mut saved = String::new();
            file.read_to_string(&mut saved)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
            return Ok(PmSysctl {
                path,
                file,
                saved: saved.trim().to_owned(),
            });
        }
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel has no userspace MPTCP path manager (net.mptcp.path_manager or \
             net.mptcp.pm_type, Linux 5.19+)",
        ))
    }

    /// Whether the namespace's path manager is the userspace one.
    pub fn is_userspace(&self) -> bool {
        is_userspace_value(&self.saved)
    }

    /// Selects the userspace (`true`) or in-kernel path manager.
    pub fn set(&self, userspace: bool) -> io::Result<()> {
        let value = match (self.path == PATH_MANAGER, userspace) {
            (true, true) => "userspace",
            (true, false) => "kernel",
            (false, true) => "1",
            (false, false) => "0",
        };
        self.write(value)
    }

    fn write(&self, value: &str) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_at(value.as_bytes(), 0)
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write {value} to {}: {e}", self.path),
                )
            })
    }

    /// Puts back the value found by [`PmSysctl::read`].
    pub fn restore(&self) -> io::Result<()> {
        self.write(&self.saved)
    }

    /// The sysctl's name and the value found, for the log.
    pub fn describe(&self) -> String {
        let name = self.path.trim_start_matches("/proc/sys/").replace('/', ".");
        format!("{name} = {}", self.saved)
    }
}

fn is_userspace_value(v: &str) -> bool {
    v == "userspace" || v == "1"
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_millis(200);
    const L0: &str = "10.20.0.1";
    const L1: &str = "10.20.1.1";
    const REMOTE: &str = "10.20.0.2:4443";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn conn(token: u32, local: &str) -> EventAddrs {
        EventAddrs {
            token,
            local: sa(local),
            remote: sa(REMOTE),
        }
    }

    fn drain(od: &mut OnDemand) -> Vec<SubflowAction> {
        std::iter::from_fn(|| od.poll_action()).collect()
    }

    /// Two links in service and connection 7 established on link 0.
    fn two_links(t0: Instant) -> OnDemand {
        let mut od = OnDemand::new(AFTER);
        od.set_local(t0, ip(L0), 0, Some(3), false);
        od.set_local(t0, ip(L1), 1, Some(4), false);
        let c = conn(7, "10.20.0.1:40000");
        od.handle_event(
            t0,
            PmEvent::Created {
                conn: c,
                server_side: false,
            },
        );
        od.handle_event(
            t0,
            PmEvent::Established {
                conn: c,
                server_side: false,
            },
        );
        od
    }

    fn creates(actions: &[SubflowAction]) -> Vec<(u32, IpAddr)> {
        actions
            .iter()
            .filter_map(|a| match a {
                SubflowAction::Create { token, local, .. } => Some((*token, *local)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_short_connection_gets_no_extra_subflow() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        assert!(drain(&mut od).is_empty());
        od.handle_event(t0 + AFTER / 2, PmEvent::Closed { token: 7 });
        od.handle_timeout(t0 + AFTER);
        assert!(drain(&mut od).is_empty());
        assert_eq!(od.connections(), 0);
    }

    #[test]
    fn a_connection_that_lives_past_the_threshold_joins_every_other_link() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        assert_eq!(od.poll_timeout(), Some(t0 + AFTER));
        od.handle_timeout(t0 + AFTER - Duration::from_millis(1));
        assert!(drain(&mut od).is_empty());
        od.handle_timeout(t0 + AFTER);
        let actions = drain(&mut od);
        assert_eq!(
            actions,
            vec![SubflowAction::Create {
                token: 7,
                local: ip(L1),
                info: Local {
                    link: 1,
                    id: 2,
                    ifindex: Some(4),
                    backup: false
                },
                remote: sa(REMOTE),
            }]
        );
        // Asked once: a look before it is established asks nothing more.
        od.handle_timeout(t0 + 3 * AFTER);
        od.set_local(t0 + 3 * AFTER, ip(L0), 0, Some(3), false);
        assert!(drain(&mut od).is_empty());
    }

    #[test]
    fn no_join_before_the_connection_is_established() {
        let t0 = Instant::now();
        let mut od = OnDemand::new(AFTER);
        od.set_local(t0, ip(L0), 0, None, false);
        od.set_local(t0, ip(L1), 1, None, false);
        let c = conn(9, "10.20.0.1:40001");
        od.handle_event(
            t0,
            PmEvent::Created {
                conn: c,
                server_side: false,
            },
        );
        od.handle_timeout(t0 + AFTER);
        assert!(drain(&mut od).is_empty());
        od.handle_event(
            t0 + 2 * AFTER,
            PmEvent::Established {
                conn: c,
                server_side: false,
            },
        );
        assert_eq!(creates(&drain(&mut od)), vec![(9, ip(L1))]);
    }

    #[test]
    fn a_failed_link_moves_its_young_connections_at_once_and_closes_its_subflows() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        let t1 = t0 + Duration::from_millis(10);
        od.remove_local(t1, ip(L0));
        let actions = drain(&mut od);
        // The join on the survivor first, then the dead link's subflow closed.
        assert_eq!(
            actions,
            vec![
                SubflowAction::Create {
                    token: 7,
                    local: ip(L1),
                    info: Local {
                        link: 1,
                        id: 2,
                        ifindex: Some(4),
                        backup: false
                    },
                    remote: sa(REMOTE),
                },
                SubflowAction::Remove { token: 7, id: 0 },
                SubflowAction::Destroy {
                    token: 7,
                    local: sa("10.20.0.1:40000"),
                    remote: sa(REMOTE),
                },
            ]
        );
        // The join succeeds; the link returns: the connection, promoted by
        // its failover, gets a subflow on it again.
        od.handle_event(
            t1,
            PmEvent::SubEstablished {
                sub: conn(7, "10.20.1.1:50000"),
                id: 2,
                backup: false,
            },
        );
        od.set_local(t1 + AFTER, ip(L0), 0, Some(3), false);
        assert_eq!(creates(&drain(&mut od)), vec![(7, ip(L0))]);
        // Its link removed in turn: the peer hears of that address's id.
        od.handle_event(
            t1 + AFTER,
            PmEvent::SubEstablished {
                sub: conn(7, "10.20.0.1:50002"),
                id: 1,
                backup: false,
            },
        );
        od.remove_local(t1 + 2 * AFTER, ip(L1));
        let actions = drain(&mut od);
        assert!(
            actions.contains(&SubflowAction::Remove { token: 7, id: 2 }),
            "{actions:?}"
        );
        assert!(
            !actions.contains(&SubflowAction::Remove { token: 7, id: 1 }),
            "{actions:?}"
        );
    }

    #[test]
    fn a_connection_on_the_surviving_link_is_left_alone() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        od.remove_local(t0, ip(L1));
        assert!(drain(&mut od).is_empty());
    }

    #[test]
    fn a_failed_join_is_asked_again_after_a_pause() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        od.handle_timeout(t0 + AFTER);
        assert_eq!(creates(&drain(&mut od)), vec![(7, ip(L1))]);
        let t1 = t0 + AFTER + Duration::from_millis(5);
        od.handle_event(
            t1,
            PmEvent::SubClosed {
                sub: conn(7, "10.20.1.1:50001"),
            },
        );
        assert!(drain(&mut od).is_empty());
        assert_eq!(od.poll_timeout(), Some(t1 + RETRY));
        od.handle_timeout(t1 + RETRY);
        assert_eq!(creates(&drain(&mut od)), vec![(7, ip(L1))]);
    }

    #[test]
    fn a_forgotten_connection_asks_for_nothing_more() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        od.handle_timeout(t0 + AFTER);
        let actions = drain(&mut od);
        od.refused(t0 + AFTER, &actions[0]);
        od.forget(7);
        od.handle_timeout(t0 + AFTER + RETRY);
        od.remove_local(t0 + AFTER + RETRY, ip(L0));
        assert!(drain(&mut od).is_empty());
        assert_eq!(od.connections(), 0);
    }

    #[test]
    fn a_refused_join_waits_too() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        od.handle_timeout(t0 + AFTER);
        let actions = drain(&mut od);
        od.refused(t0 + AFTER, &actions[0]);
        od.set_local(t0 + AFTER, ip(L1), 1, Some(4), false);
        assert!(drain(&mut od).is_empty());
        od.handle_timeout(t0 + AFTER + RETRY);
        assert_eq!(creates(&drain(&mut od)), vec![(7, ip(L1))]);
    }

    #[test]
    fn a_link_turned_backup_is_flagged_on_its_subflows_and_strands_nobody_alone() {
        let t0 = Instant::now();
        let mut od = two_links(t0);
        od.set_local(t0, ip(L0), 0, Some(3), true);
        let actions = drain(&mut od);
        assert_eq!(
            actions[0],
            SubflowAction::SetBackup {
                token: 7,
                local: ip(L0),
                remote: ip("10.20.0.2"),
                backup: true,
            }
        );
        // Its only subflow is now a backup while link 1 is not: join link 1.
        assert_eq!(creates(&actions), vec![(7, ip(L1))]);
    }

    #[test]
    fn server_side_connections_and_other_routes_are_not_ours() {
        let t0 = Instant::now();
        let mut od = OnDemand::new(AFTER);
        od.set_local(t0, ip(L0), 0, None, false);
        let c = conn(5, "192.0.2.1:1000");
        od.handle_event(
            t0,
            PmEvent::Created {
                conn: c,
                server_side: true,
            },
        );
        assert_eq!(od.connections(), 0);
        od.handle_event(
            t0,
            PmEvent::Established {
                conn: c,
                server_side: false,
            },
        );
        od.remove_local(t0, ip(L0));
        // Its subflow leaves by an address no link has: nothing to close,
        // and it still works.
        assert!(drain(&mut od).is_empty());
    }

    #[test]
    fn an_address_keeps_its_id_in_service_and_gets_a_fresh_one_when_it_returns() {
        let t0 = Instant::now();
        let mut od = OnDemand::new(AFTER);
        od.set_local(t0, ip(L0), 0, None, false);
        od.set_local(t0, ip(L1), 1, None, false);
        od.set_local(t0, ip(L0), 0, None, true);
        assert_eq!((od.locals[&ip(L0)].id, od.locals[&ip(L1)].id), (1, 2));
        od.remove_local(t0, ip(L0));
        od.set_local(t0, ip(L0), 0, None, false);
        assert_eq!(od.locals[&ip(L0)].id, 3);
        // Ids wrap within 1..=255 and skip those in service.
        od.next_id = 255;
        od.remove_local(t0, ip(L0));
        od.set_local(t0, ip(L0), 0, None, false);
        assert_eq!(od.locals[&ip(L0)].id, 255);
        od.remove_local(t0, ip(L0));
        od.set_local(t0, ip(L0), 0, None, false);
        assert_eq!(od.locals[&ip(L0)].id, 1);
        od.next_id = 2;
        od.remove_local(t0, ip(L0));
        od.set_local(t0, ip(L0), 0, None, false);
        assert_eq!(od.locals[&ip(L0)].id, 3, "2 is link 1's");
    }

    #[test]
    fn sysctl_values_name_the_userspace_manager_in_both_spellings() {
        assert!(is_userspace_value("userspace"));
        assert!(is_userspace_value("1"));
        assert!(!is_userspace_value("kernel"));
        assert!(!is_userspace_value("0"));
    }
}
