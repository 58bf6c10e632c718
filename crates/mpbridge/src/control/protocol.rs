//! The control protocol's messages: one JSON request per line in, one JSON
//! response per line out (docs/CONTROL.md). Pure: parsing and the types
//! that both the daemon and `mpbridge status` (de)serialise.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::host::sys::Transport;

/// The protocol version this build speaks; a request must carry it.
/// Responses gain fields without a new version: clients ignore unknown ones.
pub const VERSION: u32 = 1;

/// The longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 4096;

/// One request, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The daemon's state: links, totals and connections (the `limit`
    /// fastest by current rate; all when `None`).
    Status { limit: Option<usize> },
}

/// A request line as it is written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    version: u32,
    command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

/// Why a request was not answered; sent back as `error.kind` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a JSON object of the request's shape (or longer than
    /// [`MAX_REQUEST`]).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A protocol version this daemon does not speak.
    #[error("this daemon speaks control protocol version {VERSION}, not {0}")]
    Version(u32),
    /// A command this daemon does not know.
    #[error("unknown command \"{0}\" (expected \"status\")")]
    UnknownCommand(String),
    /// Too many control clients at once; try again.
    #[error("busy: too many control clients at once")]
    Busy,
    /// The daemon failed to build the answer (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `error.kind` of an answer: which [`RequestError`] it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Malformed,
    Version,
    UnknownCommand,
    Busy,
    Internal,
}

impl RequestError {
    /// The `error.kind` field of the answer.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::Malformed(_) => ErrorKind::Malformed,
            RequestError::Version(_) => ErrorKind::Version,
            RequestError::UnknownCommand(_) => ErrorKind::UnknownCommand,
            RequestError::Busy => ErrorKind::Busy,
            RequestError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl Request {
    /// Parses one request line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Request, RequestError> {
        if line.len() > MAX_REQUEST {
            return Err(RequestError::Malformed(format!(
                "longer than {MAX_REQUEST} bytes"
            )));
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| RequestError::Malformed("not UTF-8".into()))?
            .trim();
        if text.is_empty() {
            return Err(RequestError::Malformed(
                "empty line (expected e.g. {\"version\": 1, \"command\": \"status\"})".into(),
            ));
        }
        let raw: RawRequest =
            serde_json::from_str(text).map_err(|e| RequestError::Malformed(e.to_string()))?;
        if raw.version != VERSION {
            return Err(RequestError::Version(raw.version));
        }
        match raw.command.as_str() {
            "status" => Ok(Request::Status { limit: raw.limit }),
            _ => Err(RequestError::UnknownCommand(raw.command)),
        }
    }

    /// The request line (with its newline) that asks for this.
    pub fn encode(&self) -> String {
        let Request::Status { limit } = self;
        let raw = RawRequest {
            version: VERSION,
            command: "status".into(),
            limit: *limit,
        };
        let mut line = serde_json::to_string(&raw).expect("a request always serialises");
        line.push('\n');
        line
    }
}

/// One response line: either `status` or `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// `malformed`, `version`, `unknown_command`, `busy` or `internal`.
    pub kind: ErrorKind,
    /// One sentence for a person.
    pub message: String,
}

impl Response {
    pub fn status(status: Status) -> Response {
        Response {
            version: VERSION,
            status: Some(status),
            error: None,
        }
    }

    pub fn error(e: &RequestError) -> Response {
        Response {
            version: VERSION,
            status: None,
            error: Some(ErrorReply {
                kind: e.kind(),
                message: e.to_string(),
            }),
        }
    }

    /// The response line, with its newline.
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a response always serialises");
        line.push('\n');
        line
    }
}

/// A daemon's state as `mpbridge status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `local` or `remote`.
    #[serde(with = "role")]
    pub mode: Role,
    pub pid: u32,
    /// The daemon's version (`mpbridge --version`).
    pub daemon_version: String,
    pub uptime_secs: u64,
    /// The configured `[[link]]`s; empty when the daemon manages no paths.
    pub links: Vec<Link>,
    pub totals: Totals,
    /// Connections being relayed, fastest first (all, or the `limit` asked for).
    pub connections: Vec<Connection>,
    /// Connections being relayed that the `limit` left out.
    pub connections_omitted: usize,
    /// Why subflows cannot be read from the kernel on this system (then
    /// every connection's `subflows` is null), or null when they can.
    pub subflows_unavailable: Option<String>,
}

/// One configured link. Clients must ignore fields they do not know: links
/// gain fields as the path manager learns more about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// Whether the link carries traffic.
    pub state: LinkState,
    /// Seconds since the link last entered or left service.
    pub state_secs: u64,
    /// Configured `backup = true`.
    pub backup: bool,
    /// The interface exists, is up and has carrier.
    pub kernel_up: bool,
    /// The probes' verdict. Router B follows router A's probes arriving on
    /// the link.
    pub probe: ProbeState,
    /// Smoothed probe round-trip time.
    pub rtt_ms: Option<f64>,
    /// Lost share of the last 50 probes.
    pub loss_percent: Option<f64>,
    /// The interface's transmit and receive rates over the last second.
    pub tx_bits_per_sec: Option<u64>,
    pub rx_bits_per_sec: Option<u64>,
    /// The interface's byte counters.
    pub tx_bytes: Option<u64>,
    pub rx_bytes: Option<u64>,
    /// Subflows of relayed connections on this link (null when subflows
    /// cannot be read).
    pub subflows: Option<u32>,
    /// The link carries the multipath routes of the traffic that is not
    /// bridged (`paths.routes`) right now.
    pub carries_routes: bool,
}

/// Counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections being handled now (relayed, or still being set up).
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Bytes client → destination, and back; open connections included.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub refused: Refused,
    pub errors: Errors,
}

/// Connections refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The cookie was missing, wrong, expired or replayed (router B).
    pub auth: u64,
    /// The destination policy forbids the destination (router B).
    pub policy: u64,
    /// `max_connections` were open.
    pub limit: u64,
    /// A malformed or too slow Convert header, no original destination, or a loop.
    pub malformed: u64,
}

/// Failures, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// The next hop (a remote, or the destination) could not be reached.
    pub dial: u64,
    /// The remote answered with an RFC 8803 Error TLV (router A).
    pub remote_refused: u64,
    /// The remote's reply was malformed, missing or late (router A).
    pub bad_reply: u64,
    /// Relays that ended in a reset rather than two FINs.
    pub reset: u64,
}

impl Refused {
    /// Each reason's name (as in the JSON) and count.
    pub fn by_reason(&self) -> [(&'static str, u64); 4] {
        [
            ("auth", self.auth),
            ("policy", self.policy),
            ("limit", self.limit),
            ("malformed", self.malformed),
        ]
    }
}

impl Errors {
    /// Each kind's name (as in the JSON) and count.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("dial", self.dial),
            ("remote_refused", self.remote_refused),
            ("bad_reply", self.bad_reply),
            ("reset", self.reset),
        ]
    }
}

/// One connection being relayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: u64,
    /// Router A: the LAN client. Router B: router A's end of the bridge.
    pub client: SocketAddr,
    /// Where the client wanted to go.
    pub destination: SocketAddr,
    pub age_secs: u64,
    /// Bytes client → destination, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Rates over the last second.
    pub up_bits_per_sec: u64,
    pub down_bits_per_sec: u64,
    /// The connection between the routers: `mptcp`, or `tcp` when this
    /// daemon opened it as plain TCP (`local.mptcp = false`).
    #[serde(with = "transport")]
    pub transport: Transport,
    /// The MPTCP connection fell back to plain TCP (the peer or a
    /// middlebox refused MPTCP); null when unknown.
    pub fallback: Option<bool>,
    /// The kernel's subflows of the connection between the routers; null
    /// when they cannot be read (see `Status::subflows_unavailable`).
    pub subflows: Option<Vec<Subflow>>,
}

/// One subflow, as the kernel reports it (MPTCP_FULL_INFO).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subflow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The interface holding `local`: the link the subflow uses.
    pub link: Option<String>,
    /// TCP state, as `ss` names it (`established`, `syn-sent`, …).
    pub state: TcpState,
    /// Smoothed round-trip time (tcp_info).
    pub rtt_ms: Option<f64>,
    /// Bytes this daemon sent on the subflow that the peer acknowledged,
    /// and bytes it received (tcp_info; null on kernels before 6.5).
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
}

/// A link's state in the status: `up` (carries traffic), `backup`
/// (carries traffic, configured as a backup link) or `down` (out of
/// service: the kernel says the link is down, or its probes are lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Up,
    Backup,
    Down,
}

/// The probes' verdict on a link: `up`, `down`, `unknown` (no verdict
/// yet) or `off` (`probe.enabled = false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    Up,
    Down,
    Unknown,
    Off,
}

/// A subflow's TCP state, named as `ss` names it (linux/tcp_states.h);
/// `unknown` where the kernel did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    #[serde(rename = "fin-wait-1")]
    FinWait1,
    #[serde(rename = "fin-wait-2")]
    FinWait2,
    TimeWait,
    Closed,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    Unknown,
}

impl TcpState {
    /// The state from the kernel's number (`tcpi_state`).
    pub fn from_kernel(state: Option<u8>) -> TcpState {
        match state {
            Some(1) => TcpState::Established,
            Some(2) => TcpState::SynSent,
            Some(3) => TcpState::SynRecv,
            Some(4) => TcpState::FinWait1,
            Some(5) => TcpState::FinWait2,
            Some(6) => TcpState::TimeWait,
            Some(7) => TcpState::Closed,
            Some(8) => TcpState::CloseWait,
            Some(9) => TcpState::LastAck,
            Some(10) => TcpState::Listen,
            Some(11) => TcpState::Closing,
            _ => TcpState::Unknown,
        }
    }
}

/// The name of each state as the JSON has it, for people too.
macro_rules! names {
    ($($ty:ty),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let value = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
                f.write_str(value.as_str().ok_or(std::fmt::Error)?)
            }
        }
    )*};
}
names!(ErrorKind, LinkState, ProbeState, TcpState);

/// [`Role`] on the wire: `local` or `remote`.
mod role {
    use super::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(role)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        match String::deserialize(d)?.as_str() {
            "local" => Ok(Role::Local),
            "remote" => Ok(Role::Remote),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["local", "remote"],
            )),
        }
    }
}

/// [`Transport`] on the wire: `mptcp` or `tcp`.
mod transport {
    use super::Transport;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Transport, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match t {
            Transport::Mptcp => "mptcp",
            Transport::Tcp => "tcp",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
        match String::deserialize(d)?.as_str() {
            "mptcp" => Ok(Transport::Mptcp),
            "tcp" => Ok(Transport::Tcp),
            other => Err(serde::de::Error::unknown_variant(other, &["mptcp", "tcp"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_request_parses_with_and_without_a_limit() {
        let all = Request::parse(br#"{"version": 1, "command": "status"}"#).unwrap();
        assert_eq!(all, Request::Status { limit: None });
        let top = Request::parse(b"{\"version\":1,\"command\":\"status\",\"limit\":10}\r").unwrap();
        assert_eq!(top, Request::Status { limit: Some(10) });
        // What the client sends parses back to itself.
        let line = top.encode();
        assert!(line.ends_with('\n'));
        assert_eq!(
            Request::parse(line.trim_end().as_bytes()).unwrap(),
            Request::Status { limit: Some(10) }
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_their_kind() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"", "malformed", "empty line"),
            (b"   ", "malformed", "empty line"),
            (b"status", "malformed", "expected"),
            (b"{\"version\": 1", "malformed", "EOF"),
            (b"[1, 2]", "malformed", "invalid type"),
            (
                b"{\"command\": \"status\"}",
                "malformed",
                "missing field `version`",
            ),
            (b"{\"version\": 1}", "malformed", "missing field `command`"),
            (
                b"{\"version\": 1, \"command\": \"status\", \"colour\": true}",
                "malformed",
                "unknown field `colour`",
            ),
            (
                b"{\"version\": \"1\", \"command\": \"status\"}",
                "malformed",
                "invalid type",
            ),
            (
                b"{\"version\": 1, \"command\": \"status\", \"limit\": -1}",
                "malformed",
                "invalid value",
            ),
            (b"\xff\xfe", "malformed", "not UTF-8"),
            (
                b"{\"version\": 2, \"command\": \"status\"}",
                "version",
                "version 1, not 2",
            ),
            (
                b"{\"version\": 1, \"command\": \"reboot\"}",
                "unknown_command",
                "\"reboot\"",
            ),
        ];
        assert!(!cases.is_empty());
        for (line, kind, text) in cases {
            let e = Request::parse(line).expect_err(&String::from_utf8_lossy(line));
            assert_eq!(e.kind().to_string(), *kind, "{e}");
            assert!(e.to_string().contains(text), "{e} should contain {text}");
            // The answer to it is one line of JSON carrying the kind.
            let answer = Response::error(&e).encode();
            assert_eq!(answer.matches('\n').count(), 1);
            let back: Response = serde_json::from_str(&answer).unwrap();
            assert_eq!(back.error.unwrap().kind, e.kind());
        }
    }

    #[test]
    fn an_overlong_request_is_refused_before_parsing() {
        let mut line = br#"{"version": 1, "command": "status", "limit": 1}"#.to_vec();
        line.resize(MAX_REQUEST + 1, b' ');
        let e = Request::parse(&line).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert!(e.to_string().contains("longer than 4096 bytes"), "{e}");
    }

    #[test]
    fn states_go_on_the_wire_by_the_names_control_md_documents() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        let names =
            |values: Vec<serde_json::Value>| values.into_iter().map(json).collect::<Vec<_>>();
        let link = [LinkState::Up, LinkState::Backup, LinkState::Down];
        let link = names(
            link.iter()
                .map(|s| serde_json::to_value(s).unwrap())
                .collect(),
        );
        assert_eq!(link, ["up", "backup", "down"]);
        let probe = [
            ProbeState::Up,
            ProbeState::Down,
            ProbeState::Unknown,
            ProbeState::Off,
        ];
        let probe = names(
            probe
                .iter()
                .map(|s| serde_json::to_value(s).unwrap())
                .collect(),
        );
        assert_eq!(probe, ["up", "down", "unknown", "off"]);
        let tcp: Vec<String> = (0..=12)
            .map(|n| TcpState::from_kernel(Some(n)).to_string())
            .collect();
        assert_eq!(
            tcp,
            [
                "unknown",
                "established",
                "syn-sent",
                "syn-recv",
                "fin-wait-1",
                "fin-wait-2",
                "time-wait",
                "closed",
                "close-wait",
                "last-ack",
                "listen",
                "closing",
                "unknown"
            ]
        );
        assert_eq!(TcpState::from_kernel(None), TcpState::Unknown);
        let kinds = [
            RequestError::Malformed(String::new()),
            RequestError::Version(2),
            RequestError::UnknownCommand(String::new()),
            RequestError::Busy,
            RequestError::Internal(String::new()),
        ];
        let kinds: Vec<String> = kinds.iter().map(|e| e.kind().to_string()).collect();
        assert_eq!(
            kinds,
            [
                "malformed",
                "version",
                "unknown_command",
                "busy",
                "internal"
            ]
        );
        // The mode and the transport, through a whole connection and status.
        let status = Status {
            mode: Role::Remote,
            pid: 1,
            daemon_version: "0".into(),
            uptime_secs: 0,
            links: Vec::new(),
            totals: Totals::default(),
            connections: vec![Connection {
                id: 0,
                client: "10.0.0.1:1".parse().unwrap(),
                destination: "10.0.0.2:2".parse().unwrap(),
                age_secs: 0,
                bytes_up: 0,
                bytes_down: 0,
                up_bits_per_sec: 0,
                down_bits_per_sec: 0,
                transport: Transport::Tcp,
                fallback: None,
                subflows: None,
            }],
            connections_omitted: 0,
            subflows_unavailable: None,
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["mode"], "remote");
        assert_eq!(value["connections"][0]["transport"], "tcp");
        assert_eq!(serde_json::from_value::<Status>(value).unwrap(), status);
        let wrong = r#"{"mode":"router","pid":1}"#;
        assert!(serde_json::from_str::<Status>(wrong).is_err());
    }

    #[test]
    fn clients_ignore_fields_they_do_not_know() {
        let line =
            r#"{"version": 1, "error": {"kind": "busy", "message": "m", "retry_ms": 5}, "x": 1}"#;
        let r: Response = serde_json::from_str(line).unwrap();
        assert_eq!(r.error.unwrap().kind, ErrorKind::Busy);
    }
}
