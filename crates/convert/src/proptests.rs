//! Property tests across the codec: whatever encodes, decodes back to
//! itself; no byte string makes the decoder panic; and the decoder takes
//! exactly the message's bytes from a longer stream.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;

use crate::tlv::{canonical_dest, types};
use crate::{decode, Connect, Decoded, ErrorCode, ErrorTlv, Message, Tlv, HEADER_LEN};

fn dest() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
    ]
    .prop_map(canonical_dest)
}

/// `words` 32-bit words of arbitrary bytes, `words` in `range`.
fn words(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    range.prop_flat_map(|n| vec(any::<u8>(), n * 4))
}

/// A TLV the encoder accepts, at most 164 bytes long, so six of them
/// always fit in one message.
fn valid_tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        Just(Tlv::Info),
        vec(1..=u8::MAX, 0..=160).prop_map(|kinds| Tlv::SupportedTcpExtensions { kinds }),
        (dest(), words(0..=36)).prop_map(|(dest, options)| Tlv::Connect(Connect { dest, options })),
        words(5..=40).prop_map(|header| Tlv::ExtendedTcpHeader { header }),
        words(0..=40).prop_map(|opaque| Tlv::Cookie { opaque }),
        (any::<u8>(), words(0..=39)).prop_map(|(code, mut value)| {
            value.push(0);
            Tlv::Error(ErrorTlv {
                code: ErrorCode::from(code),
                value,
            })
        }),
    ]
}

fn valid_message() -> impl Strategy<Value = Message> {
    vec(valid_tlv(), 0..=6).prop_map(|tlvs| Message { tlvs })
}

/// Any TLV at all, including ones the encoder must refuse.
fn any_tlv() -> impl Strategy<Value = Tlv> {
    let v6 = (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
        |(ip, port, flow, scope)| {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope))
        },
    );
    prop_oneof![
        Just(Tlv::Info),
        vec(any::<u8>(), 0..300).prop_map(|kinds| Tlv::SupportedTcpExtensions { kinds }),
        (prop_oneof![dest(), v6], vec(any::<u8>(), 0..300))
            .prop_map(|(dest, options)| Tlv::Connect(Connect { dest, options })),
        vec(any::<u8>(), 0..300).prop_map(|header| Tlv::ExtendedTcpHeader { header }),
        vec(any::<u8>(), 0..1100).prop_map(|opaque| Tlv::Cookie { opaque }),
        (any::<u8>(), vec(any::<u8>(), 0..300)).prop_map(|(code, value)| Tlv::Error(ErrorTlv {
            code: ErrorCode::from(code),
            value,
        })),
    ]
}

proptest! {
    #[test]
    fn valid_messages_round_trip(message in valid_message()) {
        let bytes = message.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), message.encoded_len());
        let used = bytes.len();
        prop_assert_eq!(decode(&bytes), Ok(Decoded::Complete { message, used }));
    }

    #[test]
    fn decoder_takes_only_the_message_from_a_stream(
        message in valid_message(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let mut stream = message.to_bytes().unwrap();
        let used = stream.len();
        stream.extend_from_slice(&payload);
        prop_assert_eq!(decode(&stream), Ok(Decoded::Complete { message, used }));
    }

    #[test]
    fn any_cut_of_a_valid_message_needs_more(message in valid_message(), cut in any::<prop::sample::Index>()) {
        let bytes = message.to_bytes().unwrap();
        let cut = cut.index(bytes.len());
        let total = if cut < 2 { HEADER_LEN } else { bytes.len() };
        prop_assert_eq!(decode(&bytes[..cut]), Ok(Decoded::NeedMore { total }));
    }

    #[test]
    fn encoder_either_refuses_or_round_trips(tlvs in vec(any_tlv(), 0..4)) {
        let message = Message { tlvs };
        let mut out = vec![0xee];
        match message.encode(&mut out) {
            Ok(()) => {
                let used = out.len() - 1;
                prop_assert_eq!(used, message.encoded_len());
                prop_assert_eq!(decode(&out[1..]), Ok(Decoded::Complete { message, used }));
            }
            Err(_) => prop_assert_eq!(out, vec![0xee]),
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..1100)) {
        check_decoded(&bytes)?;
    }

    #[test]
    fn decoding_bytes_behind_a_valid_header_never_panics(
        words in 1..=u8::MAX,
        body in vec(any::<u8>(), 0..1100),
    ) {
        let mut bytes = vec![1, words, 0x22, 0x63];
        bytes.extend_from_slice(&body);
        check_decoded(&bytes)?;
    }

    #[test]
    fn decoding_plausible_tlvs_never_panics(
        tlvs in vec((prop::sample::select(vec![0u8, 1, 10, 20, 21, 22, 30, 99]), 0u8..12), 0..8),
        fill in any::<u8>(),
        extra_words in 0u8..3,
    ) {
        // Known types with small lengths reach the per-type checks often.
        let mut body = Vec::new();
        for (tlv_type, words) in tlvs {
            body.extend_from_slice(&[tlv_type, words]);
            body.resize(body.len() + usize::from(words).saturating_mul(4).saturating_sub(2), fill);
        }
        let words = (body.len() / 4 + 1 + usize::from(extra_words)).min(255) as u8;
        let mut bytes = vec![1, words, 0x22, 0x63];
        bytes.extend_from_slice(&body);
        check_decoded(&bytes)?;
    }

    #[test]
    fn reserved_bytes_do_not_change_the_message(message in valid_message(), noise in any::<[u8; 2]>()) {
        let mut bytes = message.to_bytes().unwrap();
        let mut offset = HEADER_LEN;
        while offset < bytes.len() {
            let tlv_type = bytes[offset];
            if matches!(tlv_type, types::INFO | types::EXTENDED_TCP_HEADER | types::SUPPORTED_TCP_EXTENSIONS | types::COOKIE) {
                bytes[offset + 2..offset + 4].copy_from_slice(&noise);
            }
            offset += usize::from(bytes[offset + 1]) * 4;
        }
        let used = bytes.len();
        prop_assert_eq!(decode(&bytes), Ok(Decoded::Complete { message, used }));
    }
}

/// Whatever `decode` says about `bytes` must be self-consistent: a
/// complete message fits in the buffer and re-encodes to its own length
/// and to itself; "need more" asks for more than is there.
fn check_decoded(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(Decoded::Complete { message, used }) => {
            prop_assert!(used <= bytes.len());
            let again = message.to_bytes().unwrap();
            prop_assert_eq!(again.len(), used);
            prop_assert!(same_except_reserved(&again, &bytes[..used]));
            prop_assert_eq!(decode(&again), Ok(Decoded::Complete { message, used }));
        }
        Ok(Decoded::NeedMore { total }) => prop_assert!(total > bytes.len()),
        Err(_) => {}
    }
    Ok(())
}

/// Whether two encodings of one message differ only in the two reserved
/// bytes of Info, Extended TCP Header, Supported TCP Extensions and Cookie
/// TLVs, which the decoder ignores. `a` must be a valid encoding.
fn same_except_reserved(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ignored = vec![false; a.len()];
    let mut offset = HEADER_LEN;
    while offset + 1 < a.len() {
        if matches!(
            a[offset],
            types::INFO
                | types::EXTENDED_TCP_HEADER
                | types::SUPPORTED_TCP_EXTENSIONS
                | types::COOKIE
        ) {
            ignored[offset + 2] = true;
            ignored[offset + 3] = true;
        }
        offset += usize::from(a[offset + 1]) * 4;
    }
    a.iter()
        .zip(b)
        .zip(ignored)
        .all(|((x, y), skip)| skip || x == y)
}
