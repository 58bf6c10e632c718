//! `mpbridge status`: finds the control socket (the one given, else those
//! the config names, keeping the daemons that answer), asks for the state,
//! and prints it as a table or JSON, once or every second.

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::render;
use crate::config::{
    ConfigError, ConfigFile, Role, DEFAULT_LOCAL_CONTROL_SOCKET, DEFAULT_REMOTE_CONTROL_SOCKET,
    OPENWRT_LOCAL_CONTROL_SOCKET, OPENWRT_REMOTE_CONTROL_SOCKET,
};
use crate::control::protocol::{Request, Response, Status};

/// How long the daemon may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--watch` asks.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What `mpbridge status` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The control socket; else the config's (or the defaults).
    pub socket: Option<PathBuf>,
    /// Only this daemon; else whichever runs.
    pub mode: Option<Role>,
    /// The config file naming the sockets, and whether it was named on
    /// the command line (a missing default file means the defaults).
    pub config: PathBuf,
    pub config_explicit: bool,
    pub json: bool,
    pub watch: bool,
    /// The fastest connections to list; `None` lists all.
    pub limit: Option<usize>,
}

/// Why `mpbridge status` could not show a status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The config file that names the sockets is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// No daemon answers on any socket tried.
    #[error("{0}")]
    NotRunning(String),
    /// The socket exists but this user may not use it.
    #[error("{0}")]
    Permission(String),
    /// The daemon answered something this build does not understand, or
    /// refused the request.
    #[error("{0}")]
    Protocol(String),
    /// Writing the output failed.
    #[error("cannot write the status: {0}")]
    Output(io::Error),
}

/// A socket to ask, and which daemon should be behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub role: Option<Role>,
    pub path: PathBuf,
}

/// Why one socket gave no status.
#[derive(Debug)]
enum QueryError {
    Connect(io::Error),
    Io(io::Error),
    Protocol(String),
}

impl QueryError {
    fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            QueryError::Connect(e) => match e.kind() {
                io::ErrorKind::NotFound => format!("{path}: no such socket"),
                io::ErrorKind::ConnectionRefused => {
                    format!("{path}: nobody answers (left by a daemon that stopped)")
                }
                io::ErrorKind::PermissionDenied => {
                    format!("{path}: permission denied (the control socket is root only)")
                }
                _ => format!("{path}: {e}"),
            },
            QueryError::Io(e) => format!("{path}: {e}"),
            QueryError::Protocol(m) => format!("{path}: {m}"),
        }
    }
}

/// The sockets to try, in order.
pub fn targets(options: &Options) -> Result<Vec<Target>, StatusError> {
    if let Some(path) = &options.socket {
        return Ok(vec![Target {
            role: options.mode,
            path: path.clone(),
        }]);
    }
    let file = ConfigFile::read(&options.config, options.config_explicit)?;
    let sockets = file.control_sockets()?;
    let wanted = |role: &Role| options.mode.is_none_or(|m| m == *role);
    let mut off = Vec::new();
    let mut out = Vec::new();
    for (role, path) in sockets.into_iter().filter(|(r, _)| wanted(r)) {
        match path {
            Some(path) => out.push(Target {
                role: Some(role),
                path: openwrt_fallback(role, path),
            }),
            None => off.push(role.to_string()),
        }
    }
    if out.is_empty() {
        return Err(StatusError::NotRunning(format!(
            "{}: the control socket of `mpbridge {}` is turned off (control_socket = \"\")",
            options.config.display(),
            off.join("`, `mpbridge ")
        )));
    }
    Ok(out)
}

/// `role`'s default socket under /run, or its OpenWrt place under /var/run
/// (what `mpbridge uci` renders) when only that one exists: on the router
/// the config of `mpbridge status` (/etc/mpbridge/mpbridge.toml) is absent,
/// and OpenWrt 24.10 has no /run.
fn openwrt_fallback(role: Role, path: PathBuf) -> PathBuf {
    let (default, openwrt) = match role {
        Role::Local => (DEFAULT_LOCAL_CONTROL_SOCKET, OPENWRT_LOCAL_CONTROL_SOCKET),
        Role::Remote => (DEFAULT_REMOTE_CONTROL_SOCKET, OPENWRT_REMOTE_CONTROL_SOCKET),
    };
    if path != Path::new(default) {
        return path;
    }
    prefer_existing(path, Path::new(openwrt))
}

/// `first`, unless nothing is there and `second` exists.
fn prefer_existing(first: PathBuf, second: &Path) -> PathBuf {
    if first.symlink_metadata().is_err() && second.symlink_metadata().is_ok() {
        second.to_owned()
    } else {
        first
    }
}

/// A connection to one daemon's control socket.
struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    fn open(path: &Path) -> Result<Session, QueryError> {
        let stream = UnixStream::connect(path).map_err(QueryError::Connect)?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(QueryError::Io)?;
        stream
            .set_write_timeout(Some(ANSWER_TIMEOUT))
            .map_err(QueryError::Io)?;
        let writer = stream.try_clone().map_err(QueryError::Io)?;
        Ok(Session {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn ask(&mut self, request: &Request) -> Result<Status, QueryError> {
        self.writer
            .write_all(request.encode().as_bytes())
            .map_err(QueryError::Io)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(QueryError::Io)? == 0 {
            return Err(QueryError::Protocol(
                "the daemon closed without answering".into(),
            ));
        }
        let response: Response = serde_json::from_str(&line)
            .map_err(|e| QueryError::Protocol(format!("not an answer of this protocol: {e}")))?;
        if let Some(error) = response.error {
            return Err(QueryError::Protocol(format!(
                "the daemon refused the request ({}): {}",
                error.kind, error.message
            )));
        }
        response
            .status
            .ok_or_else(|| QueryError::Protocol("an answer with neither status nor error".into()))
    }
}

/// One status from `target`.
fn query(target: &Target, request: &Request) -> Result<Status, QueryError> {
    Session::open(&target.path)?.ask(request)
}

/// The error when no target answered: permission first, else every reason.
fn none_answered(failures: &[(Target, QueryError)]) -> StatusError {
    let reasons: Vec<String> = failures.iter().map(|(t, e)| e.describe(&t.path)).collect();
    let denied = failures.iter().any(
        |(_, e)| matches!(e, QueryError::Connect(e) if e.kind() == io::ErrorKind::PermissionDenied),
    );
    let protocol = failures
        .iter()
        .any(|(_, e)| matches!(e, QueryError::Protocol(_)));
    let text = reasons.join("; ");
    if denied {
        StatusError::Permission(format!("{text}: run it as root"))
    } else if protocol {
        StatusError::Protocol(text)
    } else {
        StatusError::NotRunning(format!("no mpbridge daemon answers: {text}"))
    }
}

/// Runs `mpbridge status`.
pub fn run(options: &Options) -> Result<(), StatusError> {
    let targets = targets(options)?;
    let request = Request::Status {
        limit: options.limit,
    };
    let colour =
        !options.json && io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if options.watch {
        return watch(options, &targets, &request, colour);
    }
    let mut answered = Vec::new();
    let mut failures = Vec::new();
    for target in &targets {
        match query(target, &request) {
            Ok(status) => answered.push(status),
            Err(e) => failures.push((target.clone(), e)),
        }
    }
    if answered.is_empty() {
        return Err(none_answered(&failures));
    }
    let mut out = io::stdout().lock();
    let text = if options.json {
        if answered.len() > 1 {
            eprintln!(
                "mpbridge status: `mpbridge {}` answers too; this is `mpbridge {}` (choose with --mode)",
                answered[1].mode, answered[0].mode
            );
        }
        let mut json = serde_json::to_string_pretty(&answered[0])
            .map_err(|e| StatusError::Protocol(e.to_string()))?;
        json.push('\n');
        json
    } else {
        answered
            .iter()
            .map(|s| render::render(s, colour))
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(StatusError::Output)
}

/// Asks every second until interrupted; a daemon that stops answering is
/// said so and asked again at the next tick.
fn watch(
    options: &Options,
    targets: &[Target],
    request: &Request,
    colour: bool,
) -> Result<(), StatusError> {
    let mut sessions: Vec<Option<Session>> = targets.iter().map(|_| None).collect();
    let terminal = io::stdout().is_terminal();
    loop {
        let started = Instant::now();
        let mut text = String::new();
        let mut failures = Vec::new();
        for (target, session) in targets.iter().zip(sessions.iter_mut()) {
            let result = match session {
                Some(s) => s.ask(request),
                None => Session::open(&target.path).and_then(|mut s| {
                    let status = s.ask(request);
                    *session = Some(s);
                    status
                }),
            };
            match result {
                Ok(status) if options.json => {
                    let line = serde_json::to_string(&status)
                        .map_err(|e| StatusError::Protocol(e.to_string()))?;
                    text.push_str(&line);
                    text.push('\n');
                }
                Ok(status) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&render::render(&status, colour));
                }
                Err(e) => {
                    *session = None;
                    failures.push((target.clone(), e));
                }
            }
        }
        // A daemon that does not run beside one that does is no news; when
        // none answers, say why where the status goes (a permission will
        // not come by itself: stop).
        let mut missing = Vec::new();
        if failures.len() == targets.len() {
            if let StatusError::Permission(m) = none_answered(&failures) {
                return Err(StatusError::Permission(m));
            }
            missing = failures
                .iter()
                .map(|(t, e)| format!("not answering: {}", e.describe(&t.path)))
                .collect();
        }
        let mut out = io::stdout().lock();
        let written = if options.json {
            for line in &missing {
                eprintln!("mpbridge status: {line}");
            }
            out.write_all(text.as_bytes())
        } else {
            let mut screen = String::new();
            if terminal {
                screen.push_str("\x1b[H\x1b[2J");
            }
            screen.push_str(&text);
            for line in &missing {
                screen.push_str(line);
                screen.push('\n');
            }
            if !terminal {
                screen.push('\n');
            }
            out.write_all(screen.as_bytes())
        };
        written
            .and_then(|()| out.flush())
            .map_err(StatusError::Output)?;
        drop(out);
        std::thread::sleep(WATCH_INTERVAL.saturating_sub(started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(config: &Path) -> Options {
        Options {
            socket: None,
            mode: None,
            config: config.to_owned(),
            config_explicit: true,
            json: false,
            watch: false,
            limit: Some(10),
        }
    }

    fn config_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "mpbridge-status-{name}-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_sockets_come_from_the_option_else_the_config_else_the_defaults() {
        let missing = Path::new("/nonexistent/mpbridge.toml");
        let mut o = options(missing);
        o.config_explicit = false;
        let t = targets(&o).unwrap();
        assert_eq!(
            t,
            vec![
                Target {
                    role: Some(Role::Local),
                    path: "/run/mpbridge/local.sock".into()
                },
                Target {
                    role: Some(Role::Remote),
                    path: "/run/mpbridge/remote.sock".into()
                },
            ]
        );
        o.mode = Some(Role::Remote);
        assert_eq!(targets(&o).unwrap().len(), 1);
        o.socket = Some("/tmp/x.sock".into());
        assert_eq!(targets(&o).unwrap()[0].path, Path::new("/tmp/x.sock"));

        let path = config_file(
            "targets",
            "[local]\ncontrol_socket = \"/tmp/l.sock\"\n[remote]\ncontrol_socket = \"\"\n",
        );
        let t = targets(&options(&path)).unwrap();
        assert_eq!(t.len(), 1, "the remote's socket is turned off");
        assert_eq!(t[0].path, Path::new("/tmp/l.sock"));
        let mut o = options(&path);
        o.mode = Some(Role::Remote);
        let e = targets(&o).unwrap_err();
        assert!(e.to_string().contains("turned off"), "{e}");
        assert!(matches!(e, StatusError::NotRunning(_)), "{e:?}");
        std::fs::remove_file(&path).unwrap();

        // An explicit config that does not exist is an error.
        let e = targets(&options(missing)).unwrap_err();
        assert!(matches!(e, StatusError::Config(_)), "{e:?}");
    }

    #[test]
    fn the_openwrt_socket_under_var_run_is_taken_when_the_default_is_absent() {
        let dir = std::env::temp_dir().join(format!("mpbridge-status-var-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = dir.join("run.sock");
        let var_run = dir.join("var-run.sock");
        let _ = std::fs::remove_file(&run);
        let _ = std::fs::remove_file(&var_run);
        // Neither: the default, whose absence the error then names.
        assert_eq!(prefer_existing(run.clone(), &var_run), run);
        // Only the OpenWrt one (a 24.10 router): that one.
        let l = std::os::unix::net::UnixListener::bind(&var_run).unwrap();
        assert_eq!(prefer_existing(run.clone(), &var_run), var_run);
        // Both (/var/run links to /run, or a stale one): the default.
        let m = std::os::unix::net::UnixListener::bind(&run).unwrap();
        assert_eq!(prefer_existing(run.clone(), &var_run), run);
        drop((l, m));
        std::fs::remove_dir_all(&dir).unwrap();

        // Only the defaults fall back; a socket the config names does not.
        let named = PathBuf::from("/nonexistent/l.sock");
        assert_eq!(openwrt_fallback(Role::Local, named.clone()), named);
        // The pairs of paths: the same role, the same name.
        for (role, default, openwrt) in [
            (
                Role::Local,
                DEFAULT_LOCAL_CONTROL_SOCKET,
                OPENWRT_LOCAL_CONTROL_SOCKET,
            ),
            (
                Role::Remote,
                DEFAULT_REMOTE_CONTROL_SOCKET,
                OPENWRT_REMOTE_CONTROL_SOCKET,
            ),
        ] {
            assert_eq!(Some(default), openwrt.strip_prefix("/var"), "{role}");
            let picked = openwrt_fallback(role, default.into());
            let expected = if Path::new(default).exists() || !Path::new(openwrt).exists() {
                default
            } else {
                openwrt
            };
            assert_eq!(picked, Path::new(expected), "{role}");
        }
    }

    #[test]
    fn no_daemon_answering_says_why_for_each_socket() {
        let dir = std::env::temp_dir().join(format!("mpbridge-status-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join("remote.sock");
        let _ = std::fs::remove_file(&stale);
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let mut o = options(Path::new("/nonexistent"));
        o.socket = Some(dir.join("local.sock"));
        let e = run(&o).unwrap_err();
        assert!(matches!(e, StatusError::NotRunning(_)), "{e:?}");
        assert!(e.to_string().contains("no such socket"), "{e}");
        o.socket = Some(stale.clone());
        let e = run(&o).unwrap_err();
        assert!(e.to_string().contains("nobody answers"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
