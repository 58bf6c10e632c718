//! What one link between the routers is like ([`LinkSpec`]) and the
//! `--links` syntax that describes it:
//!
//! ```text
//! LINK   = "wifi" | RATES ["@" DELAY ["~" JITTER]] ["-" LOSS "%" ["x" BURST]]
//! RATES  = MBIT | STEP "/" STEP ...        STEP = MBIT [":" SECS "s"]
//! ```
//!
//! `100` is 100 Mbit/s (0: unshaped); `50@30ms~5ms` adds 30 ms of delay
//! each way with ±5 ms of jitter; `-1%` drops 1 % of the packets at random,
//! `-1%x4` as often but in bursts of 4 on average (netem's Gilbert model);
//! `100:3s/30:4s/100` is 100 Mbit/s for 3 s, 30 for 4 s, then 100 for good
//! (when every step has a duration the schedule repeats). `wifi` is
//! [`WIFI`]. Parsing is pure: no I/O, unit-tested without root.

use std::fmt;

/// Longest delay or jitter a link may be given.
pub const MAX_DELAY_US: u32 = 10_000_000;
/// Highest rate in Mbit/s.
pub const MAX_RATE_MBIT: u32 = 100_000;
/// Most steps in a rate schedule.
pub const MAX_STEPS: usize = 32;

/// The named `wifi` profile: a Wi-Fi link whose rate changes as its
/// modulation does (80 Mbit/s for 4 s, 40 for 2 s, 60 for 3 s, over and
/// over: 64.4 Mbit/s on average), 8 ms ± 3 ms each way (queues, MAC
/// retransmissions), and 0.05 % of the packets lost in bursts of 3 (what
/// MAC retries leave: with 0.3 % one TCP flow got a fifth of the rate, as
/// the loss alone dictates).
pub const WIFI: &str = "80:4s/40:2s/60:3s@8ms~3ms-0.05%x3";

/// One step of a rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateStep {
    pub rate_mbit: u32,
    /// How long the step lasts; `None`: for good (last step only).
    pub secs: Option<f64>,
}

/// Bursty loss: Gilbert's two-state model (netem's `loss gemodel`), every
/// packet lost in the bad state, none in the good one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BurstLoss {
    /// Share of packets lost over time, in percent.
    pub loss_pct: f32,
    /// Mean number of packets lost in a row.
    pub burst: f32,
}

impl BurstLoss {
    /// netem's `p` and `r` in percent: `r = 1/burst` leaves the bad state,
    /// `p = loss·r/(1−loss)` enters it, so that the time spent in the bad
    /// state, `p/(p+r)`, is the loss.
    pub fn gemodel_p_r(&self) -> (f64, f64) {
        let loss = f64::from(self.loss_pct) / 100.0;
        let r = 1.0 / f64::from(self.burst);
        let p = loss * r / (1.0 - loss);
        (100.0 * p, 100.0 * r)
    }
}

/// One link between router A and router B.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LinkSpec {
    /// Rate limit in Mbit/s, applied in both directions; 0 leaves the link
    /// unshaped. With a schedule: its first step's rate.
    pub rate_mbit: u32,
    /// Random loss in percent, applied in both directions; 0 means none.
    pub loss_pct: f32,
    /// How the rate changes over time (empty: it does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<RateStep>,
    /// One-way delay in microseconds, each direction.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_us: u32,
    /// Jitter (±) on the delay, microseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_us: u32,
    /// Loss in bursts, each direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_loss: Option<BurstLoss>,
    /// The named profile it came from (`wifi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl LinkSpec {
    /// An unshaped, lossless link.
    pub const UNSHAPED: LinkSpec = LinkSpec {
        rate_mbit: 0,
        loss_pct: 0.0,
        schedule: Vec::new(),
        delay_us: 0,
        jitter_us: 0,
        burst_loss: None,
        profile: None,
    };

    /// A lossless link shaped to `rate_mbit` Mbit/s.
    pub fn shaped(rate_mbit: u32) -> LinkSpec {
        LinkSpec {
            rate_mbit,
            ..LinkSpec::UNSHAPED
        }
    }

    /// Whether the link needs netem (delay, jitter or bursty loss), which
    /// this machine's kernel may lack: the lab then runs in a VM.
    pub fn needs_netem(&self) -> bool {
        self.delay_us > 0 || self.jitter_us > 0 || self.burst_loss.is_some()
    }

    /// The average rate over one round of the schedule (or the rate), Mbit/s.
    pub fn mean_rate_mbit(&self) -> f64 {
        let timed: Vec<&RateStep> = self.schedule.iter().filter(|s| s.secs.is_some()).collect();
        if self.schedule.is_empty() || timed.len() < self.schedule.len() {
            return f64::from(self.rate_mbit);
        }
        let total: f64 = timed.iter().filter_map(|s| s.secs).sum();
        timed
            .iter()
            .map(|s| f64::from(s.rate_mbit) * s.secs.unwrap_or(0.0))
            .sum::<f64>()
            / total
    }

    /// Whether the schedule repeats (every step has a duration).
    pub fn schedule_repeats(&self) -> bool {
        !self.schedule.is_empty() && self.schedule.iter().all(|s| s.secs.is_some())
    }

    /// The link in the `--links` syntax (a profile by its name).
    pub fn spec_text(&self) -> String {
        if let Some(name) = &self.profile {
            return name.clone();
        }
        let mut s = if self.schedule.is_empty() {
            self.rate_mbit.to_string()
        } else {
            self.schedule
                .iter()
                .map(|step| match step.secs {
                    Some(secs) => format!("{}:{secs}s", step.rate_mbit),
                    None => step.rate_mbit.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/")
        };
        if self.delay_us > 0 || self.jitter_us > 0 {
            s.push('@');
            s.push_str(&duration_text(self.delay_us));
            if self.jitter_us > 0 {
                s.push('~');
                s.push_str(&duration_text(self.jitter_us));
            }
        }
        if let Some(b) = &self.burst_loss {
            s.push_str(&format!("-{}%x{}", b.loss_pct, b.burst));
        } else if self.loss_pct > 0.0 {
            s.push_str(&format!("-{}%", self.loss_pct));
        }
        s
    }
}

/// `5ms`, `1.5ms`, `250us`.
fn duration_text(us: u32) -> String {
    if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else if us >= 1000 {
        format!("{}ms", f64::from(us) / 1000.0)
    } else {
        format!("{us}us")
    }
}

impl fmt::Display for LinkSpec {
    /// `50 Mbit/s, 30 ms ± 5 ms, 1 % loss in bursts of 4` (words, for reports).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.profile {
            write!(f, "{name} (")?;
        }
        if self.schedule.is_empty() {
            if self.rate_mbit == 0 {
                write!(f, "unshaped")?;
            } else {
                write!(f, "{} Mbit/s", self.rate_mbit)?;
            }
        } else {
            let steps: Vec<String> = self
                .schedule
                .iter()
                .map(|s| match s.secs {
                    Some(secs) => format!("{} Mbit/s for {secs} s", s.rate_mbit),
                    None => format!("{} Mbit/s", s.rate_mbit),
                })
                .collect();
            write!(f, "{}", steps.join(", then "))?;
            if self.schedule_repeats() {
                write!(f, ", repeated")?;
            }
        }
        if self.delay_us > 0 || self.jitter_us > 0 {
            write!(f, ", {} one way", duration_words(self.delay_us))?;
            if self.jitter_us > 0 {
                write!(f, " ± {}", duration_words(self.jitter_us))?;
            }
        }
        if let Some(b) = &self.burst_loss {
            write!(f, ", {} % loss in bursts of {}", b.loss_pct, b.burst)?;
        }
        if self.loss_pct > 0.0 {
            write!(f, " ({} % loss)", self.loss_pct)?;
        }
        if self.profile.is_some() {
            write!(f, ")")?;
        }
        Ok(())
    }
}

fn duration_words(us: u32) -> String {
    duration_text(us).replace("ms", " ms").replace("us", " µs")
}

/// Parses one link of `--links` (see the module's syntax). The error is the
/// reason only; [`parse_links`] says which link it was.
pub fn parse_link(text: &str) -> Result<LinkSpec, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("wifi") {
        let mut spec = parse_link(WIFI)?;
        spec.profile = Some("wifi".into());
        return Ok(spec);
    }
    // The parts start at '@' (delay) and '-' (loss), in that order.
    let (head, loss) = match text.split_once('-') {
        Some((h, l)) => (h, Some(l)),
        None => (text, None),
    };
    let (rates, delay) = match head.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (head, None),
    };
    let mut spec = LinkSpec::UNSHAPED;
    if rates.contains('/') || rates.contains(':') {
        let steps: Vec<&str> = rates.split('/').collect();
        if steps.len() > MAX_STEPS {
            return Err(format!(
                "{rates:?} has {} rate steps, at most {MAX_STEPS}",
                steps.len()
            ));
        }
        for (i, step) in steps.iter().enumerate() {
            let (rate, secs) = match step.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (*step, None),
            };
            let rate_mbit = parse_rate(rate)?;
            if rate_mbit == 0 {
                return Err(format!(
                    "rate step {step:?} has rate 0; a schedule's rates are 1 Mbit/s or more"
                ));
            }
            let secs = match secs {
                Some(d) => Some(parse_secs(d)?),
                None if i + 1 < steps.len() => {
                    return Err(format!(
                        "rate step {step:?} needs a duration (e.g. {rate}:4s): only the last \
                         step may last for good"
                    ))
                }
                None => None,
            };
            spec.schedule.push(RateStep { rate_mbit, secs });
        }
        if spec.schedule.len() == 1 && spec.schedule[0].secs.is_some() {
            return Err(format!(
                "{rates:?} is a single timed step; give what follows, e.g. {rates}/100"
            ));
        }
        spec.rate_mbit = spec.schedule[0].rate_mbit;
    } else {
        spec.rate_mbit = parse_rate(rates)?;
    }
    if let Some(delay) = delay {
        let (d, j) = match delay.split_once('~') {
            Some((d, j)) => (d, Some(j)),
            None => (delay, None),
        };
        spec.delay_us = parse_duration(d, "delay")?;
        if let Some(j) = j {
            spec.jitter_us = parse_duration(j, "jitter")?;
            if spec.jitter_us > spec.delay_us {
                return Err(format!(
                    "jitter {j:?} is larger than the delay {d:?}; a delay cannot go below zero"
                ));
            }
        }
    }
    if let Some(loss) = loss {
        let (pct, burst) = match loss.split_once('x') {
            Some((p, b)) => (p, Some(b)),
            None => (loss, None),
        };
        let value = pct
            .strip_suffix('%')
            .and_then(|p| p.parse::<f32>().ok())
            .filter(|p| p.is_finite() && *p > 0.0 && *p < 100.0)
            .ok_or_else(|| {
                format!("{pct:?} is not a loss; give percent above 0 and below 100, e.g. -1%")
            })?;
        match burst {
            None => spec.loss_pct = value,
            Some(b) => {
                let burst = b
                    .parse::<f32>()
                    .ok()
                    .filter(|b| b.is_finite() && (1.0..=1000.0).contains(b))
                    .ok_or_else(|| {
                        format!(
                            "{b:?} is not a burst length; give the mean number of packets lost \
                             in a row, 1 to 1000, e.g. -1%x4"
                        )
                    })?;
                spec.burst_loss = Some(BurstLoss {
                    loss_pct: value,
                    burst,
                });
            }
        }
    }
    Ok(spec)
}

fn parse_rate(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|&n| n <= MAX_RATE_MBIT)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a rate; give whole Mbit/s from 0 (unshaped) to {MAX_RATE_MBIT}"
            )
        })
}

fn parse_secs(text: &str) -> Result<f64, String> {
    text.strip_suffix('s')
        .filter(|t| !t.ends_with('m'))
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.1 && *s <= 3600.0)
        .ok_or_else(|| {
            format!("{text:?} is not a step's duration; give seconds from 0.1 to 3600, e.g. 4s")
        })
}

/// `5ms`, `0.5ms`, `500us` → microseconds.
fn parse_duration(text: &str, what: &str) -> Result<u32, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else {
        (text, f64::NAN)
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|us| us.is_finite() && *us >= 0.0 && *us <= f64::from(MAX_DELAY_US))
        .filter(|us| us.fract() == 0.0)
        .map(|us| us as u32)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a {what}; give milliseconds or microseconds up to 10 s, e.g. \
                 30ms or 500us"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> LinkSpec {
        parse_link(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_plain_rate_is_todays_link() {
        assert_eq!(ok("50"), LinkSpec::shaped(50));
        assert_eq!(ok(" 0 "), LinkSpec::UNSHAPED);
        assert!(!ok("50").needs_netem());
    }

    #[test]
    fn delay_and_jitter_are_one_way() {
        let l = ok("50@30ms~5ms");
        assert_eq!((l.rate_mbit, l.delay_us, l.jitter_us), (50, 30_000, 5_000));
        assert!(l.needs_netem());
        assert_eq!(ok("100@500us").delay_us, 500);
        assert_eq!(ok("100@1.5ms").delay_us, 1500);
        assert_eq!(l.spec_text(), "50@30ms~5ms");
        assert_eq!(l.to_string(), "50 Mbit/s, 30 ms one way ± 5 ms");
    }

    #[test]
    fn loss_is_random_or_in_bursts() {
        let random = ok("20-1%");
        assert_eq!(random.loss_pct, 1.0);
        assert!(random.burst_loss.is_none() && !random.needs_netem());
        let bursty = ok("20@60ms-1%x4");
        assert_eq!(
            bursty.burst_loss,
            Some(BurstLoss {
                loss_pct: 1.0,
                burst: 4.0
            })
        );
        assert_eq!(bursty.loss_pct, 0.0);
        assert_eq!(bursty.spec_text(), "20@60ms-1%x4");
    }

    #[test]
    fn the_gilbert_model_gives_the_loss_and_the_burst_length_asked_for() {
        let (p, r) = BurstLoss {
            loss_pct: 1.0,
            burst: 4.0,
        }
        .gemodel_p_r();
        assert!((r - 25.0).abs() < 1e-9);
        // Share of time in the bad state = p / (p + r).
        assert!((p / (p + r) - 0.01).abs() < 1e-9, "{p}");
    }

    #[test]
    fn a_rate_schedule_holds_its_last_step_or_repeats() {
        let held = ok("100:3s/30:4s/100");
        assert_eq!(held.rate_mbit, 100);
        assert_eq!(held.schedule.len(), 3);
        assert_eq!(held.schedule[1].secs, Some(4.0));
        assert_eq!(held.schedule[2].secs, None);
        assert!(!held.schedule_repeats() && !held.needs_netem());
        assert_eq!(held.spec_text(), "100:3s/30:4s/100");
        assert_eq!(held.mean_rate_mbit(), 100.0);
        let cycle = ok("80:4s/40:2s");
        assert!(cycle.schedule_repeats());
        assert!((cycle.mean_rate_mbit() - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn wifi_is_a_named_profile() {
        let w = ok("wifi");
        assert_eq!(w.profile.as_deref(), Some("wifi"));
        assert!(w.needs_netem() && w.schedule_repeats() && w.burst_loss.is_some());
        assert!(w.jitter_us > 0);
        assert!((w.mean_rate_mbit() - 580.0 / 9.0).abs() < 1e-9);
        assert_eq!(w.spec_text(), "wifi");
        assert!(w
            .to_string()
            .starts_with("wifi (80 Mbit/s for 4 s, then 40 Mbit/s"));
        assert_eq!(ok("WiFi").profile.as_deref(), Some("wifi"));
    }

    #[test]
    fn the_syntax_round_trips() {
        for text in ["0", "50@5ms", "100:3s/30:4s/100@2ms~1ms-0.5%x2", "20-0.1%"] {
            assert_eq!(ok(text).spec_text(), text);
            assert_eq!(ok(&ok(text).spec_text()), ok(text));
        }
    }

    #[test]
    fn each_wrong_part_is_named() {
        for (bad, part) in [
            ("fast", "\"fast\" is not a rate"),
            ("50@5", "\"5\" is not a delay"),
            ("50@5s", "\"5s\" is not a delay"),
            ("50@5ms~x", "\"x\" is not a jitter"),
            ("50@5ms~6ms", "jitter \"6ms\" is larger"),
            ("50-1", "\"1\" is not a loss"),
            ("50-100%", "\"100%\" is not a loss"),
            ("50-1%x0", "\"0\" is not a burst length"),
            ("100:3s/30/100", "rate step \"30\" needs a duration"),
            ("100:3/30", "\"3\" is not a step's duration"),
            ("100:3ms/30", "\"3ms\" is not a step's duration"),
            ("100:3s", "single timed step"),
            ("200000", "\"200000\" is not a rate"),
            ("", "\"\" is not a rate"),
            ("0:1s/50", "rate step \"0:1s\" has rate 0"),
        ] {
            let e = parse_link(bad).expect_err(bad);
            assert!(e.contains(part), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: one sentence: {e}");
        }
    }
}
