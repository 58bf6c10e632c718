//! Numbers whose accepted range and unit are part of their type: each key's
//! range is one alias below, and an out-of-range value is refused with the
//! range and unit in the message ("5 is out of range (expected 100..=120000 milliseconds)").

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// What a bounded number counts; its name ends the range in errors.
pub trait Unit {
    /// What ends the range in errors, as in "1..=3600 seconds": the plural
    /// with a leading space; empty for plain numbers (ids, ports).
    const SUFFIX: &'static str;
}

macro_rules! units {
    ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl Unit for $name {
            const SUFFIX: &'static str = $text;
        }
    )*};
}

units! {
    /// Time in milliseconds.
    Milliseconds = " milliseconds";
    /// Time in seconds.
    Seconds = " seconds";
    /// A size in bytes.
    Bytes = " bytes";
    /// A count of connections.
    Connections = " connections";
    /// A count of remembered nonces.
    Nonces = " nonces";
    /// A count of probes.
    Probes = " probes";
    /// A rate in Mbit/s.
    MbitPerSec = " Mbit/s";
    /// An id, a port, a priority: a plain number.
    Number = "";
}

/// An unsigned machine integer a bounded number is kept in.
pub trait Int: Copy {
    /// The type's largest value, as far as an `i64` holds it.
    const MAX: i64;
    /// `n` as this type; [`Bounded`] calls it only with `0..=MAX`.
    fn from_i64(n: i64) -> Self;
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const MAX: i64 = if <$t>::MAX as u128 > i64::MAX as u128 {
                i64::MAX
            } else {
                <$t>::MAX as i64
            };
            fn from_i64(n: i64) -> Self {
                // In 0..=Self::MAX (checked by `Bounded::new`): no bits lost.
                n as $t
            }
        }
    )*};
}

ints!(u8, u16, u32, u64, usize);

/// A `T` in `MIN..=MAX` of unit `U`. Made only by [`Bounded::new`], so a
/// value of this type is in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<T, const MIN: i64, const MAX: i64, U>(T, PhantomData<U>);

impl<T: Int, const MIN: i64, const MAX: i64, U: Unit> Bounded<T, MIN, MAX, U> {
    /// Checked when a range is used: it is not negative and fits `T`.
    const FITS: () = assert!(
        0 <= MIN && MIN <= MAX && MAX <= T::MAX,
        "a bounded range must be within its integer type"
    );

    /// `n` if it lies in `MIN..=MAX`.
    pub fn new(n: i64) -> Result<Self, OutOfRange> {
        let () = Self::FITS;
        in_range(n, MIN, MAX, U::SUFFIX).map(|n| Bounded(T::from_i64(n), PhantomData))
    }

    /// The number.
    pub fn get(self) -> T {
        self.0
    }
}

/// The check every [`Bounded`] shares, kept out of the generic code.
fn in_range(n: i64, min: i64, max: i64, unit: &'static str) -> Result<i64, OutOfRange> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(OutOfRange {
            value: n,
            min,
            max,
            unit,
        })
    }
}

impl<const MIN: i64, const MAX: i64> Bounded<u64, MIN, MAX, Milliseconds> {
    /// The time this many milliseconds make.
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl<const MIN: i64, const MAX: i64> Bounded<u64, MIN, MAX, Seconds> {
    /// The time this many seconds make.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

/// Why [`Bounded::new`] refused a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    value: i64,
    min: i64,
    max: i64,
    unit: &'static str,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OutOfRange {
            value,
            min,
            max,
            unit,
        } = self;
        write!(f, "{value} is out of range (expected {min}..={max}{unit})")
    }
}

impl std::error::Error for OutOfRange {}

/// A type made from a config integer after a check: any [`Bounded`].
pub trait FromNumber: Sized {
    /// The value, or why `n` is refused.
    fn from_number(n: i64) -> Result<Self, OutOfRange>;
}

impl<T: Int, const MIN: i64, const MAX: i64, U: Unit> FromNumber for Bounded<T, MIN, MAX, U> {
    fn from_number(n: i64) -> Result<Self, OutOfRange> {
        Bounded::new(n)
    }
}

// The accepted range of every numeric key (`examples-config/mpbridge.toml`
// repeats them for operators).

/// `auth.key_id`, `auth.accept[].id`.
pub type KeyId = Bounded<u8, 0, 255, Number>;
/// `auth.window_secs`: how far a cookie's clock may be from ours.
pub type WindowSecs = Bounded<u64, 1, 3600, Seconds>;
/// `auth.replay_cache`.
pub type ReplayCache = Bounded<usize, 1, 10_000_000, Nonces>;
/// `local.connect_timeout_ms`, `local.reply_timeout_ms`,
/// `remote.header_timeout_ms`, `remote.connect_timeout_ms`.
pub type Timeout = Bounded<u64, 100, 120_000, Milliseconds>;
/// `local.fastopen_rcvbuf`, `remote.fastopen_rcvbuf` (0: the kernel's autotuning).
pub type RecvBuffer = Bounded<usize, 0, 268_435_456, Bytes>;
/// `local.sndbuf`, `remote.sndbuf` (0: the kernel's autotuning).
pub type SendBuffer = Bounded<usize, 0, 268_435_456, Bytes>;
/// `limits.max_connections`.
pub type MaxConnections = Bounded<usize, 1, 1_000_000, Connections>;
/// `limits.drain_secs`.
pub type DrainSecs = Bounded<u64, 0, 3600, Seconds>;
/// `limits.pipe_size`.
pub type PipeSize = Bounded<usize, 4096, 16_777_216, Bytes>;
/// `limits.rcvbuf_budget` (0: sized from the kernel's `tcp_mem`).
pub type RecvBudget = Bounded<usize, 0, 2_147_483_647, Bytes>;
/// `probe.interval_ms`.
pub type ProbeInterval = Bounded<u64, 10, 10_000, Milliseconds>;
/// `probe.down_after`, `probe.up_after`.
pub type ProbeCount = Bounded<u32, 1, 100, Probes>;
/// `probe.port`.
pub type Port = Bounded<u16, 1, 65_535, Number>;
/// `paths.table_base`: ids below 256 include the kernel's own (253..=255);
/// the top leaves room for `MAX_LINKS` tables.
pub type TableBase = Bounded<u32, 256, 2_000_000_000, Number>;
/// `paths.rule_priority`.
pub type RulePriority = Bounded<u32, 1, 32_000, Number>;
/// `paths.route_table`.
pub type RouteTable = Bounded<u32, 1, 2_000_000_000, Number>;
/// `paths.route_metric`.
pub type RouteMetric = Bounded<u32, 0, 2_000_000_000, Number>;
/// `paths.nexthop_base`: the top leaves room for the ids of `MAX_LINKS`
/// links and the groups.
pub type NexthopBase = Bounded<u32, 1, 2_000_000_000, Number>;
/// `paths.subflows_after_ms`.
pub type SubflowsAfter = Bounded<u64, 0, 60_000, Milliseconds>;
/// `link[].rate_mbit`.
pub type RateMbit = Bounded<u32, 1, 1_000_000, MbitPerSec>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_inclusive_and_the_error_names_them_with_the_unit() {
        assert_eq!(Timeout::new(100).map(Bounded::get), Ok(100));
        assert_eq!(Timeout::new(120_000).map(Bounded::get), Ok(120_000));
        assert_eq!(
            Timeout::new(99).unwrap_err().to_string(),
            "99 is out of range (expected 100..=120000 milliseconds)"
        );
        assert_eq!(
            KeyId::new(256).unwrap_err().to_string(),
            "256 is out of range (expected 0..=255)"
        );
        assert_eq!(
            MaxConnections::new(-1).unwrap_err().to_string(),
            "-1 is out of range (expected 1..=1000000 connections)"
        );
    }

    #[test]
    fn an_integer_type_bounds_what_fits_it() {
        assert_eq!(<u8 as Int>::MAX, 255);
        assert_eq!(<u16 as Int>::MAX, 65_535);
        assert_eq!(<u64 as Int>::MAX, i64::MAX);
        assert_eq!(Port::new(65_535).map(Bounded::get), Ok(65_535u16));
        assert!(Port::new(65_536).is_err() && Port::new(0).is_err());
    }

    #[test]
    fn times_keep_their_unit() {
        assert_eq!(
            Timeout::new(250).unwrap().duration(),
            Duration::from_millis(250)
        );
        assert_eq!(DrainSecs::new(0).unwrap().duration(), Duration::ZERO);
        assert_eq!(
            WindowSecs::new(60).unwrap().duration(),
            Duration::from_secs(60)
        );
    }
}
