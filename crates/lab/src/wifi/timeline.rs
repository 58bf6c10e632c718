//! When things happened around a Wi-Fi failure, read from each program's
//! own clock and put on the transfer's: the daemons log RFC 3339 UTC
//! times (tracing's default), hostapd and wpa_supplicant run with `-t`
//! (Unix seconds before each line), the lab notes what it did itself.
//! All of them read the same (VM) clock, so their marks line up.

use serde::{Deserialize, Serialize};

use crate::iperf::Interval;

/// One thing that happened, seconds into the transfer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub t: f64,
    /// Who said it: "router A", "router B", "hostapd 0", "lab"…
    pub who: String,
    pub what: String,
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as tracing writes
/// it (`2026-12-05T13:22:28.810893Z`); `None` for anything else.
pub fn rfc3339_unix(text: &str) -> Option<f64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec >= 61.0 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`: years
/// counted from March, so that the leap day ends a year, in 400-year eras
/// of 146,097 days.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The lines of a daemon's log (`2026-…Z  INFO target: message fields`)
/// whose time falls in `[from, to]` seconds after `origin_unix`, as
/// "LEVEL message fields".
pub fn daemon_marks(who: &str, log: &str, origin_unix: f64, from: f64, to: f64) -> Vec<Mark> {
    log.lines()
        .filter_map(|line| {
            let (stamp, rest) = line.split_once(' ')?;
            let t = rfc3339_unix(stamp)? - origin_unix;
            let rest = rest.trim_start();
            let (level, rest) = rest.split_once(' ')?;
            // The target ("mpbridge::paths::planner: ") says nothing to the reader.
            let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
            (from..=to)
                .contains(&t)
                .then(|| mark(t, who, format!("{level} {message}")))
        })
        .collect()
}

/// The lines of a hostapd or wpa_supplicant log run with `-t`
/// (`1764941000.123456: wan0: CTRL-EVENT-CONNECTED …`) that hold one of
/// `keep`, in `[from, to]` seconds after `origin_unix`.
pub fn hostap_marks(
    who: &str,
    log: &str,
    origin_unix: f64,
    (from, to): (f64, f64),
    keep: &[&str],
) -> Vec<Mark> {
    log.lines()
        .filter(|line| keep.iter().any(|k| line.contains(k)))
        .filter_map(|line| {
            let (stamp, message) = line.split_once(": ")?;
            let t = stamp.trim().parse::<f64>().ok()? - origin_unix;
            (from..=to)
                .contains(&t)
                .then(|| mark(t, who, message.trim().to_string()))
        })
        .collect()
}

fn mark(t: f64, who: &str, what: String) -> Mark {
    Mark {
        t,
        who: who.to_string(),
        what,
    }
}

/// Where the longest run of intervals in which nothing arrived lies,
/// among those that start at or after `from`: its start and end, seconds.
pub fn longest_stall_window(intervals: &[Interval], from: f64) -> Option<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    let mut current: Option<(f64, f64)> = None;
    for i in intervals.iter().filter(|i| i.start + 1e-6 >= from) {
        if i.bytes > 0 {
            current = None;
            continue;
        }
        let run = match current {
            Some((start, _)) => (start, i.end),
            None => (i.start, i.end),
        };
        current = Some(run);
        if best.is_none_or(|(s, e)| run.1 - run.0 > e - s + 1e-9) {
            best = Some(run);
        }
    }
    best
}

/// How often the daemons took link `ifnames` out of service among
/// `marks`: the probes saying "down" about one of them.
pub fn downs_of(marks: &[Mark], ifnames: &[String]) -> usize {
    marks
        .iter()
        .filter(|m| m.what.contains("state=\"down\""))
        .filter(|m| {
            ifnames.iter().any(|n| {
                m.what.contains(&format!("link={n} ")) || m.what.ends_with(&format!("link={n}"))
            })
        })
        .count()
}

/// The marks as lines, one each: "  12.345 s  router A  what".
pub fn text(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| format!("  {:8.3} s  {:<12} {}\n", m.t, m.who, m.what))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_unix_seconds_and_anything_else_is_refused() {
        assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0.0));
        // `date -u -d 2026-12-05T13:22:28Z +%s` says 1796476948.
        let t = rfc3339_unix("2026-12-05T13:22:28.810893Z").unwrap();
        assert!((t - 1_796_476_948.810_893).abs() < 1e-5, "{t}");
        // A leap day, and the day after it.
        assert_eq!(rfc3339_unix("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(rfc3339_unix("2024-03-01T00:00:00Z"), Some(1_709_251_200.0));
        for bad in [
            "2026-12-05 13:22:28Z",
            "2026-13-05T13:22:28Z",
            "INFO",
            "2026-12-05T13:22Z",
        ] {
            assert_eq!(rfc3339_unix(bad), None, "{bad}");
        }
    }

    #[test]
    fn daemon_lines_in_the_window_become_marks_without_their_target() {
        let log = "2026-12-05T13:22:28.500000Z  INFO mpbridge::paths::planner: probes changed the link's state link=wan1 state=\"down\"\n\
                   a line without a time\n\
                   2026-12-05T13:22:40.000000Z  INFO mpbridge::paths::executor: MPTCP endpoint removed link=wan1\n";
        let origin = rfc3339_unix("2026-12-05T13:22:20Z").unwrap();
        let marks = daemon_marks("router A", log, origin, 5.0, 10.0);
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert!((marks[0].t - 8.5).abs() < 1e-6);
        assert_eq!(
            marks[0].what,
            "INFO probes changed the link's state link=wan1 state=\"down\""
        );
        assert_eq!(downs_of(&marks, &["wan1".into()]), 1);
        assert_eq!(downs_of(&marks, &["wan0".into()]), 0);
    }

    #[test]
    fn hostap_lines_are_kept_by_their_event_and_timed_by_their_prefix() {
        let log = "1000.250000: wan0: CTRL-EVENT-DISCONNECTED bssid=02:00 reason=3\n\
                   1001.000000: wan0: Trying to associate with 02:00\n\
                   1002.500000: wan0: CTRL-EVENT-CONNECTED - Connection to 02:00 completed\n\
                   Successfully initialized wpa_supplicant\n";
        let marks = hostap_marks("wpa 0", log, 1000.0, (0.0, 5.0), &["CTRL-EVENT-"]);
        let what: Vec<(f64, &str)> = marks.iter().map(|m| (m.t, m.what.as_str())).collect();
        assert_eq!(
            what,
            vec![
                (0.25, "wan0: CTRL-EVENT-DISCONNECTED bssid=02:00 reason=3"),
                (
                    2.5,
                    "wan0: CTRL-EVENT-CONNECTED - Connection to 02:00 completed"
                ),
            ]
        );
    }

    #[test]
    fn the_longest_stall_is_found_where_it_lies() {
        let i = |start: f64, bytes: u64| Interval {
            start,
            end: start + 0.1,
            bytes,
        };
        let goodput = [
            i(0.9, 0),
            i(1.0, 5),
            i(1.1, 0),
            i(1.2, 5),
            i(1.3, 0),
            i(1.4, 0),
            i(1.5, 0),
            i(1.6, 5),
        ];
        let (s, e) = longest_stall_window(&goodput, 1.0).unwrap();
        assert!((s - 1.3).abs() < 1e-9 && (e - 1.6).abs() < 1e-9, "{s} {e}");
        assert_eq!(longest_stall_window(&goodput[1..2], 1.0), None);
    }
}
