//! What `mpbridge local` diverts and how: the interception mode (TPROXY or
//! REDIRECT) and the rules (`local.firewall`, `lan_interfaces`, `bypass`,
//! `quic`).

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

use super::choice::{choose, Choice, ChoiceError};
use super::error::ConfigError;
use super::fields::check_ifname;
use super::raw::RawLocal;
use super::ConfigFile;

/// How diverted client connections reach `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptionMode {
    /// iptables/nft `TPROXY`: the socket's local address is the original destination.
    Tproxy,
    /// `REDIRECT`/DNAT: the original destination comes from `SO_ORIGINAL_DST`.
    Redirect,
}

impl Choice for InterceptionMode {
    const WHAT: &'static str = "an interception mode";
    const IGNORE_CASE: bool = true;
}

/// `--intercept`: the words of `local.intercept`.
impl FromStr for InterceptionMode {
    type Err = ChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        choose(s)
    }
}

impl fmt::Display for InterceptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InterceptionMode::Tproxy => "tproxy",
            InterceptionMode::Redirect => "redirect",
        })
    }
}

/// The LAN interface intercepted when `local.lan_interfaces` is absent:
/// OpenWrt's LAN bridge.
pub const DEFAULT_LAN_INTERFACE: &str = "br-lan";

/// Who manages the rules that divert client TCP to `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallMode {
    /// The daemon's own nftables table `inet mpbridge` (and, for TPROXY,
    /// its fwmark rule and local route), gone when the daemon is.
    Nftables,
    /// The system's firewall (e.g. OpenWrt fw4 includes); see docs/FIREWALL.md.
    None,
}

impl Choice for FirewallMode {
    const WHAT: &'static str = "a firewall mode";
}

/// What the owned table does with QUIC (`local.quic`): LAN UDP to port 443.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quic {
    /// Answered with an ICMP port-unreachable: clients fall back to TCP,
    /// which the bridge carries over every link at once.
    Refuse,
    /// Routed like any UDP: one link per flow (the paths' routes).
    Pass,
}

impl Choice for Quic {
    const WHAT: &'static str = "a QUIC policy";
}

/// Everything `[local]` says about diverting client TCP to `mpbridge local`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interception {
    /// How diverted connections arrive (`local.intercept`, `--intercept`).
    pub mode: InterceptionMode,
    /// Who installs the rules that divert them (`local.firewall`).
    pub firewall: FirewallMode,
    /// TCP arriving on these interfaces is diverted; never empty with
    /// [`FirewallMode::Nftables`].
    pub lan_interfaces: Vec<String>,
    /// Destinations never diverted (besides the remotes and this host's
    /// own addresses and subnets). Reread on SIGHUP.
    pub bypass: Vec<IpNet>,
    /// Whether the owned table refuses QUIC from the LAN (read at start;
    /// nothing is installed with [`FirewallMode::None`]).
    pub quic: Quic,
}

impl Default for Interception {
    fn default() -> Self {
        Interception {
            mode: InterceptionMode::Tproxy,
            firewall: FirewallMode::Nftables,
            lan_interfaces: vec![DEFAULT_LAN_INTERFACE.to_owned()],
            bypass: Vec::new(),
            quic: Quic::Refuse,
        }
    }
}

impl ConfigFile {
    /// `local.firewall`, `lan_interfaces`, `bypass` and `quic`, with the mode already read.
    pub(super) fn interception(
        &self,
        raw: &RawLocal,
        mode: InterceptionMode,
    ) -> Result<Interception, ConfigError> {
        let firewall = self.choice(&raw.firewall, "local.firewall", FirewallMode::Nftables)?;
        let lan_interfaces = match &raw.lan_interfaces {
            None => vec![DEFAULT_LAN_INTERFACE.to_owned()],
            Some(list) => {
                if list.get_ref().is_empty() && firewall == FirewallMode::Nftables {
                    return Err(self.invalid(
                        list.span(),
                        "local.lan_interfaces",
                        "is empty (expected the interfaces whose TCP is diverted, e.g. [\"br-lan\"], \
                         or firewall = \"none\")",
                    ));
                }
                let mut names: Vec<String> = Vec::new();
                for (i, name) in list.get_ref().iter().enumerate() {
                    let field = format!("local.lan_interfaces[{i}]");
                    check_ifname(name.get_ref())
                        .map_err(|p| self.invalid(name.span(), &field, p))?;
                    if names.contains(name.get_ref()) {
                        return Err(self.invalid(
                            name.span(),
                            field,
                            format!("\"{}\" is listed twice", name.get_ref()),
                        ));
                    }
                    names.push(name.get_ref().clone());
                }
                names
            }
        };
        Ok(Interception {
            mode,
            firewall,
            lan_interfaces,
            bypass: self.cidrs(&raw.bypass, "local.bypass")?,
            quic: self.choice(&raw.quic, "local.quic", Quic::Refuse)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_str, LocalSettings, Overrides, EX_CONFIG};

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn local(extra: &str) -> Result<LocalSettings, ConfigError> {
        let text =
            format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n{extra}\n");
        parse_str(&text, Path::new("/etc/mpbridge/mpbridge.toml"))?
            .local(&Overrides::default())
            .map(|(s, _)| s)
    }

    #[test]
    fn defaults_are_our_own_table_on_br_lan_without_bypass() {
        let s = local("").unwrap();
        assert_eq!(s.interception, Interception::default());
        assert_eq!(s.interception.lan_interfaces, vec!["br-lan".to_owned()]);
        assert_eq!(s.interception.firewall, FirewallMode::Nftables);
        assert_eq!(s.interception.quic, Quic::Refuse);
    }

    #[test]
    fn values_are_read() {
        let s = local(
            "firewall = \"none\"\nlan_interfaces = [\"lan0\", \"wlan0\"]\n\
             bypass = [\"10.30.0.0/24\", \"fd00:30::/64\", \"192.0.2.7\"]\nquic = \"pass\"",
        )
        .unwrap();
        let i = s.interception;
        assert_eq!(i.firewall, FirewallMode::None);
        assert_eq!(i.lan_interfaces, vec!["lan0", "wlan0"]);
        assert_eq!(i.quic, Quic::Pass);
        assert_eq!(
            i.bypass,
            vec![
                "10.30.0.0/24".parse::<IpNet>().unwrap(),
                "fd00:30::/64".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        // With the system's firewall, no LAN interface is needed.
        assert!(local("firewall = \"none\"\nlan_interfaces = []").is_ok());
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases = [
            (
                "firewall = \"iptables\"",
                "/etc/mpbridge/mpbridge.toml:5:12: local.firewall: ",
                "(expected \"nftables\" or \"none\")",
            ),
            (
                "lan_interfaces = []",
                "/etc/mpbridge/mpbridge.toml:5:18: local.lan_interfaces: ",
                "is empty",
            ),
            (
                "lan_interfaces = [\"lan0\", \"a-very-long-interface\"]",
                "/etc/mpbridge/mpbridge.toml:5:27: local.lan_interfaces[1]: ",
                "at most 15",
            ),
            (
                "lan_interfaces = [\"lan 0\"]",
                "/etc/mpbridge/mpbridge.toml:5:19: local.lan_interfaces[0]: ",
                "not a valid interface name",
            ),
            (
                "lan_interfaces = [\"lan0\", \"lan0\"]",
                "/etc/mpbridge/mpbridge.toml:5:27: local.lan_interfaces[1]: ",
                "listed twice",
            ),
            (
                "bypass = [\"10.0.0.0/33\"]",
                "/etc/mpbridge/mpbridge.toml:5:11: local.bypass[0]: ",
                "not a CIDR prefix",
            ),
            (
                "bypass = [\"10.0.0.1/8\"]",
                "/etc/mpbridge/mpbridge.toml:5:11: local.bypass[0]: ",
                "(expected \"10.0.0.0/8\")",
            ),
            (
                "quic = \"block\"",
                "/etc/mpbridge/mpbridge.toml:5:8: local.quic: ",
                "\"block\" is not a QUIC policy (expected \"refuse\" or \"pass\")",
            ),
            (
                "quic = false",
                "/etc/mpbridge/mpbridge.toml:5:8: local.quic: ",
                "expected a string",
            ),
            (
                "bypass = \"10.0.0.0/8\"",
                "/etc/mpbridge/mpbridge.toml:5:10: local.bypass: ",
                "expected an array",
            ),
        ];
        for (extra, prefix, problem) in cases {
            let e = local(extra).expect_err(extra).to_string();
            assert!(
                e.starts_with(prefix),
                "{extra}: {e:?} should start with {prefix:?}"
            );
            assert!(
                e.contains(problem),
                "{extra}: {e:?} should contain {problem:?}"
            );
            assert_eq!(local(extra).unwrap_err().exit_code(), EX_CONFIG);
        }
    }
}
