//! The nf_tables messages of the `inet mpbridge` table, written by hand on
//! [`crate::host::netlink::Writer`]: the table (owner flag), its chains, address sets,
//! rules and set updates, each batch framed by BATCH_BEGIN/END.
//!
//! Why not a crate: `rustables` 0.9 is GPL-3.0-or-later (this project is
//! MIT/Apache and ships one static binary), runs bindgen (libclang) at build
//! time, which a router cross build should not need, and has no `tproxy`,
//! `fib` or `socket` expression. `nftnl` (recent versions have those three)
//! links the C libnftnl and libmnl through `nftnl-sys`: a C cross toolchain
//! and both libraries for every router target. The handful of messages
//! needed here fit in this file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use ipnet::IpNet;

use crate::config::InterceptionMode;
use crate::host::netlink::{Writer, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};

/// The table's name (family `inet`).
pub const TABLE: &str = "mpbridge";
/// The base chain on the prerouting hook.
pub const PREROUTING: &str = "prerouting";
/// The base chain that refuses QUIC (`local.quic = "refuse"`), a filter
/// chain whatever the interception mode (a nat chain would see only the
/// first packet of a flow).
pub const QUIC: &str = "quic";
/// The UDP port QUIC (HTTP/3) is refused on.
pub const QUIC_PORT: u16 = 443;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

/// `NFT_TABLE_F_OWNER` (Linux ≥ 5.12): the table lives as long as the
/// netlink socket that created it, and only that socket may change it.
pub const NFT_TABLE_F_OWNER: u32 = 0x2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// nft's data type ids, so that `nft list` prints the sets' addresses.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// Hook priorities as nft names them: `mangle` (TPROXY) and `dstnat` (REDIRECT).
const PRIORITY_MANGLE: i32 = -150;
const PRIORITY_DSTNAT: i32 = -100;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_RETURN: i32 = -5;
const NFT_JUMP: i32 = -3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_MARK: u32 = 3;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// `reject with icmpx`: ICMP or ICMPv6 as the packet's family needs.
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
/// `RTN_LOCAL`: an address of this host.
const RTN_LOCAL: u32 = 2;
const NFT_SOCKET_TRANSPARENT: u32 = 0;
const NFT_CT_STATE: u32 = 0;
/// `ct state established` as the ct expression loads it.
const CT_STATE_ESTABLISHED: u32 = 0x2;
const NFTA_RULE_USERDATA: u16 = 7;
/// libnftnl's rule comment, in a rule's user data (shown by `nft list`).
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`: redirect to the given port.
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
const IPPROTO_TCP: u8 = 6;
/// The TCP header's flags byte, and the two flags that tell a SYN that
/// opens a connection (SYN without ACK).
const TCP_FLAGS_OFFSET: u32 = 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const IPPROTO_UDP: u8 = 17;
const IFNAMSIZ: usize = 16;

/// An IP family, for the per-family chains and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    fn nfproto(self) -> u8 {
        match self {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        }
    }

    /// The expressions that match a packet of this family (`meta nfproto`).
    fn matches(self) -> [Expr; 2] {
        [
            Expr::Meta {
                key: NFT_META_NFPROTO,
                dreg: NFT_REG_1,
            },
            Expr::Cmp {
                sreg: NFT_REG_1,
                data: vec![self.nfproto()],
            },
        ]
    }

    /// Offset and length of the destination address in the IP header.
    fn daddr(self) -> (u32, u32) {
        match self {
            Family::V4 => (16, 4),
            Family::V6 => (24, 16),
        }
    }

    /// The divert chain of this family.
    pub fn chain(self) -> String {
        format!("divert{}", self.suffix())
    }

    /// The chain of this family that refuses QUIC.
    pub fn quic_chain(self) -> String {
        format!("quic{}", self.suffix())
    }
}

/// The address sets, one per family each: what is never diverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// The remotes' addresses: the bridge's own traffic.
    Remote,
    /// The prefixes of this host's addresses (its connected subnets).
    Local,
    /// The operator's `local.bypass` prefixes.
    Bypass,
}

impl SetKind {
    pub const ALL: [SetKind; 3] = [SetKind::Remote, SetKind::Local, SetKind::Bypass];

    /// The set's name in the table, e.g. `bypass4`.
    pub fn name(self, family: Family) -> String {
        let base = match self {
            SetKind::Remote => "remote",
            SetKind::Local => "local",
            SetKind::Bypass => "bypass",
        };
        format!("{base}{}", family.suffix())
    }
}

/// Where diverted connections go and which packets are diverted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub mode: InterceptionMode,
    /// Interfaces whose incoming TCP is diverted.
    pub lan: Vec<String>,
    /// The IPv4 listener (TPROXY target / REDIRECT port); none: IPv4 is not diverted.
    pub target4: Option<SocketAddrV4>,
    /// The IPv6 listener; none: IPv6 is not diverted.
    pub target6: Option<SocketAddrV6>,
    /// The mark diverted packets get (TPROXY: the fwmark of the local route).
    pub divert_mark: u32,
    /// The mark of the daemon's own connections: never diverted.
    pub own_mark: u32,
    /// Answer UDP to [`QUIC_PORT`] from `lan` with an ICMP port-unreachable
    /// (each family that is diverted, to the destinations it diverts).
    pub refuse_quic: bool,
}

/// One expression of a rule.
#[derive(Debug, Clone)]
enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    MetaSet {
        key: u32,
        sreg: u32,
    },
    Cmp {
        sreg: u32,
        data: Vec<u8>,
    },
    /// `!=`: like `Cmp`, true when the register differs from `data`.
    CmpNe {
        sreg: u32,
        data: Vec<u8>,
    },
    /// `reg & mask` into the same register (`xor` zero).
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Lookup {
        set: String,
        sreg: u32,
    },
    FibDaddrType {
        dreg: u32,
    },
    CtState {
        dreg: u32,
    },
    Socket {
        key: u32,
        dreg: u32,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict {
        code: i32,
        chain: Option<String>,
    },
    Tproxy {
        family: u8,
        addr: Option<u32>,
        port: u32,
    },
    Redir {
        port: u32,
    },
    /// `reject with icmpx port-unreachable`.
    Reject,
}

/// A batch of nf_tables messages, applied by the kernel all or nothing.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    next_seq: u32,
    /// Sequence numbers of the messages that want an ACK, and what each does.
    acks: Vec<(u32, String)>,
    next_set_id: u32,
}

impl Batch {
    /// A new batch whose messages are numbered from `first_seq`.
    pub fn new(first_seq: u32) -> Batch {
        let mut b = Batch {
            w: Writer::default(),
            next_seq: first_seq,
            acks: Vec::new(),
            next_set_id: 1,
        };
        let seq = b.seq();
        b.w.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
        b.w.raw(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        b.w.end();
        b
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Closes the batch: the bytes to send, and per acknowledged message its
    /// sequence number and a description for errors.
    pub fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>, u32) {
        let seq = self.seq();
        self.w.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq);
        self.w.raw(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        self.w.end();
        (self.w.buf, self.acks, self.next_seq)
    }

    fn message(&mut self, kind: u16, flags: u16, what: String) {
        let seq = self.seq();
        self.acks.push((seq, what));
        self.w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
        );
        self.w.raw(&nfgenmsg(NFPROTO_INET, 0));
    }

    /// Creates the table, with the owner flag when `owner`.
    pub fn new_table(&mut self, owner: bool) {
        self.message(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            format!("create table inet {TABLE}"),
        );
        self.w.attr_str(NFTA_TABLE_NAME, TABLE);
        self.w
            .attr_be32(NFTA_TABLE_FLAGS, if owner { NFT_TABLE_F_OWNER } else { 0 });
        self.w.end();
    }

    /// Deletes the table with everything in it.
    pub fn del_table(&mut self) {
        self.message(NFT_MSG_DELTABLE, 0, format!("delete table inet {TABLE}"));
        self.w.attr_str(NFTA_TABLE_NAME, TABLE);
        self.w.end();
    }

    /// Deletes every rule of a chain (a DELRULE without a handle).
    pub fn flush_chain(&mut self, chain: &str) {
        self.message(NFT_MSG_DELRULE, 0, format!("flush chain {chain}"));
        self.w.attr_str(NFTA_RULE_TABLE, TABLE);
        self.w.attr_str(NFTA_RULE_CHAIN, chain);
        self.w.end();
    }

    /// A chain on the prerouting hook: `kind` "filter" or "nat".
    fn base_chain(&mut self, name: &str, kind: &str, priority: i32) {
        self.message(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("create chain {name} (type {kind})"),
        );
        self.w.attr_str(NFTA_CHAIN_TABLE, TABLE);
        self.w.attr_str(NFTA_CHAIN_NAME, name);
        self.w.nested(NFTA_CHAIN_HOOK);
        self.w.attr_be32(NFTA_HOOK_HOOKNUM, NF_INET_PRE_ROUTING);
        self.w.attr_be32(NFTA_HOOK_PRIORITY, priority as u32);
        self.w.end_nested();
        self.w.attr_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
        self.w.attr_str(NFTA_CHAIN_TYPE, kind);
        self.w.end();
    }

    fn chain(&mut self, name: &str) {
        self.message(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("create chain {name}"),
        );
        self.w.attr_str(NFTA_CHAIN_TABLE, TABLE);
        self.w.attr_str(NFTA_CHAIN_NAME, name);
        self.w.end();
    }

    fn set(&mut self, name: &str, family: Family) {
        let (key_type, key_len) = match family {
            Family::V4 => (TYPE_IPADDR, 4),
            Family::V6 => (TYPE_IP6ADDR, 16),
        };
        let id = self.next_set_id;
        self.next_set_id += 1;
        self.message(NFT_MSG_NEWSET, NLM_F_CREATE, format!("create set {name}"));
        self.w.attr_str(NFTA_SET_TABLE, TABLE);
        self.w.attr_str(NFTA_SET_NAME, name);
        self.w.attr_be32(NFTA_SET_FLAGS, NFT_SET_INTERVAL);
        self.w.attr_be32(NFTA_SET_KEY_TYPE, key_type);
        self.w.attr_be32(NFTA_SET_KEY_LEN, key_len);
        self.w.attr_be32(NFTA_SET_ID, id);
        self.w.end();
    }

    /// Replaces a set's contents by `nets` (those of its family), in this batch.
    pub fn replace_set(&mut self, kind: SetKind, family: Family, nets: &[IpNet]) {
        let name = kind.name(family);
        // A DELSETELEM without elements flushes the set.
        self.message(NFT_MSG_DELSETELEM, 0, format!("flush set {name}"));
        self.w.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        self.w.attr_str(NFTA_SET_ELEM_LIST_SET, &name);
        self.w.end();
        let elements = interval_elements(family, nets);
        if elements.is_empty() {
            return;
        }
        self.message(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            format!("add {} elements to set {name}", elements.len()),
        );
        self.w.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        self.w.attr_str(NFTA_SET_ELEM_LIST_SET, &name);
        self.w.nested(NFTA_SET_ELEM_LIST_ELEMENTS);
        for (key, end) in elements {
            self.w.nested(NFTA_LIST_ELEM);
            self.w.nested(NFTA_SET_ELEM_KEY);
            self.w.attr(NFTA_DATA_VALUE, &key);
            self.w.end_nested();
            if end {
                self.w
                    .attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
            }
            self.w.end_nested();
        }
        self.w.end_nested();
        self.w.end();
    }

    fn rule(&mut self, chain: &str, what: &str, exprs: &[Expr]) {
        self.rule_with_comment(chain, what, exprs, None);
    }

    fn rule_with_comment(
        &mut self,
        chain: &str,
        what: &str,
        exprs: &[Expr],
        comment: Option<&str>,
    ) {
        self.message(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            format!("add rule to {chain}: {what}"),
        );
        self.w.attr_str(NFTA_RULE_TABLE, TABLE);
        self.w.attr_str(NFTA_RULE_CHAIN, chain);
        self.w.nested(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            self.expr(e);
        }
        self.w.end_nested();
        if let Some(text) = comment {
            let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, (text.len() + 1) as u8];
            udata.extend_from_slice(text.as_bytes());
            udata.push(0);
            self.w.attr(NFTA_RULE_USERDATA, &udata);
        }
        self.w.end();
    }

    fn expr(&mut self, e: &Expr) {
        let w = &mut self.w;
        w.nested(NFTA_LIST_ELEM);
        let name = match e {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Cmp { .. } | Expr::CmpNe { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Payload { .. } => "payload",
            Expr::Lookup { .. } => "lookup",
            Expr::FibDaddrType { .. } => "fib",
            Expr::CtState { .. } => "ct",
            Expr::Socket { .. } => "socket",
            Expr::Immediate { .. } | Expr::Verdict { .. } => "immediate",
            Expr::Tproxy { .. } => "tproxy",
            Expr::Redir { .. } => "redir",
            Expr::Reject => "reject",
        };
        w.attr_str(NFTA_EXPR_NAME, name);
        w.nested(NFTA_EXPR_DATA);
        match e {
            Expr::Meta { key, dreg } => {
                w.attr_be32(1, *dreg); // NFTA_META_DREG
                w.attr_be32(2, *key); // NFTA_META_KEY
            }
            Expr::MetaSet { key, sreg } => {
                w.attr_be32(2, *key); // NFTA_META_KEY
                w.attr_be32(3, *sreg); // NFTA_META_SREG
            }
            Expr::Cmp { sreg, data } | Expr::CmpNe { sreg, data } => {
                let op = match e {
                    Expr::CmpNe { .. } => NFT_CMP_NEQ,
                    _ => NFT_CMP_EQ,
                };
                w.attr_be32(1, *sreg); // NFTA_CMP_SREG
                w.attr_be32(2, op); // NFTA_CMP_OP
                w.nested(3); // NFTA_CMP_DATA
                w.attr(NFTA_DATA_VALUE, data);
                w.end_nested();
            }
            Expr::Bitwise { reg, mask } => {
                w.attr_be32(1, *reg); // NFTA_BITWISE_SREG
                w.attr_be32(2, *reg); // NFTA_BITWISE_DREG
                w.attr_be32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                w.nested(4); // NFTA_BITWISE_MASK
                w.attr(NFTA_DATA_VALUE, mask);
                w.end_nested();
                w.nested(5); // NFTA_BITWISE_XOR
                w.attr(NFTA_DATA_VALUE, &vec![0; mask.len()]);
                w.end_nested();
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.attr_be32(1, *dreg); // NFTA_PAYLOAD_DREG
                w.attr_be32(2, *base); // NFTA_PAYLOAD_BASE
                w.attr_be32(3, *offset); // NFTA_PAYLOAD_OFFSET
                w.attr_be32(4, *len); // NFTA_PAYLOAD_LEN
            }
            Expr::Lookup { set, sreg } => {
                w.attr_str(1, set); // NFTA_LOOKUP_SET
                w.attr_be32(2, *sreg); // NFTA_LOOKUP_SREG
            }
            Expr::FibDaddrType { dreg } => {
                w.attr_be32(1, *dreg); // NFTA_FIB_DREG
                w.attr_be32(2, NFT_FIB_RESULT_ADDRTYPE); // NFTA_FIB_RESULT
                w.attr_be32(3, NFTA_FIB_F_DADDR); // NFTA_FIB_FLAGS
            }
            Expr::CtState { dreg } => {
                w.attr_be32(1, *dreg); // NFTA_CT_DREG
                w.attr_be32(2, NFT_CT_STATE); // NFTA_CT_KEY
            }
            Expr::Socket { key, dreg } => {
                w.attr_be32(1, *key); // NFTA_SOCKET_KEY
                w.attr_be32(2, *dreg); // NFTA_SOCKET_DREG
            }
            Expr::Immediate { dreg, data } => {
                w.attr_be32(1, *dreg); // NFTA_IMMEDIATE_DREG
                w.nested(2); // NFTA_IMMEDIATE_DATA
                w.attr(NFTA_DATA_VALUE, data);
                w.end_nested();
            }
            Expr::Verdict { code, chain } => {
                w.attr_be32(1, NFT_REG_VERDICT);
                w.nested(2); // NFTA_IMMEDIATE_DATA
                w.nested(NFTA_DATA_VERDICT);
                w.attr_be32(NFTA_VERDICT_CODE, *code as u32);
                if let Some(chain) = chain {
                    w.attr_str(NFTA_VERDICT_CHAIN, chain);
                }
                w.end_nested();
                w.end_nested();
            }
            Expr::Tproxy { family, addr, port } => {
                w.attr_be32(1, u32::from(*family)); // NFTA_TPROXY_FAMILY
                if let Some(reg) = addr {
                    w.attr_be32(2, *reg); // NFTA_TPROXY_REG_ADDR
                }
                w.attr_be32(3, *port); // NFTA_TPROXY_REG_PORT
            }
            Expr::Redir { port } => {
                w.attr_be32(1, *port); // NFTA_REDIR_REG_PROTO_MIN
                w.attr_be32(3, NF_NAT_RANGE_PROTO_SPECIFIED); // NFTA_REDIR_FLAGS
            }
            Expr::Reject => {
                w.attr_be32(1, NFT_REJECT_ICMPX_UNREACH); // NFTA_REJECT_TYPE
                w.attr(2, &[NFT_REJECT_ICMPX_PORT_UNREACH]); // NFTA_REJECT_ICMP_CODE
            }
        }
        w.end_nested();
        w.end_nested();
    }

    /// The whole table: sets (empty; fill them with [`Batch::replace_set`]),
    /// the divert chain of each family that has a listener, and the base
    /// chain that jumps there for TCP arriving on a LAN interface.
    pub fn create_ruleset(&mut self, spec: &Spec, owner: bool) {
        self.new_table(owner);
        let families: Vec<Family> = [
            spec.target4.map(|_| Family::V4),
            spec.target6.map(|_| Family::V6),
        ]
        .into_iter()
        .flatten()
        .collect();
        for family in [Family::V4, Family::V6] {
            for kind in SetKind::ALL {
                self.set(&kind.name(family), family);
            }
        }
        let (kind, priority) = match spec.mode {
            InterceptionMode::Tproxy => ("filter", PRIORITY_MANGLE),
            InterceptionMode::Redirect => ("nat", PRIORITY_DSTNAT),
        };
        self.base_chain(PREROUTING, kind, priority);
        if spec.mode == InterceptionMode::Redirect {
            // Never matches (a nat chain sees only a connection's first
            // packet), but holds the kernel's conntrack for this namespace:
            // when the redirect rules are flushed at shutdown, the open
            // redirected connections keep their translation. Without another
            // user of conntrack they would be reset.
            self.rule_with_comment(
                PREROUTING,
                "ct state established: return",
                &[
                    Expr::CtState { dreg: NFT_REG_1 },
                    Expr::Cmp {
                        sreg: NFT_REG_1,
                        data: CT_STATE_ESTABLISHED.to_ne_bytes().to_vec(),
                    },
                    Expr::Verdict {
                        code: NFT_RETURN,
                        chain: None,
                    },
                ],
                Some("keeps conntrack for open redirected connections"),
            );
        }
        for &family in &families {
            let chain = family.chain();
            self.chain(&chain);
            self.divert_rules(spec, family, &chain);
        }
        self.jumps(
            spec,
            &families,
            PREROUTING,
            IPPROTO_TCP,
            None,
            Family::chain,
        );
        if spec.refuse_quic && !families.is_empty() {
            // Mangle, as TPROXY: before any dstnat changes the destination.
            self.base_chain(QUIC, "filter", PRIORITY_MANGLE);
            for &family in &families {
                let chain = family.quic_chain();
                self.chain(&chain);
                self.skip_rules(spec, family, &chain);
                self.rule_with_comment(
                    &chain,
                    "reject with icmpx port-unreachable",
                    &[Expr::Reject],
                    Some("local.quic = refuse: clients fall back to TCP, which is bridged"),
                );
            }
            let port = Some(QUIC_PORT);
            self.jumps(spec, &families, QUIC, IPPROTO_UDP, port, Family::quic_chain);
        }
    }

    /// In `base`, per LAN interface and family: packets of `proto` (to
    /// `dport`, if given) jump to the family's chain, `chain_of(family)`.
    fn jumps(
        &mut self,
        spec: &Spec,
        families: &[Family],
        base: &str,
        proto: u8,
        dport: Option<u16>,
        chain_of: fn(Family) -> String,
    ) {
        for lan in &spec.lan {
            for &family in families {
                let mut exprs = vec![
                    Expr::Meta {
                        key: NFT_META_IIFNAME,
                        dreg: NFT_REG_1,
                    },
                    Expr::Cmp {
                        sreg: NFT_REG_1,
                        data: ifname(lan),
                    },
                    Expr::Meta {
                        key: NFT_META_L4PROTO,
                        dreg: NFT_REG_1,
                    },
                    Expr::Cmp {
                        sreg: NFT_REG_1,
                        data: vec![proto],
                    },
                ];
                if let Some(port) = dport {
                    // The destination port: 2 bytes at offset 2 of TCP and UDP.
                    exprs.push(Expr::Payload {
                        base: NFT_PAYLOAD_TRANSPORT_HEADER,
                        offset: 2,
                        len: 2,
                        dreg: NFT_REG_1,
                    });
                    exprs.push(Expr::Cmp {
                        sreg: NFT_REG_1,
                        data: port.to_be_bytes().to_vec(),
                    });
                }
                exprs.extend(family.matches());
                exprs.push(Expr::Verdict {
                    code: NFT_JUMP,
                    chain: Some(chain_of(family)),
                });
                let name = if proto == IPPROTO_TCP { "tcp" } else { "udp" };
                let port = dport.map(|p| format!(" dport {p}")).unwrap_or_default();
                self.rule(
                    base,
                    &format!("iifname {lan} {name}{port} {family:?} jump"),
                    &exprs,
                );
            }
        }
    }

    fn divert_rules(&mut self, spec: &Spec, family: Family, chain: &str) {
        let set_mark = [
            Expr::Immediate {
                dreg: NFT_REG_1,
                data: spec.divert_mark.to_ne_bytes().to_vec(),
            },
            Expr::MetaSet {
                key: NFT_META_MARK,
                sreg: NFT_REG_1,
            },
            Expr::Verdict {
                code: NF_ACCEPT as i32,
                chain: None,
            },
        ];
        if spec.mode == InterceptionMode::Tproxy {
            // Packets of connections already diverted to a transparent socket
            // go to it whatever the sets say now (a bypass added later).
            // Not a SYN that opens a connection: the socket it finds can
            // only be the TIME_WAIT of an earlier connection on the same
            // ports (router A closed first, relaying the server's FIN), and
            // accepted here the SYN would meet that TIME_WAIT, which answers
            // with a stale ACK: the client resets and resends its SYN. The
            // tproxy rule instead hands such a SYN to the listener and ends
            // the TIME_WAIT (the kernel's nf_tproxy_handle_time_wait).
            // (`meta l4proto tcp` first, which also lets `nft list` show
            // the flags by name.)
            let mut exprs = vec![
                Expr::Meta {
                    key: NFT_META_L4PROTO,
                    dreg: NFT_REG_1,
                },
                Expr::Cmp {
                    sreg: NFT_REG_1,
                    data: vec![IPPROTO_TCP],
                },
                Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: TCP_FLAGS_OFFSET,
                    len: 1,
                    dreg: NFT_REG_1,
                },
                Expr::Bitwise {
                    reg: NFT_REG_1,
                    mask: vec![TCP_SYN | TCP_ACK],
                },
                Expr::CmpNe {
                    sreg: NFT_REG_1,
                    data: vec![TCP_SYN],
                },
                Expr::Socket {
                    key: NFT_SOCKET_TRANSPARENT,
                    dreg: NFT_REG_1,
                },
                Expr::Cmp {
                    sreg: NFT_REG_1,
                    data: vec![1],
                },
            ];
            exprs.extend(set_mark.iter().cloned());
            self.rule(
                chain,
                "tcp flags != syn / syn,ack socket transparent 1: mark, accept",
                &exprs,
            );
        }
        self.skip_rules(spec, family, chain);
        let (addr, port) = match family {
            Family::V4 => {
                let t = spec.target4.expect("a family with a listener");
                let ip = (!t.ip().is_unspecified()).then(|| IpAddr::V4(*t.ip()));
                (ip, t.port())
            }
            Family::V6 => {
                let t = spec.target6.expect("a family with a listener");
                let ip = (!t.ip().is_unspecified()).then(|| IpAddr::V6(*t.ip()));
                (ip, t.port())
            }
        };
        let port_reg = Expr::Immediate {
            dreg: NFT_REG_2,
            data: port.to_be_bytes().to_vec(),
        };
        match spec.mode {
            InterceptionMode::Tproxy => {
                let mut exprs = Vec::new();
                if let Some(ip) = addr {
                    exprs.push(Expr::Immediate {
                        dreg: NFT_REG_1,
                        data: ip_bytes(ip),
                    });
                }
                exprs.push(port_reg);
                exprs.push(Expr::Tproxy {
                    family: family.nfproto(),
                    addr: addr.map(|_| NFT_REG_1),
                    port: NFT_REG_2,
                });
                exprs.extend(set_mark.iter().cloned());
                self.rule(chain, &format!("tproxy to :{port}"), &exprs);
            }
            InterceptionMode::Redirect => {
                self.rule(
                    chain,
                    &format!("redirect to :{port}"),
                    &[port_reg, Expr::Redir { port: NFT_REG_2 }],
                );
            }
        }
    }
    /// The rules that `return` what is never diverted (nor refused): the
    /// daemon's own packets, this host's addresses, the address sets.
    fn skip_rules(&mut self, spec: &Spec, family: Family, chain: &str) {
        let ret = || Expr::Verdict {
            code: NFT_RETURN,
            chain: None,
        };
        self.rule(
            chain,
            "own mark: return",
            &[
                Expr::Meta {
                    key: NFT_META_MARK,
                    dreg: NFT_REG_1,
                },
                Expr::Cmp {
                    sreg: NFT_REG_1,
                    data: spec.own_mark.to_ne_bytes().to_vec(),
                },
                ret(),
            ],
        );
        self.rule(
            chain,
            "fib daddr type local: return",
            &[
                Expr::FibDaddrType { dreg: NFT_REG_1 },
                Expr::Cmp {
                    sreg: NFT_REG_1,
                    data: RTN_LOCAL.to_ne_bytes().to_vec(),
                },
                ret(),
            ],
        );
        let (offset, len) = family.daddr();
        for kind in SetKind::ALL {
            let set = kind.name(family);
            // Already known from the jump, but with it `nft list` can
            // print `ip daddr` instead of a raw payload.
            let [meta, is_family] = family.matches();
            self.rule(
                chain,
                &format!("daddr @{set}: return"),
                &[
                    meta,
                    is_family,
                    Expr::Payload {
                        base: NFT_PAYLOAD_NETWORK_HEADER,
                        offset,
                        len,
                        dreg: NFT_REG_1,
                    },
                    Expr::Lookup {
                        set,
                        sreg: NFT_REG_1,
                    },
                    ret(),
                ],
            );
        }
    }
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let id = res_id.to_be_bytes();
    [family, 0, id[0], id[1]]
}

/// An interface name as nft compares it: NUL-padded to IFNAMSIZ.
fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The prefixes of `family` in `nets` as merged, sorted, inclusive ranges.
pub fn merged_ranges(family: Family, nets: &[IpNet]) -> Vec<(u128, u128)> {
    let mut ranges: Vec<(u128, u128)> = nets
        .iter()
        .filter_map(|n| match (family, n) {
            (Family::V4, IpNet::V4(v4)) => Some((
                u128::from(u32::from(v4.network())),
                u128::from(u32::from(v4.broadcast())),
            )),
            (Family::V6, IpNet::V6(v6)) => {
                Some((u128::from(v6.network()), u128::from(v6.broadcast())))
            }
            _ => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            // Overlapping or adjacent: one interval (the kernel refuses overlaps).
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The elements of an interval set holding `nets`: each range's first
/// address, then the address after its last flagged as an interval end
/// (none when the range runs to the family's last address).
fn interval_elements(family: Family, nets: &[IpNet]) -> Vec<(Vec<u8>, bool)> {
    let max = match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    let key = |n: u128| match family {
        Family::V4 => Ipv4Addr::from(n as u32).octets().to_vec(),
        Family::V6 => Ipv6Addr::from(n).octets().to_vec(),
    };
    let mut out = Vec::new();
    for (start, end) in merged_ranges(family, nets) {
        out.push((key(start), false));
        if end < max {
            out.push((key(end + 1), true));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netlink as nl;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn overlapping_and_adjacent_prefixes_merge_into_one_range() {
        let r = merged_ranges(
            Family::V4,
            &nets(&[
                "10.0.1.0/24",
                "10.0.0.0/24",
                "10.0.0.128/25",
                "192.0.2.1/32",
                "fd00::/8",
            ]),
        );
        assert_eq!(
            r,
            vec![(0x0a00_0000, 0x0a00_01ff), (0xc000_0201, 0xc000_0201),]
        );
        assert_eq!(merged_ranges(Family::V6, &nets(&["fd00::/8"])).len(), 1);
    }

    #[test]
    fn an_interval_ends_after_its_last_address_unless_that_is_the_top() {
        let e = interval_elements(Family::V4, &nets(&["10.0.0.0/8", "255.255.255.0/24"]));
        assert_eq!(
            e,
            vec![
                (vec![10, 0, 0, 0], false),
                (vec![11, 0, 0, 0], true),
                (vec![255, 255, 255, 0], false),
            ]
        );
        let e = interval_elements(Family::V6, &nets(&["fd00:30::/64"]));
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].0[..8], [0xfd, 0, 0, 0x30, 0, 0, 0, 1]);
    }

    fn spec(mode: InterceptionMode) -> Spec {
        Spec {
            mode,
            lan: vec!["br-lan".into(), "lan0".into()],
            target4: Some("0.0.0.0:12345".parse().unwrap()),
            target6: Some("[::]:12345".parse().unwrap()),
            divert_mark: 1,
            own_mark: 2,
            refuse_quic: false,
        }
    }

    /// (message type, NLM flags, seq) of each message in a batch.
    fn summary(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
        nl::messages(bytes)
            .map(|m| {
                let flags =
                    u16::from_ne_bytes(bytes[m.offset + 6..m.offset + 8].try_into().unwrap());
                (m.kind, flags, m.seq)
            })
            .collect()
    }

    #[test]
    fn a_batch_is_framed_and_every_inner_message_wants_an_ack() {
        let mut b = Batch::new(100);
        b.create_ruleset(&spec(InterceptionMode::Tproxy), true);
        let (bytes, acks, next) = b.finish();
        let msgs = summary(&bytes);
        assert_eq!(msgs.first().unwrap().0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs.last().unwrap().0, NFNL_MSG_BATCH_END);
        assert_eq!(msgs.len(), acks.len() + 2);
        assert_eq!(next, 100 + msgs.len() as u32);
        for (kind, flags, seq) in &msgs[1..msgs.len() - 1] {
            assert_eq!(kind >> 8, NFNL_SUBSYS_NFTABLES);
            assert_ne!(flags & NLM_F_ACK, 0);
            assert!(acks.iter().any(|(s, _)| s == seq));
        }
        // Table, 6 sets, base chain, 2 divert chains; 2 LANs × 2 families jumps.
        let count = |t: u16| msgs.iter().filter(|m| m.0 & 0xff == t).count();
        assert_eq!(count(NFT_MSG_NEWTABLE), 1);
        assert_eq!(count(NFT_MSG_NEWSET), 6);
        assert_eq!(count(NFT_MSG_NEWCHAIN), 3);
        // Per family: socket, own mark, fib, 3 sets, tproxy = 7; plus 4 jumps.
        assert_eq!(count(NFT_MSG_NEWRULE), 2 * 7 + 4);
    }

    #[test]
    fn the_table_carries_the_owner_flag_only_when_asked() {
        for owner in [true, false] {
            let mut b = Batch::new(1);
            b.new_table(owner);
            let (bytes, _, _) = b.finish();
            let table = nl::messages(&bytes).nth(1).unwrap();
            let flags = nl::attributes(&table.payload[4..])
                .find(|(k, _)| *k == NFTA_TABLE_FLAGS)
                .map(|(_, v)| u32::from_be_bytes(v.try_into().unwrap()))
                .unwrap();
            assert_eq!(flags, if owner { NFT_TABLE_F_OWNER } else { 0 });
        }
    }

    #[test]
    fn redirect_mode_uses_a_nat_chain_and_no_socket_rule() {
        let mut b = Batch::new(1);
        let mut s = spec(InterceptionMode::Redirect);
        s.target6 = None;
        b.create_ruleset(&s, true);
        let (_, acks, _) = b.finish();
        let text: Vec<&str> = acks.iter().map(|(_, w)| w.as_str()).collect();
        assert!(
            text.contains(&"create chain prerouting (type nat)"),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("redirect to :12345")));
        assert!(!text.iter().any(|t| t.contains("socket")));
        assert!(
            !text.iter().any(|t| t.contains("divert6")),
            "no IPv6 listener"
        );
    }

    /// An expression as the batch encodes it: its name and the attributes
    /// of its data (nested ones left encoded).
    type Encoded = (String, Vec<(u16, Vec<u8>)>);

    /// The chain and expressions of every rule in a batch.
    fn rules(bytes: &[u8]) -> Vec<(String, Vec<Encoded>)> {
        let text = |v: &[u8]| String::from_utf8(v.split(|b| *b == 0).next().unwrap().to_vec());
        nl::messages(bytes)
            .filter(|m| m.kind & 0xff == NFT_MSG_NEWRULE)
            .map(|m| {
                let attrs: Vec<_> = nl::attributes(&m.payload[4..]).collect();
                let chain = attrs.iter().find(|(k, _)| *k == NFTA_RULE_CHAIN).unwrap();
                let list = attrs
                    .iter()
                    .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
                    .unwrap();
                let exprs = nl::attributes(list.1)
                    .map(|(_, elem)| {
                        let mut name = String::new();
                        let mut data = Vec::new();
                        for (k, v) in nl::attributes(elem) {
                            match k {
                                NFTA_EXPR_NAME => name = text(v).unwrap(),
                                NFTA_EXPR_DATA => {
                                    data = nl::attributes(v).map(|(k, v)| (k, v.to_vec())).collect()
                                }
                                _ => {}
                            }
                        }
                        (name, data)
                    })
                    .collect();
                (text(chain.1).unwrap(), exprs)
            })
            .collect()
    }

    #[test]
    fn the_socket_rule_leaves_a_connection_opening_syn_to_the_tproxy_rule() {
        let mut b = Batch::new(1);
        b.create_ruleset(&spec(InterceptionMode::Tproxy), true);
        let (bytes, _, _) = b.finish();
        let socket_rules: Vec<_> = rules(&bytes)
            .into_iter()
            .filter(|(_, exprs)| exprs.iter().any(|(name, _)| name == "socket"))
            .collect();
        assert_eq!(socket_rules.len(), 2, "one per family");
        let be32 = |v: u32| v.to_be_bytes().to_vec();
        let value = |v: &[u8]| {
            // NFTA_DATA_VALUE nested in the data attribute.
            let (k, inner) = nl::attributes(v).next().unwrap();
            assert_eq!(k, NFTA_DATA_VALUE);
            inner.to_vec()
        };
        let attr = |data: &[(u16, Vec<u8>)], k: u16| {
            data.iter().find(|(key, _)| *key == k).unwrap().1.clone()
        };
        for (_, exprs) in socket_rules {
            let names: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names[..6],
                ["meta", "cmp", "payload", "bitwise", "cmp", "socket"],
                "{names:?}"
            );
            assert_eq!(value(&attr(&exprs[1].1, 3)), [IPPROTO_TCP]);
            let payload = &exprs[2].1;
            assert_eq!(attr(payload, 2), be32(NFT_PAYLOAD_TRANSPORT_HEADER));
            assert_eq!(attr(payload, 3), be32(13), "the TCP flags byte");
            assert_eq!(attr(payload, 4), be32(1));
            let bitwise = &exprs[3].1;
            assert_eq!(value(&attr(bitwise, 4)), [0x12], "mask syn|ack");
            assert_eq!(value(&attr(bitwise, 5)), [0], "xor nothing");
            let cmp = &exprs[4].1;
            assert_eq!(attr(cmp, 2), be32(NFT_CMP_NEQ));
            assert_eq!(value(&attr(cmp, 3)), [0x02], "!= syn alone");
        }
    }

    fn quic_spec(mode: InterceptionMode) -> Spec {
        Spec {
            refuse_quic: true,
            ..spec(mode)
        }
    }

    #[test]
    fn refusing_quic_adds_a_filter_chain_that_rejects_lan_udp_to_443() {
        for mode in [InterceptionMode::Tproxy, InterceptionMode::Redirect] {
            let mut b = Batch::new(1);
            b.create_ruleset(&quic_spec(mode), true);
            let (bytes, acks, _) = b.finish();
            let text: Vec<&str> = acks.iter().map(|(_, w)| w.as_str()).collect();
            // A filter chain even beside REDIRECT's nat chain.
            assert!(
                text.contains(&"create chain quic (type filter)"),
                "{mode}: {text:?}"
            );
            assert!(text.contains(&"create chain quic4") && text.contains(&"create chain quic6"));
            let rules = rules(&bytes);
            for family in [Family::V4, Family::V6] {
                // The same returns as the divert chain, then the reject.
                let chain = family.quic_chain();
                let quic: Vec<&Vec<Encoded>> = rules
                    .iter()
                    .filter(|(c, _)| *c == chain)
                    .map(|(_, e)| e)
                    .collect();
                let divert: Vec<&Vec<Encoded>> = rules
                    .iter()
                    .filter(|(c, _)| *c == family.chain())
                    .map(|(_, e)| e)
                    .collect();
                assert_eq!(quic.len(), 6, "{mode} {family:?}");
                let skip = if mode == InterceptionMode::Tproxy {
                    &divert[1..6]
                } else {
                    &divert[..5]
                };
                assert_eq!(&quic[..5], skip, "{mode} {family:?}");
                let reject = &quic[5][0];
                assert_eq!(reject.0, "reject");
                assert_eq!(
                    reject.1,
                    vec![(1, 2u32.to_be_bytes().to_vec()), (2, vec![1])],
                    "type icmpx, code port-unreachable"
                );
            }
            // One jump per LAN and family: iifname, udp, dport 443, family.
            let jumps: Vec<&Vec<Encoded>> = rules
                .iter()
                .filter(|(c, _)| c == QUIC)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(jumps.len(), 4);
            for (i, exprs) in jumps.iter().enumerate() {
                let names: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(
                    names,
                    [
                        "meta",
                        "cmp",
                        "meta",
                        "cmp",
                        "payload",
                        "cmp",
                        "meta",
                        "cmp",
                        "immediate"
                    ]
                );
                let cmp = |j: usize| {
                    let data = &exprs[j].1.iter().find(|(k, _)| *k == 3).unwrap().1;
                    nl::attributes(data).next().unwrap().1.to_vec()
                };
                assert_eq!(cmp(1), ifname(["br-lan", "lan0"][i / 2]));
                assert_eq!(cmp(3), vec![IPPROTO_UDP]);
                let payload = &exprs[4].1;
                assert!(payload.contains(&(2, NFT_PAYLOAD_TRANSPORT_HEADER.to_be_bytes().to_vec())));
                assert!(payload.contains(&(3, 2u32.to_be_bytes().to_vec())));
                assert_eq!(cmp(5), vec![0x01, 0xbb], "port 443, network order");
                assert_eq!(cmp(7), vec![[NFPROTO_IPV4, NFPROTO_IPV6][i % 2]]);
            }
        }
    }

    #[test]
    fn quic_is_refused_only_in_the_families_that_are_diverted_and_only_when_asked() {
        let mut s = quic_spec(InterceptionMode::Tproxy);
        s.target6 = None;
        let mut b = Batch::new(1);
        b.create_ruleset(&s, true);
        let (_, acks, _) = b.finish();
        let text: Vec<&str> = acks.iter().map(|(_, w)| w.as_str()).collect();
        assert!(text.contains(&"create chain quic4"), "{text:?}");
        assert!(!text.iter().any(|t| t.contains("quic6")), "{text:?}");

        let mut b = Batch::new(1);
        b.create_ruleset(&spec(InterceptionMode::Tproxy), true);
        let (_, acks, _) = b.finish();
        assert!(!acks.iter().any(|(_, w)| w.contains("quic")), "{acks:?}");
    }

    #[test]
    fn replacing_an_empty_set_only_flushes_it() {
        let mut b = Batch::new(1);
        b.replace_set(SetKind::Bypass, Family::V6, &nets(&["10.0.0.0/8"]));
        let (_, acks, _) = b.finish();
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].1, "flush set bypass6");
    }
}
