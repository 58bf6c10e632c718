//! Feeds arbitrary bytes to `convert::decode` and checks the answer is
//! consistent, not only that it does not panic:
//!
//! - a complete message fits in the input, and encoding it gives exactly
//!   `used` bytes, equal to the input's first `used` bytes except in the
//!   two reserved bytes of Info, Extended TCP Header, Supported TCP
//!   Extensions and Cookie TLVs (RFC 8803 says to ignore them on receipt,
//!   so the decoder does and the encoder writes zeros);
//! - decoding that encoding gives the same message;
//! - "need more" asks for more bytes than were given, and an error maps
//!   to an RFC error code without panicking.
#![no_main]

use convert::{decode, tlv::types, Decoded, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Decoded::Complete { message, used }) => {
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            let again = message.to_bytes().expect("a decoded message must encode");
            assert_eq!(again.len(), used, "re-encoding changed the length");
            assert_eq!(again.len(), message.encoded_len());
            assert!(
                same_except_reserved(&again, &data[..used]),
                "re-encoding changed more than reserved bytes"
            );
            assert_eq!(
                decode(&again),
                Ok(Decoded::Complete { message, used }),
                "re-decoding gave another message"
            );
        }
        Ok(Decoded::NeedMore { total }) => assert!(total > data.len()),
        Err(e) => {
            let _ = (e.error_code(), e.offset(), e.to_string());
        }
    }
});

/// Whether `encoded` (a valid encoding) and `received` differ only in
/// reserved bytes the decoder ignores.
fn same_except_reserved(encoded: &[u8], received: &[u8]) -> bool {
    if encoded.len() != received.len() {
        return false;
    }
    let mut ignored = vec![false; encoded.len()];
    let mut offset = HEADER_LEN;
    while offset + 1 < encoded.len() {
        let (tlv_type, words) = (encoded[offset], encoded[offset + 1]);
        if matches!(
            tlv_type,
            types::INFO
                | types::EXTENDED_TCP_HEADER
                | types::SUPPORTED_TCP_EXTENSIONS
                | types::COOKIE
        ) {
            ignored[offset + 2] = true;
            ignored[offset + 3] = true;
        }
        assert!(words > 0, "the encoder wrote a zero TLV length");
        offset += usize::from(words) * 4;
    }
    encoded
        .iter()
        .zip(received)
        .zip(ignored)
        .all(|((a, b), skip)| skip || a == b)
}
