//! The policy on a simulated clock against a model of the links: the
//! rate each link carries depends on which links are in use, as measured
//! in the lab (a lossy link with a long RTT slows the whole flow down).

use super::*;

const MBIT: f64 = 1e6;

/// Each link's rate (Mbit/s) given which links are in use.
type Model = Box<dyn Fn(&[bool]) -> Vec<f64>>;
/// One rate (Mbit/s) given which links are in use.
type Model1 = Box<dyn Fn(&[bool]) -> f64>;

/// Links whose rates (Mbit/s) follow `model(in_use)`; in service per
/// `in_service`.
struct World {
    policy: Policy,
    now: Instant,
    t0: Instant,
    bytes: Vec<f64>,
    in_service: Vec<bool>,
    /// Each link's rate given which links are in use (not benched, in
    /// service).
    model: Model,
    /// Multiplies every rate at each step (noise), from the step number.
    noise: Box<dyn Fn(u64) -> f64>,
    /// What the bridge delivers (Mbit/s) given which links are in use,
    /// and the bytes so far; `None`: not known (the policy counts the
    /// links' bytes).
    goodput: Option<Model1>,
    delivered: f64,
    steps: u64,
    /// Every change, with its time since the start.
    log: Vec<(Duration, Change)>,
}

impl World {
    fn new(n: usize, model: impl Fn(&[bool]) -> Vec<f64> + 'static) -> World {
        let now = Instant::now();
        World {
            policy: Policy::new(n, Settings::default(), now),
            now,
            t0: now,
            bytes: vec![0.0; n],
            in_service: vec![true; n],
            model: Box::new(model),
            noise: Box::new(|_| 1.0),
            goodput: None,
            delivered: 0.0,
            steps: 0,
            log: Vec::new(),
        }
    }

    fn in_use(&self) -> Vec<bool> {
        (0..self.bytes.len())
            .map(|i| self.in_service[i] && !self.policy.benched(i))
            .collect()
    }

    /// Runs the clock for `secs`, sampling when the policy asks.
    fn run(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        while self.now < end {
            let next = self.policy.poll_timeout().max(self.now);
            if next > end {
                self.now = end;
                break;
            }
            let dt = next.duration_since(self.now).as_secs_f64();
            let in_use = self.in_use();
            let rates = (self.model)(&in_use);
            let k = (self.noise)(self.steps);
            self.steps += 1;
            for (b, r) in self.bytes.iter_mut().zip(rates) {
                *b += r * k * MBIT / 8.0 * dt;
            }
            if let Some(goodput) = &self.goodput {
                self.delivered += goodput(&in_use) * k * MBIT / 8.0 * dt;
            }
            self.now = next;
            let samples: Vec<Sample> = (0..self.bytes.len())
                .map(|i| Sample {
                    in_service: self.in_service[i],
                    bytes: Some(self.bytes[i] as u64),
                })
                .collect();
            let delivered = self.goodput.as_ref().map(|_| self.delivered as u64);
            self.policy.handle_sample(self.now, &samples, delivered);
            while let Some(c) = self.policy.poll_change() {
                self.log.push((self.now.duration_since(self.t0), c));
            }
        }
    }

    fn benches(&self) -> usize {
        self.log.iter().filter(|(_, c)| c.benched).count()
    }
}

/// The lab's case: 20 Mbit/s at 5 ms, and 5 Mbit/s at 60 ms with 5 %
/// loss: the best link alone carried 18.8, both together 11.2.
fn lossy_slow_link(in_use: &[bool]) -> Vec<f64> {
    match in_use {
        [true, true] => vec![10.8, 0.4],
        [true, false] => vec![18.8, 0.0],
        [false, true] => vec![0.0, 0.4],
        _ => vec![0.0, 0.0],
    }
}

/// 100 + 50 + 8, where the third carries a small share and still adds it.
fn helpful_slow_link(in_use: &[bool]) -> Vec<f64> {
    steady([95.0, 47.0, 8.0])(in_use)
}

/// Each link carries its rate (Mbit/s) whenever it is in use, whatever
/// the others do.
fn steady<const N: usize>(rates: [f64; N]) -> impl Fn(&[bool]) -> Vec<f64> {
    move |in_use: &[bool]| {
        rates
            .iter()
            .zip(in_use)
            .map(|(r, &u)| if u { *r } else { 0.0 })
            .collect()
    }
}

#[test]
fn a_link_that_slows_the_bridge_down_is_benched_and_stays_benched() {
    let mut w = World::new(2, lossy_slow_link);
    w.run(10);
    assert!(w.policy.benched(1), "benched within 10 s: {:?}", w.log);
    assert!(!w.policy.benched(0));
    // Tried again later (it may help by then), and benched again each time:
    // never more than a few trials in ten minutes.
    w.run(600);
    assert!(w.policy.benched(1));
    let returns = w.log.iter().filter(|(_, c)| !c.benched).count();
    assert!(
        (2..=6).contains(&returns),
        "tried back {returns} times: {:?}",
        w.log
    );
    assert_eq!(w.benches(), returns + 1);
}

/// The lab's case where the lossy link also flapped every few seconds:
/// every flap had the kernel send the connection's window again, so the
/// links ran full (20.8 Mbit/s together) while the flow got 12; without
/// the lossy link, 19.7 on the links and the flow the same.
fn copies_on_the_links(in_use: &[bool]) -> Vec<f64> {
    match in_use {
        [true, true] => vec![20.3, 0.5],
        [true, false] => vec![19.7, 0.0],
        [false, true] => vec![0.0, 0.4],
        _ => vec![0.0, 0.0],
    }
}

fn goodput_of_copies(in_use: &[bool]) -> f64 {
    match in_use {
        [true, true] => 12.0,
        [true, false] => 19.7,
        [false, true] => 0.4,
        _ => 0.0,
    }
}

#[test]
fn what_the_bridge_delivers_judges_a_link_not_the_copies_the_links_carry() {
    let mut w = World::new(2, copies_on_the_links);
    w.goodput = Some(Box::new(goodput_of_copies));
    w.run(12);
    assert!(w.policy.benched(1), "benched within 12 s: {:?}", w.log);
    // Counted on the links alone, the copies made the lossy link look
    // worth its 0.5 Mbit/s, and it stayed.
    let mut w = World::new(2, copies_on_the_links);
    w.run(12);
    assert!(!w.policy.benched(1), "{:?}", w.log);
    assert_eq!(w.benches(), 1, "tried, and put back: {:?}", w.log);
}

#[test]
fn a_link_whose_rate_collapsed_is_benched_without_any_loss() {
    // The lab's case: 20 Mbit/s, and a link fallen from 20 to 1 Mbit/s:
    // 5.9 together, 18.7 the first alone.
    let mut w = World::new(2, |u: &[bool]| match u {
        [true, true] => vec![5.7, 0.2],
        [true, false] => vec![18.7, 0.0],
        _ => vec![0.0, 0.2],
    });
    w.run(10);
    assert!(w.policy.benched(1), "{:?}", w.log);
}

#[test]
fn a_link_that_stalls_the_flow_is_benched_whatever_its_share() {
    // As in the lab: a second of near silence now and then, the slow link
    // carrying most of what still moves; a fair share otherwise.
    let calls = std::cell::Cell::new(0u32);
    let mut w = World::new(2, move |u: &[bool]| {
        calls.set(calls.get() + 1);
        match u {
            [true, true] if calls.get() % 8 < 3 => vec![0.1, 0.3],
            [true, true] => vec![8.0, 1.5],
            [true, false] => vec![18.8, 0.0],
            _ => vec![0.0, 0.4],
        }
    });
    w.run(10);
    assert!(w.policy.benched(1), "{:?}", w.log);
}

#[test]
fn a_slow_link_that_adds_to_the_total_stays_in_use() {
    let mut w = World::new(3, helpful_slow_link);
    w.run(600);
    // Its small share earns the third link trials, each short and ever rarer
    // (20 s, then 40, 80...); the others, none.
    let trials = w.benches();
    assert!((1..=5).contains(&trials), "{trials} trials: {:?}", w.log);
    for pair in w.log.chunks(2) {
        let [(at, bench), (back_at, back)] = pair else {
            panic!("a trial left a link benched: {:?}", w.log)
        };
        assert!(bench.benched && !back.benched && bench.link == 2 && back.link == 2);
        assert!(
            *back_at - *at <= Duration::from_secs(6),
            "a trial of {:?}",
            *back_at - *at
        );
    }
}

#[test]
fn noise_does_not_make_links_flap() {
    // ±6 % from one sample to the next, on a link adding 6 %.
    let mut w = World::new(2, steady([40.0, 2.6]));
    w.noise = Box::new(|step| if step % 2 == 0 { 1.06 } else { 0.94 });
    w.run(1200);
    assert!(!w.policy.benched(1));
    assert!(
        w.benches() <= 7,
        "{} trials in 20 min: {:?}",
        w.benches(),
        w.log
    );
}

#[test]
fn links_that_look_alike_are_never_tried() {
    let mut w = World::new(2, |u: &[bool]| {
        u.iter().map(|&u| if u { 45.0 } else { 0.0 }).collect()
    });
    w.run(300);
    assert!(w.log.is_empty(), "{:?}", w.log);
}

#[test]
fn a_benched_link_returns_when_it_helps() {
    let mut w = World::new(2, lossy_slow_link);
    w.run(10);
    assert!(w.policy.benched(1));
    // The slow link's loss ends: now it adds its 5 Mbit/s.
    w.model = Box::new(steady([18.8, 4.8]));
    w.run(60);
    assert!(!w.policy.benched(1), "{:?}", w.log);
    let back = w.log.last().unwrap();
    assert!(
        !back.1.benched && back.0 <= Duration::from_secs(40),
        "{:?}",
        w.log
    );
}

#[test]
fn the_last_link_in_use_is_never_benched() {
    let mut w = World::new(2, lossy_slow_link);
    w.run(10);
    assert!(w.policy.benched(1));
    // The good link fails: the benched one is all there is, back at once.
    w.in_service[0] = false;
    w.run(1);
    assert!(!w.policy.benched(1), "{:?}", w.log);
    // Alone in service, slow as it is, it is never tried away.
    let before = w.log.len();
    w.run(300);
    assert_eq!(w.log.len(), before, "{:?}", w.log);
}

#[test]
fn a_benched_link_whose_probes_flap_disturbs_nothing() {
    let mut w = World::new(2, lossy_slow_link);
    w.run(10);
    assert!(w.policy.benched(1));
    let before = w.log.len();
    // Its probes take it down and back every 2 s (lost under load).
    for _ in 0..30 {
        w.in_service[1] = !w.in_service[1];
        w.run(2);
    }
    // Back in use only for the trials due in that minute (20 s, then 40 s
    // on), each undone within 2 s (its trial ends, or its probes flap).
    let changes = &w.log[before..];
    assert!(changes.len() <= 4, "{changes:?}");
    let end = w.now.duration_since(w.t0);
    for (i, (at, c)) in changes.iter().enumerate() {
        if !c.benched && *at + Duration::from_secs(2) < end {
            let (again, c2) = changes.get(i + 1).expect("benched again");
            assert!(
                c2.benched && *again - *at <= Duration::from_secs(2),
                "{changes:?}"
            );
        }
    }
}

#[test]
fn an_idle_bridge_tries_nothing() {
    let mut w = World::new(2, |_: &[bool]| vec![0.2, 0.1]);
    w.run(300);
    assert!(w.log.is_empty(), "{:?}", w.log);
}

#[test]
fn a_trial_during_which_the_load_stops_is_undone() {
    let mut w = World::new(2, lossy_slow_link);
    // 6 s of warm-up, the baseline measured (2 s of samples): the trial
    // starts at 8 s; the load stops then.
    w.run(9);
    assert!(w.policy.benched(1), "{:?}", w.log);
    w.model = Box::new(|_: &[bool]| vec![0.0, 0.0]);
    w.run(5);
    assert!(!w.policy.benched(1), "{:?}", w.log);
}

/// Bench case 11's 100 + 50 + 20 (scaled by 0.2 in the VM) as one flow
/// sees it: the first subflow alone in slow start, the others joining,
/// the third link's share growing to its 11 %; the last bytes come late
/// over the slowest link.
fn healthy_flow(t: f64, secs: f64) -> Vec<f64> {
    match t {
        t if t < 0.5 => vec![2.0, 0.0, 0.0],
        t if t < 1.0 => vec![9.0, 2.0, 0.0],
        t if t < 2.0 => vec![16.0, 7.0, 0.8],
        t if t < secs => vec![19.0, 9.5, 3.6],
        t if t < secs + 0.25 => vec![0.0, 0.0, 0.4],
        _ => vec![0.0, 0.0, 0.0],
    }
}

/// A world whose rates follow `flow(seconds since the start)`, whatever
/// links are in use (a trial's cost is not modelled: any trial is one
/// too many here).
fn timed(n: usize, flow: impl Fn(f64) -> Vec<f64> + 'static) -> World {
    let t0 = Instant::now();
    let clock = std::cell::Cell::new(0.0f64);
    let mut w = World::new(n, move |_: &[bool]| {
        // Each call is one step of the policy's interval.
        let t = clock.get();
        clock.set(t + Settings::default().interval.as_secs_f64());
        flow(t)
    });
    w.t0 = t0;
    w
}

#[test]
fn a_short_flow_over_healthy_unequal_links_is_never_tried() {
    // The bench's flows: 6 s measured after 1 s omitted.
    let mut w = timed(3, |t| healthy_flow(t, 7.0));
    w.run(30);
    assert!(w.log.is_empty(), "{:?}", w.log);
}

#[test]
fn the_end_of_a_long_flow_is_no_stall() {
    // A minute of load; its last bytes, late over the slow link, look like
    // a stall to a rule that does not ask for the load to come back.
    let mut w = timed(3, |t| healthy_flow(t, 60.0));
    w.run(90);
    assert!(w.log.is_empty(), "{:?}", w.log);
}

#[test]
fn a_link_that_carries_no_flow_is_not_benched() {
    // Load on the first link only (a flow not bridged, or the lab measuring
    // each link alone): the second carries its probes, and with them no
    // flow to hold up. Benched, it would start the next bridged flow
    // benched.
    let mut w = World::new(2, steady([19.0, 0.02]));
    w.run(120);
    assert!(w.log.is_empty(), "{:?}", w.log);
}

/// The lab's aggregation (`mpbridge-lab run aggregate`, the suite's
/// aggregation test) as router A's counters see it: each link alone for
/// `phase` seconds (1 s of slow start and the figure; not bridged, the
/// daemons running), a fraction of a second between flows, then one flow
/// through the bridge over both, the first subflow alone for half a
/// second. `alone` is each link's rate alone, `bridged` each one's rate in
/// the bridged flow. The probes carry 20 kbit/s on every link.
fn lab_aggregation(alone: Vec<f64>, bridged: Vec<f64>, phase: f64) -> impl Fn(f64) -> Vec<f64> {
    const PROBES: f64 = 0.02;
    move |t: f64| {
        let n = alone.len();
        let mut rates = vec![PROBES; n];
        let link = ((t / phase) as usize).min(n);
        let into = t - link as f64 * phase;
        // The next flow starts a quarter of a second after the last ended.
        if into < 0.25 {
            return rates;
        }
        if link < n {
            let ramp = if into < 0.75 { 0.3 } else { 1.0 };
            rates[link] += alone[link] * ramp;
        } else if t < (n as f64 + 1.0) * phase + 30.0 {
            rates[0] += bridged[0] * if into < 0.75 { 0.3 } else { 1.0 };
            if into >= 0.75 {
                for (r, b) in rates.iter_mut().zip(&bridged).skip(1) {
                    *r += b;
                }
            }
        }
        rates
    }
}

#[test]
fn two_equal_links_each_measured_alone_before_a_bridged_flow_are_never_tried() {
    // The suite's aggregation over 2 × 50 Mbit/s got one link's worth once
    // with the policy on: a link benched while the lab measured them alone
    // stays benched for the bridged flow.
    for phase in [5.0, 6.0, 7.0] {
        let mut w = timed(
            2,
            lab_aggregation(vec![47.0, 47.0], vec![46.0, 46.0], phase),
        );
        w.run(60);
        assert!(w.log.is_empty(), "phases of {phase} s: {:?}", w.log);
    }
}

#[test]
fn unequal_healthy_links_each_measured_alone_before_a_bridged_flow_are_never_tried() {
    // The bench's unequal case (100 + 50 + 20 scaled by 0.2): each alone,
    // then one flow over the three, the third link's share 11 %.
    for phase in [5.0, 6.0, 7.0] {
        let mut w = timed(
            3,
            lab_aggregation(vec![19.0, 9.6, 3.9], vec![19.0, 9.5, 3.6], phase),
        );
        w.run(80);
        assert!(w.log.is_empty(), "phases of {phase} s: {:?}", w.log);
    }
}

#[test]
fn a_flow_starting_on_another_link_during_a_trial_voids_it() {
    // 100 + 8 with the small link helping; a third link carries only its
    // probes until, as the small link's trial begins, another flow starts
    // on it (not bridged): the total rises without the small link, but
    // not because of its absence.
    let mut w = World::new(3, steady([95.0, 8.0, 0.02]));
    // Its trial starts 8 s in (6 s of warm-up, a 2 s baseline).
    w.run(9);
    assert_eq!(w.log.len(), 1, "a trial of the small link: {:?}", w.log);
    assert!(w.log[0].1.benched && w.log[0].1.link == 1);
    w.model = Box::new(steady([95.0, 8.0, 40.0]));
    w.run(10);
    assert!(!w.policy.benched(1), "{:?}", w.log);
}

/// Two links, the second lossy, as in the lab's VM: while it is in use the
/// flow stalls for `stall` s every 7 s (the first from `first_stall` s) and
/// runs at 19.5 Mbit/s in between; benched, the data already sent on it
/// holds the flow at `held_up` Mbit/s for 2.5 s more. Run for 14 s, the
/// lossy link must end benched after one trial.
fn a_lossy_link_that_stalls_the_flow_is_benched(first_stall: f64, stall: f64, held_up: f64) {
    let step = Settings::default().interval.as_secs_f64();
    let clock = std::cell::Cell::new(0.0f64);
    let benched_at = std::cell::Cell::new(None::<f64>);
    let mut w = World::new(2, move |u: &[bool]| {
        let t = clock.get();
        clock.set(t + step);
        match u {
            [true, true] => {
                benched_at.set(None);
                if (t - first_stall).rem_euclid(7.0) < stall {
                    vec![0.0, 0.5]
                } else {
                    vec![19.5, 0.5]
                }
            }
            [true, false] => {
                let at = benched_at.get().unwrap_or(t);
                benched_at.set(Some(at));
                if t - at < 2.5 {
                    vec![held_up, 0.0]
                } else {
                    vec![19.5, 0.0]
                }
            }
            _ => vec![0.0, 0.5],
        }
    });
    w.run(14);
    assert!(w.policy.benched(1), "{:?}", w.log);
    assert_eq!(w.benches(), 1, "{:?}", w.log);
}

#[test]
fn a_link_that_stalls_the_flow_now_and_then_is_benched_whatever_the_trial_catches() {
    // A failed run in the lab's VM: the baseline fell between two stalls
    // (20 Mbit/s), the trial's first figure on the held-up flow (17.3 in
    // the VM): "it helps", and the flow went on stalling.
    a_lossy_link_that_stalls_the_flow_is_benched(4.5, 1.0, 15.0);
}

#[test]
fn a_trial_is_not_judged_on_the_flow_still_held_up_by_the_benched_link() {
    // Another run in the lab's VM: the baseline held a stall (12.2 Mbit/s)
    // and the first figure after benching the lossy link was little better
    // (11.4), the flow still held up by the data sent on it: "it helps",
    // by less than it carried, and the flow went on stalling.
    a_lossy_link_that_stalls_the_flow_is_benched(6.25, 0.75, 12.1);
}

#[test]
fn a_link_benched_by_a_trial_it_failed_during_is_tried_again_once_back() {
    // 100 + 8, the small link helping, until it black-holes 6.5 s in: the
    // flow stalls behind it through the trial's baseline, its trial begins
    // at 8 s and the probes take it out of service just after; the flow
    // then runs again without it, which measures the failure, not the
    // link. Back in service at 11 s for good, it must carry again well
    // before the 20 s retry.
    let step = Settings::default().interval.as_secs_f64();
    let clock = std::cell::Cell::new(0.0f64);
    let mut w = World::new(2, move |u: &[bool]| {
        let t = clock.get();
        clock.set(t + step);
        match u {
            [true, true] if (6.5..8.5).contains(&t) => vec![10.0, 0.0],
            [true, true] => vec![95.0, 8.0],
            [true, false] => vec![95.0, 0.0],
            _ => vec![0.0, 0.0],
        }
    });
    w.run(9);
    assert!(
        w.log.iter().any(|(_, c)| c.link == 1 && c.benched),
        "a trial of the small link: {:?}",
        w.log
    );
    w.in_service[1] = false;
    w.run(2);
    w.in_service[1] = true;
    // 5 s back in service, then a trial with it (about 4 s).
    w.run(12);
    assert!(!w.policy.benched(1), "{:?}", w.log);
}

/// The changes to `link` in `w`'s log: (seconds since the start, benched).
fn changes_of(w: &World, link: usize) -> Vec<(f64, bool)> {
    w.log
        .iter()
        .filter(|(_, c)| c.link == link)
        .map(|(at, c)| (at.as_secs_f64(), c.benched))
        .collect()
}

#[test]
fn a_harmful_link_tried_back_is_benched_again_within_five_seconds() {
    // Its return trial is what a flow pays every 20 s, then 40, 80...:
    // the flow already runs, only the returned subflow has to find its
    // pace, so the trial need not wait out a whole flow's warm-up (6 s, and
    // 8 s or more in all).
    let mut w = World::new(2, lossy_slow_link);
    w.run(40);
    let changes = changes_of(&w, 1);
    assert!(changes.len() >= 3, "benched, back, benched: {changes:?}");
    let [(_, true), (back, false), (again, true), ..] = changes[..] else {
        panic!("benched, back, benched: {changes:?}")
    };
    assert!(
        again - back <= 5.0,
        "the return trial lasted {:.2} s: {changes:?}",
        again - back
    );
}

#[test]
fn a_link_that_helps_again_returns_even_if_it_finds_its_pace_slowly() {
    // The slow link's loss ended while it was benched; back in use, its
    // subflow takes a second to reach its rate (a long RTT's slow start)
    // and holds nothing up meanwhile. A short return trial must not judge
    // it on that ramp.
    let mut w = World::new(2, lossy_slow_link);
    w.run(10);
    assert!(w.policy.benched(1), "{:?}", w.log);
    let step = Settings::default().interval.as_secs_f64();
    let clock = std::cell::Cell::new(0.0f64);
    let back_at = std::cell::Cell::new(None::<f64>);
    w.model = Box::new(move |u: &[bool]| {
        let t = clock.get();
        clock.set(t + step);
        match u {
            [true, true] => {
                let at = back_at.get().unwrap_or(t);
                back_at.set(Some(at));
                let since = t - at;
                let ramp = (since / 1.5).min(1.0);
                vec![18.8, 4.8 * ramp]
            }
            [true, false] => {
                back_at.set(None);
                vec![18.8, 0.0]
            }
            _ => vec![0.0, 0.0],
        }
    });
    w.run(60);
    assert!(!w.policy.benched(1), "{:?}", w.log);
}
