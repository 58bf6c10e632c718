//! Rate schedules ([`crate::links::RateStep`]) played out while a lab
//! runs: a thread that changes each scheduled link's tbf rate on both
//! routers when its step ends. The clock starts when the topology is built.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::exec;
use crate::links::LinkSpec;
use crate::{plan, shaping};

/// How often the thread looks at the clock.
const TICK: Duration = Duration::from_millis(10);

/// The rate of `link` `t` seconds after the schedule started.
pub fn rate_at(link: &LinkSpec, t: f64) -> u32 {
    if link.schedule.is_empty() {
        return link.rate_mbit;
    }
    let period: f64 = link.schedule.iter().filter_map(|s| s.secs).sum();
    let mut t = if link.schedule_repeats() && period > 0.0 {
        t.rem_euclid(period)
    } else {
        t
    };
    for step in &link.schedule {
        match step.secs {
            Some(secs) if t >= secs => t -= secs,
            _ => return step.rate_mbit,
        }
    }
    // Past the last timed step of a schedule that does not repeat.
    link.schedule.last().map_or(link.rate_mbit, |s| s.rate_mbit)
}

/// The thread playing the schedules of a topology's links.
#[derive(Debug)]
pub(crate) struct Player {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Player {
    /// Starts playing: `routers` are router A's and router B's namespace
    /// names. `None` when no link has a schedule.
    pub(crate) fn start(routers: [String; 2], links: &[LinkSpec]) -> Option<Player> {
        if links.iter().all(|l| l.schedule.is_empty()) {
            return None;
        }
        let links = links.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut applied: Vec<u32> = links.iter().map(|l| l.rate_mbit).collect();
            let mut failed = false;
            while !stopped.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                for (i, link) in links.iter().enumerate() {
                    let rate = rate_at(link, t);
                    if rate == applied[i] {
                        continue;
                    }
                    applied[i] = rate;
                    let lines = shaping::rate_lines(&plan::link_ifname(i), link, rate);
                    let script = lines.join("\n") + "\n";
                    for ns in &routers {
                        let result = exec::run("tc", &["-n", ns, "-batch", "-"], Some(&script));
                        // Once, not every step: the lab may be going away.
                        if let (Err(e), false) = (result, failed || stopped.load(Ordering::Relaxed))
                        {
                            eprintln!("mpbridge-lab: link {i}: cannot set {rate} Mbit/s: {e:#}");
                            failed = true;
                        }
                    }
                }
                std::thread::sleep(TICK);
            }
        });
        Some(Player {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::parse_link;

    #[test]
    fn a_held_schedule_ends_on_its_last_step() {
        let link = parse_link("100:3s/30:4s/100").unwrap();
        assert_eq!(rate_at(&link, 0.0), 100);
        assert_eq!(rate_at(&link, 2.99), 100);
        assert_eq!(rate_at(&link, 3.0), 30);
        assert_eq!(rate_at(&link, 6.99), 30);
        assert_eq!(rate_at(&link, 7.0), 100);
        assert_eq!(rate_at(&link, 1000.0), 100);
    }

    #[test]
    fn a_timed_schedule_repeats() {
        let link = parse_link("80:4s/40:2s/60:3s").unwrap();
        assert_eq!(rate_at(&link, 4.5), 40);
        assert_eq!(rate_at(&link, 6.5), 60);
        assert_eq!(rate_at(&link, 9.5), 80);
        assert_eq!(rate_at(&link, 13.5), 40);
    }

    #[test]
    fn a_link_without_schedule_keeps_its_rate() {
        assert_eq!(rate_at(&parse_link("50@5ms").unwrap(), 123.0), 50);
    }
}
