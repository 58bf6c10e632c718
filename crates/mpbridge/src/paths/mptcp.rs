//! MPTCP endpoints and limits through the generic netlink family `mptcp_pm`
//! (what `ip mptcp endpoint` / `ip mptcp limits` do). Message building and
//! parsing are pure and unit-tested; [`Pm`] sends them on one connection.

// `mptcp-pm` 0.2 implements only the GET commands, and its top-level
// attribute emits an address's attributes unnested (fine for parsing a dump,
// wrong for a request). So the requests are built here: our own
// `GenlFamily` message whose address attribute nests `mptcp-pm`'s
// `MptcpPathManagerAddressAttr`s under MPTCP_PM_ATTR_ADDR, sent with
// `genetlink`, which resolves the family id.

use std::fmt;
use std::io;
use std::net::IpAddr;

use futures_util::StreamExt as _;
use genetlink::GenetlinkHandle;
use mptcp_pm::{MptcpPathManagerAddressAttr, MptcpPathManagerLimitsAttr};
use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, Nla, NlasIterator,
    Parseable, ParseableParametrized, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

// include/uapi/linux/mptcp_pm.h
const CMD_ADD_ADDR: u8 = 1;
const CMD_DEL_ADDR: u8 = 2;
const CMD_GET_ADDR: u8 = 3;
const CMD_SET_LIMITS: u8 = 5;
const CMD_GET_LIMITS: u8 = 6;
const CMD_SET_FLAGS: u8 = 7;
const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Endpoint flags (`MPTCP_PM_ADDR_FLAG_*`).
pub const FLAG_SIGNAL: u32 = 1 << 0;
pub const FLAG_SUBFLOW: u32 = 1 << 1;
pub const FLAG_BACKUP: u32 = 1 << 2;

/// One `mptcp_pm` request or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMessage {
    cmd: u8,
    attrs: Vec<PmAttr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PmAttr {
    /// MPTCP_PM_ATTR_ADDR, nested.
    Addr(Vec<MptcpPathManagerAddressAttr>),
    Limits(MptcpPathManagerLimitsAttr),
    Other(DefaultNla),
}

impl Nla for PmAttr {
    fn value_len(&self) -> usize {
        match self {
            PmAttr::Addr(attrs) => attrs.as_slice().buffer_len(),
            PmAttr::Limits(a) => a.value_len(),
            PmAttr::Other(a) => a.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            PmAttr::Addr(_) => ATTR_ADDR | NLA_F_NESTED,
            PmAttr::Limits(a) => a.kind(),
            PmAttr::Other(a) => a.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            PmAttr::Addr(attrs) => attrs.as_slice().emit(buffer),
            PmAttr::Limits(a) => a.emit_value(buffer),
            PmAttr::Other(a) => a.emit_value(buffer),
        }
    }
}

impl GenlFamily for PmMessage {
    fn family_name() -> &'static str {
        "mptcp_pm"
    }

    fn version(&self) -> u8 {
        1
    }

    fn command(&self) -> u8 {
        self.cmd
    }
}

impl Emitable for PmMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buffer: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buffer) {
            let nla = nla?;
            attrs.push(match nla.kind() {
                ATTR_ADDR => PmAttr::Addr(
                    NlasIterator::new(nla.value())
                        .map(|a| MptcpPathManagerAddressAttr::parse(&a?))
                        .collect::<Result<_, _>>()?,
                ),
                ATTR_RCV_ADD_ADDRS | ATTR_SUBFLOWS => {
                    PmAttr::Limits(MptcpPathManagerLimitsAttr::parse(&nla)?)
                }
                _ => PmAttr::Other(DefaultNla::parse(&nla)?),
            });
        }
        Ok(PmMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// One endpoint as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: u8,
    pub addr: IpAddr,
    pub ifindex: Option<u32>,
    /// `FLAG_*` bits.
    pub flags: u32,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint {} id {}", self.addr, self.id)
    }
}

fn address_attrs(
    id: u8,
    addr: Option<IpAddr>,
    ifindex: Option<u32>,
    flags: Option<u32>,
) -> Vec<MptcpPathManagerAddressAttr> {
    use mptcp_pm::MptcpPathManagerAddressAttrFlag as Flag;
    let mut attrs = vec![MptcpPathManagerAddressAttr::Id(id)];
    match addr {
        Some(IpAddr::V4(a)) => {
            attrs.push(MptcpPathManagerAddressAttr::Family(AF_INET));
            attrs.push(MptcpPathManagerAddressAttr::Addr4(a));
        }
        Some(IpAddr::V6(a)) => {
            attrs.push(MptcpPathManagerAddressAttr::Family(AF_INET6));
            attrs.push(MptcpPathManagerAddressAttr::Addr6(a));
        }
        None => {}
    }
    if let Some(index) = ifindex {
        attrs.push(MptcpPathManagerAddressAttr::IfIndex(index as i32));
    }
    if let Some(flags) = flags {
        // `mptcp-pm` sums its flag list into the u32: one `Other` carries all bits.
        attrs.push(MptcpPathManagerAddressAttr::Flags(vec![Flag::Other(flags)]));
    }
    attrs
}

impl PmMessage {
    /// `ip mptcp endpoint add ADDR [dev IFINDEX] FLAGS` (the kernel picks the id).
    pub fn add_addr(addr: IpAddr, ifindex: Option<u32>, flags: u32) -> Self {
        PmMessage {
            cmd: CMD_ADD_ADDR,
            attrs: vec![PmAttr::Addr(address_attrs(
                0,
                Some(addr),
                ifindex,
                Some(flags),
            ))],
        }
    }

    /// `ip mptcp endpoint delete id ID`. With id 0 and the address, the
    /// kernel instead closes every connection's *initial* subflow from that
    /// address (which no endpoint created).
    pub fn del_addr(id: u8, addr: Option<IpAddr>) -> Self {
        PmMessage {
            cmd: CMD_DEL_ADDR,
            attrs: vec![PmAttr::Addr(address_attrs(id, addr, None, None))],
        }
    }

    /// `ip mptcp endpoint change ADDR [backup|nobackup]`, looked up by address.
    pub fn set_flags(addr: IpAddr, flags: u32) -> Self {
        PmMessage {
            cmd: CMD_SET_FLAGS,
            attrs: vec![PmAttr::Addr(address_attrs(
                0,
                Some(addr),
                None,
                Some(flags),
            ))],
        }
    }

    pub fn get_addrs() -> Self {
        PmMessage {
            cmd: CMD_GET_ADDR,
            attrs: Vec::new(),
        }
    }

    pub fn set_limits(limits: Limits) -> Self {
        PmMessage {
            cmd: CMD_SET_LIMITS,
            attrs: vec![
                PmAttr::Limits(MptcpPathManagerLimitsAttr::RcvAddAddrs(
                    limits.add_addr_accepted,
                )),
                PmAttr::Limits(MptcpPathManagerLimitsAttr::Subflows(limits.subflows)),
            ],
        }
    }

    pub fn get_limits() -> Self {
        PmMessage {
            cmd: CMD_GET_LIMITS,
            attrs: Vec::new(),
        }
    }

    /// The endpoint in a GET_ADDR reply.
    fn endpoint(&self) -> Option<Endpoint> {
        let attrs = self.attrs.iter().find_map(|a| match a {
            PmAttr::Addr(attrs) => Some(attrs),
            _ => None,
        })?;
        let mut ep = Endpoint {
            id: 0,
            addr: IpAddr::from([0u8; 4]),
            ifindex: None,
            flags: 0,
        };
        let mut has_addr = false;
        for a in attrs {
            match a {
                MptcpPathManagerAddressAttr::Id(id) => ep.id = *id,
                MptcpPathManagerAddressAttr::Addr4(v4) => {
                    (ep.addr, has_addr) = ((*v4).into(), true)
                }
                MptcpPathManagerAddressAttr::Addr6(v6) => {
                    (ep.addr, has_addr) = ((*v6).into(), true)
                }
                MptcpPathManagerAddressAttr::IfIndex(i) if *i > 0 => ep.ifindex = Some(*i as u32),
                MptcpPathManagerAddressAttr::Flags(flags) => {
                    ep.flags = flags.iter().map(u32::from).sum();
                }
                _ => {}
            }
        }
        has_addr.then_some(ep)
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        for a in &self.attrs {
            match a {
                PmAttr::Limits(MptcpPathManagerLimitsAttr::Subflows(n)) => limits.subflows = *n,
                PmAttr::Limits(MptcpPathManagerLimitsAttr::RcvAddAddrs(n)) => {
                    limits.add_addr_accepted = *n
                }
                _ => {}
            }
        }
        limits
    }
}

/// The in-kernel path manager's per-connection limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Extra subflows per connection.
    pub subflows: u32,
    /// ADD_ADDRs accepted from the peer per connection.
    pub add_addr_accepted: u32,
}

/// A connection to `mptcp_pm`. Requests are sent one at a time and their
/// kernel errors returned as `io::Error`s (EEXIST, ENOENT, …).
#[derive(Clone)]
pub struct Pm {
    handle: GenetlinkHandle,
}

impl Pm {
    /// Opens the connection; its I/O task runs on the current runtime.
    pub fn connect() -> io::Result<Pm> {
        let (conn, handle, _) = genetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Pm { handle })
    }

    async fn request(&self, msg: PmMessage, dump: bool) -> io::Result<Vec<PmMessage>> {
        let mut nl = NetlinkMessage::from(GenlMessage::from_payload(msg));
        nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut handle = self.handle.clone();
        let mut replies = handle
            .request(nl)
            .await
            .map_err(|e| io::Error::other(format!("mptcp_pm: {e}")))?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            let reply =
                reply.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match reply.payload {
                NetlinkPayload::InnerMessage(genl) => out.push(genl.payload),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
        }
        Ok(out)
    }

    pub async fn endpoints(&self) -> io::Result<Vec<Endpoint>> {
        let replies = self.request(PmMessage::get_addrs(), true).await?;
        Ok(replies.iter().filter_map(PmMessage::endpoint).collect())
    }

    /// Adds an endpoint; returns the id the kernel gave it.
    pub async fn add(&self, addr: IpAddr, ifindex: Option<u32>, flags: u32) -> io::Result<u8> {
        self.request(PmMessage::add_addr(addr, ifindex, flags), false)
            .await?;
        self.endpoints()
            .await?
            .into_iter()
            .find(|e| e.addr == addr)
            .map(|e| e.id)
            .ok_or_else(|| io::Error::other(format!("endpoint {addr} vanished after being added")))
    }

    pub async fn delete(&self, id: u8) -> io::Result<()> {
        self.request(PmMessage::del_addr(id, None), false)
            .await
            .map(drop)
    }

    /// Closes the initial subflow from `addr` on every connection.
    pub async fn delete_initial(&self, addr: IpAddr) -> io::Result<()> {
        self.request(PmMessage::del_addr(0, Some(addr)), false)
            .await
            .map(drop)
    }

    pub async fn set_flags(&self, addr: IpAddr, flags: u32) -> io::Result<()> {
        self.request(PmMessage::set_flags(addr, flags), false)
            .await
            .map(drop)
    }

    pub async fn limits(&self) -> io::Result<Limits> {
        let replies = self.request(PmMessage::get_limits(), false).await?;
        Ok(replies.first().map(PmMessage::limits).unwrap_or_default())
    }

    pub async fn set_limits(&self, limits: Limits) -> io::Result<()> {
        self.request(PmMessage::set_limits(limits), false)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NlaBuffer;

    fn bytes(msg: &PmMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn add_addr_nests_the_address_attributes() {
        let msg = PmMessage::add_addr(
            "10.20.1.1".parse().unwrap(),
            Some(3),
            FLAG_SUBFLOW | FLAG_BACKUP,
        );
        let buf = bytes(&msg);
        // One nested MPTCP_PM_ATTR_ADDR holding id, family, addr4, ifindex, flags.
        let outer = NlaBuffer::new_checked(&buf[..]).unwrap();
        assert_eq!(outer.kind(), ATTR_ADDR);
        assert!(outer.nested_flag());
        assert_eq!(outer.length() as usize, buf.len());
        let inner: Vec<(u16, Vec<u8>)> = NlasIterator::new(outer.value())
            .map(|n| {
                let n = n.unwrap();
                (n.kind(), n.value().to_vec())
            })
            .collect();
        assert_eq!(
            inner,
            vec![
                (2, vec![0]),
                (1, (libc::AF_INET as u16).to_ne_bytes().to_vec()),
                (3, vec![10, 20, 1, 1]),
                (7, 3i32.to_ne_bytes().to_vec()),
                (6, 6u32.to_ne_bytes().to_vec()),
            ]
        );
    }

    #[test]
    fn a_reply_parses_back_into_an_endpoint() {
        let msg = PmMessage {
            cmd: CMD_GET_ADDR,
            attrs: vec![PmAttr::Addr(address_attrs(
                7,
                Some("fd00:20:1::1".parse().unwrap()),
                Some(4),
                Some(FLAG_SIGNAL),
            ))],
        };
        let header = GenlHeader {
            cmd: CMD_GET_ADDR,
            version: 1,
        };
        let parsed = PmMessage::parse_with_param(&bytes(&msg), header).unwrap();
        assert_eq!(
            parsed.endpoint(),
            Some(Endpoint {
                id: 7,
                addr: "fd00:20:1::1".parse().unwrap(),
                ifindex: Some(4),
                flags: FLAG_SIGNAL,
            })
        );
    }

    #[test]
    fn limits_round_trip() {
        let limits = Limits {
            subflows: 3,
            add_addr_accepted: 2,
        };
        let msg = PmMessage::set_limits(limits);
        let header = GenlHeader {
            cmd: CMD_GET_LIMITS,
            version: 1,
        };
        let parsed = PmMessage::parse_with_param(&bytes(&msg), header).unwrap();
        assert_eq!(parsed.limits(), limits);
    }

    #[test]
    fn delete_of_the_initial_subflow_carries_id_zero_and_the_address() {
        let msg = PmMessage::del_addr(0, Some("10.20.0.1".parse().unwrap()));
        let header = GenlHeader {
            cmd: CMD_DEL_ADDR,
            version: 1,
        };
        let parsed = PmMessage::parse_with_param(&bytes(&msg), header).unwrap();
        let ep = parsed.endpoint().unwrap();
        assert_eq!((ep.id, ep.addr), (0, "10.20.0.1".parse().unwrap()));
    }
}
