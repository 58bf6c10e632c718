//! MPTCP endpoints and limits through the generic netlink family `mptcp_pm`
//! (what `ip mptcp endpoint` / `ip mptcp limits` do), and for the userspace
//! path manager the per-connection commands (SUBFLOW_CREATE, SUBFLOW_DESTROY,
//! SET_FLAGS with a token) and the events of the `mptcp_pm_events` group
//! ([`PmEvent`], what `ip mptcp monitor` shows). Message building and
//! parsing are pure and unit-tested; [`Pm`] sends them on the daemon's
//! netlink socket ([`crate::host::netlink`]).

// The messages are built and read here, attribute by attribute. `mptcp-pm`
// 0.2 implements only the GET commands, and its top-level attribute emits
// an address's attributes unnested (fine for parsing a dump, wrong for a
// request); its attribute types are not used either, because the crate
// depends on `genetlink`, `netlink-proto` and `futures` for its own
// connection, which the router binary does not want. The family id is
// resolved with the generic netlink controller (CTRL_CMD_GETFAMILY),
// through netlink-packet-generic's `GenlCtrl`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::ParseableParametrized;
use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, McastGrpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;

use crate::host::netlink::{self as nl, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

// include/uapi/linux/mptcp_pm.h
const FAMILY_NAME: &str = "mptcp_pm";
const VERSION: u8 = 1;
const CMD_ADD_ADDR: u8 = 1;
const CMD_DEL_ADDR: u8 = 2;
const CMD_GET_ADDR: u8 = 3;
const CMD_SET_LIMITS: u8 = 5;
const CMD_GET_LIMITS: u8 = 6;
const CMD_SET_FLAGS: u8 = 7;
const CMD_REMOVE: u8 = 9;
const CMD_SUBFLOW_CREATE: u8 = 10;
const CMD_SUBFLOW_DESTROY: u8 = 11;
const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;
const ATTR_TOKEN: u16 = 4;
const ATTR_LOC_ID: u16 = 5;
const ATTR_ADDR_REMOTE: u16 = 6;
const ADDR_ATTR_FAMILY: u16 = 1;
const ADDR_ATTR_ID: u16 = 2;
const ADDR_ATTR_ADDR4: u16 = 3;
const ADDR_ATTR_ADDR6: u16 = 4;
/// Host byte order in requests (the kernel applies htons).
const ADDR_ATTR_PORT: u16 = 5;
const ADDR_ATTR_FLAGS: u16 = 6;
const ADDR_ATTR_IF_IDX: u16 = 7;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
/// `struct genlmsghdr`: cmd, version, reserved u16.
const GENL_HDRLEN: usize = 4;

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

/// The attributes we write or read; others in a reply are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PmAttr {
    /// MPTCP_PM_ATTR_ADDR, nested.
    Addr(Vec<AddrAttr>),
    RcvAddAddrs(u32),
    Subflows(u32),
    /// MPTCP_PM_ATTR_TOKEN: the connection a userspace-PM command is about.
    Token(u32),
    /// MPTCP_PM_ATTR_LOC_ID: a local address id in a connection.
    LocId(u8),
    /// MPTCP_PM_ATTR_ADDR_REMOTE, nested.
    AddrRemote(Vec<AddrAttr>),
}

/// The attributes nested in MPTCP_PM_ATTR_ADDR (`MPTCP_PM_ADDR_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrAttr {
    Family(u16),
    Id(u8),
    Addr4(Ipv4Addr),
    Addr6(Ipv6Addr),
    IfIndex(i32),
    Flags(u32),
    Port(u16),
}

impl AddrAttr {
    fn write(&self, w: &mut nl::Writer) {
        match self {
            AddrAttr::Family(f) => w.attr(ADDR_ATTR_FAMILY, &f.to_ne_bytes()),
            AddrAttr::Id(id) => w.attr(ADDR_ATTR_ID, &[*id]),
            AddrAttr::Addr4(a) => w.attr(ADDR_ATTR_ADDR4, &a.octets()),
            AddrAttr::Addr6(a) => w.attr(ADDR_ATTR_ADDR6, &a.octets()),
            AddrAttr::IfIndex(i) => w.attr(ADDR_ATTR_IF_IDX, &i.to_ne_bytes()),
            AddrAttr::Flags(f) => w.attr(ADDR_ATTR_FLAGS, &f.to_ne_bytes()),
            AddrAttr::Port(p) => w.attr(ADDR_ATTR_PORT, &p.to_ne_bytes()),
        }
    }

    /// `None` for an attribute we do not read or one of the wrong size.
    fn read(kind: u16, value: &[u8]) -> Option<AddrAttr> {
        Some(match kind {
            ADDR_ATTR_FAMILY => AddrAttr::Family(u16::from_ne_bytes(value.try_into().ok()?)),
            ADDR_ATTR_ID => AddrAttr::Id(*<&[u8; 1]>::try_from(value).ok()?.first()?),
            ADDR_ATTR_ADDR4 => AddrAttr::Addr4(<[u8; 4]>::try_from(value).ok()?.into()),
            ADDR_ATTR_ADDR6 => AddrAttr::Addr6(<[u8; 16]>::try_from(value).ok()?.into()),
            ADDR_ATTR_IF_IDX => AddrAttr::IfIndex(i32::from_ne_bytes(value.try_into().ok()?)),
            ADDR_ATTR_FLAGS => AddrAttr::Flags(u32::from_ne_bytes(value.try_into().ok()?)),
            ADDR_ATTR_PORT => AddrAttr::Port(u16::from_ne_bytes(value.try_into().ok()?)),
            _ => return None,
        })
    }
}

fn read_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
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
) -> Vec<AddrAttr> {
    let mut attrs = vec![AddrAttr::Id(id)];
    match addr {
        Some(IpAddr::V4(a)) => {
            attrs.push(AddrAttr::Family(AF_INET));
            attrs.push(AddrAttr::Addr4(a));
        }
        Some(IpAddr::V6(a)) => {
            attrs.push(AddrAttr::Family(AF_INET6));
            attrs.push(AddrAttr::Addr6(a));
        }
        None => {}
    }
    if let Some(index) = ifindex {
        attrs.push(AddrAttr::IfIndex(index as i32));
    }
    if let Some(flags) = flags {
        attrs.push(AddrAttr::Flags(flags));
    }
    attrs
}

/// An address and port (a subflow's end), as MPTCP_PM_ADDR_ATTR_*.
fn socket_attrs(
    id: Option<u8>,
    addr: SocketAddr,
    flags: Option<u32>,
    ifindex: Option<u32>,
) -> Vec<AddrAttr> {
    let mut attrs = address_attrs(0, Some(addr.ip()), ifindex, flags);
    match id {
        Some(id) => attrs[0] = AddrAttr::Id(id),
        None => {
            attrs.remove(0);
        }
    }
    if addr.port() != 0 {
        attrs.push(AddrAttr::Port(addr.port()));
    }
    attrs
}

impl PmMessage {
    /// Userspace PM: a new subflow of connection `token` from local address
    /// `local` (its id `id` in the connection, non-zero; bound to `ifindex`
    /// when given; backup with [`FLAG_BACKUP`] in `flags`) to `remote`.
    pub fn subflow_create(
        token: u32,
        id: u8,
        local: IpAddr,
        ifindex: Option<u32>,
        flags: u32,
        remote: SocketAddr,
    ) -> Self {
        PmMessage {
            cmd: CMD_SUBFLOW_CREATE,
            attrs: vec![
                PmAttr::Token(token),
                PmAttr::Addr(socket_attrs(
                    Some(id),
                    SocketAddr::new(local, 0),
                    Some(flags),
                    ifindex,
                )),
                PmAttr::AddrRemote(socket_attrs(None, remote, None, None)),
            ],
        }
    }

    /// Userspace PM: tells the peer (RM_ADDR) that local address `id` of
    /// connection `token` is gone, so that it closes its subflows from it
    /// at once and sends their data over the others, as the in-kernel path
    /// manager does when an endpoint is deleted. Id 0 is the initial
    /// subflow's address.
    pub fn remove(token: u32, id: u8) -> Self {
        PmMessage {
            cmd: CMD_REMOVE,
            attrs: vec![PmAttr::Token(token), PmAttr::LocId(id)],
        }
    }

    /// Userspace PM: closes the subflow `local` → `remote` of connection
    /// `token` (both ports required).
    pub fn subflow_destroy(token: u32, local: SocketAddr, remote: SocketAddr) -> Self {
        PmMessage {
            cmd: CMD_SUBFLOW_DESTROY,
            attrs: vec![
                PmAttr::Token(token),
                PmAttr::Addr(socket_attrs(None, local, None, None)),
                PmAttr::AddrRemote(socket_attrs(None, remote, None, None)),
            ],
        }
    }

    /// Userspace PM: marks the subflows of connection `token` from `local`
    /// to `remote` backup or not (MP_PRIO).
    pub fn subflow_set_backup(token: u32, local: IpAddr, remote: IpAddr, backup: bool) -> Self {
        let flags = if backup { FLAG_BACKUP } else { 0 };
        PmMessage {
            cmd: CMD_SET_FLAGS,
            attrs: vec![
                PmAttr::Token(token),
                PmAttr::Addr(socket_attrs(
                    None,
                    SocketAddr::new(local, 0),
                    Some(flags),
                    None,
                )),
                PmAttr::AddrRemote(socket_attrs(None, SocketAddr::new(remote, 0), None, None)),
            ],
        }
    }

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
                PmAttr::RcvAddAddrs(limits.add_addr_accepted),
                PmAttr::Subflows(limits.subflows),
            ],
        }
    }

    pub fn get_limits() -> Self {
        PmMessage {
            cmd: CMD_GET_LIMITS,
            attrs: Vec::new(),
        }
    }

    /// The attributes, as they go after the generic netlink header.
    fn write_attrs(&self, w: &mut nl::Writer) {
        for a in &self.attrs {
            match a {
                PmAttr::Addr(attrs) => {
                    w.nested(ATTR_ADDR);
                    for a in attrs {
                        a.write(w);
                    }
                    w.end_nested();
                }
                PmAttr::RcvAddAddrs(n) => w.attr(ATTR_RCV_ADD_ADDRS, &n.to_ne_bytes()),
                PmAttr::Subflows(n) => w.attr(ATTR_SUBFLOWS, &n.to_ne_bytes()),
                PmAttr::Token(t) => w.attr(ATTR_TOKEN, &t.to_ne_bytes()),
                PmAttr::LocId(id) => w.attr(ATTR_LOC_ID, &[*id]),
                PmAttr::AddrRemote(attrs) => {
                    w.nested(ATTR_ADDR_REMOTE);
                    for a in attrs {
                        a.write(w);
                    }
                    w.end_nested();
                }
            }
        }
    }

    /// The whole request: netlink header (type `family`), generic netlink
    /// header, attributes.
    fn encode(&self, family: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut w = nl::Writer::default();
        w.begin(family, flags, seq);
        w.raw(&[self.cmd, VERSION, 0, 0]);
        self.write_attrs(&mut w);
        w.end();
        w.buf
    }

    /// A reply's body after the netlink header; `None` when it is too
    /// short for the generic netlink header.
    fn parse(body: &[u8]) -> Option<PmMessage> {
        let cmd = *body.first()?;
        let mut attrs = Vec::new();
        for (kind, value) in nl::attributes(body.get(GENL_HDRLEN..)?) {
            match kind {
                ATTR_ADDR => attrs.push(PmAttr::Addr(
                    nl::attributes(value)
                        .filter_map(|(k, v)| AddrAttr::read(k, v))
                        .collect(),
                )),
                ATTR_RCV_ADD_ADDRS => attrs.extend(read_u32(value).map(PmAttr::RcvAddAddrs)),
                ATTR_SUBFLOWS => attrs.extend(read_u32(value).map(PmAttr::Subflows)),
                ATTR_TOKEN => attrs.extend(read_u32(value).map(PmAttr::Token)),
                ATTR_LOC_ID => attrs.extend(value.first().map(|id| PmAttr::LocId(*id))),
                ATTR_ADDR_REMOTE => attrs.push(PmAttr::AddrRemote(
                    nl::attributes(value)
                        .filter_map(|(k, v)| AddrAttr::read(k, v))
                        .collect(),
                )),
                _ => {}
            }
        }
        Some(PmMessage { cmd, attrs })
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
                AddrAttr::Id(id) => ep.id = *id,
                AddrAttr::Addr4(v4) => (ep.addr, has_addr) = ((*v4).into(), true),
                AddrAttr::Addr6(v6) => (ep.addr, has_addr) = ((*v6).into(), true),
                AddrAttr::IfIndex(i) if *i > 0 => ep.ifindex = Some(*i as u32),
                AddrAttr::Flags(flags) => ep.flags = *flags,
                _ => {}
            }
        }
        has_addr.then_some(ep)
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        for a in &self.attrs {
            match a {
                PmAttr::Subflows(n) => limits.subflows = *n,
                PmAttr::RcvAddAddrs(n) => limits.add_addr_accepted = *n,
                _ => {}
            }
        }
        limits
    }
}

/// The group of `mptcp_pm` that carries the path-manager events.
const EVENTS_GROUP: &str = "mptcp_pm_events";
// enum mptcp_event_type
const EVENT_CREATED: u8 = 1;
const EVENT_ESTABLISHED: u8 = 2;
const EVENT_CLOSED: u8 = 3;
const EVENT_SUB_ESTABLISHED: u8 = 10;
const EVENT_SUB_CLOSED: u8 = 11;
// enum mptcp_event_attr
const EV_TOKEN: u16 = 1;
const EV_LOC_ID: u16 = 3;
const EV_SADDR4: u16 = 5;
const EV_SADDR6: u16 = 6;
const EV_DADDR4: u16 = 7;
const EV_DADDR6: u16 = 8;
/// Ports are big-endian in events.
const EV_SPORT: u16 = 9;
const EV_DPORT: u16 = 10;
const EV_BACKUP: u16 = 11;
const EV_FLAGS: u16 = 13;
/// Deprecated for EV_FLAGS' bit in 6.17+, still sent.
const EV_SERVER_SIDE: u16 = 18;
const EV_FLAG_SERVER_SIDE: u16 = 1 << 1;

/// One MPTCP connection's or subflow's addresses, as an event names them:
/// `local` and `remote` with ports, and the connection's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventAddrs {
    pub token: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// What the kernel's path manager tells the `mptcp_pm_events` group (the
/// events the daemon acts on; others are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmEvent {
    /// A connection's initial subflow completed its handshake (client side:
    /// the SYN-ACK came), `server_side` when this host accepted it.
    Created {
        conn: EventAddrs,
        server_side: bool,
    },
    /// The connection is fully established: now subflows may join.
    Established {
        conn: EventAddrs,
        server_side: bool,
    },
    Closed {
        token: u32,
    },
    /// A join completed; `id` is its local address id.
    SubEstablished {
        sub: EventAddrs,
        id: u8,
        backup: bool,
    },
    /// A subflow closed, or failed to join.
    SubClosed {
        sub: EventAddrs,
    },
}

impl PmEvent {
    /// An event's body after the netlink header; `None` for another event,
    /// a truncated one or one without the attributes it needs.
    pub fn parse(body: &[u8]) -> Option<PmEvent> {
        let cmd = *body.first()?;
        let mut token = None;
        let (mut saddr, mut daddr): (Option<IpAddr>, Option<IpAddr>) = (None, None);
        let (mut sport, mut dport) = (0u16, 0u16);
        let (mut backup, mut server_side) = (false, false);
        let mut loc_id = 0u8;
        for (kind, value) in nl::attributes(body.get(GENL_HDRLEN..)?) {
            match kind {
                EV_TOKEN => token = read_u32(value),
                EV_SADDR4 => saddr = <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                EV_SADDR6 => saddr = <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                EV_DADDR4 => daddr = <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                EV_DADDR6 => daddr = <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                EV_SPORT => sport = value.try_into().map_or(0, u16::from_be_bytes),
                EV_DPORT => dport = value.try_into().map_or(0, u16::from_be_bytes),
                EV_BACKUP => backup = value.first().is_some_and(|b| *b != 0),
                EV_LOC_ID => loc_id = value.first().copied().unwrap_or(0),
                EV_SERVER_SIDE => server_side |= value.first().is_some_and(|b| *b != 0),
                EV_FLAGS => {
                    server_side |= value
                        .try_into()
                        .is_ok_and(|f| u16::from_ne_bytes(f) & EV_FLAG_SERVER_SIDE != 0)
                }
                _ => {}
            }
        }
        let token = token?;
        let addrs = || {
            Some(EventAddrs {
                token,
                local: SocketAddr::new(saddr?, sport),
                remote: SocketAddr::new(daddr?, dport),
            })
        };
        Some(match cmd {
            EVENT_CREATED => PmEvent::Created {
                conn: addrs()?,
                server_side,
            },
            EVENT_ESTABLISHED => PmEvent::Established {
                conn: addrs()?,
                server_side,
            },
            EVENT_CLOSED => PmEvent::Closed { token },
            EVENT_SUB_ESTABLISHED => PmEvent::SubEstablished {
                sub: addrs()?,
                id: loc_id,
                backup,
            },
            EVENT_SUB_CLOSED => PmEvent::SubClosed { sub: addrs()? },
            _ => return None,
        })
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

/// A socket to `mptcp_pm`. Requests are sent one at a time and their
/// kernel errors returned as `io::Error`s (EEXIST, ENOENT, …). Like
/// rtnetlink, the family answers inside the `send`: calls never wait.
pub struct Pm {
    sock: nl::Socket,
    /// The family's id, once the controller has named it.
    family: Option<u16>,
    /// The id of its `mptcp_pm_events` multicast group.
    events_group: Option<u32>,
}

impl Pm {
    pub fn connect() -> io::Result<Pm> {
        Ok(Pm {
            sock: nl::Socket::open(Some(rustix::net::netlink::GENERIC), 0)?,
            family: None,
            events_group: None,
        })
    }

    /// The id of `mptcp_pm` (CTRL_CMD_GETFAMILY); ENOENT when the kernel
    /// has no MPTCP.
    fn family(&mut self) -> io::Result<u16> {
        if let Some(id) = self.family {
            return Ok(id);
        }
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_owned())],
        });
        let seq = self.sock.next_seq();
        let bytes = nl::encode(GENL_ID_CTRL, &request, NLM_F_REQUEST | NLM_F_ACK, seq);
        let attrs: Vec<GenlCtrlAttrs> = self
            .sock
            .dump(&bytes)?
            .iter()
            .filter(|(kind, _)| *kind == GENL_ID_CTRL)
            .filter_map(|(_, body)| {
                GenlMessage::<GenlCtrl>::parse_with_param(&body[..], GENL_ID_CTRL).ok()
            })
            .flat_map(|m| m.payload.nlas)
            .collect();
        self.events_group = attrs.iter().find_map(|a| match a {
            GenlCtrlAttrs::McastGroups(groups) => groups.iter().find_map(|g| {
                let named = g
                    .iter()
                    .any(|a| matches!(a, McastGrpAttrs::Name(n) if n == EVENTS_GROUP));
                named.then(|| {
                    g.iter().find_map(|a| match a {
                        McastGrpAttrs::Id(id) => Some(*id),
                        _ => None,
                    })
                })?
            }),
            _ => None,
        });
        let id = attrs
            .iter()
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::other(format!("the kernel named no id for family {FAMILY_NAME}"))
            })?;
        self.family = Some(id);
        Ok(id)
    }

    fn request(&mut self, msg: PmMessage, dump: bool) -> io::Result<Vec<PmMessage>> {
        let family = self.family()?;
        let seq = self.sock.next_seq();
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        // A dump ends with NLMSG_DONE, anything else with the acknowledgement
        // (or the kernel's error, errno kept).
        let answer = self.sock.dump(&msg.encode(family, flags, seq))?;
        Ok(answer
            .iter()
            .filter(|(kind, _)| *kind == family)
            .filter_map(|(_, body)| PmMessage::parse(body))
            .collect())
    }

    pub fn endpoints(&mut self) -> io::Result<Vec<Endpoint>> {
        let replies = self.request(PmMessage::get_addrs(), true)?;
        Ok(replies.iter().filter_map(PmMessage::endpoint).collect())
    }

    /// Adds an endpoint; returns the id the kernel gave it.
    pub fn add(&mut self, addr: IpAddr, ifindex: Option<u32>, flags: u32) -> io::Result<u8> {
        self.request(PmMessage::add_addr(addr, ifindex, flags), false)?;
        self.endpoints()?
            .into_iter()
            .find(|e| e.addr == addr)
            .map(|e| e.id)
            .ok_or_else(|| io::Error::other(format!("endpoint {addr} vanished after being added")))
    }

    pub fn delete(&mut self, id: u8) -> io::Result<()> {
        self.request(PmMessage::del_addr(id, None), false).map(drop)
    }

    /// Closes the initial subflow from `addr` on every connection.
    pub fn delete_initial(&mut self, addr: IpAddr) -> io::Result<()> {
        self.request(PmMessage::del_addr(0, Some(addr)), false)
            .map(drop)
    }

    pub fn set_flags(&mut self, addr: IpAddr, flags: u32) -> io::Result<()> {
        self.request(PmMessage::set_flags(addr, flags), false)
            .map(drop)
    }

    pub fn limits(&mut self) -> io::Result<Limits> {
        let replies = self.request(PmMessage::get_limits(), false)?;
        Ok(replies.first().map(PmMessage::limits).unwrap_or_default())
    }

    pub fn set_limits(&mut self, limits: Limits) -> io::Result<()> {
        self.request(PmMessage::set_limits(limits), false).map(drop)
    }

    /// Userspace PM: see [`PmMessage::subflow_create`]. The kernel answers
    /// once the join's SYN is sent; SUB_ESTABLISHED or SUB_CLOSED follows.
    pub fn subflow_create(
        &mut self,
        token: u32,
        id: u8,
        local: IpAddr,
        ifindex: Option<u32>,
        flags: u32,
        remote: SocketAddr,
    ) -> io::Result<()> {
        let msg = PmMessage::subflow_create(token, id, local, ifindex, flags, remote);
        self.request(msg, false).map(drop)
    }

    /// Userspace PM: see [`PmMessage::remove`].
    pub fn remove_id(&mut self, token: u32, id: u8) -> io::Result<()> {
        self.request(PmMessage::remove(token, id), false).map(drop)
    }

    /// Userspace PM: see [`PmMessage::subflow_destroy`].
    pub fn subflow_destroy(
        &mut self,
        token: u32,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<()> {
        self.request(PmMessage::subflow_destroy(token, local, remote), false)
            .map(drop)
    }

    /// Userspace PM: see [`PmMessage::subflow_set_backup`].
    pub fn subflow_set_backup(
        &mut self,
        token: u32,
        local: IpAddr,
        remote: IpAddr,
        backup: bool,
    ) -> io::Result<()> {
        let msg = PmMessage::subflow_set_backup(token, local, remote, backup);
        self.request(msg, false).map(drop)
    }

    /// A socket subscribed to the path manager's events (`ip mptcp
    /// monitor`), non-blocking, with room for `queue` bytes of them.
    pub fn events(&mut self, queue: usize) -> io::Result<nl::Socket> {
        self.family()?;
        let group = self.events_group.ok_or_else(|| {
            io::Error::other(format!(
                "the kernel's {FAMILY_NAME} has no group {EVENTS_GROUP}"
            ))
        })?;
        let sock = nl::Socket::open(Some(rustix::net::netlink::GENERIC), 0)?;
        sock.join_group(group)?;
        sock.into_event_socket(queue)
    }

    /// The family id replies and events carry (after [`Pm::events`]).
    pub fn family_id(&self) -> Option<u16> {
        self.family
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netlink::NLA_F_NESTED;

    /// A message's body after the netlink header, as the kernel reads it.
    fn body(msg: &PmMessage) -> Vec<u8> {
        let buf = msg.encode(0x1d, NLM_F_REQUEST, 1);
        let m = nl::messages(&buf).next().unwrap();
        assert_eq!(m.kind, 0x1d);
        m.payload.to_vec()
    }

    #[test]
    fn add_addr_nests_the_address_attributes() {
        let msg = PmMessage::add_addr(
            "10.20.1.1".parse().unwrap(),
            Some(3),
            FLAG_SUBFLOW | FLAG_BACKUP,
        );
        let body = body(&msg);
        assert_eq!(body[..GENL_HDRLEN], [CMD_ADD_ADDR, VERSION, 0, 0]);
        let attrs = &body[GENL_HDRLEN..];
        // One nested MPTCP_PM_ATTR_ADDR holding id, family, addr4, ifindex, flags.
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]);
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        assert_eq!(kind, ATTR_ADDR | NLA_F_NESTED);
        assert_eq!(len as usize, attrs.len());
        let inner: Vec<(u16, Vec<u8>)> = nl::attributes(&attrs[4..])
            .map(|(k, v)| (k, v.to_vec()))
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
        let parsed = PmMessage::parse(&body(&msg)).unwrap();
        assert_eq!(parsed, msg);
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
        let parsed = PmMessage::parse(&body(&msg)).unwrap();
        assert_eq!(parsed.limits(), limits);
    }

    #[test]
    fn delete_of_the_initial_subflow_carries_id_zero_and_the_address() {
        let msg = PmMessage::del_addr(0, Some("10.20.0.1".parse().unwrap()));
        let parsed = PmMessage::parse(&body(&msg)).unwrap();
        let ep = parsed.endpoint().unwrap();
        assert_eq!((ep.id, ep.addr), (0, "10.20.0.1".parse().unwrap()));
    }

    #[test]
    fn unknown_and_malformed_reply_attributes_are_skipped() {
        let mut w = nl::Writer::default();
        w.begin(0x1d, 0, 1);
        w.raw(&[CMD_GET_ADDR, VERSION, 0, 0]);
        w.attr(99, &[1, 2, 3]);
        w.nested(ATTR_ADDR);
        w.attr(ADDR_ATTR_ID, &[5]);
        w.attr(ADDR_ATTR_ADDR4, &[10, 0, 0]); // one byte short
        w.attr(ADDR_ATTR_ADDR6, &[0xfd; 16]);
        w.end_nested();
        w.end();
        let m = nl::messages(&w.buf).next().unwrap();
        let ep = PmMessage::parse(m.payload).unwrap().endpoint().unwrap();
        assert_eq!((ep.id, ep.addr), (5, IpAddr::from([0xfd; 16])));
        assert_eq!(PmMessage::parse(&[CMD_GET_ADDR]), None);
    }
}
