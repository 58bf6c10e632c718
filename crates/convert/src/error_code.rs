//! The error codes an Error TLV carries (RFC 8803 §4.2.7, IANA "Convert
//! Errors" registry), with their numbers and the names the RFC gives them.
//! Codes the RFC does not define travel unchanged as [`ErrorCode::Other`].

use std::fmt;

/// An RFC 8803 error code.
///
/// The registry splits the space by who is at fault: 0–31 message
/// validation, 32–63 the client, 64–95 the converter, 96–127 the
/// destination server; 192–255 are for private use.
///
/// Convert with [`From<u8>`] and `u8::from`. [`ErrorCode::Other`] is only
/// produced for numbers without a named variant; `Other(1)` would encode
/// as 1 and decode back as [`ErrorCode::MalformedMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: the converter does not speak the message's version.
    UnsupportedVersion,
    /// 1: the message breaks the wire format (lengths, magic, padding).
    MalformedMessage,
    /// 2: the message carries a TLV type the receiver does not know.
    UnsupportedMessage,
    /// 3: the converter requires a Cookie TLV and none was sent.
    MissingCookie,
    /// 32: the client is not allowed to use the converter (bad cookie).
    NotAuthorized,
    /// 33: a TCP option the client asked for is not supported.
    UnsupportedTcpOption,
    /// 64: the converter is out of resources (connections, memory).
    ResourceExceeded,
    /// 65: the converter's network failed while serving the request.
    NetworkFailure,
    /// 96: the destination reset the connection.
    ConnectionReset,
    /// 97: the destination could not be reached.
    DestinationUnreachable,
    /// A code this crate has no name for (unassigned or private use).
    Other(u8),
}

impl From<u8> for ErrorCode {
    fn from(code: u8) -> Self {
        match code {
            0 => ErrorCode::UnsupportedVersion,
            1 => ErrorCode::MalformedMessage,
            2 => ErrorCode::UnsupportedMessage,
            3 => ErrorCode::MissingCookie,
            32 => ErrorCode::NotAuthorized,
            33 => ErrorCode::UnsupportedTcpOption,
            64 => ErrorCode::ResourceExceeded,
            65 => ErrorCode::NetworkFailure,
            96 => ErrorCode::ConnectionReset,
            97 => ErrorCode::DestinationUnreachable,
            other => ErrorCode::Other(other),
        }
    }
}

impl From<ErrorCode> for u8 {
    fn from(code: ErrorCode) -> u8 {
        match code {
            ErrorCode::UnsupportedVersion => 0,
            ErrorCode::MalformedMessage => 1,
            ErrorCode::UnsupportedMessage => 2,
            ErrorCode::MissingCookie => 3,
            ErrorCode::NotAuthorized => 32,
            ErrorCode::UnsupportedTcpOption => 33,
            ErrorCode::ResourceExceeded => 64,
            ErrorCode::NetworkFailure => 65,
            ErrorCode::ConnectionReset => 96,
            ErrorCode::DestinationUnreachable => 97,
            ErrorCode::Other(other) => other,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorCode::UnsupportedVersion => "Unsupported Version",
            ErrorCode::MalformedMessage => "Malformed Message",
            ErrorCode::UnsupportedMessage => "Unsupported Message",
            ErrorCode::MissingCookie => "Missing Cookie",
            ErrorCode::NotAuthorized => "Not Authorized",
            ErrorCode::UnsupportedTcpOption => "Unsupported TCP Option",
            ErrorCode::ResourceExceeded => "Resource Exceeded",
            ErrorCode::NetworkFailure => "Network Failure",
            ErrorCode::ConnectionReset => "Connection Reset",
            ErrorCode::DestinationUnreachable => "Destination Unreachable",
            ErrorCode::Other(code) if *code >= 192 => {
                return write!(f, "private-use error {code}");
            }
            ErrorCode::Other(code) => return write!(f, "unassigned error {code}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_codes_have_the_rfc_numbers() {
        let table = [
            (ErrorCode::UnsupportedVersion, 0, "Unsupported Version"),
            (ErrorCode::MalformedMessage, 1, "Malformed Message"),
            (ErrorCode::UnsupportedMessage, 2, "Unsupported Message"),
            (ErrorCode::MissingCookie, 3, "Missing Cookie"),
            (ErrorCode::NotAuthorized, 32, "Not Authorized"),
            (
                ErrorCode::UnsupportedTcpOption,
                33,
                "Unsupported TCP Option",
            ),
            (ErrorCode::ResourceExceeded, 64, "Resource Exceeded"),
            (ErrorCode::NetworkFailure, 65, "Network Failure"),
            (ErrorCode::ConnectionReset, 96, "Connection Reset"),
            (
                ErrorCode::DestinationUnreachable,
                97,
                "Destination Unreachable",
            ),
        ];
        assert!(!table.is_empty());
        for (code, number, name) in table {
            assert_eq!(u8::from(code), number);
            assert_eq!(ErrorCode::from(number), code);
            assert_eq!(code.to_string(), name);
        }
    }

    #[test]
    fn every_byte_round_trips_through_error_code() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(ErrorCode::from(n)), n);
        }
    }

    #[test]
    fn unnamed_codes_display_their_number() {
        assert_eq!(ErrorCode::from(4).to_string(), "unassigned error 4");
        assert_eq!(ErrorCode::from(200).to_string(), "private-use error 200");
    }
}
