//! The probe packet: 32 bytes, the same size both ways (so answering is no
//! amplification), authenticated with the pre-shared key. Pure: no sockets,
//! no clock.
//!
//! ```text
//!  0      2   3    4       5    6        8          12      16                32
//!  +------+---+----+-------+----+--------+----------+-------+-----------------+
//!  |magic |ver|kind|key id |view|reserved| session  |  seq  | MAC (16 bytes)  |
//!  +------+---+----+-------+----+--------+----------+-------+-----------------+
//! ```
//!
//! `view` is, in a request, the prober's verdict on the link (0 unknown, 1
//! up, 2 down), so that the remote follows it; senders before it existed
//! left the byte 0, and unknown values read as "unknown".
//!
//! `session` is chosen at random by each prober, so replies to an earlier
//! run (or to another link's prober) are not mistaken for its own. The MAC
//! is the first 16 bytes of HMAC-SHA256 over a context string and bytes
//! 0..16; a request and its reply differ in `kind`, so a request cannot be
//! reflected back as a reply.

use hmac::Mac;
use sha2::Sha256;

use super::LinkState;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Bytes in every probe packet.
pub const PACKET_LEN: usize = 32;
const MAGIC: [u8; 2] = *b"MP";
const VERSION: u8 = 1;
const SIGNED_LEN: usize = 16;
const MAC_LEN: usize = PACKET_LEN - SIGNED_LEN;
/// Domain separation: these MACs mean "mpbridge link probe, format 1" only.
const MAC_CONTEXT: &[u8] = b"mpbridge probe v1";

/// Request (local → remote) or reply (remote → local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request = 1,
    Reply = 2,
}

/// A probe as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub kind: Kind,
    pub key_id: u8,
    /// The sender's verdict on the link (requests; replies say Unknown).
    pub view: LinkState,
    pub session: u32,
    pub seq: u32,
}

/// Why a datagram is not a probe we answer or count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0} bytes, not a {PACKET_LEN}-byte probe")]
    Length(usize),
    #[error("not an mpbridge probe (bad magic or version)")]
    Format,
    #[error("unknown probe kind {0}")]
    Kind(u8),
    #[error("signed with key id {0}, which this side does not hold")]
    UnknownKey(u8),
    #[error("bad MAC (wrong key or altered)")]
    Mac,
}

/// A key probes are signed and checked with; `None` in [`Keys`] means
/// the operator chose `auth.mode = "none"`.
#[derive(Clone)]
pub struct ProbeKey {
    id: u8,
    mac: HmacSha256,
}

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProbeKey({})", self.id)
    }
}

impl ProbeKey {
    pub fn new(id: u8, secret: &[u8]) -> ProbeKey {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(MAC_CONTEXT);
        ProbeKey { id, mac }
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    fn tag(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; MAC_LEN];
        tag.copy_from_slice(&full[..MAC_LEN]);
        tag
    }
}

impl Probe {
    /// The packet, signed with `key` (unsigned, MAC all zero, without one).
    pub fn encode(&self, key: Option<&ProbeKey>) -> [u8; PACKET_LEN] {
        let mut out = [0; PACKET_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = self.kind as u8;
        out[4] = key.map_or(0, ProbeKey::id);
        out[5] = match self.view {
            LinkState::Unknown => 0,
            LinkState::Up => 1,
            LinkState::Down => 2,
        };
        out[8..12].copy_from_slice(&self.session.to_be_bytes());
        out[12..16].copy_from_slice(&self.seq.to_be_bytes());
        if let Some(key) = key {
            let tag = key.tag(&out[..SIGNED_LEN]);
            out[SIGNED_LEN..].copy_from_slice(&tag);
        }
        out
    }

    /// Parses and authenticates `packet` against `keys` (by key id); with
    /// no keys at all, only the format is checked.
    pub fn decode(packet: &[u8], keys: &[ProbeKey]) -> Result<Probe, ProbeError> {
        if packet.len() != PACKET_LEN {
            return Err(ProbeError::Length(packet.len()));
        }
        if packet[0..2] != MAGIC || packet[2] != VERSION {
            return Err(ProbeError::Format);
        }
        let kind = match packet[3] {
            1 => Kind::Request,
            2 => Kind::Reply,
            other => return Err(ProbeError::Kind(other)),
        };
        let key_id = packet[4];
        if !keys.is_empty() {
            let key = keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or(ProbeError::UnknownKey(key_id))?;
            let expected = key.tag(&packet[..SIGNED_LEN]);
            // Constant time: the MAC is compared the way hmac's verify does.
            let mut diff = 0u8;
            for (a, b) in expected.iter().zip(&packet[SIGNED_LEN..]) {
                diff |= a ^ b;
            }
            if diff != 0 {
                return Err(ProbeError::Mac);
            }
        }
        let word = |at: usize| u32::from_be_bytes(packet[at..at + 4].try_into().expect("4 bytes"));
        let view = match packet[5] {
            1 => LinkState::Up,
            2 => LinkState::Down,
            _ => LinkState::Unknown,
        };
        Ok(Probe {
            kind,
            key_id,
            view,
            session: word(8),
            seq: word(12),
        })
    }

    /// The reply to this request.
    pub fn reply(&self) -> Probe {
        Probe {
            kind: Kind::Reply,
            view: LinkState::Unknown,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, fill: u8) -> ProbeKey {
        ProbeKey::new(id, &[fill; 32])
    }

    fn request() -> Probe {
        Probe {
            kind: Kind::Request,
            key_id: 7,
            view: LinkState::Down,
            session: 0xdead_beef,
            seq: 42,
        }
    }

    #[test]
    fn a_signed_probe_round_trips() {
        let k = key(7, 1);
        let bytes = request().encode(Some(&k));
        assert_eq!(bytes.len(), PACKET_LEN);
        assert_eq!(Probe::decode(&bytes, &[key(3, 9), k]), Ok(request()));
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let k = key(7, 1);
        let bytes = request().encode(Some(&k));
        for i in 0..PACKET_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x01;
            assert!(
                Probe::decode(&bad, std::slice::from_ref(&k)).is_err(),
                "byte {i} altered yet accepted"
            );
        }
    }

    #[test]
    fn a_wrong_key_with_the_same_id_is_refused() {
        let bytes = request().encode(Some(&key(7, 1)));
        assert_eq!(Probe::decode(&bytes, &[key(7, 2)]), Err(ProbeError::Mac));
    }

    #[test]
    fn an_unknown_key_id_is_refused() {
        let bytes = request().encode(Some(&key(7, 1)));
        assert_eq!(
            Probe::decode(&bytes, &[key(8, 1)]),
            Err(ProbeError::UnknownKey(7))
        );
    }

    #[test]
    fn the_senders_view_travels_and_unknown_values_read_as_unknown() {
        for view in [LinkState::Unknown, LinkState::Up, LinkState::Down] {
            let p = Probe { view, ..request() };
            assert_eq!(Probe::decode(&p.encode(None), &[]).unwrap().view, view);
        }
        let mut bytes = request().encode(None);
        bytes[5] = 9;
        assert_eq!(Probe::decode(&bytes, &[]).unwrap().view, LinkState::Unknown);
        // A sender that predates the byte leaves it 0: unknown.
        bytes[5] = 0;
        assert_eq!(Probe::decode(&bytes, &[]).unwrap().view, LinkState::Unknown);
        assert_eq!(request().reply().view, LinkState::Unknown);
    }

    #[test]
    fn a_request_cannot_pass_for_its_reply() {
        let k = key(7, 1);
        let mut bytes = request().encode(Some(&k));
        bytes[3] = Kind::Reply as u8; // flip the kind, keep the MAC
        assert_eq!(Probe::decode(&bytes, &[k]), Err(ProbeError::Mac));
    }

    #[test]
    fn wrong_sizes_and_foreign_packets_are_refused() {
        let k = key(7, 1);
        let bytes = request().encode(Some(&k));
        assert_eq!(
            Probe::decode(&bytes[..31], std::slice::from_ref(&k)),
            Err(ProbeError::Length(31))
        );
        assert_eq!(
            Probe::decode(&[0; 40], std::slice::from_ref(&k)),
            Err(ProbeError::Length(40))
        );
        assert_eq!(
            Probe::decode(&[0; PACKET_LEN], std::slice::from_ref(&k)),
            Err(ProbeError::Format)
        );
        let mut odd = bytes;
        odd[3] = 9;
        assert_eq!(Probe::decode(&odd, &[k]), Err(ProbeError::Kind(9)));
    }

    #[test]
    fn unauthenticated_mode_checks_only_the_format() {
        let bytes = request().encode(None);
        assert_eq!(bytes[16..], [0; 16]);
        let decoded = Probe::decode(&bytes, &[]).unwrap();
        assert_eq!(decoded.seq, 42);
        assert_eq!(decoded.key_id, 0);
    }
}
