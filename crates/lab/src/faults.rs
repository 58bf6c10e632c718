//! Failure injection on the links: which are black-holed or lossy, and the
//! nftables table `inet mpblab` in each router that makes it so. A table is
//! rewritten atomically on every change.

/// The nftables table the lab owns inside router A and router B.
pub const TABLE: &str = "mpblab";

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

    /// The `nft -f -` script that makes router A's (`router_a`) or router
    /// B's table match these settings: it replaces the table, or deletes it
    /// when that router has no rule.
    ///
    /// A black hole drops everything leaving by the link in both routers'
    /// postrouting, so neither router's interface sees a packet of the
    /// other's, as over a dead radio link whose interface stays up. Router A
    /// also drops in prerouting (everything arriving on the link, forwarded
    /// or local), which catches what was in flight on the veth.
    /// Loss is applied where packets *arrive* from the link, in each router's
    /// prerouting: by then the sender has cut GSO super-packets into real
    /// ones (see `Topology::set_loss`), whereas ra's postrouting still sees
    /// up to 64 KiB per "packet".
    pub(crate) fn nft_script(&self, router_a: bool, ifname: impl Fn(usize) -> String) -> String {
        // "add table" first makes the delete valid when there is no table yet.
        let mut script = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
        let mut inbound = Vec::new();
        let mut outbound = Vec::new();
        for link in 0..self.blackholed.len() {
            let name = ifname(link);
            if self.blackholed[link] {
                if router_a {
                    inbound.push(format!("iifname \"{name}\" drop"));
                }
                outbound.push(format!("oifname \"{name}\" drop"));
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
        if inbound.is_empty() && outbound.is_empty() {
            return script;
        }
        script.push_str(&format!("table inet {TABLE} {{\n"));
        for (chain, priority, rules) in [
            // Before conntrack, so dropped packets leave no state behind.
            ("prerouting", "-300", &inbound),
            ("postrouting", "0", &outbound),
        ] {
            if rules.is_empty() {
                continue;
            }
            script.push_str(&format!(
                "  chain {chain} {{\n    type filter hook {chain} priority {priority}; policy accept;\n"
            ));
            for rule in rules {
                script.push_str(&format!("    {rule}\n"));
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        script
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
        for router_a in [true, false] {
            let script = Faults::new(2).nft_script(router_a, wan);
            assert_eq!(script, "add table inet mpblab\ndelete table inet mpblab\n");
        }
    }

    #[test]
    fn blackhole_drops_what_either_router_sends_and_wins_over_loss() {
        let mut faults = Faults::new(3);
        faults.set_loss_permille(1, 50);
        faults.set_loss_permille(2, 5);
        faults.set_blackhole(1, true);
        let a = faults.nft_script(true, wan);
        assert!(a.contains("iifname \"wan1\" drop\n"), "{a}");
        assert!(a.contains("oifname \"wan1\" drop\n"), "{a}");
        assert!(!a.contains("< 50 drop"), "{a}");
        assert!(!a.contains("wan0"), "{a}");
        // Router B drops what it sends by the link, so router A's interface
        // counts nothing from it; its own loss on that link is moot.
        let b = faults.nft_script(false, wan);
        assert!(b.contains("chain postrouting"), "{b}");
        assert!(b.contains("oifname \"wan1\" drop\n"), "{b}");
        assert!(!b.contains("iifname \"wan1\""), "{b}");
        assert!(!b.contains("wan0"), "{b}");
        // The other links keep their loss in both routers.
        for script in [&a, &b] {
            assert!(
                script.contains("iifname \"wan2\" numgen random mod 1000 < 5 drop"),
                "{script}"
            );
        }
    }

    #[test]
    fn loss_is_applied_where_packets_arrive_in_both_routers() {
        let mut faults = Faults::new(3);
        faults.set_loss_permille(2, 5);
        for router_a in [true, false] {
            let script = faults.nft_script(router_a, wan);
            assert!(
                script.contains("iifname \"wan2\" numgen random mod 1000 < 5 drop"),
                "{script}"
            );
            assert!(!script.contains("oifname"), "{script}");
            assert!(
                !script.contains("wan0") && !script.contains("wan1"),
                "{script}"
            );
        }
        assert!(faults.lossy(2) && !faults.lossy(1));
    }

    #[test]
    fn total_loss_is_a_plain_drop() {
        let mut faults = Faults::new(1);
        faults.set_loss_permille(0, 1000);
        let script = faults.nft_script(false, wan);
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
