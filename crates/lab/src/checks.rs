//! What the operator asked for and what the machine offers, checked before
//! the lab creates anything: `--links` and `--loss` values, root, iperf3 and
//! MPTCP. Every refusal is one sentence that says what to do.

use std::path::Path;

use anyhow::bail;

use crate::links;
use crate::plan::{LinkSpec, TopologySpec, MAX_LINKS};

/// Where the kernel says whether MPTCP is on.
pub const MPTCP_SYSCTL: &str = "/proc/sys/net/mptcp/enabled";

/// Parses `--links`: one link per comma, each a rate in Mbit/s (0 =
/// unshaped) with optional delay, jitter, loss and rate steps, or a named
/// profile (see [`crate::links`]). The error names the link and the part.
pub fn parse_links(text: &str) -> anyhow::Result<Vec<LinkSpec>> {
    let links = text
        .split(',')
        .enumerate()
        .map(|(i, part)| {
            links::parse_link(part).map_err(|why| {
                anyhow::anyhow!("--links {text:?}: link {i} ({:?}): {why}", part.trim())
            })
        })
        .collect::<anyhow::Result<Vec<LinkSpec>>>()?;
    if links.len() > MAX_LINKS {
        bail!(
            "--links {text:?}: {} links given, the lab builds 1 to {MAX_LINKS}",
            links.len()
        );
    }
    Ok(links)
}

/// Parses `--loss` for `links` links: one percentage for every link, or a
/// single one for all. Percent of packets dropped each way, 0 to below 100.
pub fn parse_loss(text: &str, links: usize) -> anyhow::Result<Vec<f32>> {
    let values = text
        .split(',')
        .map(|v| {
            let v = v.trim();
            v.parse::<f32>()
                .ok()
                .filter(|p| p.is_finite() && (0.0..100.0).contains(p))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--loss {text:?}: {v:?} is not a loss; give percent from 0 to below 100, \
                         one per link or one for all, e.g. --loss 1 or --loss 0.5,0"
                    )
                })
        })
        .collect::<anyhow::Result<Vec<f32>>>()?;
    match values.len() {
        1 => Ok(vec![values[0]; links]),
        n if n == links => Ok(values),
        n => bail!(
            "--loss {text:?} has {n} values for {links} link(s): give one per link or a single \
             value for all"
        ),
    }
}

/// The topology for `--links` and `--loss` (`None`: no loss beyond what
/// `--links` says). A link's loss is given once: in `--links` or by `--loss`.
pub fn topology_spec(links: &str, loss: Option<&str>) -> anyhow::Result<TopologySpec> {
    let mut links_parsed = parse_links(links)?;
    if let Some(l) = loss {
        let losses = parse_loss(l, links_parsed.len())?;
        for (i, (link, pct)) in links_parsed.iter_mut().zip(losses).enumerate() {
            if pct == 0.0 {
                continue;
            }
            if link.loss_pct > 0.0 || link.burst_loss.is_some() {
                bail!(
                    "--loss {l:?}: link {i} already has its loss in --links ({}); give it in one \
                     place",
                    link.spec_text()
                );
            }
            link.loss_pct = pct;
        }
    }
    let spec = TopologySpec {
        links: links_parsed,
    };
    spec.validate()?;
    Ok(spec)
}

/// What the machine offers the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub root: bool,
    /// Whether `iperf3 --version` ran.
    pub iperf3: bool,
    /// The content of [`MPTCP_SYSCTL`], or `None` if it does not exist.
    pub mptcp_enabled: Option<String>,
}

impl Machine {
    /// Looks at this machine.
    pub fn probe() -> Machine {
        Machine {
            root: rustix::process::geteuid().is_root(),
            iperf3: std::process::Command::new("iperf3")
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            mptcp_enabled: std::fs::read_to_string(Path::new(MPTCP_SYSCTL)).ok(),
        }
    }

    /// The first thing missing for the lab, as one sentence.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.root {
            bail!(
                "the lab needs root to create network namespaces: run it as root (e.g. with sudo)"
            );
        }
        if !self.iperf3 {
            bail!(
                "iperf3 is not installed: run `apt-get install iperf3` (scripts/demo.sh installs \
                 it for you)"
            );
        }
        match self.mptcp_enabled.as_deref().map(str::trim) {
            Some("1") => Ok(()),
            Some(v) => bail!(
                "MPTCP is disabled in this kernel ({MPTCP_SYSCTL} = {v}): run `sysctl -w \
                 net.mptcp.enabled=1` and try again"
            ),
            None => bail!(
                "this kernel has no MPTCP ({MPTCP_SYSCTL} does not exist): boot a Linux 5.6 or \
                 later kernel built with CONFIG_MPTCP=y"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn link_rates_parse_with_spaces_and_zero_for_unshaped() {
        let rates = |t| -> Vec<u32> {
            parse_links(t)
                .unwrap()
                .iter()
                .map(|l| l.rate_mbit)
                .collect()
        };
        assert_eq!(rates("100, 50,20"), [100, 50, 20]);
        assert_eq!(rates("0"), [0]);
    }

    #[test]
    fn bad_link_rates_say_what_is_expected() {
        for bad in ["50,fast", "", "50,,50", "-5", "1.5", "200000"] {
            let e = err(parse_links(bad));
            assert!(
                e.contains("link ") && e.contains("is not a rate; give whole Mbit/s"),
                "{bad}: {e}"
            );
        }
        let e = err(parse_links(&["10"; 9].join(",")));
        assert!(e.contains("9 links given") && e.contains("1 to 8"), "{e}");
    }

    #[test]
    fn links_with_delay_schedules_and_profiles_parse() {
        let links = parse_links("100@5ms,50@30ms~5ms,20@60ms").unwrap();
        assert_eq!(links[2].delay_us, 60_000);
        assert_eq!(links[1].jitter_us, 5_000);
        let links = parse_links("wifi, 100:3s/30:4s/100").unwrap();
        assert_eq!(links[0].profile.as_deref(), Some("wifi"));
        assert_eq!(links[1].schedule.len(), 3);
    }

    #[test]
    fn a_wrong_link_is_named_with_its_part() {
        let e = err(parse_links("100@5ms,50@30xs"));
        assert!(
            e.contains("link 1 (\"50@30xs\")") && e.contains("\"30xs\" is not a delay"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn loss_is_given_in_one_place() {
        let e = err(topology_spec("50-1%,50", Some("2")));
        assert!(e.contains("link 0 already has its loss"), "{e}");
        let spec = topology_spec("50-1%,50", Some("0,2")).unwrap();
        assert_eq!((spec.links[0].loss_pct, spec.links[1].loss_pct), (1.0, 2.0));
    }

    #[test]
    fn loss_is_one_value_for_all_or_one_per_link() {
        assert_eq!(parse_loss("1", 3).unwrap(), [1.0, 1.0, 1.0]);
        assert_eq!(parse_loss("0.5, 0", 2).unwrap(), [0.5, 0.0]);
        let e = err(parse_loss("1,2", 3));
        assert!(e.contains("2 values for 3 link(s)"), "{e}");
        for bad in ["x", "-1", "100", "nan", "inf", "1,"] {
            let e = err(parse_loss(bad, 2));
            assert!(
                e.contains("is not a loss") && e.contains("--loss 1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_spec_combines_rates_and_loss() {
        let spec = topology_spec("50,20", Some("2")).unwrap();
        assert_eq!(spec.links[1].rate_mbit, 20);
        assert_eq!(spec.links[1].loss_pct, 2.0);
        assert_eq!(topology_spec("50", None).unwrap().links[0].loss_pct, 0.0);
    }

    #[test]
    fn each_missing_piece_of_the_machine_has_its_own_sentence() {
        let good = Machine {
            root: true,
            iperf3: true,
            mptcp_enabled: Some("1\n".into()),
        };
        assert!(good.check().is_ok());
        let cases = [
            (
                Machine {
                    root: false,
                    ..good.clone()
                },
                "needs root",
            ),
            (
                Machine {
                    iperf3: false,
                    ..good.clone()
                },
                "apt-get install iperf3",
            ),
            (
                Machine {
                    mptcp_enabled: Some("0\n".into()),
                    ..good.clone()
                },
                "sysctl -w net.mptcp.enabled=1",
            ),
            (
                Machine {
                    mptcp_enabled: None,
                    ..good.clone()
                },
                "CONFIG_MPTCP=y",
            ),
        ];
        for (machine, expected) in cases {
            let e = err(machine.check());
            assert!(e.contains(expected), "{machine:?}: {e}");
            assert!(!e.contains('\n'), "one sentence: {e}");
        }
    }
}
