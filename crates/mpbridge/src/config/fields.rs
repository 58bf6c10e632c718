//! Field helpers of the validation pass: spans to errors, integers in a
//! range, addresses, prefixes, socket paths, interface names, log levels.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use ipnet::IpNet;
use toml::Spanned;

use super::bounded::{FromNumber, OutOfRange, Timeout};
use super::choice::{choose, Choice};
use super::error::{file_location, ConfigError, Location};
use super::raw::{Field, List};
use super::{ConfigFile, MAX_IFNAME_LEN, MAX_SOCKET_PATH_LEN};

impl ConfigFile {
    // --- field helpers -----------------------------------------------------

    pub(super) fn location(&self, span: Range<usize>) -> Location {
        if self.exists {
            file_location(&self.path, &self.text, span.start)
        } else {
            Location::Path(self.path.clone())
        }
    }

    pub(super) fn invalid(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            at: self.location(span),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A required value with nothing to point at: the section header, else line 1.
    pub(super) fn missing(
        &self,
        header: Option<Range<usize>>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        let mut problem = problem.into();
        if !self.exists {
            problem.push_str(
                "; this file does not exist: create it or give the value on the command line",
            );
        }
        self.invalid(header.unwrap_or(0..0), field, problem)
    }

    /// A number of the range and unit `B` carries: the file's value, else `default`.
    pub(super) fn bounded<B: FromNumber>(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        default: i64,
    ) -> Result<B, ConfigError> {
        let n = value.map_or(default, |v| *v.get_ref());
        B::from_number(n).map_err(|e| self.out_of_range(value, field, &e))
    }

    /// A timeout in milliseconds ([`Timeout`]'s range), as a duration.
    pub(super) fn timeout(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        default: i64,
    ) -> Result<std::time::Duration, ConfigError> {
        Ok(self.bounded::<Timeout>(value, field, default)?.duration())
    }

    /// A word naming one of `T`'s variants: the file's, else `default`.
    pub(super) fn choice<T: Choice>(
        &self,
        value: &Field<String>,
        field: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        match value {
            None => Ok(default),
            Some(word) => choose(word.get_ref())
                .map_err(|e| self.refused(Some(word.span()), field, e.into_problem())),
        }
    }

    /// The errors of [`Self::bounded`] and [`Self::choice`], kept out of
    /// their generic bodies so each type adds only its check to the binary.
    fn out_of_range(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        e: &OutOfRange,
    ) -> ConfigError {
        self.refused(value.map(Spanned::span), field, e.to_string())
    }

    fn refused(&self, span: Option<Range<usize>>, field: &str, problem: String) -> ConfigError {
        self.invalid(span.unwrap_or(0..0), field, problem)
    }

    /// A non-empty address list, or `None` when the key is absent.
    pub(super) fn addrs(
        &self,
        list: &List,
        field: &str,
        usage: AddrUse,
    ) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
        let Some(list) = list else { return Ok(None) };
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                field,
                format!(
                    "is empty (expected at least one address, e.g. [\"{}\"])",
                    usage.example()
                ),
            ));
        }
        let addrs = list
            .get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_socket_addr(s.get_ref(), usage)
                    .map_err(|p| self.invalid(s.span(), format!("{field}[{i}]"), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(addrs))
    }

    pub(super) fn cidrs(&self, list: &List, field: &str) -> Result<Vec<IpNet>, ConfigError> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        list.get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_cidr(s.get_ref())
                    .map_err(|p| self.invalid(s.span(), format!("{field}[{i}]"), p))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum AddrUse {
    /// A local address to bind: any IP, port 0 allowed.
    Listen,
    /// A peer to dial: a unicast IP and a non-zero port.
    Connect,
}

impl AddrUse {
    pub(super) fn example(self) -> &'static str {
        match self {
            AddrUse::Listen => "0.0.0.0:4443",
            AddrUse::Connect => "192.0.2.2:4443",
        }
    }
}

pub(super) fn unspecified_on(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    ]
}

pub(super) fn check_socket_addr(addr: SocketAddr, usage: AddrUse) -> Result<SocketAddr, String> {
    if let AddrUse::Connect = usage {
        if addr.port() == 0 {
            return Err(format!(
                "{addr} has port 0 (expected the remote's port, e.g. \"192.0.2.2:4443\")"
            ));
        }
        let ip = addr.ip().to_canonical();
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{addr} cannot be connected to (expected a unicast address, e.g. \"192.0.2.2:4443\")"));
        }
    }
    Ok(addr)
}

pub(super) fn parse_socket_addr(s: &str, usage: AddrUse) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return check_socket_addr(addr, usage);
    }
    let example = usage.example();
    let hint = if s.parse::<IpAddr>().is_ok() {
        if s.contains(':') {
            "is an IPv6 address without brackets and port"
        } else {
            "has no port"
        }
    } else {
        "is not an IP address and port; host names are not resolved"
    };
    Err(format!(
        "\"{s}\" {hint} (expected e.g. \"{example}\" or \"[2001:db8::2]:4443\")"
    ))
}

pub(super) fn cli_addrs(
    addrs: &[SocketAddr],
    flag: &str,
    usage: AddrUse,
) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
    if addrs.is_empty() {
        return Err(ConfigError::command_line(
            flag,
            format!(
                "no address given (expected e.g. {flag} {})",
                usage.example()
            ),
        ));
    }
    addrs
        .iter()
        .map(|a| check_socket_addr(*a, usage).map_err(|p| ConfigError::command_line(flag, p)))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A CIDR prefix, or a bare address meaning that one host. IPv4-mapped IPv6
/// prefixes become IPv4 ones, since destinations are judged as IPv4.
pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net = match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
        (Ok(net), _) => net,
        (_, Ok(ip)) => IpNet::from(ip),
        _ => {
            return Err(format!(
                "\"{s}\" is not a CIDR prefix (expected e.g. \"10.0.0.0/8\" or \"fd00::/8\")"
            ))
        }
    };
    if net.trunc() != net {
        return Err(format!(
            "\"{s}\" has bits set after the prefix length (expected \"{}\")",
            net.trunc()
        ));
    }
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.network().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(mapped) = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96) {
                return Ok(mapped);
            }
        }
    }
    Ok(net)
}

/// A control socket path: absolute and short enough for `sun_path`, or
/// empty (no control socket).
pub(super) fn check_socket_path(path: &str) -> Result<Option<PathBuf>, String> {
    if path.is_empty() {
        return Ok(None);
    }
    if !path.starts_with('/') {
        return Err(format!(
            "\"{path}\" is not an absolute path (expected e.g. \"/run/mpbridge/local.sock\", or \
             \"\" for no control socket)"
        ));
    }
    if path.contains('\0') {
        return Err("contains a NUL character (expected a path)".to_owned());
    }
    if path.len() > MAX_SOCKET_PATH_LEN {
        return Err(format!(
            "\"{path}\" is {} bytes long (expected at most {MAX_SOCKET_PATH_LEN}, the limit of a \
             Unix socket path)",
            path.len()
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

/// An interface name the kernel would accept.
pub(super) fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "is empty (expected an interface name, e.g. \"wan0\" or \"br-lan\")".to_owned(),
        );
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "\"{name}\" is {} bytes long (expected at most {MAX_IFNAME_LEN})",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "\"{name}\" is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}
