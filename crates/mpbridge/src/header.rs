//! Reading one Convert message (the request on the remote, the reply on
//! the local) off a socket: read until the codec says it is complete; the
//! bytes behind it are stream payload, handed back untouched.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use convert::{Decoded, Message};
use tokio::net::TcpStream;

/// Room for the largest Convert message (1020 bytes) plus payload that
/// arrived with it in the same segment.
const READ_BUF: usize = 4096;

/// Why no whole Convert message could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a valid Convert message.
    #[error("malformed Convert message: {0}")]
    Malformed(#[from] convert::DecodeError),
    /// The peer closed before the message was complete.
    #[error("the peer closed before a whole Convert message arrived")]
    Closed,
    /// Reading failed (reset...).
    #[error("reading the Convert message failed: {0}")]
    Io(io::Error),
}

/// Reads one Convert message; returns it with the payload that followed it.
pub async fn read_message(stream: &TcpStream) -> Result<(Message, Vec<u8>), ReadError> {
    let mut buf = vec![0u8; READ_BUF];
    let mut len = 0;
    loop {
        if let Decoded::Complete { message, used } = convert::decode(&buf[..len])? {
            return Ok((message, buf[used..len].to_vec()));
        }
        // The codec refuses anything longer than MAX_MESSAGE_LEN, far
        // below READ_BUF, before the buffer can fill.
        debug_assert!(len < buf.len());
        stream.readable().await.map_err(ReadError::Io)?;
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Seconds since the Unix epoch, the clock of cookie timestamps.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_message_sent_in_pieces_is_read_whole_and_its_payload_kept() {
        let (mut a, b) = pair().await;
        let mut bytes = Message::request("192.0.2.7:443".parse().unwrap(), None)
            .to_bytes()
            .unwrap();
        bytes.extend_from_slice(b"payload");
        // The reader keeps its socket until the writer is done.
        let reader = tokio::spawn(async move { (read_message(&b).await, b) });
        for chunk in bytes.chunks(3) {
            a.write_all(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (result, _b) = reader.await.unwrap();
        let (message, payload) = result.unwrap();
        assert_eq!(
            message.connect().unwrap().dest,
            "192.0.2.7:443".parse().unwrap()
        );
        // Whatever payload arrived with the header is handed back.
        assert!(b"payload".starts_with(&payload), "{payload:?}");
    }

    #[tokio::test]
    async fn a_peer_that_closes_early_or_sends_garbage_is_refused() {
        let (mut a, b) = pair().await;
        a.write_all(&[1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(read_message(&b).await, Err(ReadError::Closed)));

        let (mut a, b) = pair().await;
        a.write_all(&[9, 9, 9, 9]).await.unwrap();
        assert!(matches!(
            read_message(&b).await,
            Err(ReadError::Malformed(_))
        ));
    }
}
