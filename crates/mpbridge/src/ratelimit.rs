//! Rate limits for log lines that an outsider can trigger (refused cookies,
//! malformed headers, over-limit connections): one line per interval per
//! kind, with a count of what was held back, so an attack cannot fill flash.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One log line per `interval`; the calls in between are counted.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    held_back: u64,
}

/// How often the daemon logs each kind of refusal at most.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl LogLimit {
    /// The limiter of every refusal kind: one line per [`REFUSAL_LOG_INTERVAL`].
    pub const fn refusals() -> LogLimit {
        LogLimit::new(REFUSAL_LOG_INTERVAL)
    }

    /// A limiter letting one line through per `interval`.
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            state: Mutex::new(State {
                last: None,
                held_back: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back
    /// since the last one); `None` when this one must be held back.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.held_back += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.held_back))
            }
        }
    }
}

/// Logs at `warn` through a [`LogLimit`], appending how many lines were held back.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {
        if let Some(held) = $limit.check(std::time::Instant::now()) {
            if held > 0 {
                tracing::warn!(held_back = held, $($arg)+);
            } else {
                tracing::warn!($($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_are_counted() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.check(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(limit.check(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.check(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(limit.check(t0 + Duration::from_secs(11)), None);
    }
}
