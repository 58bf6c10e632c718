//! The daemon's control socket: created mode 0600 (a file left by a crashed
//! run is replaced, one a live daemon answers on is not), then served: one
//! JSON request per line, a cap on clients, a timeout on silence.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::protocol::{Request, RequestError, Response, MAX_REQUEST};
use crate::ratelimit::LogLimit;
use crate::server::{accept_bounded, Bounds};
use crate::warn_limited;

/// Control clients served at once; more are answered `busy` and closed.
pub const MAX_CLIENTS: usize = 8;
/// How long a client may stay silent (before its first request, or
/// between two) before it is closed. `--watch` asks every second.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read an answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

static MALFORMED: LogLimit = LogLimit::refusals();
static BUSY: LogLimit = LogLimit::refusals();

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A running daemon answers on the socket: it is not taken from it.
    #[error(
        "another mpbridge answers on the control socket {0}: stop it first, or give this one \
         another control_socket"
    )]
    InUse(PathBuf),
    /// Something that is not a socket sits where the socket goes.
    #[error("{0} exists and is not a socket: remove it, or choose another control_socket")]
    NotASocket(PathBuf),
    /// The directory, the socket or its file could not be made.
    #[error("cannot create the control socket {0}: {1}")]
    Create(PathBuf, io::Error),
    /// The metrics endpoint's address could not be bound (feature `metrics`).
    #[error("cannot listen on {0}: {1}")]
    Metrics(std::net::SocketAddr, io::Error),
}

/// A bound control socket; dropping it removes its file (if it is still
/// the one this process made).
#[derive(Debug)]
pub struct Bound {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// Device and inode of the file this process made.
    made: (u64, u64),
    /// How long a client may stay silent.
    idle: Duration,
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.listener = None;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.made {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Bound {
    /// Creates the socket at `path` (mode 0600; its directory, if missing,
    /// mode 0700). A socket file nobody answers on is replaced. Must run
    /// inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Bound, ControlError> {
        let create = |e| ControlError::Create(path.to_owned(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(create)?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => return Err(ControlError::InUse(path.to_owned())),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        std::fs::remove_file(path).map_err(create)?;
                        tracing::info!(path = %path.display(), "replaced the control socket left by an earlier run");
                    }
                    Err(e) => return Err(create(e)),
                }
            }
            Ok(_) => return Err(ControlError::NotASocket(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(create(e)),
        }
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .map_err(create)?;
        // The file takes the socket's mode when bound: 0600 from the start.
        crate::host::sys::fchmod(&socket, 0o600).map_err(create)?;
        let addr = socket2::SockAddr::unix(path).map_err(create)?;
        match socket.bind(&addr) {
            Ok(()) => {}
            // Another daemon bound it since we looked.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(ControlError::InUse(path.to_owned()))
            }
            Err(e) => return Err(create(e)),
        }
        let meta = std::fs::symlink_metadata(path).map_err(create)?;
        let bound = |socket: socket2::Socket| -> io::Result<UnixListener> {
            use std::os::unix::fs::PermissionsExt;
            // Also where fchmod did not carry over to the file.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            socket.listen(16)?;
            socket.set_nonblocking(true)?;
            UnixListener::from_std(socket.into())
        };
        let made = (meta.dev(), meta.ino());
        let listener = bound(socket).map_err(|e| {
            let _ = std::fs::remove_file(path);
            create(e)
        })?;
        Ok(Bound {
            listener: Some(listener),
            path: path.to_owned(),
            made,
            idle: IDLE_TIMEOUT,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until the returned future is dropped; `answer`
    /// turns a request into its response.
    pub async fn serve<A, F>(mut self, answer: A)
    where
        A: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Response> + Send,
    {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let answer = Arc::new(answer);
        let idle = self.idle;
        let bounds = Bounds {
            what: "control socket",
            max: MAX_CLIENTS,
            drain: Duration::ZERO,
        };
        let handle = |stream, permit| {
            let answer = Arc::clone(&answer);
            async move {
                serve_client(stream, answer.as_ref(), idle).await;
                drop(permit);
            }
        };
        let refuse = |stream, tasks: &mut tokio::task::JoinSet<()>| {
            warn_limited!(
                BUSY,
                limit = MAX_CLIENTS,
                "control client refused: too many at once"
            );
            tasks.spawn(refuse_busy(stream));
        };
        // Until dropped: the daemon aborts it at teardown.
        let forever = std::future::pending();
        accept_bounded(vec![listener], bounds, forever, handle, refuse).await;
    }
}

/// Tells a client over the cap that the daemon is busy, and closes.
async fn refuse_busy(mut stream: UnixStream) {
    let line = Response::error(&RequestError::Busy).encode();
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await;
}

/// What reading one request line gave.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (its newline removed), or the last bytes before EOF.
    Request(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
    /// The client closed.
    Closed,
}

async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> io::Result<Line> {
    let mut buf = Vec::new();
    let n = reader
        .take(MAX_REQUEST as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(Line::Closed);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Request(buf));
    }
    if buf.len() > MAX_REQUEST {
        return Ok(Line::TooLong);
    }
    // The client closed after a line without a newline: answer it still.
    Ok(Line::Request(buf))
}

/// Answers one client's requests until it closes, goes silent for `idle`,
/// stops reading, or sends an over-long line.
async fn serve_client<A, F>(stream: UnixStream, answer: &A, idle: Duration)
where
    A: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let line = match tokio::time::timeout(idle, read_line(&mut reader)).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) | Err(_) => return, // an error, or silence: close
        };
        let (response, last) = match line {
            Line::Closed => return,
            Line::TooLong => {
                let e = RequestError::Malformed(format!("longer than {MAX_REQUEST} bytes"));
                warn_limited!(MALFORMED, "control request refused: {e}");
                (Response::error(&e), true)
            }
            Line::Request(bytes) => match Request::parse(&bytes) {
                Ok(request) => (answer(request).await, false),
                Err(e) => {
                    warn_limited!(MALFORMED, "control request refused: {e}");
                    (Response::error(&e), false)
                }
            },
        };
        let line = response.encode();
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(line.as_bytes())).await {
            Ok(Ok(())) if !last => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::control::protocol::{ErrorKind, Status, Totals, VERSION};
    use std::io::{BufRead, Read, Write};
    use std::os::unix::fs::PermissionsExt;

    /// A directory of its own under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("mpbridge-control-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn status() -> Status {
        Status {
            mode: Role::Local,
            pid: 1,
            daemon_version: "0".into(),
            uptime_secs: 0,
            links: Vec::new(),
            totals: Totals::default(),
            connections: Vec::new(),
            connections_omitted: 0,
            subflows_unavailable: None,
        }
    }

    /// A runtime of its own threads, on which the test's server runs while
    /// the test talks to it with blocking sockets.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Binds `path` on `rt` (whose reactor then serves it).
    fn bind_on(rt: &tokio::runtime::Runtime, path: &Path) -> Result<Bound, ControlError> {
        let _guard = rt.enter();
        Bound::bind(path)
    }

    /// Binds and serves `path` with `idle` as the silence allowed.
    fn serve_in_background(path: &Path, idle: Duration) -> tokio::runtime::Runtime {
        let rt = runtime();
        let mut bound = bind_on(&rt, path).unwrap();
        bound.idle = idle;
        rt.spawn(bound.serve(|_| async { Response::status(status()) }));
        rt
    }

    fn ask(stream: &mut std::os::unix::net::UnixStream, line: &[u8]) -> Response {
        stream.write_all(line).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }

    #[test]
    fn the_socket_is_private_answers_requests_and_errors_and_goes_on_drop() {
        let dir = TempDir::new("serve");
        let path = dir.0.join("sub/local.sock");
        let rt = runtime();
        let bound = bind_on(&rt, &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let task = rt.spawn(bound.serve(|_| async { Response::status(status()) }));

        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let answer = ask(&mut client, b"{\"version\":1,\"command\":\"status\"}\n");
        assert_eq!(answer.version, VERSION);
        assert_eq!(answer.status.unwrap().mode, Role::Local);
        // A malformed line gets an error, and the connection goes on.
        let answer = ask(&mut client, b"{not json\n");
        assert_eq!(answer.error.unwrap().kind, ErrorKind::Malformed);
        let answer = ask(&mut client, b"{\"version\":9,\"command\":\"status\"}\n");
        assert_eq!(answer.error.unwrap().kind, ErrorKind::Version);
        // A last request without its newline is answered too.
        client
            .write_all(b"{\"version\":1,\"command\":\"status\"}")
            .unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        client.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("\"status\""), "{rest}");

        // Dropping the server removes the file.
        task.abort();
        drop(rt);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_but_a_live_one_is_not_taken() {
        let dir = TempDir::new("stale");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("remote.sock");
        // A socket file whose daemon died: nobody answers on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rt = serve_in_background(&path, IDLE_TIMEOUT);
        // A second daemon is refused and leaves the live one working.
        match bind_on(&runtime(), &path) {
            Err(ControlError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let answer = ask(&mut client, b"{\"version\":1,\"command\":\"status\"}\n");
        assert!(answer.status.is_some());
        drop(rt);

        // A regular file in its place is never removed.
        let file = dir.0.join("file.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(matches!(
            bind_on(&runtime(), &file),
            Err(ControlError::NotASocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
    }

    #[test]
    fn silent_clients_cannot_block_the_daemon_and_extra_ones_are_told_busy() {
        let dir = TempDir::new("busy");
        let path = dir.0.join("local.sock");
        let rt = serve_in_background(&path, Duration::from_millis(300));
        // MAX_CLIENTS clients connect and say nothing...
        let silent: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        // ...so one more is told the daemon is busy, at once.
        let mut extra = std::os::unix::net::UnixStream::connect(&path).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        extra.read_to_string(&mut answer).unwrap();
        let answer: Response = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer.error.unwrap().kind, ErrorKind::Busy);
        // The silent ones are closed after the idle timeout: the next
        // client is served again.
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut sink = Vec::new();
            assert_eq!(
                s.read_to_end(&mut sink).unwrap(),
                0,
                "closed without a word"
            );
        }
        let served = wait_for(Duration::from_secs(5), || {
            let Ok(mut c) = std::os::unix::net::UnixStream::connect(&path) else {
                return false;
            };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            ask(&mut c, b"{\"version\":1,\"command\":\"status\"}\n")
                .status
                .is_some()
        });
        assert!(served);
        drop(rt);
    }

    #[test]
    fn an_overlong_line_is_refused_and_the_connection_closed() {
        let dir = TempDir::new("long");
        let path = dir.0.join("local.sock");
        let rt = serve_in_background(&path, IDLE_TIMEOUT);
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(&vec![b'x'; MAX_REQUEST + 10]).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        let answer: Response = serde_json::from_str(answer.trim()).unwrap();
        assert!(answer.error.unwrap().message.contains("longer than"));
        drop(rt);
    }

    /// Polls `f` every 10 ms until it holds or `timeout` passes.
    fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f()
    }
}
