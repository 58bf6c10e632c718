//! The incremental decoder: give it what has arrived so far, get back a
//! message and the bytes it used, "need more", or the first thing wrong.
//! [`DecodeError::error_code`] is the one place that maps a decoding
//! failure to the RFC error code to send back.

use thiserror::Error;

use crate::tlv::{LengthRule, Tlv};
use crate::{ErrorCode, Message, HEADER_LEN, MAGIC, VERSION, WORD};

/// What [`decode`] found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid message. It took the first `used` bytes of the
    /// buffer; the bytes after those are stream payload, not ours.
    Complete {
        /// The message.
        message: Message,
        /// Bytes the message took (its Total Length times 4).
        used: usize,
    },
    /// Everything so far is valid, but the message is not all there.
    NeedMore {
        /// Bytes needed in all, counted from the start of the buffer: the
        /// whole message once the length byte is in, else the header.
        total: usize,
    },
}

/// Why a buffer is not a valid Convert message. The decoder stops at the
/// first problem; offsets count bytes from the start of the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The first byte is not version 1.
    #[error("Convert version {version} is not supported (only 1 is)")]
    BadVersion {
        /// The version byte received.
        version: u8,
    },
    /// Bytes 2 and 3 are not the magic number 0x2263: whatever this is,
    /// it is not a Convert message.
    #[error("byte {offset} is {found:#04x}, not part of the Convert magic number 0x2263")]
    BadMagic {
        /// Which byte (2 or 3) was wrong.
        offset: usize,
        /// The byte received there.
        found: u8,
    },
    /// The Total Length byte is 0, which would not even cover the header.
    #[error("Convert header gives a total length of 0")]
    ZeroTotalLength,
    /// A TLV's type is one this crate does not know.
    #[error("TLV at byte {offset} has type {tlv_type}, which is not supported")]
    UnknownTlvType {
        /// Where the TLV starts.
        offset: usize,
        /// Its type byte.
        tlv_type: u8,
    },
    /// A TLV's length byte is 0.
    #[error("TLV at byte {offset} (type {tlv_type}) has length 0")]
    ZeroTlvLength {
        /// Where the TLV starts.
        offset: usize,
        /// Its type byte.
        tlv_type: u8,
    },
    /// A TLV's length is not one its type allows (an Info TLV is exactly
    /// 1 word, a Connect at least 5, an Extended TCP Header at least 6).
    #[error("TLV at byte {offset} (type {tlv_type}) cannot be {words} words long")]
    WrongTlvLength {
        /// Where the TLV starts.
        offset: usize,
        /// Its type byte.
        tlv_type: u8,
        /// Its length byte.
        words: u8,
    },
    /// A TLV reaches past the Total Length of its message.
    #[error("TLV at byte {offset} (type {tlv_type}) is {len} bytes but only {remaining} remain in the message")]
    TlvOverrun {
        /// Where the TLV starts.
        offset: usize,
        /// Its type byte.
        tlv_type: u8,
        /// Its length in bytes.
        len: usize,
        /// Bytes left in the message from `offset`.
        remaining: usize,
    },
    /// Padding that must be zero is not, or is longer than needed to
    /// reach a word boundary (Supported TCP Extensions).
    #[error("bad padding at byte {offset}")]
    BadPadding {
        /// The first offending byte.
        offset: usize,
    },
}

impl DecodeError {
    /// The RFC 8803 error code to send back for this failure. This is the
    /// only place that makes that choice.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::BadVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownTlvType { .. } => ErrorCode::UnsupportedMessage,
            DecodeError::BadMagic { .. }
            | DecodeError::ZeroTotalLength
            | DecodeError::ZeroTlvLength { .. }
            | DecodeError::WrongTlvLength { .. }
            | DecodeError::TlvOverrun { .. }
            | DecodeError::BadPadding { .. } => ErrorCode::MalformedMessage,
        }
    }

    /// Where in the message the problem was found, in bytes.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::BadVersion { .. } => 0,
            DecodeError::ZeroTotalLength => 1,
            DecodeError::BadMagic { offset, .. }
            | DecodeError::UnknownTlvType { offset, .. }
            | DecodeError::ZeroTlvLength { offset, .. }
            | DecodeError::WrongTlvLength { offset, .. }
            | DecodeError::TlvOverrun { offset, .. }
            | DecodeError::BadPadding { offset } => *offset,
        }
    }
}

/// Decodes the Convert message at the start of `buf`.
///
/// Whatever part of the message is present is checked before asking for
/// more: a wrong version or magic byte, an unknown TLV type or a bad TLV
/// length is an error as soon as its byte has arrived. Bytes past the
/// message's Total Length are never read.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if let Some(&version) = buf.first() {
        if version != VERSION {
            return Err(DecodeError::BadVersion { version });
        }
    }
    let total = match buf.get(1) {
        Some(0) => return Err(DecodeError::ZeroTotalLength),
        Some(&words) => Some(usize::from(words) * WORD),
        None => None,
    };
    for (i, expected) in MAGIC.to_be_bytes().into_iter().enumerate() {
        let offset = 2 + i;
        if let Some(&found) = buf.get(offset) {
            if found != expected {
                return Err(DecodeError::BadMagic { offset, found });
            }
        }
    }
    let Some(total) = total else {
        return Ok(Decoded::NeedMore { total: HEADER_LEN });
    };
    // Only the message's own bytes: what follows belongs to the stream.
    let msg = buf.get(..total).unwrap_or(buf);
    let need_more = Ok(Decoded::NeedMore { total });
    if msg.len() < HEADER_LEN {
        return need_more;
    }

    let mut tlvs = Vec::new();
    let mut offset = HEADER_LEN;
    while offset < total {
        let Some(&tlv_type) = msg.get(offset) else {
            return need_more;
        };
        let Some(rule) = LengthRule::for_type(tlv_type) else {
            return Err(DecodeError::UnknownTlvType { offset, tlv_type });
        };
        let Some(&words) = msg.get(offset + 1) else {
            return need_more;
        };
        if words == 0 {
            return Err(DecodeError::ZeroTlvLength { offset, tlv_type });
        }
        if !rule.accepts(words) {
            return Err(DecodeError::WrongTlvLength {
                offset,
                tlv_type,
                words,
            });
        }
        let len = usize::from(words) * WORD;
        let remaining = total - offset;
        if len > remaining {
            return Err(DecodeError::TlvOverrun {
                offset,
                tlv_type,
                len,
                remaining,
            });
        }
        let Some(value) = msg.get(offset + 2..offset + len) else {
            return need_more;
        };
        tlvs.push(Tlv::read(tlv_type, value, offset)?);
        offset += len;
    }
    Ok(Decoded::Complete {
        message: Message { tlvs },
        used: total,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::*;
    use crate::tlv::{Connect, ErrorTlv};

    /// Hand-written wire bytes (from the RFC 8803 layouts) and the message
    /// they carry. Used in both directions.
    fn vectors() -> Vec<(&'static str, Vec<u8>, Message)> {
        let msg = |tlvs| Message { tlvs };
        let tcp_header = vec![
            0x01, 0xbb, 0xc3, 0x50, // ports 443 -> 50000
            0, 0, 0, 1, // sequence number
            0, 0, 0, 2, // acknowledgment number
            0x50, 0x12, 0xff, 0xff, // data offset 5, SYN+ACK, window
            0, 0, 0, 0, // checksum, urgent pointer
        ];
        let mut ext_header_bytes = vec![1, 7, 0x22, 0x63, 20, 6, 0, 0];
        ext_header_bytes.extend_from_slice(&tcp_header);
        vec![
            ("bare header", vec![1, 1, 0x22, 0x63], msg(vec![])),
            (
                "info",
                vec![1, 2, 0x22, 0x63, 1, 1, 0, 0],
                msg(vec![Tlv::Info]),
            ),
            (
                "connect ipv4",
                vec![
                    1, 6, 0x22, 0x63, //
                    10, 5, 0x01, 0xbb, //
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1,
                ],
                msg(vec![Tlv::Connect(Connect {
                    dest: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 443)),
                    options: vec![],
                })]),
            ),
            (
                "connect ipv6 with an MSS option",
                vec![
                    1, 7, 0x22, 0x63, //
                    10, 6, 0, 80, //
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
                    2, 4, 0x05, 0xb4,
                ],
                msg(vec![Tlv::Connect(Connect {
                    dest: SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 80)),
                    options: vec![2, 4, 0x05, 0xb4],
                })]),
            ),
            (
                "extended tcp header",
                ext_header_bytes,
                msg(vec![Tlv::ExtendedTcpHeader { header: tcp_header }]),
            ),
            (
                "supported tcp extensions, padded",
                vec![1, 3, 0x22, 0x63, 21, 2, 0, 0, 2, 30, 0, 0],
                msg(vec![Tlv::SupportedTcpExtensions { kinds: vec![2, 30] }]),
            ),
            (
                "supported tcp extensions, no padding needed",
                vec![1, 3, 0x22, 0x63, 21, 2, 0, 0, 2, 3, 4, 8],
                msg(vec![Tlv::SupportedTcpExtensions {
                    kinds: vec![2, 3, 4, 8],
                }]),
            ),
            (
                "supported tcp extensions, empty",
                vec![1, 2, 0x22, 0x63, 21, 1, 0, 0],
                msg(vec![Tlv::SupportedTcpExtensions { kinds: vec![] }]),
            ),
            (
                "cookie",
                vec![1, 3, 0x22, 0x63, 22, 2, 0, 0, 0xde, 0xad, 0xbe, 0xef],
                msg(vec![Tlv::Cookie {
                    opaque: vec![0xde, 0xad, 0xbe, 0xef],
                }]),
            ),
            (
                "error not authorized",
                vec![1, 2, 0x22, 0x63, 30, 1, 32, 0],
                msg(vec![Tlv::Error(ErrorTlv {
                    code: ErrorCode::NotAuthorized,
                    value: vec![0],
                })]),
            ),
            (
                "error with a longer value",
                vec![1, 3, 0x22, 0x63, 30, 2, 1, 0, 0, 0, 0, 9],
                msg(vec![Tlv::Error(ErrorTlv {
                    code: ErrorCode::MalformedMessage,
                    value: vec![0, 0, 0, 0, 9],
                })]),
            ),
            (
                "connect then cookie",
                vec![
                    1, 8, 0x22, 0x63, //
                    10, 5, 0x1f, 0x90, //
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7, //
                    22, 2, 0, 0, 1, 2, 3, 4,
                ],
                Message::request(
                    SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 8080)),
                    Some(vec![1, 2, 3, 4]),
                ),
            ),
        ]
    }

    #[test]
    fn known_vectors_decode_to_their_message() {
        let vectors = vectors();
        assert!(!vectors.is_empty());
        for (name, bytes, message) in vectors {
            let used = bytes.len();
            assert_eq!(
                decode(&bytes),
                Ok(Decoded::Complete { message, used }),
                "{name}"
            );
        }
    }

    #[test]
    fn known_vectors_encode_to_their_bytes() {
        for (name, bytes, message) in vectors() {
            assert_eq!(message.to_bytes().as_ref(), Ok(&bytes), "{name}");
            assert_eq!(message.encoded_len(), bytes.len(), "{name}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_message_needs_more() {
        for (name, bytes, _) in vectors() {
            for cut in 0..bytes.len() {
                let total = if cut < 2 { HEADER_LEN } else { bytes.len() };
                assert_eq!(
                    decode(&bytes[..cut]),
                    Ok(Decoded::NeedMore { total }),
                    "{name}, first {cut} bytes"
                );
            }
        }
    }

    #[test]
    fn bytes_after_the_message_are_left_for_the_stream() {
        for (name, bytes, message) in vectors() {
            let used = bytes.len();
            // Not a valid Convert message: must not be looked at.
            let mut with_payload = bytes.clone();
            with_payload.extend_from_slice(&[0xff, 0, 0, 0, 2, 0x47, 0x45, 0x54]);
            assert_eq!(
                decode(&with_payload),
                Ok(Decoded::Complete { message, used }),
                "{name}"
            );
        }
    }

    #[test]
    fn reserved_bytes_are_ignored_on_receipt() {
        let info = [1, 2, 0x22, 0x63, 1, 1, 0xab, 0xcd];
        let cookie = [1, 3, 0x22, 0x63, 22, 2, 0xff, 1, 9, 9, 9, 9];
        let kinds = [1, 3, 0x22, 0x63, 21, 2, 7, 7, 2, 30, 0, 0];
        assert_eq!(
            decode(&info).map(complete),
            Ok(Message {
                tlvs: vec![Tlv::Info]
            })
        );
        assert_eq!(
            decode(&cookie).map(complete),
            Ok(Message {
                tlvs: vec![Tlv::Cookie {
                    opaque: vec![9, 9, 9, 9]
                }]
            })
        );
        assert_eq!(
            decode(&kinds).map(complete),
            Ok(Message {
                tlvs: vec![Tlv::SupportedTcpExtensions { kinds: vec![2, 30] }]
            })
        );
    }

    fn complete(decoded: Decoded) -> Message {
        match decoded {
            Decoded::Complete { message, .. } => message,
            Decoded::NeedMore { total } => panic!("needs {total} bytes"),
        }
    }

    /// A Connect TLV of `words` words to 192.0.2.1:443, options zero.
    fn connect_tlv(words: u8) -> Vec<u8> {
        let mut tlv = vec![10, words, 0x01, 0xbb];
        tlv.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        tlv.resize(usize::from(words) * 4, 0);
        tlv
    }

    fn message_of(total_words: u8, tlvs: &[u8]) -> Vec<u8> {
        let mut bytes = vec![1, total_words, 0x22, 0x63];
        bytes.extend_from_slice(tlvs);
        bytes
    }

    #[test]
    fn version_2_is_refused_from_its_first_byte() {
        assert_eq!(decode(&[2]), Err(DecodeError::BadVersion { version: 2 }));
        assert_eq!(
            decode(&[2, 1, 0x22, 0x63]),
            Err(DecodeError::BadVersion { version: 2 })
        );
        assert_eq!(
            DecodeError::BadVersion { version: 2 }.error_code(),
            ErrorCode::UnsupportedVersion
        );
    }

    #[test]
    fn zero_total_length_is_refused_from_its_byte() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::ZeroTotalLength));
        assert_eq!(
            decode(&[1, 0, 0x22, 0x63]),
            Err(DecodeError::ZeroTotalLength)
        );
        assert_eq!(
            DecodeError::ZeroTotalLength.error_code(),
            ErrorCode::MalformedMessage
        );
    }

    #[test]
    fn bad_magic_is_refused_byte_by_byte() {
        assert_eq!(
            decode(&[1, 1, 0x23]),
            Err(DecodeError::BadMagic {
                offset: 2,
                found: 0x23
            })
        );
        assert_eq!(
            decode(&[1, 1, 0x22, 0x64]),
            Err(DecodeError::BadMagic {
                offset: 3,
                found: 0x64
            })
        );
        // The old draft's "unassigned" zero bytes are not accepted either.
        assert!(matches!(
            decode(&[1, 1, 0, 0]),
            Err(DecodeError::BadMagic { offset: 2, .. })
        ));
        assert_eq!(
            decode(&[1, 1, 0x23]).unwrap_err().error_code(),
            ErrorCode::MalformedMessage
        );
    }

    #[test]
    fn zero_tlv_length_is_refused() {
        let bytes = message_of(2, &[1, 0, 0, 0]);
        let err = DecodeError::ZeroTlvLength {
            offset: 4,
            tlv_type: 1,
        };
        assert_eq!(decode(&bytes), Err(err.clone()));
        // Also as soon as the length byte arrives.
        assert_eq!(decode(&bytes[..6]), Err(err.clone()));
        assert_eq!(err.error_code(), ErrorCode::MalformedMessage);
    }

    #[test]
    fn unknown_tlv_type_is_refused_as_unsupported() {
        for tlv_type in [0, 2, 11, 23, 31, 192, 255] {
            let bytes = message_of(2, &[tlv_type, 1, 0, 0]);
            let err = DecodeError::UnknownTlvType {
                offset: 4,
                tlv_type,
            };
            assert_eq!(decode(&bytes), Err(err.clone()));
            assert_eq!(
                decode(&bytes[..5]),
                Err(err.clone()),
                "as soon as it arrives"
            );
            assert_eq!(err.error_code(), ErrorCode::UnsupportedMessage);
        }
    }

    #[test]
    fn connect_of_the_wrong_length_is_refused() {
        let bytes = message_of(5, &connect_tlv(4));
        let err = DecodeError::WrongTlvLength {
            offset: 4,
            tlv_type: 10,
            words: 4,
        };
        assert_eq!(decode(&bytes), Err(err.clone()));
        assert_eq!(
            decode(&bytes[..6]),
            Err(err.clone()),
            "as soon as it arrives"
        );
        assert_eq!(err.error_code(), ErrorCode::MalformedMessage);
    }

    #[test]
    fn info_longer_than_one_word_is_refused() {
        let bytes = message_of(3, &[1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::WrongTlvLength {
                offset: 4,
                tlv_type: 1,
                words: 2
            })
        );
    }

    #[test]
    fn extended_tcp_header_shorter_than_a_tcp_header_is_refused() {
        let bytes = message_of(
            6,
            &[20, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::WrongTlvLength {
                offset: 4,
                tlv_type: 20,
                words: 5
            })
        );
    }

    #[test]
    fn tlv_overrunning_the_total_length_is_refused() {
        // The header says 3 words; the cookie claims 3 of the 2 left.
        let bytes = message_of(3, &[22, 3, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let err = DecodeError::TlvOverrun {
            offset: 4,
            tlv_type: 22,
            len: 12,
            remaining: 8,
        };
        assert_eq!(decode(&bytes), Err(err.clone()));
        assert_eq!(
            decode(&bytes[..6]),
            Err(err.clone()),
            "as soon as it arrives"
        );
        assert_eq!(err.error_code(), ErrorCode::MalformedMessage);
    }

    #[test]
    fn trailing_tlv_that_does_not_fit_is_refused() {
        // 7 words: header, a 5-word Connect, then one word that would have
        // to be a TLV but claims 2 words.
        let mut tlvs = connect_tlv(5);
        tlvs.extend_from_slice(&[22, 2, 0, 0]);
        assert_eq!(
            decode(&message_of(7, &tlvs)),
            Err(DecodeError::TlvOverrun {
                offset: 24,
                tlv_type: 22,
                len: 8,
                remaining: 4
            })
        );
        // Zero bytes after the last TLV are not padding: type 0 is reserved.
        let mut tlvs = connect_tlv(5);
        tlvs.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode(&message_of(7, &tlvs)),
            Err(DecodeError::UnknownTlvType {
                offset: 24,
                tlv_type: 0
            })
        );
    }

    #[test]
    fn nonzero_or_overlong_padding_is_refused() {
        let gap = message_of(3, &[21, 2, 0, 0, 2, 0, 3, 0]);
        assert_eq!(decode(&gap), Err(DecodeError::BadPadding { offset: 10 }));
        let zero_word = message_of(3, &[21, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decode(&zero_word),
            Err(DecodeError::BadPadding { offset: 8 })
        );
        assert_eq!(
            DecodeError::BadPadding { offset: 8 }.error_code(),
            ErrorCode::MalformedMessage
        );
    }

    #[test]
    fn the_first_bad_tlv_is_reported() {
        // An unknown type after a bad Connect: the Connect is reported.
        let mut tlvs = connect_tlv(4);
        tlvs.extend_from_slice(&[99, 1, 0, 0]);
        assert!(matches!(
            decode(&message_of(6, &tlvs)),
            Err(DecodeError::WrongTlvLength { offset: 4, .. })
        ));
    }

    #[test]
    fn decode_error_offsets_point_at_the_problem() {
        assert_eq!(DecodeError::BadVersion { version: 9 }.offset(), 0);
        assert_eq!(DecodeError::ZeroTotalLength.offset(), 1);
        let bytes = message_of(3, &[1, 1, 0, 0, 77, 1, 0, 0]);
        assert_eq!(decode(&bytes).unwrap_err().offset(), 8);
    }

    #[test]
    fn largest_message_decodes() {
        let opaque = vec![0x5a; crate::MAX_MESSAGE_LEN - HEADER_LEN - 4];
        let message = Message {
            tlvs: vec![Tlv::Cookie { opaque }],
        };
        let bytes = message.to_bytes().unwrap();
        assert_eq!(bytes.len(), crate::MAX_MESSAGE_LEN);
        assert_eq!(bytes[1], 255);
        assert_eq!(
            decode(&bytes),
            Ok(Decoded::Complete {
                message,
                used: crate::MAX_MESSAGE_LEN
            })
        );
    }
}
