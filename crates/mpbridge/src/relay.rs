//! The relay: moves bytes between two connected sockets, one pump per
//! direction. A direction starts by copying (read/write through a buffer on
//! the stack) and moves to `splice(2)` through a pipe (no copy into user
//! space) once a read fills the buffer, so short exchanges cost no pipe. It
//! propagates half-close (FIN) and reset (RST) and counts bytes.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use portable_atomic::{AtomicU64, Ordering};
use rustix::pipe::{PipeFlags, SpliceFlags};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::host::sys;

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
        #[cfg(test)]
        tests::PIPES_MADE.with(|n| n.set(n.get() + 1));
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

/// Reads of less than this are relayed by copying; the first read that
/// fills it moves the direction to splice(2). A short exchange (a request,
/// a reply) never creates a pipe: two pipes cost 4 descriptors and 4
/// syscalls per connection, more than copying a few kilobytes.
const COPY_CHUNK: usize = 16 * 1024;

/// Moves everything `src` sends to `dst` until `src` sends FIN, then closes
/// `dst` for writing. Returns the bytes moved.
pub async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe_size: usize,
    counter: &AtomicU64,
) -> Result<u64, PumpError> {
    let mut moved = 0u64;
    loop {
        match copy_some(src, dst, counter).await? {
            0 => {
                half_close(dst);
                return Ok(moved);
            }
            n => {
                moved += n as u64;
                if n == COPY_CHUNK {
                    break;
                }
            }
        }
    }
    // A read filled the whole chunk: bulk data, worth a pipe. That phase
    // lives on the heap: the future of a connection that never gets there
    // (most, and every idle one) holds only the small copying phase.
    Box::pin(splice_all(src, dst, pipe_size, counter, moved)).await
}

/// The splice phase of [`pump`], from its first full read on; `moved` is
/// what was relayed before. Returns the new total.
async fn splice_all(
    src: &TcpStream,
    dst: &TcpStream,
    pipe_size: usize,
    counter: &AtomicU64,
    mut moved: u64,
) -> Result<u64, PumpError> {
    let pipe = Pipe::new(pipe_size).map_err(PumpError::Pipe)?;
    let mut spliced = false;
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
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !spliced => {
                    // This pair of descriptors does not support splice.
                    return copy(src, dst, counter, moved).await;
                }
                Err(e) => return Err(PumpError::Read(e)),
            }
        };
        spliced = true;
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

/// The buffered relay of [`pump`], for good: for descriptors that refuse
/// splice. `moved` is what was relayed before; returns the new total.
async fn copy(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
    mut moved: u64,
) -> Result<u64, PumpError> {
    loop {
        match copy_some(src, dst, counter).await? {
            0 => {
                half_close(dst);
                return Ok(moved);
            }
            n => moved += n as u64,
        }
    }
}

/// Relays one read of at most [`COPY_CHUNK`] bytes from `src` to `dst`;
/// returns its length, 0 when `src` sent FIN.
async fn copy_some(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
) -> Result<usize, PumpError> {
    loop {
        src.readable().await.map_err(PumpError::Read)?;
        match read_and_forward(src, dst)? {
            Forwarded::Nothing => continue,
            Forwarded::Read { len, rest } => {
                if let Some(rest) = rest {
                    // Rare (`dst` full): on the heap, so that the future of
                    // every connection does not carry room for it.
                    Box::pin(write_all(dst, &rest))
                        .await
                        .map_err(PumpError::Write)?;
                }
                counter.fetch_add(len as u64, Ordering::Relaxed);
                return Ok(len);
            }
        }
    }
}

/// What [`read_and_forward`] did.
enum Forwarded {
    /// The socket had nothing after all (its readiness is cleared).
    Nothing,
    /// `len` bytes were read (0: FIN); `rest` is what `dst` did not take yet.
    Read { len: usize, rest: Option<Vec<u8>> },
}

/// One read from `src` and as much of it as `dst` takes at once. The
/// buffer lives on this (synchronous) stack, not in the connection's
/// future: an idle connection holds no buffer. recv(2) steps over TCP
/// urgent data as a receiver without SO_OOBINLINE does.
fn read_and_forward(src: &TcpStream, dst: &TcpStream) -> Result<Forwarded, PumpError> {
    let mut buf = [0u8; COPY_CHUNK];
    let len = match src.try_read(&mut buf) {
        Ok(len) => len,
        Err(e) if would_block(&e) => return Ok(Forwarded::Nothing),
        Err(e) => return Err(PumpError::Read(e)),
    };
    if len == 0 {
        return Ok(Forwarded::Read { len, rest: None });
    }
    let written = match dst.try_write(&buf[..len]) {
        Ok(n) => n,
        Err(e) if would_block(&e) => 0,
        Err(e) => return Err(PumpError::Write(e)),
    };
    let rest = (written < len).then(|| buf[written..len].to_vec());
    Ok(Forwarded::Read { len, rest })
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

    thread_local! {
        /// Pipes made on this thread: a current-thread test runtime runs
        /// its relays here.
        pub(super) static PIPES_MADE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

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

    /// What an open connection's relay keeps in memory, whatever it did:
    /// 1,240 bytes (debug build) when the splice phase and a partial
    /// write's wait were part of every connection's future.
    #[tokio::test]
    async fn a_relay_future_is_small() {
        let (_a, ia, ib, _b) = pairs().await;
        let counters = Counters::default();
        let relay = relay(&ia, &ib, 65536, &counters);
        let size = std::mem::size_of_val(&relay);
        assert!(size <= 704, "a relay's future takes {size} bytes");
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
        let moved = copy(&ia, &ib, &counter, 0).await.unwrap();
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
    /// a receiver without SO_OOBINLINE does, not wait for ever. Tried while
    /// the direction still copies and once it splices.
    #[tokio::test]
    async fn urgent_data_does_not_stall_the_relay() {
        for bulk_first in [false, true] {
            let (mut a, ia, ib, mut b) = pairs().await;
            let task = tokio::spawn(async move {
                let counters = Counters::default();
                relay(&ia, &ib, 65536, &counters).await
            });
            let limit = std::time::Duration::from_secs(5);
            if bulk_first {
                let bulk = vec![7u8; 4 * COPY_CHUNK];
                a.write_all(&bulk).await.unwrap();
                let mut got = vec![0u8; bulk.len()];
                b.read_exact(&mut got).await.unwrap();
                assert_eq!(got, bulk);
            }
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
            assert_eq!(got, b"ghi", "bulk first: {bulk_first}");
            b.shutdown().await.unwrap();
            assert!(matches!(task.await.unwrap(), RelayEnd::Closed));
        }
    }

    /// A request and a reply smaller than a chunk are copied: no pipe is
    /// made, the bytes are counted and each FIN arrives as a FIN.
    #[tokio::test]
    async fn a_short_exchange_needs_no_pipe() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let counters = std::sync::Arc::new(Counters::default());
        let c2 = counters.clone();
        let before = PIPES_MADE.with(|n| n.get());
        // On this (current-thread) runtime the relay runs on this thread,
        // so PIPES_MADE counts its pipes only.
        let task = tokio::spawn(async move { relay(&ia, &ib, 65536, &c2).await });
        a.write_all(&[1u8; 1000]).await.unwrap();
        let mut request = [0u8; 1000];
        b.read_exact(&mut request).await.unwrap();
        b.write_all(&[2u8; 1000]).await.unwrap();
        b.shutdown().await.unwrap();
        let mut reply = Vec::new();
        a.read_to_end(&mut reply).await.unwrap(); // the server's FIN
        assert_eq!(reply, [2u8; 1000]);
        a.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap(); // the client's FIN
        assert!(rest.is_empty());
        assert!(matches!(task.await.unwrap(), RelayEnd::Closed));
        assert_eq!(counters.up.load(Ordering::Relaxed), 1000);
        assert_eq!(counters.down.load(Ordering::Relaxed), 1000);
        assert_eq!(PIPES_MADE.with(|n| n.get()) - before, 0, "a pipe was made");
    }

    /// A direction whose read fills a chunk gets its pipe; the other, quiet
    /// direction does not.
    #[tokio::test]
    async fn bulk_data_moves_its_direction_to_splice() {
        let (mut a, ia, ib, mut b) = pairs().await;
        let before = PIPES_MADE.with(|n| n.get());
        let task = tokio::spawn(async move {
            let counters = Counters::default();
            relay(&ia, &ib, 65536, &counters).await
        });
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&p2).await.unwrap();
            a.shutdown().await.unwrap();
            a
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload);
        b.shutdown().await.unwrap();
        drop(writer.await.unwrap());
        assert!(matches!(task.await.unwrap(), RelayEnd::Closed));
        assert_eq!(PIPES_MADE.with(|n| n.get()) - before, 1);
    }

    /// A destination that cannot take a chunk at once gets the rest later,
    /// in order.
    #[tokio::test]
    async fn a_slow_reader_gets_every_copied_byte_in_order() {
        let (mut a, ia, ib, mut b) = pairs().await;
        SockRef::from(&ib).set_send_buffer_size(4096).unwrap();
        let task = tokio::spawn(async move {
            let counters = Counters::default();
            relay(&ia, &ib, 65536, &counters).await
        });
        // Writes below a chunk each, with pauses, so the relay copies them.
        let writer = tokio::spawn(async move {
            for i in 0..200u32 {
                let piece: Vec<u8> = (0..COPY_CHUNK as u32 / 2).map(|j| (i + j) as u8).collect();
                a.write_all(&piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            a.shutdown().await.unwrap();
            a
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let expected: Vec<u8> = (0..200u32)
            .flat_map(|i| (0..COPY_CHUNK as u32 / 2).map(move |j| (i + j) as u8))
            .collect();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes out of order or changed");
        b.shutdown().await.unwrap();
        drop(writer.await.unwrap());
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
