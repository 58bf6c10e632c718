//! Every link in service carries every connection (router A, in-kernel
//! path manager): a connection that has no working subflow on a link that
//! has been in service for a while gets one, by renewing the link's
//! endpoints.
//!
//! The in-kernel path manager opens a connection's subflow from an
//! endpoint once: when the connection is established or when the endpoint
//! is added. A subflow that dies while its link stays in service (reset by
//! a middlebox or by `ss -K`, a join the peer closed or refused while it
//! still counted an old subflow, a false alarm whose endpoint came back
//! while the peer's late RM_ADDR was on its way) is never made again: the
//! connection runs on the other links, or stalls once they fail. Seen in
//! the Wi-Fi lab (2 of 6 quiet runs: a link in service carried nothing for
//! a connection for 40 s) and at once on veth with `ss -K`
//! (`tests/flaps.rs`). Subflows on demand (`paths.subflows = "on-demand"`)
//! repair each connection on their own and need none of this.
//!
//! The only repair the in-kernel path manager offers is an endpoint added:
//! the link's endpoints are removed and added again after the planner's
//! hold ([`super::planner::READD_AFTER`]), and every connection joins over
//! the link anew. That also closes and re-joins the link's subflows of the
//! connections that had one (their bytes move to the other links
//! meanwhile), so it is done only for a connection stranded for
//! [`Settings::grace`] on a link settled in service for
//! [`Settings::settle`], and at most once per [`Settings::backoff`] per
//! link, doubling up to [`Settings::backoff_max`] while the link does not
//! come back for a connection (a peer that keeps refusing), and reset once
//! no connection lacks it.
//!
//! A state machine with the clock passed in, like the slow-links policy:
//! the path manager looks at the connections when [`Regain::poll_timeout`]
//! says (their subflows from the kernel, through a [`Looker`] that the
//! proxy hands it: it owns the connections) and the links in service, and
//! renews the links that [`Regain::handle_look`] returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One connection between the routers, as looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLook {
    /// The proxy's id of the connection (stable while it lives).
    pub id: u64,
    /// Its address family (its subflows', the peer's address).
    pub v6: bool,
    /// The local addresses of its subflows that work (established).
    pub working: Vec<IpAddr>,
}

/// One link, as the planner has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLook {
    /// In service, with its endpoints in place, since then; `None` when
    /// not (out of service, or its endpoints held back).
    pub since: Option<Instant>,
    /// Its endpoints' addresses.
    pub addrs: Vec<IpAddr>,
}

/// Hands out the connections worth a look: the proxy's, whose subflows it
/// reads from the kernel.
pub type Looker = Box<dyn FnMut() -> Vec<ConnLook> + Send>;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often connections are looked at.
    pub interval: Duration,
    /// A link counts once in service this long: the kernel opens the
    /// joins of an endpoint added within a round trip.
    pub settle: Duration,
    /// A connection counts as stranded once it lacked the link at looks
    /// this far apart (a join in flight is not stranding).
    pub grace: Duration,
    /// The least time between two renewals of a link, doubled after each
    /// up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            interval: Duration::from_secs(1),
            settle: Duration::from_secs(3),
            grace: Duration::from_secs(2),
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct LinkClock {
    backoff: Duration,
    /// No renewal before then.
    not_before: Option<Instant>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Regain {
    settings: Settings,
    links: Vec<LinkClock>,
    /// (connection, link) → first look that found the connection without
    /// a working subflow on the link.
    stranded: HashMap<(u64, usize), Instant>,
    next_look: Instant,
}

impl Regain {
    pub fn new(links: usize, settings: Settings, now: Instant) -> Regain {
        Regain {
            settings,
            links: vec![
                LinkClock {
                    backoff: settings.backoff,
                    not_before: None,
                };
                links
            ],
            stranded: HashMap::new(),
            next_look: now + settings.interval,
        }
    }

    /// When the next look is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_look
    }

    /// Takes in a look at the links and connections at `now`; returns the
    /// links whose endpoints to renew, each with the number of connections
    /// that lack it.
    pub fn handle_look(
        &mut self,
        now: Instant,
        links: &[LinkLook],
        conns: &[ConnLook],
    ) -> Vec<(usize, usize)> {
        self.next_look = now + self.settings.interval;
        let settled = |l: &LinkLook| {
            l.since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.settle)
        };
        let mut seen: HashMap<(u64, usize), Instant> = HashMap::new();
        for conn in conns {
            for (i, link) in links.iter().enumerate() {
                let family: Vec<&IpAddr> = link
                    .addrs
                    .iter()
                    .filter(|a| a.is_ipv6() == conn.v6)
                    .collect();
                if !settled(link) || family.is_empty() {
                    continue;
                }
                if conn.working.iter().any(|w| family.contains(&w)) {
                    continue;
                }
                let key = (conn.id, i);
                let first = self.stranded.get(&key).copied().unwrap_or(now);
                seen.insert(key, first);
            }
        }
        // Connections gone, links out of service or regained: forgotten.
        self.stranded = seen;
        let mut renew = Vec::new();
        for (i, clock) in self.links.iter_mut().enumerate() {
            let due = clock.not_before.is_none_or(|t| now >= t);
            let stranded = self
                .stranded
                .iter()
                .filter(|((_, l), _)| *l == i)
                .map(|(_, &first)| first)
                .min();
            match stranded {
                Some(first)
                    if due && now.saturating_duration_since(first) >= self.settings.grace =>
                {
                    renew.push((i, self.stranded.keys().filter(|(_, l)| *l == i).count()));
                    clock.not_before = Some(now + clock.backoff);
                    clock.backoff = (clock.backoff * 2).min(self.settings.backoff_max);
                }
                Some(_) => {}
                // Nobody lacks it: the next stranding starts afresh.
                None if due => clock.backoff = self.settings.backoff,
                None => {}
            }
        }
        for &(i, _) in &renew {
            // Their clocks start again from the renewal.
            self.stranded.retain(|(_, l), _| *l != i);
        }
        renew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A0: &str = "10.20.0.1";
    const A1: &str = "10.20.1.1";

    fn links(t0: Instant) -> Vec<LinkLook> {
        vec![
            LinkLook {
                since: Some(t0),
                addrs: vec![ip(A0), ip("fd00:20::1")],
            },
            LinkLook {
                since: Some(t0),
                addrs: vec![ip(A1)],
            },
        ]
    }

    fn conn(id: u64, working: &[&str]) -> ConnLook {
        ConnLook {
            id,
            v6: false,
            working: working.iter().map(|a| ip(a)).collect(),
        }
    }

    /// Looks every second from `from` (seconds after `t0`) to `to`, and
    /// gives the renewals as (second, link).
    fn run(
        rg: &mut Regain,
        t0: Instant,
        secs: std::ops::Range<u64>,
        links: &[LinkLook],
        conns: &[ConnLook],
    ) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for s in secs {
            let now = t0 + Duration::from_secs(s);
            for (l, _) in rg.handle_look(now, links, conns) {
                out.push((s, l));
            }
        }
        out
    }

    #[test]
    fn a_connection_on_every_link_renews_nothing() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let renewed = run(&mut rg, t0, 0..60, &links(t0), &[conn(1, &[A0, A1])]);
        assert_eq!(renewed, []);
    }

    #[test]
    fn a_connection_stranded_on_a_settled_link_renews_it_after_the_grace_then_backs_off() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let renewed = run(&mut rg, t0, 0..60, &links(t0), &[conn(1, &[A1])]);
        // Settled at 3 s, stranded from 3 s, renewed at 5 s; then 10 s and
        // 20 s apart (the backoff doubles).
        assert_eq!(renewed, [(5, 0), (15, 0), (35, 0)]);
    }

    #[test]
    fn a_regained_link_resets_the_backoff() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let l = links(t0);
        assert_eq!(run(&mut rg, t0, 0..10, &l, &[conn(1, &[A1])]), [(5, 0)]);
        // The renewal worked; later another connection loses the link.
        assert_eq!(run(&mut rg, t0, 10..30, &l, &[conn(1, &[A0, A1])]), []);
        assert_eq!(run(&mut rg, t0, 30..36, &l, &[conn(2, &[A1])]), [(32, 0)]);
    }

    #[test]
    fn a_join_in_flight_or_a_link_not_settled_is_no_stranding() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let l = links(t0);
        // Lacks link 0 at one look only.
        let mut renewed = run(&mut rg, t0, 0..10, &l, &[conn(1, &[A0, A1])]);
        renewed.extend(run(&mut rg, t0, 10..11, &l, &[conn(1, &[A1])]));
        renewed.extend(run(&mut rg, t0, 11..20, &l, &[conn(1, &[A0, A1])]));
        assert_eq!(renewed, []);
        // Link 0 back in service just now, and out of service.
        let mut back = links(t0);
        back[0].since = Some(t0 + Duration::from_secs(19));
        back[1].since = None;
        let renewed = run(&mut rg, t0, 20..22, &back, &[conn(1, &[A1])]);
        assert_eq!(renewed, []);
        // It settles at 22 s: stranded from then.
        let renewed = run(&mut rg, t0, 22..30, &back, &[conn(1, &[A1])]);
        assert_eq!(renewed, [(24, 0)]);
    }

    #[test]
    fn a_link_without_an_address_of_the_connections_family_is_not_missed() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        // Link 1 has IPv4 only; an IPv6 connection on link 0 lacks nothing.
        let six = ConnLook {
            id: 1,
            v6: true,
            working: vec![ip("fd00:20::1")],
        };
        assert_eq!(run(&mut rg, t0, 0..30, &links(t0), &[six]), []);
    }

    #[test]
    fn a_connection_without_any_working_subflow_lacks_every_link() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let l = links(t0);
        let conns = [conn(1, &[]), conn(2, &[A1]), conn(3, &[A0, A1])];
        let mut renewals = Vec::new();
        for s in 0..6 {
            renewals.extend(rg.handle_look(t0 + Duration::from_secs(s), &l, &conns));
        }
        // (link, connections lacking it)
        assert_eq!(renewals, [(0, 2), (1, 1)]);
    }

    #[test]
    fn a_connection_gone_is_forgotten() {
        let t0 = Instant::now();
        let mut rg = Regain::new(2, Settings::default(), t0);
        let l = links(t0);
        let mut renewed = run(&mut rg, t0, 0..5, &l, &[conn(1, &[A1])]);
        renewed.extend(run(&mut rg, t0, 5..6, &l, &[]));
        renewed.extend(run(&mut rg, t0, 6..7, &l, &[conn(1, &[A1])]));
        assert_eq!(renewed, []);
    }
}
