//! Link rate limits: the token-bucket (tbf) parameters the lab uses for a
//! given rate, and the `tc` commands that install or remove them. The
//! kernel here has tbf but not netem, so rate is all `tc` can do.

/// Shortest bucket: one full 64 KiB GSO super-packet, so tbf passes TCP's
/// large segments whole instead of splitting them in software.
pub const MIN_BURST_BYTES: u64 = 64 * 1024;

/// How many times per second the bucket must be able to refill; with
/// burst = rate / 250 (4 ms of traffic) a timer tick of up to 4 ms
/// (CONFIG_HZ=250) never starves the link.
pub const REFILLS_PER_SEC: u64 = 250;

/// Longest a packet may wait in the tbf queue. 20 ms is about one
/// bandwidth-delay product for a Wi-Fi bridge: enough queue for a single TCP
/// flow to fill the link, short enough that the scheduler of MPTCP sees the
/// rate difference between links quickly.
pub const LATENCY_MS: u32 = 20;

/// The token-bucket parameters for `rate_mbit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate_mbit: u32,
    pub burst_bytes: u64,
    pub latency_ms: u32,
}

impl Tbf {
    /// Parameters for a link of `rate_mbit` Mbit/s (> 0): burst =
    /// max(rate/250 s, 64 KiB), latency 20 ms. At 10 Mbit/s that is 64 KiB
    /// and a queue of ~25 KiB; at 1000 Mbit/s 500 kB and ~2.5 MB.
    pub fn for_rate(rate_mbit: u32) -> Tbf {
        let bytes_per_sec = u64::from(rate_mbit) * 1_000_000 / 8;
        Tbf {
            rate_mbit,
            burst_bytes: (bytes_per_sec / REFILLS_PER_SEC).max(MIN_BURST_BYTES),
            latency_ms: LATENCY_MS,
        }
    }

    /// The `tc` batch line that installs (or replaces) this qdisc on `ifname`.
    pub fn tc_replace_line(&self, ifname: &str) -> String {
        format!(
            "qdisc replace dev {ifname} root tbf rate {}mbit burst {} latency {}ms",
            self.rate_mbit, self.burst_bytes, self.latency_ms
        )
    }
}

/// The `tc` batch line that removes whatever root qdisc `ifname` has.
pub fn tc_delete_line(ifname: &str) -> String {
    format!("qdisc del dev {ifname} root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_links_get_the_minimum_burst() {
        let tbf = Tbf::for_rate(20);
        assert_eq!(tbf.burst_bytes, MIN_BURST_BYTES);
        assert_eq!(
            tbf.tc_replace_line("wan0"),
            "qdisc replace dev wan0 root tbf rate 20mbit burst 65536 latency 20ms"
        );
    }

    #[test]
    fn fast_links_get_four_milliseconds_of_burst() {
        assert_eq!(Tbf::for_rate(1000).burst_bytes, 500_000);
        assert_eq!(Tbf::for_rate(400).burst_bytes, 200_000);
    }
}
