//! Reading `ss -tni` output: the TCP sockets of a namespace, and which of
//! them are MPTCP subflows (their info line carries `tcp-ulp-mptcp`), so
//! tests can assert which links a connection uses.

use std::net::{IpAddr, SocketAddr};

/// One TCP socket as `ss -tniH` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// `ESTAB`, `SYN-SENT`, …
    pub state: String,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The device the socket is bound to (`10.20.1.1%wan1`): the kernel
    /// binds the subflows it opens for an endpoint with `dev`.
    pub bound_dev: Option<String>,
    /// Whether this is a subflow of an MPTCP connection.
    pub mptcp_subflow: bool,
    /// Payload bytes this socket has received (`bytes_received:`), counted
    /// by TCP after any firewall drop: what really arrived over its path.
    pub bytes_received: u64,
}

/// Parses `ss -tniH` (no header; each socket line is followed by an
/// indented info line). Lines it cannot read are skipped.
pub fn parse_ss_tcp(text: &str) -> Vec<TcpSocket> {
    let mut sockets: Vec<TcpSocket> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = sockets.last_mut() {
                last.mptcp_subflow |= line.contains("tcp-ulp-mptcp");
                if let Some(n) = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("bytes_received:"))
                    .and_then(|n| n.parse().ok())
                {
                    last.bytes_received = n;
                }
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [state, _recv_q, _send_q, local, peer, ..] = fields[..] else {
            continue;
        };
        let (Some((local, bound_dev)), Some((peer, _))) =
            (parse_endpoint(local), parse_endpoint(peer))
        else {
            continue;
        };
        sockets.push(TcpSocket {
            state: state.to_string(),
            local,
            peer,
            bound_dev,
            mptcp_subflow: false,
            bytes_received: 0,
        });
    }
    sockets
}

/// `10.0.0.1:80`, `10.0.0.1%wan1:80`, `[fd00::1]:80`, `[fd00::1]%wan1:80`.
fn parse_endpoint(s: &str) -> Option<(SocketAddr, Option<String>)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let (host, dev) = match host.split_once('%') {
        Some((host, dev)) => (host, Some(dev.to_string())),
        None => (host, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    Some((SocketAddr::new(ip, port), dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured in router A on Linux 6.18 with one extra subflow per family.
    const SAMPLE: &str = "\
ESTAB 0      0      10.20.1.1%wan1:49977    10.20.0.2:5001
\t bbr wscale:10,10 rto:204 rtt:0.038/0.019 mss:1448 tcp-ulp-mptcp flags:Jjec token:48d23bba(id:0)/64eee28b(id:1)
ESTAB 0      0           10.20.0.1:35894    10.20.0.2:5001
\t bbr wscale:10,10 rto:204 tcp-ulp-mptcp flags:Mmec token:0000(id:0)/64eee28b(id:0)
ESTAB 0      0      [fd00:20:1::1]%wan1:33687 [fd00:20::2]:5001
\t bbr wscale:10,10 rto:204 tcp-ulp-mptcp flags:Jjec
ESTAB 0      0      [fd00:10::1]:22 [fd00:10::2]:40000
\t cubic wscale:7,7 rto:204
";

    #[test]
    fn subflows_and_their_devices_are_recognised() {
        let sockets = parse_ss_tcp(SAMPLE);
        assert_eq!(sockets.len(), 4);
        assert_eq!(sockets[0].local, "10.20.1.1:49977".parse().unwrap());
        assert_eq!(sockets[0].bound_dev.as_deref(), Some("wan1"));
        assert!(sockets[0].mptcp_subflow);
        assert_eq!(sockets[1].bound_dev, None);
        assert!(sockets[1].mptcp_subflow);
        assert_eq!(sockets[2].local, "[fd00:20:1::1]:33687".parse().unwrap());
        assert_eq!(sockets[2].peer, "[fd00:20::2]:5001".parse().unwrap());
        assert!(!sockets[3].mptcp_subflow);
        assert_eq!(sockets[3].state, "ESTAB");
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(parse_ss_tcp("State Recv-Q\nnonsense line here x y\n").is_empty());
    }
}
