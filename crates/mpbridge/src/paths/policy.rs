//! Slow links (`paths.slow_links = "bench"`): a link that makes the
//! bridge slower than it would be without it is kept as an MPTCP backup
//! ("benched": the kernel's scheduler sends on it only when no other link
//! can), and tried again later, so it returns when it helps.
//!
//! It measures rather than models. Once the bridge has carried a load,
//! and every link carrying a flow has carried it, for [`Settings::warmup`]
//! (6 s: short flows, slow starts and flows moving from link to link are
//! never judged), a link that looks harmful (a small share of the bytes,
//! or most of them while the flow stalls again and again) is benched for a
//! trial, and the links' total rate with it is compared with the total
//! without it: it stays benched when the total without it is not lower
//! (within [`Settings::margin`]). A benched link is tried back in the same
//! way, after a delay that doubles at every trial of that link (no
//! flapping on noise), with a shorter warm-up ([`Settings::return_warmup`],
//! 2 s: the flow already runs, only the returned subflow has to find its
//! pace), as a harmful link's return costs the flow every time; the link
//! whose trial did not count (the load stopped, a link failed) is tried
//! again after the same delay. A link
//! benched by a trial during which it left service was measured failing,
//! not slow (the flow stalled behind it, then ran without it): it is tried
//! again once it has been back in service for
//! [`Settings::back_after_failure`]. The last link in service is never
//! benched, and benched links return at once when no other link is left.
//!
//! A state machine with the clock passed in, like the probes' monitor:
//! the path manager samples the links' byte counters and the bytes the
//! bridge delivered when [`Policy::poll_timeout`] says, hands them to
//! [`Policy::handle_sample`] and carries out [`Policy::poll_change`]
//! through the planner.
//!
//! The links' counters give each link's share and tell whether a link
//! carries a flow; the totals compared (with a link and without it) are
//! the bridge's own, the bytes its connections delivered, where the path
//! manager has them. The links also carry what MPTCP sends twice: every
//! subflow closed (a flapping link's, the failover's) has the kernel send
//! its connection's whole unacknowledged window again over the others, and
//! the flow stalls meanwhile while the links run full. Counted on the
//! links, 20 Mbit/s beside a lossy 5 Mbit/s link that flapped every few
//! seconds made 20.8 Mbit/s with the lossy link against 19.7 without, and
//! it stayed in use while the flow got 12 (lab VM).
//!
//! What looks harmful is the share of the bytes and the stalls, not the
//! probes' RTT or loss. A long RTT alone is no harm: with cubic and 16 MiB windows one
//! flow over 20 + 2 Mbit/s at 5 / 150 ms with 1 % loss in bursts beat the
//! best link (lab VM). Probe loss is no sign either: a healthy link filled
//! by the flow loses probes in its full queue, and with probe loss as a
//! sign one upload over 20 + 10 + 4 Mbit/s got 18.3 and 21.8 Mbit/s with the
//! policy against 27.7 and 24.6 without (bench case 11, 6 s flows, two
//! runs in the VM). What was harmful, in the lab's VM (Linux 6.12, TCG, load
//! 9–12): 20 Mbit/s at 5 ms with 5 Mbit/s at 60 ms and 5 % loss, one flow
//! at 7.1 Mbit/s where the first link alone carried 16.7 (with 2 % loss 9.3
//! against 19.1), the slow link carrying 3–5 % of the bytes; over 20 Mbit/s
//! and a link fallen from 20 to 1 Mbit/s, 5.9 against 18.7
//! (`mpbridge-lab run aggregate`). Healthy links of the cases carry
//! 12 % of the bytes or more. In those harmful runs the flow stalled again
//! and again (0.1–1 Mbit/s for a second or two) while the slow link carried
//! 46–96 % of what still moved: the stalls are the sign, and they must
//! not read as an idle bridge.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the policy measures and decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Between two samples of the counters.
    pub interval: Duration,
    /// A load counts only once it has lasted this long since the bridge
    /// was last idle, and since the last link that carries a flow started
    /// to: a flow's slow start (the first subflow alone, the others
    /// joining, the slow links' shares still growing) reads as a small
    /// share or a stall, and a short flow pays for a trial it cannot gain
    /// from. Flows that move from link to link (the lab measuring each
    /// link alone, then one flow through the bridge) read the same way
    /// while they move. With 2 s figures the first trial comes 8 s into a
    /// load.
    pub warmup: Duration,
    /// The warm-up of a link put back for a trial, from its first sample
    /// carrying a flow: the flow already runs on the others, only the
    /// returned subflow has to find its pace (a few round trips: 0.4 s of
    /// slow start for 5 Mbit/s at 120 ms), and the flow pays for the
    /// trial of a harmful link every time it is tried again.
    pub return_warmup: Duration,
    /// A link carries a flow from the first loaded sample in which it has
    /// at least `no_flow` of the bytes and `no_flow_rate`, until it has had
    /// less for this long.
    pub flow_gone: Duration,
    /// After a change, samples not counted (the kernel's scheduler and the
    /// subflows' windows adjust).
    pub settle: Duration,
    /// The same once a link is benched for a trial: the data already sent
    /// on it still holds the flow up. Over a 5 Mbit/s link with 60 ms and
    /// 5 % loss (lab VM) the flow still ran at 8-17 Mbit/s over the 2 s
    /// after the first 0.5 s, at 19.7 over the next 2 s.
    pub bench_settle: Duration,
    /// The stretch of samples averaged into one figure (before a trial,
    /// and during it).
    pub measure: Duration,
    /// The bridge is idle when no sample's total rate (bit/s) reached
    /// `min_load` for `idle_after`: no trial starts, and one under way
    /// does not count. Slower samples in between count: a flow that stalls
    /// behind a slow link is the harm to be seen.
    pub min_load: f64,
    pub idle_after: Duration,
    /// The first delay before a link is tried again; it doubles at each
    /// trial up to `retry_max`, and falls back after `retry_max` idle.
    pub retry: Duration,
    pub retry_max: Duration,
    /// A link benched by a trial during which it left service (its failure
    /// was measured, not its pace) is tried again once it has been back
    /// in service this long, not after `retry`: a link whose probes flap
    /// under load never is.
    pub back_after_failure: Duration,
    /// A link is worth using when it adds at least this share of the total.
    pub margin: f64,
    /// Looks harmful: it carries less than this share of the bytes, or
    /// most of them while the flow stalls (a sample under `stall` × the
    /// window's mean): the others then wait for its late data.
    pub small_share: f64,
    pub stall: f64,
    /// A link with less than this share, or less than `no_flow_rate`
    /// (bit/s), carries no flow (its probes only, about 20 kbit/s: a flow
    /// not bridged on another link, a link measured alone) and holds
    /// nothing up: it is no candidate. The probes of a link are half a
    /// percent of a 4 Mbit/s flow on another.
    pub no_flow: f64,
    pub no_flow_rate: f64,
    /// Figures a trial measures again at most when the total differs
    /// by more than the link carries: a stall fell into one figure.
    pub recheck: usize,
    /// Stalls in one figure that make a link look harmful; a stall counts
    /// only when the load came back after it (a flow's last bytes, late
    /// over the slowest link, are no stall).
    pub stalls: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_millis(250),
            warmup: Duration::from_secs(6),
            return_warmup: Duration::from_secs(2),
            flow_gone: Duration::from_secs(3),
            settle: Duration::from_millis(500),
            bench_settle: Duration::from_secs(2),
            measure: Duration::from_secs(2),
            min_load: 1e6,
            idle_after: Duration::from_secs(3),
            retry: Duration::from_secs(20),
            retry_max: Duration::from_secs(320),
            back_after_failure: Duration::from_secs(5),
            margin: 0.03,
            small_share: 0.08,
            stall: 0.25,
            no_flow: 0.005,
            no_flow_rate: 100e3,
            stalls: 2,
            recheck: 2,
        }
    }
}

/// One link as sampled now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// In service (kernel up, probes not down).
    pub in_service: bool,
    /// Its interface's bytes, both directions together; `None` when they
    /// could not be read.
    pub bytes: Option<u64>,
}

/// A link benched (`true`) or put back into use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub link: usize,
    pub benched: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Every link as it is; measuring a baseline.
    Watch,
    /// Link `link` was benched (`bench`) or put back (`!bench`) at the
    /// start of a trial; `baseline` is the total rate before, `own` the
    /// link's rate before; `figures` the trial's figures measured so far.
    Trial {
        link: usize,
        bench: bool,
        baseline: f64,
        own: f64,
        figures: usize,
    },
}

#[derive(Debug, Clone)]
struct Link {
    benched: bool,
    last_bytes: Option<u64>,
    /// Not tried (either way) before this.
    next_try: Option<Instant>,
    backoff: Duration,
    /// Since when it has carried a flow (see [`Settings::flow_gone`]).
    flow_since: Option<Instant>,
    /// Since when it has carried no flow (less than `no_flow` of the bytes
    /// or `no_flow_rate`).
    quiet_since: Option<Instant>,
    /// It left or entered service during its trial under way.
    failed_on_trial: bool,
    /// Benched on a trial it failed during: tried again once in service
    /// for `back_after_failure`.
    back_after_failure: bool,
    /// Since when it has been in service, as of the last sample.
    in_service_since: Option<Instant>,
}

/// The decisions; see the module doc.
#[derive(Debug)]
pub struct Policy {
    settings: Settings,
    links: Vec<Link>,
    phase: Phase,
    /// Per-link rates (bit/s) of the samples counted since the last
    /// change, each with the total it counts for: the bridge's delivered
    /// rate where known, else the links' sum.
    window: VecDeque<(Vec<f64>, f64)>,
    /// The bridge's delivered bytes at the last sample.
    last_delivered: Option<u64>,
    last_sample: Option<Instant>,
    /// Samples before this are not counted (the last change's settling).
    count_from: Instant,
    next: Instant,
    /// Each link in service, as of the last sample.
    in_service: Vec<bool>,
    /// The latest sample whose total reached `min_load`.
    loaded_at: Option<Instant>,
    /// Since when the bridge has been idle.
    idle_since: Option<Instant>,
    /// Since when it has been loaded (not idle).
    load_since: Option<Instant>,
    changes: VecDeque<Change>,
}

impl Policy {
    pub fn new(links: usize, settings: Settings, now: Instant) -> Policy {
        Policy {
            settings,
            links: vec![
                Link {
                    benched: false,
                    last_bytes: None,
                    next_try: None,
                    backoff: settings.retry,
                    flow_since: None,
                    quiet_since: None,
                    failed_on_trial: false,
                    back_after_failure: false,
                    in_service_since: None,
                };
                links
            ],
            phase: Phase::Watch,
            window: VecDeque::new(),
            last_delivered: None,
            last_sample: None,
            count_from: now,
            next: now,
            in_service: vec![false; links],
            loaded_at: None,
            idle_since: None,
            load_since: None,
            changes: VecDeque::new(),
        }
    }

    /// When the next sample is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Whether link `link` is benched now.
    pub fn benched(&self, link: usize) -> bool {
        self.links.get(link).is_some_and(|l| l.benched)
    }

    /// The next change to carry out, if any.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Takes in the links' state and counters at `now` (one per link, in
    /// order) and the bytes the bridge's connections delivered so far
    /// (both ways; `None` where unknown), and decides.
    pub fn handle_sample(&mut self, now: Instant, samples: &[Sample], delivered: Option<u64>) {
        self.next = now + self.settings.interval;
        if samples.len() != self.links.len() {
            return;
        }
        let secs = self
            .last_sample
            .map(|t| now.duration_since(t).as_secs_f64());
        let delivered_rate = match (self.last_delivered, delivered, secs) {
            (Some(a), Some(b), Some(s)) if b >= a && s > 0.0 => Some((b - a) as f64 * 8.0 / s),
            _ => None,
        };
        self.last_delivered = delivered;
        let rates = self.rates(now, samples);
        let Some(rates) = rates else { return };
        // Never leave the bridge with only benched links.
        let active = samples
            .iter()
            .zip(&self.links)
            .filter(|(s, l)| s.in_service && !l.benched)
            .count();
        if active == 0 && self.links.iter().any(|l| l.benched) {
            tracing::info!("slow links: no link in use is in service, so the benched ones return");
            self.phase = Phase::Watch;
            for i in 0..self.links.len() {
                self.set(i, false, now);
            }
        }
        // A link in use that entered or left service changes what is
        // measured: the trial under way says nothing (undone, tried again
        // later) and the measuring starts afresh. A benched link carries
        // next to nothing: its probes may take it down and back (a lossy
        // link) without disturbing anything.
        let changed = samples
            .iter()
            .zip(&self.in_service)
            .zip(&self.links)
            .any(|((s, &was), l)| !l.benched && s.in_service != was);
        let on_trial = match self.phase {
            Phase::Trial { link, .. } => Some(link),
            Phase::Watch => None,
        };
        for (i, (s, l)) in samples.iter().zip(&mut self.links).enumerate() {
            if s.in_service != self.in_service[i] && on_trial == Some(i) {
                l.failed_on_trial = true;
            }
            if !s.in_service {
                l.in_service_since = None;
            } else if l.in_service_since.is_none() {
                l.in_service_since = Some(now);
            }
            let back_for = l.in_service_since.map(|t| now.duration_since(t));
            if l.back_after_failure
                && back_for.is_some_and(|d| d >= self.settings.back_after_failure)
            {
                l.back_after_failure = false;
                l.next_try = Some(now);
                l.backoff = self.settings.retry;
            }
        }
        self.in_service = samples.iter().map(|s| s.in_service).collect();
        if changed {
            self.abandon(now);
            self.window.clear();
            self.count_from = now + self.settings.settle;
        }
        // Every link's bytes: one out of service may still carry some.
        let total: f64 = rates.iter().sum();
        if total >= self.settings.min_load {
            self.loaded_at = Some(now);
        }
        let idle = self
            .loaded_at
            .is_none_or(|t| now.duration_since(t) >= self.settings.idle_after);
        if idle {
            self.window.clear();
            self.load_since = None;
            for l in &mut self.links {
                l.flow_since = None;
                l.quiet_since = None;
            }
            if self.phase != Phase::Watch {
                self.abandon(now);
            }
            let since = *self.idle_since.get_or_insert(now);
            if now.duration_since(since) >= self.settings.retry_max {
                // A new load is a new situation: try links again soon.
                for l in &mut self.links {
                    l.backoff = self.settings.retry;
                    l.next_try = None;
                }
            }
            return;
        }
        self.idle_since = None;
        let load_since = *self.load_since.get_or_insert(now);
        let started = self.track_flows(now, &rates, total);
        // A flow moved onto a link in use during a trial: the trial
        // measures that move, not the link tried.
        if let Phase::Trial { link, .. } = self.phase {
            if started.iter().any(|&i| i != link && !self.links[i].benched) {
                self.abandon(now);
            }
        }
        // Not judged until every link in use that carries a flow has
        // carried it for the warm-up (a link put back for a trial, for
        // the shorter one of a return).
        let returning = match self.phase {
            Phase::Trial {
                link, bench: false, ..
            } => Some(link),
            _ => None,
        };
        let warm_from = (0..self.links.len())
            .filter(|&i| samples[i].in_service && !self.links[i].benched)
            .filter_map(|i| {
                let warmup = if returning == Some(i) {
                    self.settings.return_warmup
                } else {
                    self.settings.warmup
                };
                Some(self.links[i].flow_since? + warmup)
            })
            .fold(load_since + self.settings.warmup, Instant::max);
        if now < warm_from {
            if self.phase == Phase::Watch {
                self.window.clear();
            }
            return;
        }
        if now < self.count_from {
            return;
        }
        self.window
            .push_back((rates, delivered_rate.unwrap_or(total)));
        let n = self.samples_per_figure();
        while self.window.len() > n {
            self.window.pop_front();
        }
        if self.window.len() < n {
            return;
        }
        let mean = self.window.iter().map(|(_, t)| t).sum::<f64>() / n as f64;
        match self.phase {
            Phase::Watch => self.maybe_try(now, samples, mean),
            Phase::Trial {
                link,
                bench,
                baseline,
                own,
                figures,
            } => self.conclude(now, link, bench, (baseline, own), mean, figures),
        }
    }

    /// Notes which links carry a flow now (see [`Settings::flow_gone`]);
    /// returns those that started to. A sample under `min_load` says
    /// nothing: the probes alone are every link's fair share of it.
    fn track_flows(&mut self, now: Instant, rates: &[f64], total: f64) -> Vec<usize> {
        let mut started = Vec::new();
        if total < self.settings.min_load {
            return started;
        }
        for (i, (l, &rate)) in self.links.iter_mut().zip(rates).enumerate() {
            if rate >= total * self.settings.no_flow && rate >= self.settings.no_flow_rate {
                l.quiet_since = None;
                if l.flow_since.is_none() {
                    l.flow_since = Some(now);
                    started.push(i);
                }
            } else {
                let quiet = *l.quiet_since.get_or_insert(now);
                if now.duration_since(quiet) >= self.settings.flow_gone {
                    l.flow_since = None;
                }
            }
        }
        started
    }

    /// Each link's rate (bit/s) since the last sample; `None` at the first.
    fn rates(&mut self, now: Instant, samples: &[Sample]) -> Option<Vec<f64>> {
        let since = self.last_sample.replace(now);
        let secs = since.map(|t| now.duration_since(t).as_secs_f64());
        let mut rates = Vec::with_capacity(self.links.len());
        for (link, sample) in self.links.iter_mut().zip(samples) {
            let before = std::mem::replace(&mut link.last_bytes, sample.bytes);
            let rate = match (before, sample.bytes, secs) {
                (Some(a), Some(b), Some(s)) if b >= a && s > 0.0 => (b - a) as f64 * 8.0 / s,
                _ => 0.0,
            };
            rates.push(rate);
        }
        rates.resize(self.links.len(), 0.0);
        secs.filter(|s| *s > 0.0).map(|_| rates)
    }

    fn samples_per_figure(&self) -> usize {
        let per = self.settings.interval.as_secs_f64().max(1e-3);
        ((self.settings.measure.as_secs_f64() / per).round() as usize).max(1)
    }

    /// With a baseline `mean`: starts a trial if a link is due for one.
    fn maybe_try(&mut self, now: Instant, samples: &[Sample], mean: f64) {
        // A figure mostly of silence (the flow ended, its last bytes still
        // trickling in) gives every link but one a nil share: no baseline.
        if mean < self.settings.min_load {
            return;
        }
        let due = |l: &Link| l.next_try.is_none_or(|t| t <= now);
        // A benched link due again goes first: it may help now.
        let back = (0..self.links.len())
            .find(|&i| self.links[i].benched && samples[i].in_service && due(&self.links[i]));
        if let Some(link) = back {
            self.start(now, link, false, mean);
            return;
        }
        let active: Vec<usize> = (0..self.links.len())
            .filter(|&i| samples[i].in_service && !self.links[i].benched)
            .collect();
        if active.len() < 2 {
            return;
        }
        let shares = self.shares(&active);
        let small = self.settings.small_share;
        let low = mean * self.settings.stall;
        // Stalls as the links see them: the share of what still moved is
        // the links' to tell.
        let totals: Vec<f64> = self.window.iter().map(|(r, _)| r.iter().sum()).collect();
        // The load came back after sample `j`.
        let back = |j: usize| {
            totals[j + 1..]
                .iter()
                .any(|&t| t >= low && t >= self.settings.min_load)
        };
        let stalled = |i: usize| {
            let stalls = self
                .window
                .iter()
                .zip(&totals)
                .enumerate()
                .filter(|&(j, ((r, _), &total))| {
                    total < low && r[i] > 0.0 && r[i] >= total / 2.0 && back(j)
                })
                .count();
            stalls >= self.settings.stalls
        };
        let candidate = active
            .iter()
            .zip(&shares)
            .filter(|&(&i, &share)| {
                let flow = self.links[i].flow_since.is_some() && share >= self.settings.no_flow;
                flow && due(&self.links[i]) && (share < small || stalled(i))
            })
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(&i, _)| i);
        if let Some(link) = candidate {
            self.start(now, link, true, mean);
        }
    }

    /// Each of `links`' share of their bytes over the window.
    fn shares(&self, links: &[usize]) -> Vec<f64> {
        let sums: Vec<f64> = links
            .iter()
            .map(|&i| self.window.iter().map(|(r, _)| r[i]).sum())
            .collect();
        let total: f64 = sums.iter().sum();
        sums.iter()
            .map(|s| if total > 0.0 { s / total } else { 0.0 })
            .collect()
    }

    fn start(&mut self, now: Instant, link: usize, bench: bool, baseline: f64) {
        let own = self.link_mean(link);
        tracing::info!(
            link,
            baseline_mbit = baseline / 1e6,
            "slow links: trying the bridge {} link {link}",
            if bench { "without" } else { "with" }
        );
        self.phase = Phase::Trial {
            link,
            bench,
            baseline,
            own,
            figures: 0,
        };
        self.links[link].failed_on_trial = false;
        self.links[link].back_after_failure = false;
        self.set(link, bench, now);
        if bench {
            self.count_from = now + self.settings.bench_settle;
        }
    }

    /// `link`'s mean rate over the window.
    fn link_mean(&self, link: usize) -> f64 {
        let n = self.window.len().max(1) as f64;
        self.window.iter().map(|(r, _)| r[link]).sum::<f64>() / n
    }

    /// The trial of `link` measured `mean`, its `figures`-th figure after
    /// `before` (the total and the link's own rate before the trial):
    /// keep its state, undo it, or measure again.
    fn conclude(
        &mut self,
        now: Instant,
        link: usize,
        bench: bool,
        before: (f64, f64),
        mean: f64,
        figures: usize,
    ) {
        let m = self.settings.margin;
        let (baseline, own) = before;
        let (with, without, own) = if bench {
            (baseline, mean, own)
        } else {
            (mean, baseline, self.link_mean(link))
        };
        // Benched when it adds less than the margin to the total.
        let helps = with > 0.0 && (with - without) / with >= m;
        // A link cannot add more than it carries: a total lower without it
        // by more than that is a stall or a link's change of pace that
        // fell into one figure and not the other (a flow that stalls
        // every few seconds behind a lossy link runs at the best link's
        // rate in between, and the data sent on it just before it was
        // benched still holds the flow up), so it is measured again.
        if helps && with - without > own + m * with && figures < self.settings.recheck {
            tracing::info!(
                link,
                with_mbit = with / 1e6,
                without_mbit = without / 1e6,
                own_mbit = own / 1e6,
                "slow links: link {link} carried less than the difference: measuring again"
            );
            if let Phase::Trial { figures: f, .. } = &mut self.phase {
                *f += 1;
            }
            self.window.clear();
            self.count_from = now + self.settings.settle;
            return;
        }
        tracing::info!(
            link,
            with_mbit = with / 1e6,
            without_mbit = without / 1e6,
            "slow links: link {link} {}",
            if helps {
                "helps: in use"
            } else {
                "does not help: benched (a backup)"
            }
        );
        self.phase = Phase::Watch;
        let l = &mut self.links[link];
        l.next_try = Some(now + l.backoff);
        l.backoff = (l.backoff * 2).min(self.settings.retry_max);
        // It failed during its trial: the flow stalled behind the failure
        // and ran again without the link, which says nothing of its pace.
        // Tried again once back in service for a while.
        l.back_after_failure = !helps && l.failed_on_trial;
        // Kept as tried: the trial's window is the new baseline.
        self.set(link, !helps, now);
    }

    /// Undoes the trial under way, if any, without counting it.
    fn abandon(&mut self, now: Instant) {
        if let Phase::Trial { link, bench, .. } = self.phase {
            tracing::info!(link, "slow links: trial of link {link} abandoned");
            self.phase = Phase::Watch;
            let l = &mut self.links[link];
            l.next_try = Some(now + l.backoff);
            self.set(link, !bench, now);
        }
    }

    /// Benches or restores `link`; a change restarts the measuring.
    fn set(&mut self, link: usize, benched: bool, now: Instant) {
        let l = &mut self.links[link];
        if l.benched == benched {
            return;
        }
        l.benched = benched;
        self.changes.push_back(Change { link, benched });
        self.window.clear();
        self.count_from = now + self.settings.settle;
    }
}

#[cfg(test)]
mod tests;
