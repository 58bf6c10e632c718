//! Failure injection on the links: which are black-holed or lossy, and the
//! nftables table `inet mpblab` in each router that makes it so. A table is
//! rewritten atomically on every change.

/// The nftables table the lab owns inside router A and router B.
pub const TABLE: &str = "mpblab";

/// The veth in each router that black-holed links' packets are redirected
/// to; its peer ([`SINK_PEER`]) stays down, so the veth drops them.
pub(crate) const SINK: &str = "mpbsink0";
/// The down end of [`SINK`]'s pair.
pub(crate) const SINK_PEER: &str = "mpbsink1";

/// A veth's own `gso_max_segs`, restored when a link stops being lossy.
pub(crate) const DEFAULT_GSO_MAX_SEGS: u32 = 65535;

/// Per-link fault settings; index = link number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Faults {
    blackholed: Vec<bool>,
    /// Drop probability in units of 1/1000.
    loss_permille: Vec<u16>,
}

impl Faults {
    pub(crate) fn new(links: usize) -> Faults {
        Faults {
            blackholed: vec![false; links],
            loss_permille: vec![0; links],
        }
    }

    pub(crate) fn set_blackhole(&mut self, link: usize, on: bool) {
        self.blackholed[link] = on;
    }

    pub(crate) fn set_loss_permille(&mut self, link: usize, permille: u16) {
        self.loss_permille[link] = permille;
    }

    /// Whether link `link` drops a share of its packets.
    pub(crate) fn lossy(&self, link: usize) -> bool {
        self.loss_permille[link] > 0
    }

    /// The `nft -f -` script that makes each router's table match these
    /// settings: it replaces the table, or deletes it
    /// when that router has no rule.
    ///
    /// A black hole's sending side is not here but in [`Faults::tc_lines`]:
    /// a packet nftables drops on its way out fails the sender's call with
    /// EPERM, which a TCP sender notices at once, unlike a dead radio link.
    /// Here each router drops what still arrives on a black-holed link
    /// (what the shaper or netem's delay held when it failed), so nothing
    /// crosses it either way. Loss is applied where packets *arrive* from
    /// the link, in each router's prerouting: by then the sender has cut
    /// GSO super-packets into real ones (see `Topology::set_loss`), whereas
    /// ra's postrouting still sees up to 64 KiB per "packet".
    pub(crate) fn nft_script(&self, ifname: impl Fn(usize) -> String) -> String {
        // "add table" first makes the delete valid when there is no table yet.
        let mut script = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
        let mut inbound = Vec::new();
        for link in 0..self.blackholed.len() {
            let name = ifname(link);
            if self.blackholed[link] {
                inbound.push(format!("iifname \"{name}\" drop"));
                continue;
            }
            match self.loss_permille[link] {
                0 => {}
                // `numgen … mod 1000` yields 0..=999; 1000 is "always".
                1000.. => inbound.push(format!("iifname \"{name}\" drop")),
                n => inbound.push(format!(
                    "iifname \"{name}\" numgen random mod 1000 < {n} drop"
                )),
            }
        }
        if inbound.is_empty() {
            return script;
        }
        // Before conntrack, so dropped packets leave no state behind.
        script.push_str(&format!(
            "table inet {TABLE} {{\n  chain prerouting {{\n    \
             type filter hook prerouting priority -300; policy accept;\n"
        ));
        for rule in inbound {
            script.push_str(&format!("    {rule}\n"));
        }
        script.push_str("  }\n}\n");
        script
    }

    /// The `tc -batch` lines that move a router from `before` to these
    /// settings: every packet the router sends by a black-holed link is
    /// redirected, on the link interface's egress (before its shaper), to
    /// [`SINK`], a veth whose peer is down and which drops it. The sending
    /// stack sees its packet sent, as over a dead radio link, and the other
    /// router's interface counts nothing. Empty when no black hole changed.
    pub(crate) fn tc_lines(
        &self,
        before: &Faults,
        ifname: impl Fn(usize) -> String,
    ) -> Vec<String> {
        (0..self.blackholed.len())
            .filter(|&link| self.blackholed[link] != before.blackholed[link])
            .flat_map(|link| {
                let name = ifname(link);
                if self.blackholed[link] {
                    vec![
                        format!("qdisc replace dev {name} clsact"),
                        format!(
                            "filter replace dev {name} egress pref 1 protocol all \
                             u32 match u32 0 0 action mirred egress redirect dev {SINK}"
                        ),
                    ]
                } else {
                    vec![format!("qdisc del dev {name} clsact")]
                }
            })
            .collect()
    }
}

/// Percent (0–100) to the 1/1000 units of the nft rule, rounded.
pub(crate) fn permille(pct: f32) -> anyhow::Result<u16> {
    anyhow::ensure!(
        pct.is_finite() && (0.0..=100.0).contains(&pct),
        "loss must be between 0 and 100 %, got {pct}"
    );
    Ok((pct * 10.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wan(i: usize) -> String {
        format!("wan{i}")
    }

    #[test]
    fn no_fault_deletes_the_table() {
        let script = Faults::new(2).nft_script(wan);
        assert_eq!(script, "add table inet mpblab\ndelete table inet mpblab\n");
    }

    #[test]
    fn blackhole_drops_what_arrives_and_wins_over_loss() {
        let mut faults = Faults::new(3);
        faults.set_loss_permille(1, 50);
        faults.set_loss_permille(2, 5);
        faults.set_blackhole(1, true);
        let script = faults.nft_script(wan);
        assert!(script.contains("iifname \"wan1\" drop\n"), "{script}");
        assert!(!script.contains("< 50 drop"), "{script}");
        assert!(!script.contains("wan0"), "{script}");
        // Nothing on the way out: an nft drop there fails the sender's call.
        assert!(!script.contains("oifname"), "{script}");
        assert!(!script.contains("postrouting"), "{script}");
        // The other links keep their loss.
        assert!(
            script.contains("iifname \"wan2\" numgen random mod 1000 < 5 drop"),
            "{script}"
        );
    }

    #[test]
    fn a_blackhole_redirects_what_is_sent_by_the_link_to_the_sink_until_it_ends() {
        let none = Faults::new(3);
        let mut one = none.clone();
        one.set_blackhole(1, true);
        assert_eq!(
            one.tc_lines(&none, wan),
            [
                "qdisc replace dev wan1 clsact".to_string(),
                "filter replace dev wan1 egress pref 1 protocol all u32 match u32 0 0 \
                 action mirred egress redirect dev mpbsink0"
                    .to_string(),
            ]
        );
        // Unchanged black holes and loss alone need no tc.
        let mut lossy = one.clone();
        lossy.set_loss_permille(2, 5);
        assert!(lossy.tc_lines(&one, wan).is_empty());
        assert_eq!(none.tc_lines(&one, wan), ["qdisc del dev wan1 clsact"]);
    }

    #[test]
    fn loss_is_applied_where_packets_arrive() {
        let mut faults = Faults::new(3);
        faults.set_loss_permille(2, 5);
        let script = faults.nft_script(wan);
        assert!(
            script.contains("iifname \"wan2\" numgen random mod 1000 < 5 drop"),
            "{script}"
        );
        assert!(!script.contains("oifname"), "{script}");
        assert!(
            !script.contains("wan0") && !script.contains("wan1"),
            "{script}"
        );
        assert!(faults.lossy(2) && !faults.lossy(1));
    }

    #[test]
    fn total_loss_is_a_plain_drop() {
        let mut faults = Faults::new(1);
        faults.set_loss_permille(0, 1000);
        let script = faults.nft_script(wan);
        assert!(script.contains("iifname \"wan0\" drop\n"), "{script}");
        assert!(!script.contains("numgen"), "{script}");
    }

    #[test]
    fn percent_becomes_permille() {
        assert_eq!(permille(0.0).unwrap(), 0);
        assert_eq!(permille(2.5).unwrap(), 25);
        assert_eq!(permille(0.04).unwrap(), 0);
        assert_eq!(permille(100.0).unwrap(), 1000);
        assert!(permille(-0.1).is_err());
        assert!(permille(f32::INFINITY).is_err());
    }
}
