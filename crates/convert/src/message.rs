//! A Convert message (the fixed header and its TLVs), how it is written,
//! and the messages mpbridge sends: a request (Connect, then Cookie), a
//! bare-header reply that confirms, and an Error reply that refuses.

use std::net::{SocketAddr, SocketAddrV6};

use thiserror::Error;

use crate::tlv::{Connect, ErrorTlv, Tlv};
use crate::{ErrorCode, HEADER_LEN, MAGIC, MAX_MESSAGE_LEN, VERSION, WORD};

/// A Convert message: the fixed header (implied) and its TLVs, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The TLVs, in wire order. May be empty (a bare header confirms a request).
    pub tlvs: Vec<Tlv>,
}

/// Why a [`Message`] cannot be written. Each case is one the peer's
/// decoder would reject or read back differently, so we refuse instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The whole message would be longer than 255 words.
    #[error("Convert message would be {len} bytes, more than the {MAX_MESSAGE_LEN} its header can describe")]
    MessageTooLong {
        /// Bytes the message would take.
        len: usize,
    },
    /// One TLV would be longer than 255 words.
    #[error(
        "TLV of type {tlv_type} would be {len} bytes, more than the 1020 its length can describe"
    )]
    TlvTooLong {
        /// The TLV's type number.
        tlv_type: u8,
        /// Bytes the TLV would take.
        len: usize,
    },
    /// A variable field does not end on a 32-bit boundary. Padding it
    /// would change what the peer reads (options, header, cookie or
    /// error value are taken whole), so the caller must pad it.
    #[error("{field} is {len} bytes, which does not fill whole 32-bit words")]
    FieldNotAligned {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A Supported TCP Extensions list holds kind 0, which cannot be told
    /// apart from the zero bytes that pad the list.
    #[error("Supported TCP Extensions lists kind 0, which reads as padding")]
    ZeroKind,
    /// An Extended TCP Header shorter than a bare TCP header (20 bytes).
    #[error("Extended TCP Header is {len} bytes, shorter than a 20-byte TCP header")]
    TcpHeaderTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// An IPv6 destination with a flow label or scope id, which the
    /// Connect TLV has no room for.
    #[error("destination {dest} has a flow label or scope id, which a Connect TLV cannot carry")]
    ScopedAddress {
        /// The destination.
        dest: SocketAddrV6,
    },
}

impl Message {
    /// A request for `dest`: a Connect TLV (no TCP options), then a Cookie
    /// TLV if `cookie` is given. The destination is stored in canonical
    /// form (see [`Connect::new`]).
    pub fn request(dest: SocketAddr, cookie: Option<Vec<u8>>) -> Message {
        let mut tlvs = vec![Tlv::Connect(Connect::new(dest))];
        if let Some(opaque) = cookie {
            tlvs.push(Tlv::Cookie { opaque });
        }
        Message { tlvs }
    }

    /// The reply that confirms a request: the fixed header alone.
    pub fn reply_ok() -> Message {
        Message { tlvs: Vec::new() }
    }

    /// The reply that refuses a request: one Error TLV with `code` and a
    /// one-byte zero value. After sending it the converter resets.
    pub fn reply_error(code: ErrorCode) -> Message {
        Message {
            tlvs: vec![Tlv::Error(ErrorTlv::new(code))],
        }
    }

    /// Bytes this message takes on the wire, header included. Meaningful
    /// only if [`Message::encode`] would succeed.
    pub fn encoded_len(&self) -> usize {
        self.tlvs
            .iter()
            .fold(HEADER_LEN, |sum, tlv| sum.saturating_add(tlv.encoded_len()))
    }

    /// Appends the message to `out`. On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for tlv in &self.tlvs {
            tlv.check()?;
        }
        let len = self.encoded_len();
        let words = match u8::try_from(len / WORD) {
            Ok(words) if len <= MAX_MESSAGE_LEN => words,
            _ => return Err(EncodeError::MessageTooLong { len }),
        };
        out.reserve(len);
        out.push(VERSION);
        out.push(words);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        for tlv in &self.tlvs {
            tlv.write(out);
        }
        Ok(())
    }

    /// The message as a new vector; see [`Message::encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len().min(MAX_MESSAGE_LEN));
        self.encode(&mut out)?;
        Ok(out)
    }

    /// The first Connect TLV, if any.
    pub fn connect(&self) -> Option<&Connect> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Connect(c) => Some(c),
            _ => None,
        })
    }

    /// The opaque bytes of the first Cookie TLV, if any.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Cookie { opaque } => Some(opaque.as_slice()),
            _ => None,
        })
    }

    /// The first Error TLV, if any.
    pub fn error(&self) -> Option<&ErrorTlv> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Error(e) => Some(e),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

    use super::*;
    use crate::cookie::COOKIE_LEN;

    fn dest4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 443))
    }

    fn one(tlv: Tlv) -> Message {
        Message { tlvs: vec![tlv] }
    }

    #[test]
    fn reply_ok_is_the_bare_header() {
        assert_eq!(Message::reply_ok().to_bytes(), Ok(vec![1, 1, 0x22, 0x63]));
    }

    #[test]
    fn reply_error_is_one_word_error_tlv() {
        let reply = Message::reply_error(ErrorCode::DestinationUnreachable);
        assert_eq!(reply.to_bytes(), Ok(vec![1, 2, 0x22, 0x63, 30, 1, 97, 0]));
        assert_eq!(
            reply.error().map(|e| e.code),
            Some(ErrorCode::DestinationUnreachable)
        );
    }

    #[test]
    fn request_with_our_cookie_is_eighteen_words() {
        let request = Message::request(dest4(), Some(vec![0; COOKIE_LEN]));
        let bytes = request.to_bytes().unwrap();
        assert_eq!(bytes.len(), 72);
        assert_eq!(bytes[1], 18);
        // Cookie TLV: 12 words starting after header and Connect.
        assert_eq!(&bytes[24..28], &[22, 12, 0, 0]);
        assert_eq!(request.connect().map(|c| c.dest), Some(dest4()));
        assert_eq!(request.cookie(), Some(&[0u8; COOKIE_LEN][..]));
        assert_eq!(request.error(), None);
    }

    #[test]
    fn request_stores_ipv4_mapped_destination_as_ipv4() {
        let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 443));
        let request = Message::request(mapped, None);
        assert_eq!(request.connect().map(|c| c.dest), Some(dest4()));
        assert_eq!(request.cookie(), None);
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = vec![0xaa, 0xbb];
        Message::reply_ok().encode(&mut out).unwrap();
        assert_eq!(out, vec![0xaa, 0xbb, 1, 1, 0x22, 0x63]);
    }

    #[test]
    fn failed_encode_leaves_the_buffer_alone() {
        let mut out = vec![9, 9];
        let bad = Message {
            tlvs: vec![Tlv::Info, Tlv::Cookie { opaque: vec![1] }],
        };
        assert!(bad.encode(&mut out).is_err());
        assert_eq!(out, vec![9, 9]);
    }

    #[test]
    fn fields_that_cannot_fill_words_are_refused() {
        let cases = [
            (
                one(Tlv::Connect(Connect {
                    dest: dest4(),
                    options: vec![1, 1, 1],
                })),
                "Connect TCP options",
                3,
            ),
            (one(Tlv::Cookie { opaque: vec![0; 5] }), "Cookie", 5),
            (
                one(Tlv::ExtendedTcpHeader {
                    header: vec![0; 22],
                }),
                "Extended TCP Header",
                22,
            ),
            (
                one(Tlv::Error(ErrorTlv {
                    code: ErrorCode::NotAuthorized,
                    value: vec![],
                })),
                "Error value",
                0,
            ),
            (
                one(Tlv::Error(ErrorTlv {
                    code: ErrorCode::NotAuthorized,
                    value: vec![0, 0],
                })),
                "Error value",
                2,
            ),
        ];
        assert!(!cases.is_empty());
        for (message, field, len) in cases {
            assert_eq!(
                message.to_bytes(),
                Err(EncodeError::FieldNotAligned { field, len })
            );
        }
    }

    #[test]
    fn kind_zero_is_refused_because_it_reads_as_padding() {
        let message = one(Tlv::SupportedTcpExtensions {
            kinds: vec![2, 0, 30],
        });
        assert_eq!(message.to_bytes(), Err(EncodeError::ZeroKind));
    }

    #[test]
    fn extended_tcp_header_shorter_than_twenty_bytes_is_refused() {
        let message = one(Tlv::ExtendedTcpHeader {
            header: vec![0; 16],
        });
        assert_eq!(
            message.to_bytes(),
            Err(EncodeError::TcpHeaderTooShort { len: 16 })
        );
    }

    #[test]
    fn scoped_ipv6_destination_is_refused() {
        let scoped = SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1), 22, 0, 3);
        let message = one(Tlv::Connect(Connect {
            dest: SocketAddr::V6(scoped),
            options: vec![],
        }));
        assert_eq!(
            message.to_bytes(),
            Err(EncodeError::ScopedAddress { dest: scoped })
        );
    }

    #[test]
    fn tlv_longer_than_255_words_is_refused() {
        let message = one(Tlv::Cookie {
            opaque: vec![0; 1020],
        });
        assert_eq!(
            message.to_bytes(),
            Err(EncodeError::TlvTooLong {
                tlv_type: 22,
                len: 1024
            })
        );
    }

    #[test]
    fn message_longer_than_255_words_is_refused() {
        let half = Tlv::Cookie {
            opaque: vec![0; 508],
        };
        // 4 + 512 + 512 = 1028 bytes.
        let message = Message {
            tlvs: vec![half.clone(), half],
        };
        assert_eq!(
            message.to_bytes(),
            Err(EncodeError::MessageTooLong { len: 1028 })
        );
    }

    #[test]
    fn supported_extensions_are_zero_padded_to_a_word() {
        let message = one(Tlv::SupportedTcpExtensions {
            kinds: vec![2, 3, 4, 5, 30],
        });
        assert_eq!(
            message.to_bytes(),
            Ok(vec![1, 4, 0x22, 0x63, 21, 3, 0, 0, 2, 3, 4, 5, 30, 0, 0, 0])
        );
    }
}
