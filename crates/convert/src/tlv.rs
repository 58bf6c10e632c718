//! The six TLVs of RFC 8803 §4.2 as Rust values, and the rules that tie a
//! TLV's type to the lengths it may have. This module writes and reads
//! one TLV; walking the list and the fixed header belong to
//! [`message`](crate::message) and [`decode`](mod@crate::decode).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::{DecodeError, EncodeError, ErrorCode, WORD};

/// TLV type numbers (IANA "Convert TLVs" registry).
pub mod types {
    /// Info TLV: asks the converter which TCP extensions it supports.
    pub const INFO: u8 = 1;
    /// Connect TLV: the destination the converter should connect to.
    pub const CONNECT: u8 = 10;
    /// Extended TCP Header TLV: the TCP header the destination answered with.
    pub const EXTENDED_TCP_HEADER: u8 = 20;
    /// Supported TCP Extensions TLV: the TCP option kinds the converter supports.
    pub const SUPPORTED_TCP_EXTENSIONS: u8 = 21;
    /// Cookie TLV: opaque proof that the client may use the converter.
    pub const COOKIE: u8 = 22;
    /// Error TLV: why the converter refused or ended the connection.
    pub const ERROR: u8 = 30;
}

/// Bytes before a Connect TLV's TCP options: type, length, port, address.
pub const CONNECT_FIXED_LEN: usize = 2 + 2 + 16;

/// The shortest TCP header (no options) an Extended TCP Header TLV carries.
pub const MIN_TCP_HEADER_LEN: usize = 20;

/// The longest TLV the one-byte length can describe: 255 words.
pub const MAX_TLV_LEN: usize = 255 * WORD;

/// One Convert TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tlv {
    /// Info (type 1): a client asks which TCP extensions the converter supports.
    Info,
    /// Supported TCP Extensions (type 21): TCP option kinds the converter supports.
    SupportedTcpExtensions {
        /// Option kinds, in order. Never 0: zero bytes pad the list on the wire.
        kinds: Vec<u8>,
    },
    /// Connect (type 10): where the converter should connect.
    Connect(Connect),
    /// Extended TCP Header (type 20): the header of the destination's SYN+ACK.
    ExtendedTcpHeader {
        /// A whole TCP header, options included: at least 20 bytes, a multiple of 4.
        header: Vec<u8>,
    },
    /// Cookie (type 22): opaque to the RFC; see [`crate::cookie`] for ours.
    Cookie {
        /// The cookie bytes, a multiple of 4 long.
        opaque: Vec<u8>,
    },
    /// Error (type 30): the converter refuses or ends the connection.
    Error(ErrorTlv),
}

/// The content of a Connect TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Destination. IPv4 travels as an IPv4-mapped IPv6 address and
    /// decodes back to [`SocketAddr::V4`]; an IPv6 destination must have
    /// flow info and scope id 0, since the wire has no room for them.
    pub dest: SocketAddr,
    /// TCP options the client asks the converter to use towards the
    /// destination, raw; a multiple of 4 bytes.
    pub options: Vec<u8>,
}

/// The content of an Error TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorTlv {
    /// What went wrong.
    pub code: ErrorCode,
    /// Every byte after the code, padding included, so its length is
    /// 4n + 1 (at least 1). What it means depends on the code; mpbridge
    /// sends a single zero byte.
    pub value: Vec<u8>,
}

impl ErrorTlv {
    /// An Error TLV with `code` and the shortest value, one zero byte.
    pub fn new(code: ErrorCode) -> ErrorTlv {
        ErrorTlv {
            code,
            value: vec![0],
        }
    }
}

impl Connect {
    /// A Connect with no TCP options, its destination in canonical form
    /// (an IPv4-mapped IPv6 destination becomes [`SocketAddr::V4`]), so
    /// that it compares equal to what the peer decodes.
    pub fn new(dest: SocketAddr) -> Connect {
        Connect {
            dest: canonical_dest(dest),
            options: Vec::new(),
        }
    }
}

/// `dest` as the decoder would return it: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_dest(dest: SocketAddr) -> SocketAddr {
    match dest {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => dest,
        },
        SocketAddr::V4(_) => dest,
    }
}

/// The 16 address bytes a Connect TLV (and our cookie MAC) carries for `ip`.
pub fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Which lengths, in words, a TLV type accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LengthRule {
    Exactly(u8),
    AtLeast(u8),
}

impl LengthRule {
    /// The rule for a known TLV type; `None` for a type this crate does not know.
    pub(crate) fn for_type(tlv_type: u8) -> Option<LengthRule> {
        match tlv_type {
            types::INFO => Some(LengthRule::Exactly(1)),
            types::CONNECT => Some(LengthRule::AtLeast(5)),
            types::EXTENDED_TCP_HEADER => Some(LengthRule::AtLeast(6)),
            types::SUPPORTED_TCP_EXTENSIONS | types::COOKIE | types::ERROR => {
                Some(LengthRule::AtLeast(1))
            }
            _ => None,
        }
    }

    pub(crate) fn accepts(self, words: u8) -> bool {
        match self {
            LengthRule::Exactly(n) => words == n,
            LengthRule::AtLeast(n) => words >= n,
        }
    }
}

fn round_up_to_word(len: usize) -> usize {
    len.div_ceil(WORD).saturating_mul(WORD)
}

impl Tlv {
    /// This TLV's type number (see [`types`]).
    pub fn type_code(&self) -> u8 {
        match self {
            Tlv::Info => types::INFO,
            Tlv::SupportedTcpExtensions { .. } => types::SUPPORTED_TCP_EXTENSIONS,
            Tlv::Connect(_) => types::CONNECT,
            Tlv::ExtendedTcpHeader { .. } => types::EXTENDED_TCP_HEADER,
            Tlv::Cookie { .. } => types::COOKIE,
            Tlv::Error(_) => types::ERROR,
        }
    }

    /// Bytes this TLV takes on the wire, type and length included.
    /// Meaningful only if [`Tlv::check`] passes.
    pub fn encoded_len(&self) -> usize {
        let body = match self {
            Tlv::Info => 2,
            Tlv::SupportedTcpExtensions { kinds } => 2usize.saturating_add(kinds.len()),
            Tlv::Connect(c) => (CONNECT_FIXED_LEN - 2).saturating_add(c.options.len()),
            Tlv::ExtendedTcpHeader { header } => 2usize.saturating_add(header.len()),
            Tlv::Cookie { opaque } => 2usize.saturating_add(opaque.len()),
            Tlv::Error(e) => 1usize.saturating_add(e.value.len()),
        };
        round_up_to_word(body.saturating_add(2))
    }

    /// Whether this TLV can be written so that the peer decodes exactly it.
    pub fn check(&self) -> Result<(), EncodeError> {
        let unaligned =
            |field: &'static str, len: usize| EncodeError::FieldNotAligned { field, len };
        match self {
            Tlv::Info => {}
            Tlv::SupportedTcpExtensions { kinds } => {
                if kinds.contains(&0) {
                    return Err(EncodeError::ZeroKind);
                }
            }
            Tlv::Connect(c) => {
                if c.options.len() % WORD != 0 {
                    return Err(unaligned("Connect TCP options", c.options.len()));
                }
                if let SocketAddr::V6(v6) = c.dest {
                    if v6.flowinfo() != 0 || v6.scope_id() != 0 {
                        return Err(EncodeError::ScopedAddress { dest: v6 });
                    }
                }
            }
            Tlv::ExtendedTcpHeader { header } => {
                if header.len() % WORD != 0 {
                    return Err(unaligned("Extended TCP Header", header.len()));
                }
                if header.len() < MIN_TCP_HEADER_LEN {
                    return Err(EncodeError::TcpHeaderTooShort { len: header.len() });
                }
            }
            Tlv::Cookie { opaque } => {
                if opaque.len() % WORD != 0 {
                    return Err(unaligned("Cookie", opaque.len()));
                }
            }
            Tlv::Error(e) => {
                // Type, length and code take 3 bytes; the value fills the
                // rest of the last word, so it is never empty.
                if e.value.len().saturating_add(3) % WORD != 0 {
                    return Err(unaligned("Error value", e.value.len()));
                }
            }
        }
        let len = self.encoded_len();
        if len > MAX_TLV_LEN {
            return Err(EncodeError::TlvTooLong {
                tlv_type: self.type_code(),
                len,
            });
        }
        Ok(())
    }

    /// Appends this TLV. The caller has run [`Tlv::check`].
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let words = u8::try_from(self.encoded_len() / WORD).unwrap_or(u8::MAX);
        out.push(self.type_code());
        out.push(words);
        match self {
            Tlv::Info => out.extend_from_slice(&[0, 0]),
            Tlv::SupportedTcpExtensions { kinds } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(kinds);
                let pad = round_up_to_word(kinds.len()) - kinds.len();
                out.extend(std::iter::repeat_n(0, pad));
            }
            Tlv::Connect(c) => {
                out.extend_from_slice(&c.dest.port().to_be_bytes());
                out.extend_from_slice(&address_bytes(c.dest.ip()));
                out.extend_from_slice(&c.options);
            }
            Tlv::ExtendedTcpHeader { header } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(header);
            }
            Tlv::Cookie { opaque } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(opaque);
            }
            Tlv::Error(e) => {
                out.push(e.code.into());
                out.extend_from_slice(&e.value);
            }
        }
    }

    /// Reads one TLV's value: `value` is everything after the type and
    /// length bytes, already checked against [`LengthRule::for_type`].
    /// `offset` is where the TLV starts in the message, for errors.
    pub(crate) fn read(tlv_type: u8, value: &[u8], offset: usize) -> Result<Tlv, DecodeError> {
        // Every type but Connect and Error starts with two ignored bytes.
        let after_reserved = value.get(2..).unwrap_or_default();
        let wrong_length = || DecodeError::WrongTlvLength {
            offset,
            tlv_type,
            words: u8::try_from((value.len() + 2) / WORD).unwrap_or(u8::MAX),
        };
        match tlv_type {
            types::INFO => Ok(Tlv::Info),
            types::CONNECT => {
                let (port, rest) = value.split_first_chunk::<2>().ok_or_else(wrong_length)?;
                let (addr, options) = rest.split_first_chunk::<16>().ok_or_else(wrong_length)?;
                let port = u16::from_be_bytes(*port);
                let ip = Ipv6Addr::from(*addr);
                let dest = match ip.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                    None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
                };
                Ok(Tlv::Connect(Connect {
                    dest,
                    options: options.to_vec(),
                }))
            }
            types::EXTENDED_TCP_HEADER => Ok(Tlv::ExtendedTcpHeader {
                header: after_reserved.to_vec(),
            }),
            types::SUPPORTED_TCP_EXTENSIONS => {
                let end = after_reserved
                    .iter()
                    .position(|&kind| kind == 0)
                    .unwrap_or(after_reserved.len());
                let (kinds, padding) = after_reserved.split_at(end);
                if let Some(bad) = padding.iter().position(|&b| b != 0) {
                    return Err(DecodeError::BadPadding {
                        offset: offset + 4 + end + bad,
                    });
                }
                if padding.len() >= WORD {
                    // A whole word of zeros is not padding: the encoder would
                    // not write it, so accepting it would break round trips.
                    return Err(DecodeError::BadPadding {
                        offset: offset + 4 + end,
                    });
                }
                Ok(Tlv::SupportedTcpExtensions {
                    kinds: kinds.to_vec(),
                })
            }
            types::COOKIE => Ok(Tlv::Cookie {
                opaque: after_reserved.to_vec(),
            }),
            types::ERROR => {
                let (code, rest) = value.split_first().ok_or_else(wrong_length)?;
                Ok(Tlv::Error(ErrorTlv {
                    code: ErrorCode::from(*code),
                    value: rest.to_vec(),
                }))
            }
            _ => Err(DecodeError::UnknownTlvType { offset, tlv_type }),
        }
    }
}
