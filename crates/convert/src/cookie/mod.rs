//! mpbridge's content for the Cookie TLV: proof, made with a pre-shared
//! key, that a request comes from our own local side and is fresh. RFC 8803
//! leaves the cookie opaque; this layout is ours.
//!
//! ```text
//!  0        1        2        3        4                                12
//! +--------+--------+--------+--------+---------------------------------+
//! | ver=1  | key id | reserved = 0    | timestamp, unix seconds (u64 BE)|
//! +--------+--------+-----------------+---------------------------------+
//! 12                                                                    28
//! | nonce: 16 bytes the signer never uses twice                         |
//! +---------------------------------------------------------------------+
//! 28                                                                    44
//! | MAC: first 16 bytes of HMAC-SHA256(secret, input below)             |
//! +---------------------------------------------------------------------+
//!
//! MAC input = "mpbridge cookie v1" || bytes 0..28 of the cookie
//!             || destination port (u16 BE) || destination address (16 bytes,
//!                IPv4 as ::ffff:a.b.c.d, as in the Connect TLV)
//! ```
//!
//! [`COOKIE_LEN`] is 44 bytes; in a Cookie TLV (type, length, two zero
//! bytes) that makes 48 bytes, 12 words. Binding the destination means a
//! cookie captured on the wire cannot open a connection anywhere else; the
//! timestamp bounds how long it is worth anything; the [`Verifier`]'s replay
//! cache refuses it a second time within that window.
//!
//! The caller supplies time and nonces (this crate reads no clock and no
//! random source): nonces should come from the OS random generator.

mod replay;

use std::fmt;
use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::tlv::address_bytes;
use crate::ErrorCode;
use replay::ReplayCache;

type HmacSha256 = Hmac<Sha256>;

/// Length of our cookie, the Cookie TLV's opaque bytes.
pub const COOKIE_LEN: usize = 44;

/// The cookie format version in byte 0.
pub const COOKIE_VERSION: u8 = 1;

/// Length of the nonce, bytes 12..28.
pub const NONCE_LEN: usize = 16;

/// Length of the truncated MAC, bytes 28..44.
pub const MAC_LEN: usize = 16;

/// The shortest secret [`Key::new`] accepts, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Domain separation: these MACs mean "mpbridge cookie, format 1" only.
const MAC_CONTEXT: &[u8] = b"mpbridge cookie v1";

/// Bytes of the cookie covered by the MAC (everything before it).
const SIGNED_LEN: usize = COOKIE_LEN - MAC_LEN;

/// A pre-shared cookie key: a one-byte id, carried in every cookie so keys
/// can be rotated, and the secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Key {
    id: u8,
    /// HMAC state already keyed with the secret; the secret itself is not kept.
    mac: HmacSha256,
}

/// Why a [`Key`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("cookie key {id} has a {len}-byte secret; at least 16 bytes are needed")]
    SecretTooShort {
        /// The key's id.
        id: u8,
        /// The secret's length in bytes.
        len: usize,
    },
}

impl Key {
    /// A key with `id` and `secret` (at least [`MIN_SECRET_LEN`] bytes).
    /// The secret is consumed and overwritten once the HMAC state is keyed.
    pub fn new(id: u8, mut secret: Vec<u8>) -> Result<Key, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::SecretTooShort {
                id,
                len: secret.len(),
            });
        }
        let mac = keyed_hmac(&secret);
        secret.fill(0);
        std::hint::black_box(&secret);
        Ok(Key { id, mac })
    }

    /// The key's id, byte 1 of every cookie it signs.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The HMAC over `signed` (cookie bytes 0..28) and the destination.
    fn mac(&self, signed: &[u8], dest: SocketAddr) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(MAC_CONTEXT);
        mac.update(signed);
        mac.update(&dest.port().to_be_bytes());
        mac.update(&address_bytes(dest.ip()));
        mac
    }
}

/// HMAC-SHA256 keyed with `secret`, built the way RFC 2104 says (a secret
/// longer than the 64-byte block is hashed first, then zero-padded), so
/// that no fallible constructor is needed.
fn keyed_hmac(secret: &[u8]) -> HmacSha256 {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    let hashed;
    let short: &[u8] = if secret.len() > block.len() {
        hashed = Sha256::digest(secret);
        &hashed
    } else {
        secret
    };
    for (slot, byte) in block.iter_mut().zip(short) {
        *slot = *byte;
    }
    let mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block);
    block.fill(0);
    std::hint::black_box(&block);
    mac
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"MASKED")
            .finish()
    }
}

/// Makes a cookie for a request to `dest`, stamped `timestamp` (unix
/// seconds) with `nonce`, which must never be used twice with this key.
pub fn sign(
    key: &Key,
    dest: SocketAddr,
    timestamp: u64,
    nonce: [u8; NONCE_LEN],
) -> [u8; COOKIE_LEN] {
    let mut signed = [0u8; SIGNED_LEN];
    let fields = [COOKIE_VERSION, key.id, 0, 0]
        .into_iter()
        .chain(timestamp.to_be_bytes())
        .chain(nonce);
    for (slot, byte) in signed.iter_mut().zip(fields) {
        *slot = byte;
    }
    let tag = key.mac(&signed, dest).finalize().into_bytes();
    let mut cookie = [0u8; COOKIE_LEN];
    for (slot, byte) in cookie.iter_mut().zip(signed.into_iter().chain(tag)) {
        *slot = byte;
    }
    cookie
}

/// Why a cookie is refused. Every case maps to the RFC's "Not Authorized"
/// ([`CookieError::error_code`]); the detail is for our logs, not the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CookieError {
    /// Not 44 bytes, not format version 1, or reserved bytes not zero.
    #[error("cookie is malformed (wrong length, version or reserved bytes)")]
    Malformed,
    /// No configured key has this id.
    #[error("cookie names key {0}, which is not configured")]
    UnknownKey(u8),
    /// The MAC does not match: wrong secret, altered cookie, or a cookie
    /// made for another destination.
    #[error("cookie MAC does not match (wrong key, altered, or made for another destination)")]
    BadMac,
    /// The timestamp is older than the window allows.
    #[error("cookie is {age_secs} s old, older than the window allows")]
    Expired {
        /// How old the cookie is, in seconds.
        age_secs: u64,
    },
    /// The timestamp is further ahead of our clock than the window allows.
    #[error("cookie is {ahead_secs} s ahead of our clock, more than the window allows")]
    FromFuture {
        /// How far ahead the cookie is, in seconds.
        ahead_secs: u64,
    },
    /// The cookie was seen before, or is no newer than one the replay
    /// cache had to forget.
    #[error("cookie was already used (or is too old for the replay cache to tell)")]
    Replayed,
}

impl CookieError {
    /// The RFC 8803 error code to answer with: always "Not Authorized".
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::NotAuthorized
    }
}

/// Checks cookies: format, key, MAC, freshness, and that each is used once.
///
/// Holds at most `replay_capacity` remembered cookies, about 84 bytes
/// each (measured; 120 at worst): 100 000 entries take about 8.4 MB.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<Key>,
    window_secs: u64,
    replay: ReplayCache,
}

impl Verifier {
    /// A verifier accepting cookies signed by any of `keys` (the first key
    /// wins if two share an id), whose timestamp is within `window_secs`
    /// of the caller's clock either way, remembering up to
    /// `replay_capacity` accepted cookies to refuse replays.
    ///
    /// When the cache is full the oldest entry is forgotten and every
    /// cookie stamped at or before it is refused from then on, so size the
    /// capacity above the number of connections expected per window.
    pub fn new(keys: Vec<Key>, window_secs: u64, replay_capacity: usize) -> Verifier {
        Verifier {
            keys,
            window_secs,
            replay: ReplayCache::new(replay_capacity),
        }
    }

    /// Checks `opaque` (a Cookie TLV's bytes) for a request to `dest` at
    /// `now_unix` (seconds), and records it. Returns the signing key's id.
    ///
    /// Checks run in this order, and only a cookie whose MAC matched is
    /// ever recorded: format, key id, MAC (constant time), timestamp
    /// window, replay.
    pub fn verify(
        &mut self,
        opaque: &[u8],
        dest: SocketAddr,
        now_unix: u64,
    ) -> Result<u8, CookieError> {
        let parsed = Parsed::from_bytes(opaque).ok_or(CookieError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == parsed.key_id)
            .ok_or(CookieError::UnknownKey(parsed.key_id))?;
        key.mac(parsed.signed, dest)
            .verify_truncated_left(parsed.tag)
            .map_err(|_| CookieError::BadMac)?;

        if parsed.timestamp > now_unix {
            let ahead_secs = parsed.timestamp - now_unix;
            if ahead_secs > self.window_secs {
                return Err(CookieError::FromFuture { ahead_secs });
            }
        } else {
            let age_secs = now_unix - parsed.timestamp;
            if age_secs > self.window_secs {
                return Err(CookieError::Expired { age_secs });
            }
        }

        self.replay.purge(now_unix, self.window_secs);
        self.replay
            .record(parsed.key_id, parsed.nonce, parsed.timestamp)?;
        Ok(parsed.key_id)
    }

    /// How many accepted cookies are remembered now.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// The timestamp at or below which every cookie is refused as a
    /// replay, once the cache has had to forget something.
    pub fn replay_floor(&self) -> Option<u64> {
        self.replay.floor()
    }
}

/// A cookie split into its fields; nothing checked but the layout.
struct Parsed<'a> {
    key_id: u8,
    timestamp: u64,
    nonce: [u8; NONCE_LEN],
    signed: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Parsed<'a> {
    fn from_bytes(opaque: &'a [u8]) -> Option<Parsed<'a>> {
        if opaque.len() != COOKIE_LEN {
            return None;
        }
        let (signed, tag) = opaque.split_at_checked(SIGNED_LEN)?;
        let (head, rest) = signed.split_first_chunk::<4>()?;
        let (timestamp, rest) = rest.split_first_chunk::<8>()?;
        let (nonce, _) = rest.split_first_chunk::<NONCE_LEN>()?;
        let [version, key_id, r0, r1] = *head;
        if version != COOKIE_VERSION || r0 != 0 || r1 != 0 {
            return None;
        }
        Some(Parsed {
            key_id,
            timestamp: u64::from_be_bytes(*timestamp),
            nonce: *nonce,
            signed,
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::*;

    const NOW: u64 = 1_700_000_000;
    const WINDOW: u64 = 30;

    fn key(id: u8, fill: u8) -> Key {
        Key::new(id, vec![fill; 32]).unwrap()
    }

    fn dest() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 443))
    }

    fn nonce(n: u32) -> [u8; NONCE_LEN] {
        let mut nonce = [0x5a; NONCE_LEN];
        nonce[..4].copy_from_slice(&n.to_be_bytes());
        nonce
    }

    fn verifier(capacity: usize) -> Verifier {
        Verifier::new(vec![key(1, 7), key(2, 8)], WINDOW, capacity)
    }

    #[test]
    fn cookie_layout_matches_an_independent_hmac() {
        // Computed with Python's hmac module from the layout in the module doc.
        let expected: [u8; COOKIE_LEN] = [
            0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x10, 0x11,
            0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
            0x1e, 0x6c, 0x6a, 0x44, 0xd2, 0xff, 0x2f, 0x20, 0x20, 0x11, 0x82, 0x40, 0x7c, 0x01,
            0x1e, 0x61,
        ];
        let key = Key::new(7, (0..32).collect()).unwrap();
        let nonce: [u8; 16] = core::array::from_fn(|i| 16 + i as u8);
        assert_eq!(sign(&key, dest(), NOW, nonce), expected);
    }

    #[test]
    fn keyed_hmac_matches_the_library_for_every_secret_length() {
        for len in [16, 63, 64, 65, 200] {
            let secret: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ours = keyed_hmac(&secret)
                .chain_update(b"x")
                .finalize()
                .into_bytes();
            let library = HmacSha256::new_from_slice(&secret)
                .unwrap()
                .chain_update(b"x")
                .finalize()
                .into_bytes();
            assert_eq!(ours, library, "secret of {len} bytes");
        }
    }

    #[test]
    fn valid_cookie_verifies_and_names_its_key() {
        let cookie = sign(&key(2, 8), dest(), NOW, nonce(1));
        assert_eq!(verifier(8).verify(&cookie, dest(), NOW), Ok(2));
    }

    #[test]
    fn cookie_fits_a_twelve_word_tlv() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let tlv = crate::Tlv::Cookie {
            opaque: cookie.to_vec(),
        };
        assert_eq!(tlv.encoded_len(), 48);
        assert_eq!(tlv.check(), Ok(()));
    }

    #[test]
    fn cookie_signed_with_another_secret_is_refused() {
        let cookie = sign(&key(1, 99), dest(), NOW, nonce(1));
        assert_eq!(
            verifier(8).verify(&cookie, dest(), NOW),
            Err(CookieError::BadMac)
        );
    }

    #[test]
    fn cookie_naming_an_unknown_key_is_refused() {
        let cookie = sign(&key(9, 7), dest(), NOW, nonce(1));
        assert_eq!(
            verifier(8).verify(&cookie, dest(), NOW),
            Err(CookieError::UnknownKey(9))
        );
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let mut verifier = verifier(8);
        for bit in 0..COOKIE_LEN * 8 {
            let mut bent = cookie;
            bent[bit / 8] ^= 1 << (bit % 8);
            let refused = verifier.verify(&bent, dest(), NOW);
            assert!(refused.is_err(), "bit {bit} flipped was accepted");
            if bit >= 4 * 8 {
                // Past the format bytes, only the MAC can notice.
                assert_eq!(refused, Err(CookieError::BadMac), "bit {bit}");
            }
        }
        assert_eq!(verifier.replay_len(), 0, "nothing forged was recorded");
        assert_eq!(verifier.verify(&cookie, dest(), NOW), Ok(1));
    }

    #[test]
    fn cookie_for_another_destination_is_refused() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let other_port = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 444));
        let other_host = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 11), 443));
        let mut verifier = verifier(8);
        assert_eq!(
            verifier.verify(&cookie, other_port, NOW),
            Err(CookieError::BadMac)
        );
        assert_eq!(
            verifier.verify(&cookie, other_host, NOW),
            Err(CookieError::BadMac)
        );
    }

    #[test]
    fn ipv4_mapped_destination_is_the_same_destination() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped(), 443));
        assert_eq!(verifier(8).verify(&cookie, mapped, NOW), Ok(1));
    }

    #[test]
    fn ipv6_destination_verifies() {
        let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5), 8443));
        let cookie = sign(&key(1, 7), v6, NOW, nonce(1));
        assert_eq!(verifier(8).verify(&cookie, v6, NOW), Ok(1));
        assert_eq!(
            verifier(8).verify(&cookie, dest(), NOW),
            Err(CookieError::BadMac)
        );
    }

    #[test]
    fn expired_cookie_is_refused() {
        let cookie = sign(&key(1, 7), dest(), NOW - WINDOW - 1, nonce(1));
        assert_eq!(
            verifier(8).verify(&cookie, dest(), NOW),
            Err(CookieError::Expired {
                age_secs: WINDOW + 1
            })
        );
        let at_edge = sign(&key(1, 7), dest(), NOW - WINDOW, nonce(2));
        assert_eq!(verifier(8).verify(&at_edge, dest(), NOW), Ok(1));
    }

    #[test]
    fn cookie_from_the_future_is_refused() {
        let cookie = sign(&key(1, 7), dest(), NOW + WINDOW + 1, nonce(1));
        assert_eq!(
            verifier(8).verify(&cookie, dest(), NOW),
            Err(CookieError::FromFuture {
                ahead_secs: WINDOW + 1
            })
        );
        let at_edge = sign(&key(1, 7), dest(), NOW + WINDOW, nonce(2));
        assert_eq!(verifier(8).verify(&at_edge, dest(), NOW), Ok(1));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut verifier = verifier(8);
        let far = sign(&key(1, 7), dest(), u64::MAX, nonce(1));
        assert_eq!(
            verifier.verify(&far, dest(), 0),
            Err(CookieError::FromFuture {
                ahead_secs: u64::MAX
            })
        );
        let ancient = sign(&key(1, 7), dest(), 0, nonce(2));
        assert_eq!(
            verifier.verify(&ancient, dest(), u64::MAX),
            Err(CookieError::Expired { age_secs: u64::MAX })
        );
        assert_eq!(verifier.verify(&far, dest(), u64::MAX), Ok(1));
    }

    #[test]
    fn replayed_cookie_is_refused() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let mut verifier = verifier(8);
        assert_eq!(verifier.verify(&cookie, dest(), NOW), Ok(1));
        assert_eq!(
            verifier.verify(&cookie, dest(), NOW + 1),
            Err(CookieError::Replayed)
        );
    }

    #[test]
    fn same_nonce_under_another_key_is_not_a_replay() {
        let mut verifier = verifier(8);
        let first = sign(&key(1, 7), dest(), NOW, nonce(1));
        let second = sign(&key(2, 8), dest(), NOW, nonce(1));
        assert_eq!(verifier.verify(&first, dest(), NOW), Ok(1));
        assert_eq!(verifier.verify(&second, dest(), NOW), Ok(2));
    }

    #[test]
    fn malformed_cookies_are_refused() {
        let good = sign(&key(1, 7), dest(), NOW, nonce(1));
        let mut verifier = verifier(8);
        let mut wrong_version = good;
        wrong_version[0] = 2;
        let mut reserved = good;
        reserved[3] = 1;
        let cases: [&[u8]; 5] = [
            &[],
            &good[..43],
            &[good.as_slice(), &[0]].concat(),
            &wrong_version,
            &reserved,
        ];
        for case in cases {
            assert_eq!(
                verifier.verify(case, dest(), NOW),
                Err(CookieError::Malformed),
                "{case:?}"
            );
        }
    }

    #[test]
    fn eviction_floor_refuses_old_replay_still_in_window() {
        let key = key(1, 7);
        let mut verifier = verifier(2);
        let oldest = sign(&key, dest(), NOW - 3, nonce(1));
        assert_eq!(verifier.verify(&oldest, dest(), NOW), Ok(1));
        assert_eq!(
            verifier.verify(&sign(&key, dest(), NOW - 2, nonce(2)), dest(), NOW),
            Ok(1)
        );
        // Full: this one pushes out the oldest and raises the floor to it.
        assert_eq!(
            verifier.verify(&sign(&key, dest(), NOW - 1, nonce(3)), dest(), NOW),
            Ok(1)
        );
        assert_eq!(verifier.replay_floor(), Some(NOW - 3));
        // The evicted cookie is still inside the window, yet refused.
        assert_eq!(
            verifier.verify(&oldest, dest(), NOW),
            Err(CookieError::Replayed)
        );
        // The price: a fresh cookie stamped at the floor is refused too.
        assert_eq!(
            verifier.verify(&sign(&key, dest(), NOW - 3, nonce(4)), dest(), NOW),
            Err(CookieError::Replayed)
        );
        assert_eq!(
            verifier.verify(&sign(&key, dest(), NOW, nonce(5)), dest(), NOW),
            Ok(1)
        );
    }

    #[test]
    fn replay_cache_never_exceeds_its_capacity() {
        let key = key(1, 7);
        let mut verifier = verifier(4);
        for n in 0..100 {
            let now = NOW + u64::from(n);
            let cookie = sign(&key, dest(), now, nonce(n));
            assert_eq!(verifier.verify(&cookie, dest(), now), Ok(1), "cookie {n}");
            assert!(verifier.replay_len() <= 4);
        }
        assert_eq!(verifier.replay_len(), 4);
    }

    #[test]
    fn zero_capacity_still_refuses_replays() {
        let cookie = sign(&key(1, 7), dest(), NOW, nonce(1));
        let mut verifier = verifier(0);
        assert_eq!(verifier.verify(&cookie, dest(), NOW), Ok(1));
        assert_eq!(verifier.replay_len(), 0);
        assert_eq!(
            verifier.verify(&cookie, dest(), NOW),
            Err(CookieError::Replayed)
        );
    }

    #[test]
    fn entries_leave_when_their_timestamp_leaves_the_window() {
        let key = key(1, 7);
        let mut verifier = verifier(8);
        let first = sign(&key, dest(), NOW, nonce(1));
        assert_eq!(verifier.verify(&first, dest(), NOW), Ok(1));
        let later = NOW + WINDOW + 1;
        assert_eq!(
            verifier.verify(&sign(&key, dest(), later, nonce(2)), dest(), later),
            Ok(1)
        );
        assert_eq!(verifier.replay_len(), 1, "the first entry was purged");
        assert_eq!(
            verifier.verify(&first, dest(), later),
            Err(CookieError::Expired {
                age_secs: WINDOW + 1
            })
        );
    }

    #[test]
    fn clock_stepping_back_does_not_reopen_a_replay() {
        let key = key(1, 7);
        let mut verifier = verifier(8);
        let first = sign(&key, dest(), NOW, nonce(1));
        assert_eq!(verifier.verify(&first, dest(), NOW), Ok(1));
        // The clock jumps ahead: the first entry is purged...
        let ahead = NOW + 10 * WINDOW;
        assert_eq!(
            verifier.verify(&sign(&key, dest(), ahead, nonce(2)), dest(), ahead),
            Ok(1)
        );
        // ...and back: the first cookie is in the window again, but refused.
        assert_eq!(
            verifier.verify(&first, dest(), NOW),
            Err(CookieError::Replayed)
        );
        assert_eq!(
            verifier.verify(&sign(&key, dest(), NOW + 1, nonce(3)), dest(), NOW + 1),
            Ok(1)
        );
    }

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(
            Key::new(3, vec![1; 15]).unwrap_err(),
            KeyError::SecretTooShort { id: 3, len: 15 }
        );
    }

    #[test]
    fn key_debug_shows_id_but_never_the_secret() {
        let key = Key::new(4, vec![0x41; 16]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("MASKED"), "{shown}");
        assert!(shown.contains('4'), "{shown}");
        assert!(!shown.contains("65"), "{shown}");
        let verifier = Verifier::new(vec![key], WINDOW, 8);
        assert!(!format!("{verifier:?}").contains("65"));
    }

    #[test]
    fn every_cookie_error_maps_to_not_authorized() {
        let all = [
            CookieError::Malformed,
            CookieError::UnknownKey(1),
            CookieError::BadMac,
            CookieError::Expired { age_secs: 1 },
            CookieError::FromFuture { ahead_secs: 1 },
            CookieError::Replayed,
        ];
        assert!(all
            .iter()
            .all(|e| e.error_code() == ErrorCode::NotAuthorized));
    }
}
