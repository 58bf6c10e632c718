//! The relay: moves bytes between two connected sockets with `splice(2)`
//! through a pipe (no copy into user space), one pump per direction. It
//! propagates half-close (FIN) and reset (RST) and counts bytes.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use portable_atomic::{AtomicU64, Ordering};
use rustix::pipe::{PipeFlags, SpliceFlags};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::sys;

/// How one direction of a relay failed.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// Reading the source failed: it was reset, or the kernel refused.
    #[error("reading from the source failed: {0}")]
    Read(io::Error),
    /// Writing the destination failed: it was reset or closed for writing.
    #[error("writing to the destination failed: {0}")]
    Write(io::Error),
    /// The pipe between them could not be created.
    #[error("cannot create a splice pipe: {0}")]
    Pipe(io::Error),
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides sent FIN, every byte delivered.
    Closed,
    /// One side failed; both sockets were armed to send RST on close.
    Reset(PumpError),
}

/// Byte counters of one relayed connection; shared with whoever reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes from the client side towards the destination.
    pub up: AtomicU64,
    /// Bytes from the destination back to the client.
    pub down: AtomicU64,
}

/// A pipe used as the splice buffer of one direction.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // The kernel may refuse a size above fs.pipe-max-size for unprivileged
        // users; the default (64 KiB) still works, only slower.
        let capacity = rustix::pipe::fcntl_setpipe_size(&write, size).unwrap_or(65536);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// splice(2) from a TCP socket stops at urgent data (MSG_OOB): it reports
/// EAGAIN, or 0 once a FIN is queued, though data follows. recv(2) steps
/// over the urgent byte (dropped, as a receiver without SO_OOBINLINE never
/// sees it), so whenever splice finds nothing recv has the last word; what
/// it reads goes into the empty pipe. Returns the bytes now in the pipe.
fn recv_into_pipe(src: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    // At most PIPE_BUF bytes: written into an empty pipe whole, at once.
    let mut buf = [0u8; 4096];
    let (n, _) = rustix::net::recv(src, &mut buf[..], rustix::net::RecvFlags::DONTWAIT)?;
    if n > 0 && rustix::io::write(&pipe.write, &buf[..n])? != n {
        return Err(io::Error::other("a pipe took part of a PIPE_BUF write"));
    }
    Ok(n)
}

/// Closes `dst` for writing after `src` sent FIN. An already-gone peer is fine.
fn half_close(dst: &TcpStream) {
    let _ = SockRef::from(dst).shutdown(Shutdown::Write);
}

/// Moves everything `src` sends to `dst` until `src` sends FIN, then closes
/// `dst` for writing. Returns the bytes moved.
pub async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe_size: usize,
    counter: &AtomicU64,
) -> Result<u64, PumpError> {
    let pipe = Pipe::new(pipe_size).map_err(PumpError::Pipe)?;
    let mut moved = 0u64;
    loop {
        // Fill the pipe only when it is empty: then EAGAIN can only mean "the
        // socket has nothing", never "the pipe is full", so the readiness
        // tokio clears on EAGAIN is the socket's true state.
        let got = loop {
            match src.try_io(Interest::READABLE, || {
                match rustix::pipe::splice(
                    src,
                    None,
                    &pipe.write,
                    None,
                    pipe.capacity,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                ) {
                    Ok(0) | Err(rustix::io::Errno::AGAIN) => recv_into_pipe(src, &pipe),
                    other => other.map_err(io::Error::from),
                }
            }) {
                Ok(n) => break n,
                Err(e) if would_block(&e) => src.readable().await.map_err(PumpError::Read)?,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && moved == 0 => {
                    // This pair of descriptors does not support splice.
                    return copy(src, dst, counter).await;
                }
                Err(e) => return Err(PumpError::Read(e)),
            }
        };
        if got == 0 {
            half_close(dst);
            return Ok(moved);
        }
        let mut held = got;
        while held > 0 {
            match dst.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(
                    &pipe.read,
                    None,
                    dst,
                    None,
                    held,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )
                .map_err(io::Error::from)
            }) {
                Ok(0) => return Err(PumpError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    held -= n;
                    moved += n as u64;
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if would_block(&e) => dst.writable().await.map_err(PumpError::Write)?,
                Err(e) => return Err(PumpError::Write(e)),
            }
        }
    }
}

/// The buffered fallback of [`pump`] for descriptors that refuse splice.
async fn copy(src: &TcpStream, dst: &TcpStream, counter: &AtomicU64) -> Result<u64, PumpError> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut moved = 0u64;
    loop {
        src.readable().await.map_err(PumpError::Read)?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => {
                half_close(dst);
                return Ok(moved);
            }
            Ok(n) => n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        write_all(dst, &buf[..n]).await.map_err(PumpError::Write)?;
        moved += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Writes all of `data` to a socket shared by reference with other tasks.
pub async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Relays both directions between `client` and `server` until both have
/// sent FIN, or until one fails; then both sockets are armed to reset.
pub async fn relay(
    client: &TcpStream,
    server: &TcpStream,
    pipe_size: usize,
    counters: &Counters,
) -> RelayEnd {
    let up = pump(client, server, pipe_size, &counters.up);
    let down = pump(server, client, pipe_size, &counters.down);
    finish(client, server, tokio::try_join!(up, down).map(|_| ()))
}

/// Arms a socket to send RST when it is closed, unless disarmed first. A
/// connection task dropped before its relay ended (drain deadline, panic)
/// must not end either side with a FIN, which would pass a truncated
/// transfer off as a whole one.
pub struct ResetOnDrop<'a> {
    stream: &'a TcpStream,
    armed: bool,
}

impl<'a> ResetOnDrop<'a> {
    /// Guards `stream`; drop the guard before the stream (declare it after).
    pub fn new(stream: &'a TcpStream) -> ResetOnDrop<'a> {
        ResetOnDrop {
            stream,
            armed: true,
        }
    }

    /// The relay ended as it should: close as the relay decided.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            sys::arm_reset(self.stream);
        }
    }
}

/// Turns the result of both pumps into a [`RelayEnd`], arming resets on failure.
pub fn finish(a: &TcpStream, b: &TcpStream, result: Result<(), PumpError>) -> RelayEnd {
    match result {
        Ok(()) => RelayEnd::Closed,
        Err(e) => {
            sys::arm_reset(a);
            sys::arm_reset(b);
            RelayEnd::Reset(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected pairs: (outer_a, inner_a) and (inner_b, outer_b); the
    /// relay runs between the inner ends.
    async fn pairs() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let outer_a = TcpStream::connect(addr).await.unwrap();
        let (inner_a, _) = l.accept().await.unwrap();
        let inner_b = TcpStream::connect(addr).await.unwrap();
        let (outer_b, _) = l.accept().await.unwrap();
        (outer_a, inner_a, inner_b, outer_b)
    }

    #[tokio::test]
    async fn relays_both_ways_and_propagates_half_close() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let counters = std::sync::Arc::new(Counters::default());
        let c2 = counters.clone();
        let task = tokio::spawn(async move { relay(&ia, &ib, 65536, &c2).await });

        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&p2).await.unwrap();
            a.shutdown().await.unwrap(); // half-close: a keeps reading
            let mut reply = Vec::new();
            a.read_to_end(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap(); // ends at the relayed FIN
        assert_eq!(got, payload);
        b.write_all(b"reply after the client's FIN").await.unwrap();
        b.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply after the client's FIN");
        assert!(matches!(task.await.unwrap(), RelayEnd::Closed));
        assert_eq!(counters.up.load(Ordering::Relaxed), payload.len() as u64);
        assert_eq!(counters.down.load(Ordering::Relaxed), 28);
    }

    #[tokio::test]
    async fn the_buffered_fallback_moves_everything_and_half_closes() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let counter = AtomicU64::new(0);
        let payload: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&p2).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let moved = copy(&ia, &ib, &counter).await.unwrap();
        writer.await.unwrap();
        assert_eq!(reader.await.unwrap(), payload);
        assert_eq!(moved, payload.len() as u64);
        assert_eq!(counter.load(Ordering::Relaxed), moved);
    }

    #[tokio::test]
    async fn a_relay_task_dropped_midway_resets_both_sides() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let task = tokio::spawn(async move {
            let _ia_guard = ResetOnDrop::new(&ia);
            let _ib_guard = ResetOnDrop::new(&ib);
            let counters = Counters::default();
            relay(&ia, &ib, 65536, &counters).await
        });
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        task.abort(); // as the drain deadline does
        assert!(task.await.unwrap_err().is_cancelled());
        for side in [&mut a, &mut b] {
            let err = side.read(&mut buf).await.expect_err("a reset, not EOF");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        }
    }

    /// splice(2) stops at TCP urgent data: the relay must step over it, as
    /// a receiver without SO_OOBINLINE does, not wait for ever.
    #[tokio::test]
    async fn urgent_data_does_not_stall_the_relay() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let task = tokio::spawn(async move {
            let counters = Counters::default();
            relay(&ia, &ib, 65536, &counters).await
        });
        let limit = std::time::Duration::from_secs(5);
        // Before a FIN splice reports EAGAIN at the urgent mark (a stall)...
        a.write_all(b"abc").await.unwrap();
        SockRef::from(&a).send_out_of_band(b"!").unwrap();
        a.write_all(b"def").await.unwrap();
        let mut got = [0u8; 6];
        tokio::time::timeout(limit, b.read_exact(&mut got))
            .await
            .expect("the relay stalled at the urgent byte")
            .unwrap();
        assert_eq!(&got, b"abcdef");
        // ...and once a FIN is in, 0: an early EOF that loses the rest.
        SockRef::from(&a).send_out_of_band(b"!").unwrap();
        a.write_all(b"ghi").await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(limit, b.read_to_end(&mut got))
            .await
            .expect("the relay stalled at the urgent byte")
            .unwrap();
        assert_eq!(got, b"ghi");
        b.shutdown().await.unwrap();
        assert!(matches!(task.await.unwrap(), RelayEnd::Closed));
    }

    #[tokio::test]
    async fn a_reset_on_one_side_resets_the_other() {
        let (a, ia, ib, mut b) = pairs().await;
        let task = tokio::spawn(async move {
            let counters = Counters::default();
            relay(&ia, &ib, 65536, &counters).await
        });
        sys::arm_reset(&a);
        drop(a); // RST towards the relay
        let end = task.await.unwrap();
        assert!(matches!(end, RelayEnd::Reset(_)), "{end:?}");
        let mut buf = [0u8; 16];
        let err = b
            .read(&mut buf)
            .await
            .expect_err("b must see a reset, not EOF");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
