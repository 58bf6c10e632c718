//! The destination policy of `mpbridge remote`: which addresses a bridged
//! connection may be opened to (`remote.allow`, `remote.deny`).

use std::net::IpAddr;

use ipnet::IpNet;

/// Which destinations `mpbridge remote` may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestPolicy {
    /// If non-empty, a destination must be inside one of these.
    pub allow: Vec<IpNet>,
    /// Always refused, checked before `allow`.
    pub deny: Vec<IpNet>,
    /// Lift the refusal of loopback and this host's own addresses (tests).
    pub allow_loopback: bool,
}

/// Why [`DestPolicy::check`] refused a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// 127.0.0.0/8 or ::1.
    #[error("loopback address")]
    Loopback,
    /// 169.254.0.0/16 or fe80::/10.
    #[error("link-local address")]
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    #[error("multicast address")]
    Multicast,
    /// 0.0.0.0/8 or ::.
    #[error("unspecified address")]
    Unspecified,
    /// 255.255.255.255.
    #[error("broadcast address")]
    Broadcast,
    /// One of this host's own addresses.
    #[error("an address of this host")]
    OwnAddress,
    /// Inside this `remote.deny` prefix.
    #[error("inside remote.deny prefix {0}")]
    Denied(IpNet),
    /// `remote.allow` is non-empty and no prefix of it holds the destination.
    #[error("outside every remote.allow prefix")]
    NotAllowed,
}

impl DestPolicy {
    /// Decides whether `mpbridge remote` may connect to `dest`; `own` are the
    /// host's addresses. IPv4-mapped IPv6 addresses are judged as IPv4.
    pub fn check(&self, dest: IpAddr, own: &[IpAddr]) -> Result<(), PolicyRefusal> {
        let dest = dest.to_canonical();
        match dest {
            IpAddr::V4(v4) => {
                if v4.octets()[0] == 0 {
                    return Err(PolicyRefusal::Unspecified);
                }
                if v4.is_multicast() {
                    return Err(PolicyRefusal::Multicast);
                }
                if v4.is_broadcast() {
                    return Err(PolicyRefusal::Broadcast);
                }
                if v4.is_link_local() {
                    return Err(PolicyRefusal::LinkLocal);
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_unspecified() {
                    return Err(PolicyRefusal::Unspecified);
                }
                if v6.is_multicast() {
                    return Err(PolicyRefusal::Multicast);
                }
                if v6.segments()[0] & 0xffc0 == 0xfe80 {
                    return Err(PolicyRefusal::LinkLocal);
                }
            }
        }
        if !self.allow_loopback {
            if dest.is_loopback() {
                return Err(PolicyRefusal::Loopback);
            }
            if own.iter().any(|a| a.to_canonical() == dest) {
                return Err(PolicyRefusal::OwnAddress);
            }
        }
        if let Some(net) = self.deny.iter().find(|n| n.contains(&dest)) {
            return Err(PolicyRefusal::Denied(*net));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&dest)) {
            return Err(PolicyRefusal::NotAllowed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn default_policy_refuses_special_addresses() {
        let own = [ip("192.0.2.7"), ip("2001:db8::7")];
        let cases = [
            ("127.0.0.1", Err(PolicyRefusal::Loopback)),
            ("127.1.2.3", Err(PolicyRefusal::Loopback)),
            ("::1", Err(PolicyRefusal::Loopback)),
            ("169.254.1.1", Err(PolicyRefusal::LinkLocal)),
            ("fe80::1", Err(PolicyRefusal::LinkLocal)),
            ("224.0.0.1", Err(PolicyRefusal::Multicast)),
            ("ff02::1", Err(PolicyRefusal::Multicast)),
            ("0.0.0.0", Err(PolicyRefusal::Unspecified)),
            ("::", Err(PolicyRefusal::Unspecified)),
            ("255.255.255.255", Err(PolicyRefusal::Broadcast)),
            ("192.0.2.7", Err(PolicyRefusal::OwnAddress)),
            ("2001:db8::7", Err(PolicyRefusal::OwnAddress)),
            ("::ffff:127.0.0.1", Err(PolicyRefusal::Loopback)),
            ("::ffff:169.254.0.9", Err(PolicyRefusal::LinkLocal)),
            ("::ffff:192.0.2.7", Err(PolicyRefusal::OwnAddress)),
            ("198.51.100.1", Ok(())),
            ("2001:db8::8", Ok(())),
            ("::ffff:198.51.100.1", Ok(())),
        ];
        assert!(!cases.is_empty());
        let policy = DestPolicy::default();
        for (dest, expected) in cases {
            assert_eq!(policy.check(ip(dest), &own), expected, "{dest}");
        }
    }

    #[test]
    fn allow_loopback_lifts_only_loopback_and_own_addresses() {
        let own = [ip("192.0.2.7")];
        let policy = DestPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert_eq!(policy.check(ip("127.0.0.1"), &own), Ok(()));
        assert_eq!(policy.check(ip("192.0.2.7"), &own), Ok(()));
        assert_eq!(
            policy.check(ip("169.254.1.1"), &own),
            Err(PolicyRefusal::LinkLocal)
        );
        assert_eq!(
            policy.check(ip("0.0.0.0"), &own),
            Err(PolicyRefusal::Unspecified)
        );
    }

    #[test]
    fn deny_beats_allow_and_allow_restricts() {
        let policy = DestPolicy {
            allow: vec![net("10.0.0.0/8"), net("2001:db8::/32")],
            deny: vec![net("10.1.0.0/16")],
            allow_loopback: false,
        };
        let cases = [
            ("10.2.3.4", Ok(())),
            ("::ffff:10.2.3.4", Ok(())),
            ("2001:db8::1", Ok(())),
            ("10.1.2.3", Err(PolicyRefusal::Denied(net("10.1.0.0/16")))),
            (
                "::ffff:10.1.2.3",
                Err(PolicyRefusal::Denied(net("10.1.0.0/16"))),
            ),
            ("192.0.2.1", Err(PolicyRefusal::NotAllowed)),
            ("2001:db9::1", Err(PolicyRefusal::NotAllowed)),
        ];
        assert!(!cases.is_empty());
        for (dest, expected) in cases {
            assert_eq!(policy.check(ip(dest), &[]), expected, "{dest}");
        }
    }
}
