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

/// Whether the message is likely in the socket already when the read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It rode in the SYN (TCP Fast Open: the request on the remote): read
    /// at once. Waiting first for readiness would cost a turn of the
    /// reactor (an epoll_wait, a wake-up and a second poll of the task) per
    /// connection, as a socket tokio has just registered counts as not
    /// readable until epoll says so.
    Already,
    /// It comes a round trip later (the reply on the local): wait for
    /// readiness first, as a read now would only fail with EAGAIN.
    Later,
}

/// Reads one Convert message; returns it with the payload that followed it.
pub async fn read_message(
    stream: &TcpStream,
    arrival: Arrival,
) -> Result<(Message, Vec<u8>), ReadError> {
    let mut buf = vec![0u8; READ_BUF];
    let mut len = 0;
    if arrival == Arrival::Already {
        // Past tokio: its `try_read` says WouldBlock without asking the
        // kernel until epoll has reported the socket readable. A read that
        // finds nothing leaves the edge to come for `readable` below.
        match rustix::net::recv(stream, &mut buf, rustix::net::RecvFlags::empty()) {
            Ok((0, _)) => return Err(ReadError::Closed),
            Ok((n, _)) => len = n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ReadError::Io(e.into())),
        }
    }
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
    use std::future::Future;
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
        let reader = tokio::spawn(async move { (read_message(&b, Arrival::Later).await, b) });
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

    /// A request that came with the SYN is read in the task's first poll,
    /// without a turn of the reactor.
    #[tokio::test]
    async fn a_message_already_in_the_socket_is_read_in_the_first_poll() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut bytes = Message::request("192.0.2.7:443".parse().unwrap(), None)
            .to_bytes()
            .unwrap();
        bytes.extend_from_slice(b"payload");
        std::io::Write::write_all(&mut a, &bytes).unwrap();
        let (b, _) = listener.accept().unwrap();
        // Everything has arrived before tokio sees the socket.
        let mut peek = vec![0u8; bytes.len()];
        while b.peek(&mut peek).unwrap() < bytes.len() {}
        b.set_nonblocking(true).unwrap();
        let b = TcpStream::from_std(b).unwrap();
        let mut read = std::pin::pin!(read_message(&b, Arrival::Already));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
        let std::task::Poll::Ready(Ok((message, payload))) = first else {
            panic!("not read in the first poll: {first:?}");
        };
        assert_eq!(
            message.connect().unwrap().dest,
            "192.0.2.7:443".parse().unwrap()
        );
        assert_eq!(payload, b"payload");
    }

    #[tokio::test]
    async fn a_peer_that_closes_early_or_sends_garbage_is_refused() {
        let (mut a, b) = pair().await;
        a.write_all(&[1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_message(&b, Arrival::Later).await,
            Err(ReadError::Closed)
        ));

        let (mut a, b) = pair().await;
        a.write_all(&[9, 9, 9, 9]).await.unwrap();
        assert!(matches!(
            read_message(&b, Arrival::Later).await,
            Err(ReadError::Malformed(_))
        ));
    }
}
