//! Link rate limits: the token-bucket (tbf) parameters the lab uses for a
//! given rate, and the `tc` commands that install or remove them; with
//! delay, jitter or bursty loss, netem at the root and the tbf below it
//! (netem is not in every kernel: the lab then runs in a VM, see
//! [`crate::vm`]).

use crate::links::LinkSpec;

/// netem's queue, in packets: enough for the packets in flight on a link
/// of 1 Gbit/s with 60 ms of delay.
pub const NETEM_LIMIT: u32 = 10_000;

/// netem's own rate on a link with jitter, far above any link's: with a
/// rate, netem sends no packet before the one ahead of it, so jitter
/// varies the delay without reordering packets (a real link keeps their
/// order: a packet held up holds up those behind it). Without one, netem
/// reorders every packet that jitter lets overtake another.
pub const NETEM_FIFO_RATE: &str = "4gbit";

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

/// Whether this kernel has netem: loaded, built in, or a module on disk.
pub fn netem_available() -> bool {
    if std::path::Path::new("/sys/module/sch_netem").exists() {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = std::path::Path::new("/lib/modules").join(release.trim());
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let modules = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
    builtin.contains("/sch_netem.ko") || modules.contains("/sch_netem.ko")
}

/// Whether `link` needs netem here: for its jitter or bursty loss, or
/// for its delay unless the delay line takes it ([`crate::delayline`]).
pub fn needs_netem_here(link: &LinkSpec) -> bool {
    link.needs_netem() && !crate::delayline::takes(link)
}

/// netem's options for `link` (delay, jitter, bursty loss), or `None`
/// when the link needs no netem here.
pub fn netem_options(link: &LinkSpec) -> Option<String> {
    if !needs_netem_here(link) {
        return None;
    }
    let mut s = format!("limit {NETEM_LIMIT} delay {}us", link.delay_us);
    if link.jitter_us > 0 {
        s.push_str(&format!(" {}us rate {NETEM_FIFO_RATE}", link.jitter_us));
    }
    if let Some(b) = &link.burst_loss {
        let (p, r) = b.gemodel_p_r();
        s.push_str(&format!(" loss gemodel {p:.4}% {r:.4}% 100% 0%"));
    }
    Some(s)
}

/// The `tc` batch lines that give `ifname` the qdiscs of `link` at
/// `rate_mbit` (its first or current rate): tbf alone at the root, or netem
/// at the root (handle 1:) with the tbf (handle 10:) as its child.
pub fn link_lines(ifname: &str, link: &LinkSpec, rate_mbit: u32) -> Vec<String> {
    match netem_options(link) {
        None if rate_mbit == 0 => Vec::new(),
        None => vec![Tbf::for_rate(rate_mbit).tc_replace_line(ifname)],
        Some(netem) => {
            let mut lines = vec![format!(
                "qdisc replace dev {ifname} root handle 1: netem {netem}"
            )];
            if rate_mbit > 0 {
                lines.extend(rate_lines(ifname, link, rate_mbit));
            }
            lines
        }
    }
}

/// The `tc` batch lines that change `ifname`'s rate to `rate_mbit` while
/// keeping the rest of `link` (its netem). Empty when there is nothing to
/// do; an unshaped link without netem gets [`tc_delete_line`] from the caller.
pub fn rate_lines(ifname: &str, link: &LinkSpec, rate_mbit: u32) -> Vec<String> {
    let tbf = Tbf::for_rate(rate_mbit);
    if netem_options(link).is_none() {
        return if rate_mbit == 0 {
            Vec::new()
        } else {
            vec![tbf.tc_replace_line(ifname)]
        };
    }
    if rate_mbit == 0 {
        return vec![format!("qdisc del dev {ifname} parent 1:1 handle 10:")];
    }
    vec![format!(
        "qdisc replace dev {ifname} parent 1:1 handle 10: tbf rate {}mbit burst {} latency {}ms",
        tbf.rate_mbit, tbf.burst_bytes, tbf.latency_ms
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::parse_link;

    #[test]
    fn a_plain_link_gets_tbf_alone() {
        let link = parse_link("50").unwrap();
        assert_eq!(netem_options(&link), None);
        assert_eq!(
            link_lines("wan0", &link, 50),
            ["qdisc replace dev wan0 root tbf rate 50mbit burst 65536 latency 20ms"]
        );
        assert!(link_lines("wan0", &parse_link("0").unwrap(), 0).is_empty());
    }

    #[test]
    fn delay_puts_netem_at_the_root_and_tbf_below_it() {
        let link = parse_link("50@30ms~5ms-1%x4").unwrap();
        assert_eq!(
            link_lines("wan1", &link, 50),
            [
                "qdisc replace dev wan1 root handle 1: netem limit 10000 delay 30000us 5000us \
                 rate 4gbit loss gemodel 0.2525% 25.0000% 100% 0%",
                "qdisc replace dev wan1 parent 1:1 handle 10: tbf rate 50mbit burst 65536 \
                 latency 20ms"
            ]
        );
        assert_eq!(
            rate_lines("wan1", &link, 30),
            ["qdisc replace dev wan1 parent 1:1 handle 10: tbf rate 30mbit burst 65536 latency 20ms"]
        );
        let unshaped = parse_link("0@5ms").unwrap();
        assert_eq!(link_lines("wan0", &unshaped, 0).len(), 1);
    }

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
