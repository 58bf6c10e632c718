//! The RFC 8803 "0-RTT TCP Convert Protocol" wire format, and the cookie
//! that mpbridge puts in its Cookie TLV to prove a request comes from a
//! peer holding the pre-shared key.
//!
//! This crate does no I/O: no sockets, no clock, no randomness. The caller
//! hands it bytes, the current time and fresh nonces; it answers with
//! values, "need more bytes", or a typed error. It never panics on any
//! input, which the proptests and the fuzz targets in `fuzz/` check.
//!
//! # Wire format
//!
//! Every integer is big-endian. Every length counts 32-bit words and
//! includes the bytes of the header that carries it, so a length of 0 is
//! always malformed: this crate rejects one and never writes one.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Version = 1  | Total Length  |     Magic Number = 0x2263     |  fixed header
//! +---------------+---------------+-------------------------------+
//! |   TLV Type    |  TLV Length   |  TLV value ...                |  TLVs, one after
//! +---------------+---------------+                               +  the other, filling
//! /                    ... further TLVs ...                       /  Total Length exactly
//! +---------------------------------------------------------------+
//! |  TCP payload of the stream (not ours: left to the caller)     |
//! +---------------------------------------------------------------+
//!
//! TLV values (after the type and length bytes):
//!
//!   Info (1)                      length 1
//!     | zero (2 bytes, ignored on receipt) |
//!
//!   Connect (10)                  length >= 5
//!     | port (2) | address (16, IPv4 as ::ffff:a.b.c.d) | TCP options (4n) |
//!
//!   Extended TCP Header (20)      length >= 6
//!     | unassigned (2, ignored) | TCP header as returned (>= 20 bytes, 4n) |
//!
//!   Supported TCP Extensions (21) length >= 1
//!     | unassigned (2, ignored) | kind | kind | ... | zero padding (0-3) |
//!
//!   Cookie (22)                   length >= 1
//!     | zero (2, ignored) | opaque cookie (4n) |
//!
//!   Error (30)                    length >= 1
//!     | error code (1) | value (4n + 1 bytes, meaning depends on the code) |
//! ```
//!
//! A message is at most 255 words ([`MAX_MESSAGE_LEN`] bytes). Decoding
//! maps IPv4-mapped addresses back to [`std::net::SocketAddr::V4`], and
//! ignores the two reserved bytes of Info, Extended TCP Header, Supported
//! TCP Extensions and Cookie, as RFC 8803 asks; encoding writes them as
//! zero. So `encode(decode(bytes))` equals `bytes` everywhere except in
//! those reserved bytes (the `decode` fuzz target checks exactly that).
//!
//! # Example
//!
//! ```
//! use convert::{decode, Decoded, ErrorCode, Message};
//!
//! let dest = "192.0.2.1:443".parse().unwrap();
//! let mut stream = Message::request(dest, None).to_bytes().unwrap();
//! stream.extend_from_slice(b"GET / HTTP/1.1\r\n"); // client data after the header
//!
//! match decode(&stream) {
//!     Ok(Decoded::Complete { message, used }) => {
//!         assert_eq!(message.connect().map(|c| c.dest), Some(dest));
//!         assert_eq!(&stream[used..], b"GET / HTTP/1.1\r\n");
//!     }
//!     Ok(Decoded::NeedMore { total }) => { /* read until `total` bytes are buffered */ }
//!     Err(e) => {
//!         // Refuse with the RFC's code for it, then reset.
//!         let _reply = Message::reply_error(e.error_code());
//!     }
//! }
//! # let _ = ErrorCode::NotAuthorized;
//! ```
//!
//! # Layout
//!
//! - [`error_code`]: the RFC's error codes ([`ErrorCode`]) with their
//!   numbers and names.
//! - [`tlv`]: the six TLVs as values ([`Tlv`], [`Connect`], [`ErrorTlv`]),
//!   which lengths each type accepts, and how one TLV's value is written
//!   and read.
//! - [`message`]: [`Message`] (a list of TLVs), its encoder and
//!   [`EncodeError`], and constructors for the messages mpbridge sends.
//! - [`decode`](mod@decode): the incremental decoder ([`decode()`],
//!   [`Decoded`]) and [`DecodeError`], the one place that maps a decoding
//!   failure to an RFC error code.
//! - [`cookie`]: mpbridge's own Cookie TLV content: HMAC-SHA256 over the
//!   destination, a timestamp and a nonce; [`cookie::Verifier`] checks it
//!   and refuses replays with a bounded cache.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The "never panics on input" promise, checked by the compiler outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod cookie;
pub mod decode;
pub mod error_code;
pub mod message;
pub mod tlv;

#[cfg(test)]
mod proptests;

pub use decode::{decode, DecodeError, Decoded};
pub use error_code::ErrorCode;
pub use message::{EncodeError, Message};
pub use tlv::{Connect, ErrorTlv, Tlv};

/// The only Convert protocol version defined (RFC 8803 §4.1).
pub const VERSION: u8 = 1;

/// The magic number in bytes 2 and 3 of every Convert message.
pub const MAGIC: u16 = 0x2263;

/// Length of the fixed header: version, total length, magic number.
pub const HEADER_LEN: usize = 4;

/// One length unit on the wire: a 32-bit word.
pub const WORD: usize = 4;

/// The longest message the one-byte Total Length can describe: 255 words.
pub const MAX_MESSAGE_LEN: usize = 255 * WORD;
