//! OpenWrt's UCI config `/etc/config/mpbridge` rendered into the daemon's
//! TOML config (feature `uci`, used by the package's init script). Mistakes
//! are reported naming the UCI section and option, also those the TOML
//! validation finds, which are traced back to the option that made the line.
//!
//! ```text
//! config mpbridge 'main'          role, key, remote/port, intercept, firewall,
//!     option role 'local'         lan_interface, bypass, quic, listen_port, allow,
//!     list remote '10.20.0.2'     deny, log_level, max_connections, enabled
//! config link 'wifi1'             one per link between the routers
//!     option network 'wwan'       or `option device 'phy0-sta0'`; peer, backup
//! ```
//!
//! A link is named either by its Linux device (`device`) or by its OpenWrt
//! network (`network`, the name in /etc/config/network), which is resolved
//! here, when the file is rendered, by asking netifd: `ubus call
//! network.interface.NAME status`, whose `l3_device` is the device the
//! traffic leaves by (`device` while the interface is down). The init
//! script renders again on each ifup/ifdown of those networks, so a device
//! that changes (a Wi-Fi client interface after a radio change, a PPP
//! session) reaches the daemon. Resolving here rather than in the init
//! script keeps one place that turns UCI into the daemon's config and names
//! the section and option of every mistake (an unknown network included),
//! for the init script, LuCI's check and a user at the shell alike; it runs
//! the `ubus` CLI every OpenWrt image has (posix_spawnp: see run_merged), so
//! no library is linked in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Location, Role};

/// The package's UCI file.
pub const DEFAULT_PATH: &str = "/etc/config/mpbridge";
/// The TCP port of `mpbridge remote` unless `port` / `listen_port` say otherwise.
pub const DEFAULT_PORT: u16 = 4443;

/// One `config TYPE 'NAME'` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    /// `None` for an anonymous section (`config link`).
    pub name: Option<String>,
    /// Its position among the sections of its type, from 0 (UCI's `@link[1]`).
    pub index: usize,
    pub line: usize,
    pub options: Vec<Opt>,
}

/// One `option` or `list` line (a list gives one `Opt` per line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub name: String,
    pub value: String,
    pub list: bool,
    pub line: usize,
}

impl Section {
    /// How `uci` names it: `mpbridge.main` or `mpbridge.@link[1]`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("mpbridge.{n}"),
            None => format!("mpbridge.@{}[{}]", self.kind, self.index),
        }
    }

    fn values(&self, name: &str) -> Vec<&Opt> {
        self.options.iter().filter(|o| o.name == name).collect()
    }

    fn one(&self, name: &str) -> Option<&Opt> {
        self.options.iter().rfind(|o| o.name == name)
    }
}

/// A mistake in the UCI file, naming the section and option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UciError {
    #[error("{}: cannot read: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}:{line}: {problem}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}:{line}: section {section}, option {option}: {problem}", path.display())]
    Option {
        path: PathBuf,
        line: usize,
        section: String,
        option: String,
        problem: String,
    },
    #[error("{}:{line}: section {section}: {problem}", path.display())]
    Section {
        path: PathBuf,
        line: usize,
        section: String,
        problem: String,
    },
}

impl UciError {
    /// The process exit code: 78 (`EX_CONFIG`), as for the TOML config.
    pub fn exit_code(&self) -> u8 {
        config::EX_CONFIG as u8
    }
}

/// Writes the rendered config to `output` in one step (a temporary file
/// of mode 0600 renamed over it), so a reader never sees half a file.
pub fn write(output: &Path, rendered: &Rendered) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = output.with_extension("tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(rendered.toml.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, output))
}

/// Splits one UCI line into words, honouring '…' and "…" quoting and `\`
/// escapes (outside single quotes) as `uci` does; `#` starts a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated '…' quote".into()),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("a line ends in a backslash".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \"…\" quote".into()),
                    }
                },
                '\\' => match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a line ends in a backslash".into()),
                },
                c => word.push(c),
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// Parses UCI text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Section>, UciError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let syntax = |problem: String| UciError::Syntax {
            path: path.to_owned(),
            line,
            problem,
        };
        let w = words(raw).map_err(syntax)?;
        match w.first().map(String::as_str) {
            None => {}
            Some("package") => {}
            Some("config") => {
                let (kind, name) = match &w[1..] {
                    [kind] => (kind.clone(), None),
                    [kind, name] => (kind.clone(), Some(name.clone())),
                    _ => return Err(syntax("expected: config TYPE ['NAME']".into())),
                };
                let index = sections.iter().filter(|s| s.kind == kind).count();
                sections.push(Section {
                    kind,
                    name,
                    index,
                    line,
                    options: Vec::new(),
                });
            }
            Some(word @ ("option" | "list")) => {
                let [_, name, value] = &w[..] else {
                    return Err(syntax(format!("expected: {word} NAME 'VALUE'")));
                };
                let Some(section) = sections.last_mut() else {
                    return Err(syntax(format!("{word} {name} before any `config` line")));
                };
                section.options.push(Opt {
                    name: name.clone(),
                    value: value.clone(),
                    list: word == "list",
                    line,
                });
            }
            Some(other) => {
                return Err(syntax(format!(
                    "unknown keyword {other:?} (expected config, option or list)"
                )))
            }
        }
    }
    Ok(sections)
}

/// The TOML config made from a UCI file, and where each of its lines came from.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub role: Role,
    pub enabled: bool,
    pub toml: String,
    /// What the user should know but that does not stop the daemon (a
    /// link's network is down without a device: the link is left out until
    /// its ifup renders again). Also written into the TOML as comments.
    pub warnings: Vec<String>,
    /// For each TOML line (0-based), the UCI option that produced it.
    origins: Vec<Option<Origin>>,
}

#[derive(Debug, Clone)]
struct Origin {
    section: String,
    option: String,
    line: usize,
}

/// Options each section type knows, and whether they may repeat (`list`).
const MAIN_OPTIONS: &[(&str, bool)] = &[
    ("enabled", false),
    ("role", false),
    ("key", false),
    ("key_file", false),
    ("key_id", false),
    ("remote", true),
    ("port", false),
    ("listen_port", false),
    ("intercept", false),
    ("firewall", false),
    ("lan_interface", true),
    ("bypass", true),
    ("quic", false),
    ("allow", true),
    ("deny", true),
    ("mptcp", false),
    ("log_level", false),
    ("max_connections", false),
];
const LINK_OPTIONS: &[(&str, bool)] = &[
    ("device", false),
    ("network", false),
    ("peer", true),
    ("backup", false),
];

/// What netifd says about an OpenWrt network (`ubus call
/// network.interface.NAME status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub up: bool,
    /// The device its traffic leaves by (`l3_device`; a PPP or tunnel
    /// interface's own), present while it is up.
    pub l3_device: Option<String>,
    /// Its configured main device (`device`), often present while it is down.
    pub device: Option<String>,
}

impl NetworkStatus {
    /// The Linux device a link on this network uses now, if any.
    pub fn link_device(&self) -> Option<&str> {
        self.l3_device.as_deref().or(self.device.as_deref())
    }

    /// Reads netifd's answer (the JSON `ubus call … status` prints).
    pub fn from_json(text: &str) -> Result<NetworkStatus, String> {
        // Only the fields used; the rest of the answer is skipped (a typed
        // struct, not serde_json::Value, which the router binary would
        // otherwise carry only for this).
        #[derive(serde::Deserialize)]
        struct Answer {
            up: Option<bool>,
            l3_device: Option<String>,
            device: Option<String>,
        }
        let a: Answer = serde_json::from_str(text)
            .map_err(|e| format!("netifd's answer is not JSON ({e}): {:?}", text.trim()))?;
        let named = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(NetworkStatus {
            up: a.up == Some(true),
            l3_device: named(a.l3_device),
            device: named(a.device),
        })
    }
}

/// Asks netifd about a network: `Ok(None)` when it knows no such network,
/// `Err` when it cannot be asked.
pub trait Netifd {
    fn status(&self, network: &str) -> Result<Option<NetworkStatus>, String>;
}

/// netifd through the `ubus` CLI (found in `PATH`, as on every OpenWrt).
pub struct UbusCli;

impl Netifd for UbusCli {
    fn status(&self, network: &str) -> Result<Option<NetworkStatus>, String> {
        let object = format!("network.interface.{network}");
        let (code, said) = run_merged("ubus", &["-t", "5", "call", &object, "status"])
            .map_err(|e| format!("cannot run `ubus call {object} status`: {e}"))?;
        match code {
            Some(0) => NetworkStatus::from_json(&said).map(Some),
            // ubus exits 4 (UBUS_STATUS_NOT_FOUND) when there is no such object.
            Some(4) => Ok(None),
            _ => Err(format!(
                "`ubus call {object} status` failed ({}): {} (is netifd running?)",
                code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
                said.trim()
            )),
        }
    }
}

/// Runs `program` (searched in `PATH`) with `args`, stdin from /dev/null,
/// and returns its exit code (None: killed by a signal) and its stdout and
/// stderr together (enough for the few hundred bytes `ubus` prints).
///
/// posix_spawnp rather than std::process::Command: this is the router
/// binary's only child process, and Command's machinery added some 38 KB
/// to it (measured with the `router` profile); posix_spawn is a few
/// hundred bytes of the libc every target links anyway.
fn run_merged(program: &str, args: &[&str]) -> std::io::Result<(Option<i32>, String)> {
    use std::ffi::CString;
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::ffi::OsStrExt as _;

    let cstring = |b: &[u8]| {
        CString::new(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let argv: Vec<CString> = std::iter::once(program)
        .chain(args.iter().copied())
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let ptrs = |v: &[CString]| -> Vec<*mut libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    };
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let devnull = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions are initialised before use and destroyed
    // after; every pointer passed (argv, envp, the path) points into
    // CStrings and vectors that outlive the call, and both lists end in a
    // null pointer as posix_spawnp requires.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut rc = libc::posix_spawn_file_actions_init(&mut actions);
        if rc == 0 {
            for (fd, action) in [(1, write.as_raw_fd()), (2, write.as_raw_fd())] {
                rc = rc.max(libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    action,
                    fd,
                ));
            }
            rc = rc.max(libc::posix_spawn_file_actions_addopen(
                &mut actions,
                0,
                devnull.as_ptr(),
                libc::O_RDONLY,
                0,
            ));
            if rc == 0 {
                rc = libc::posix_spawnp(
                    &mut pid,
                    argv[0].as_ptr(),
                    &actions,
                    std::ptr::null(),
                    argv_p.as_ptr(),
                    envp_p.as_ptr(),
                );
            }
            libc::posix_spawn_file_actions_destroy(&mut actions);
        }
        rc
    };
    drop(write);
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    let mut said = String::new();
    let read_result = std::fs::File::from(read).read_to_string(&mut said);
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::other("posix_spawnp gave no pid"))?;
    let status = loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(status) => break status,
        }
    };
    read_result?;
    Ok((status.and_then(|(_, s)| s.exit_status()), said))
}

/// The comment before a `[[link]]` rendered from a network.
const NETWORK_MARK: &str = "# network ";

/// The device a previous rendering gave `network`.
fn previous_device<'a>(toml: &'a str, network: &str) -> Option<&'a str> {
    let mut lines = toml.lines();
    lines.find(|l| l.strip_prefix(NETWORK_MARK) == Some(network))?;
    let line = lines.find(|l| l.starts_with("interface = "))?;
    let quoted = line.strip_prefix("interface = ")?;
    let name = quoted.strip_prefix('"')?.strip_suffix('"')?;
    // Only a plain name (what toml_string wrote without escapes).
    (!name.contains('\\')).then_some(name)
}

/// An OpenWrt network (interface) name as netifd accepts it.
fn check_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty (expected an OpenWrt network, e.g. wwan or wan2)".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(format!(
            "{name:?} is not an OpenWrt network name (letters, digits, '_', '-', '.')"
        ));
    }
    Ok(())
}
/// Builds the TOML text line by line, remembering each line's origin.
struct Writer {
    toml: String,
    origins: Vec<Option<Origin>>,
}

impl Writer {
    fn line(&mut self, text: &str, origin: Option<(&Section, &Opt)>) {
        self.toml.push_str(text);
        self.toml.push('\n');
        self.origins.push(origin.map(|(s, o)| Origin {
            section: s.label(),
            option: o.name.clone(),
            line: o.line,
        }));
    }

    /// `key = "value"`
    fn string(&mut self, key: &str, s: &Section, o: &Opt) {
        self.line(&format!("{key} = {}", toml_string(&o.value)), Some((s, o)));
    }

    /// `key = [` one line per element `]`, each element from its own
    /// option (the opening line from the first: errors about the whole
    /// list point there).
    fn list(&mut self, key: &str, s: &Section, opts: &[&Opt], value: impl Fn(&str) -> String) {
        self.line(&format!("{key} = ["), opts.first().map(|o| (s, *o)));
        for o in opts {
            self.line(
                &format!("  {},", toml_string(&value(&o.value))),
                Some((s, o)),
            );
        }
        self.line("]", None);
    }
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// UCI's booleans.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "yes" | "on" | "enabled" => Some(true),
        "0" | "false" | "no" | "off" | "disabled" => Some(false),
        _ => None,
    }
}

/// Renders parsed sections into the daemon's TOML config, resolving links'
/// networks with netifd through `ubus`; errors name the section and
/// option. The TOML itself is validated by [`validate`].
pub fn render(sections: &[Section], path: &Path) -> Result<Rendered, UciError> {
    render_with(sections, path, &UbusCli, None)
}

/// [`render`], asking `netifd` about links' networks. `previous` is the
/// TOML rendered last time: a network that went down keeps the device it
/// had, so that an ifdown and the ifup after it change nothing the daemon
/// sees (it follows the device's state itself; procd restarts it only when
/// the rendered file changes).
pub fn render_with(
    sections: &[Section],
    path: &Path,
    netifd: &dyn Netifd,
    previous: Option<&str>,
) -> Result<Rendered, UciError> {
    let option_err = |s: &Section, o: &Opt, problem: String| UciError::Option {
        path: path.to_owned(),
        line: o.line,
        section: s.label(),
        option: o.name.clone(),
        problem,
    };
    let section_err = |s: &Section, problem: String| UciError::Section {
        path: path.to_owned(),
        line: s.line,
        section: s.label(),
        problem,
    };
    let mains: Vec<&Section> = sections.iter().filter(|s| s.kind == "mpbridge").collect();
    let main = match mains[..] {
        [m] => m,
        [] => {
            return Err(UciError::Syntax {
                path: path.to_owned(),
                line: 1,
                problem: "no `config mpbridge` section".into(),
            })
        }
        [_, second, ..] => {
            return Err(section_err(
                second,
                "a second `config mpbridge` section: there must be exactly one".into(),
            ))
        }
    };
    for s in sections {
        let known = match s.kind.as_str() {
            "mpbridge" => MAIN_OPTIONS,
            "link" => LINK_OPTIONS,
            other => {
                return Err(section_err(
                    s,
                    format!("unknown section type {other:?} (expected mpbridge or link)"),
                ))
            }
        };
        for o in &s.options {
            match known.iter().find(|(n, _)| *n == o.name) {
                None => {
                    let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                    return Err(option_err(
                        s,
                        o,
                        format!("unknown option (known: {})", names.join(", ")),
                    ));
                }
                Some((_, false)) if o.list => {
                    return Err(option_err(
                        s,
                        o,
                        "takes one value: use `option`, not `list`".into(),
                    ))
                }
                Some((_, false)) if s.values(&o.name).len() > 1 => {
                    return Err(option_err(s, o, "is set more than once".into()))
                }
                _ => {}
            }
        }
    }
    let flag = |s: &Section, name: &str, default: bool| -> Result<bool, UciError> {
        match s.one(name) {
            None => Ok(default),
            Some(o) => parse_bool(&o.value).ok_or_else(|| {
                option_err(s, o, format!("{:?} is not a boolean (use 0 or 1)", o.value))
            }),
        }
    };
    let enabled = flag(main, "enabled", true)?;
    let role = match main.one("role") {
        None => {
            return Err(section_err(
                main,
                "option role is missing (local on router A, remote on router B)".into(),
            ))
        }
        Some(o) => match o.value.as_str() {
            "local" => Role::Local,
            "remote" => Role::Remote,
            v => {
                return Err(option_err(
                    main,
                    o,
                    format!("{v:?} is neither local (router A) nor remote (router B)"),
                ))
            }
        },
    };
    let port = |name: &'static str| -> Result<(u16, Option<&Opt>), UciError> {
        match main.one(name) {
            None => Ok((DEFAULT_PORT, None)),
            Some(o) => match o.value.parse::<u16>() {
                Ok(p) if p > 0 => Ok((p, Some(o))),
                _ => Err(option_err(
                    main,
                    o,
                    format!("{:?} is not a TCP port (1..=65535)", o.value),
                )),
            },
        }
    };

    let mut w = Writer {
        toml: String::new(),
        origins: Vec::new(),
    };
    w.line(
        &format!(
            "# Rendered from {} by `mpbridge uci`: edit that file, not this one.",
            path.display()
        ),
        None,
    );
    w.line("[auth]", None);
    match (main.one("key"), main.one("key_file")) {
        (Some(o), None) => w.string("key", main, o),
        (None, Some(o)) => w.string("key_file", main, o),
        (Some(_), Some(o)) => {
            return Err(option_err(
                main,
                o,
                "set either key or key_file, not both".into(),
            ))
        }
        (None, None) => {
            return Err(section_err(
                main,
                "neither option key nor option key_file is set (the pre-shared key, as made by \
                 `mpbridge genkey`)"
                    .into(),
            ))
        }
    }
    if let Some(o) = main.one("key_id") {
        let id: u8 = o
            .value
            .parse()
            .map_err(|_| option_err(main, o, format!("{:?} is not a key id (0..=255)", o.value)))?;
        w.line(&format!("key_id = {id}"), Some((main, o)));
    }
    if let Some(o) = main.one("log_level") {
        w.line("[log]", None);
        w.string("level", main, o);
    }
    // The init script reads it back to give procd the open-files limit.
    if let Some(o) = main.one("max_connections") {
        let n: u32 = o.value.parse().map_err(|_| {
            option_err(
                main,
                o,
                format!("{:?} is not a number of connections", o.value),
            )
        })?;
        w.line("[limits]", None);
        w.line(&format!("max_connections = {n}"), Some((main, o)));
    }
    // Options of the other role are accepted and left out, so that
    // switching `role` needs no cleanup.
    match role {
        Role::Local => {
            w.line("[local]", None);
            w.line(
                &format!(
                    "control_socket = {}",
                    toml_string(crate::config::OPENWRT_LOCAL_CONTROL_SOCKET)
                ),
                None,
            );
            let remotes: Vec<&Opt> = main.values("remote");
            if remotes.is_empty() {
                return Err(section_err(
                    main,
                    "role is local but no `list remote` gives router B's address".into(),
                ));
            }
            let (p, _) = port("port")?;
            w.list("remotes", main, &remotes, |addr| {
                if addr.contains(':') && !addr.starts_with('[') {
                    format!("[{addr}]:{p}")
                } else {
                    format!("{addr}:{p}")
                }
            });
            for (opt, key) in [
                ("intercept", "intercept"),
                ("firewall", "firewall"),
                ("quic", "quic"),
            ] {
                if let Some(o) = main.one(opt) {
                    w.string(key, main, o);
                }
            }
            if let Some(o) = main.one("mptcp") {
                let on = flag(main, "mptcp", true)?;
                w.line(&format!("mptcp = {on}"), Some((main, o)));
            }
            let lan: Vec<&Opt> = main.values("lan_interface");
            if !lan.is_empty() {
                w.list("lan_interfaces", main, &lan, str::to_owned);
            }
            let bypass: Vec<&Opt> = main.values("bypass");
            w.list("bypass", main, &bypass, str::to_owned);
        }
        Role::Remote => {
            w.line("[remote]", None);
            w.line(
                &format!(
                    "control_socket = {}",
                    toml_string(crate::config::OPENWRT_REMOTE_CONTROL_SOCKET)
                ),
                None,
            );
            let (p, origin) = port("listen_port")?;
            let listen = format!(
                "listen = [{}, {}]",
                toml_string(&format!("0.0.0.0:{p}")),
                toml_string(&format!("[::]:{p}"))
            );
            w.line(&listen, origin.map(|o| (main, o)));
            for key in ["allow", "deny"] {
                let opts: Vec<&Opt> = main.values(key);
                if !opts.is_empty() {
                    w.list(key, main, &opts, str::to_owned);
                }
            }
        }
    }
    let mut warnings = Vec::new();
    for link in sections.iter().filter(|s| s.kind == "link") {
        match (link.one("device"), link.one("network")) {
            (Some(o), None) => {
                w.line("", None);
                w.line("[[link]]", None);
                w.string("interface", link, o);
            }
            (None, Some(o)) => {
                check_network_name(&o.value).map_err(|p| option_err(link, o, p))?;
                let status = netifd
                    .status(&o.value)
                    .map_err(|p| option_err(link, o, p))?
                    .ok_or_else(|| {
                        option_err(
                            link,
                            o,
                            format!(
                                "netifd knows no network {:?} (see `ubus list network.interface.*`)",
                                o.value
                            ),
                        )
                    })?;
                let last = previous.and_then(|p| previous_device(p, &o.value));
                let dev = if status.up {
                    status.link_device()
                } else {
                    last.or(status.link_device())
                };
                let Some(dev) = dev else {
                    let warning = format!(
                        "{}:{}: section {}, option network: network {:?} is down and has no \
                         device yet; the link is left out until its ifup",
                        path.display(),
                        o.line,
                        link.label(),
                        o.value
                    );
                    w.line("", None);
                    w.line(&format!("# {warning}"), None);
                    warnings.push(warning);
                    continue;
                };
                w.line("", None);
                // The marker previous_device() looks for (no state in it:
                // the file must not change when only the state does).
                w.line(&format!("{NETWORK_MARK}{}", o.value), None);
                w.line("[[link]]", None);
                w.line(
                    &format!("interface = {}", toml_string(dev)),
                    Some((link, o)),
                );
            }
            (Some(_), Some(o)) => {
                return Err(option_err(
                    link,
                    o,
                    "set either network (the OpenWrt network) or device (its Linux device), \
                     not both"
                        .into(),
                ))
            }
            (None, None) => {
                return Err(section_err(
                    link,
                    "neither option network (the OpenWrt network, e.g. wwan) nor option device \
                     (a Linux device, e.g. wlan1) is set"
                        .into(),
                ))
            }
        }
        let peers: Vec<&Opt> = link.values("peer");
        if !peers.is_empty() {
            w.list("peer", link, &peers, str::to_owned);
        }
        if let Some(o) = link.one("backup") {
            let on = flag(link, "backup", false)?;
            w.line(&format!("backup = {on}"), Some((link, o)));
        }
    }
    Ok(Rendered {
        role,
        enabled,
        toml: w.toml,
        warnings,
        origins: w.origins,
    })
}

/// Validates the rendered config as the daemon will (`origin` anchors a
/// relative key_file); an error is traced back to the UCI option.
pub fn validate(rendered: &Rendered, uci_path: &Path, origin: &Path) -> Result<(), UciError> {
    let ov = config::Overrides::default();
    let result = config::parse_str(&rendered.toml, origin).and_then(|file| match rendered.role {
        Role::Local => file.local(&ov).map(drop),
        Role::Remote => file.remote(&ov).map(drop),
    });
    result.map_err(|e| rendered.explain(e, uci_path))
}

impl Rendered {
    /// A TOML validation error, told in UCI's terms where the line is known.
    fn explain(&self, e: ConfigError, uci_path: &Path) -> UciError {
        let (line, problem) = match &e {
            ConfigError::Invalid {
                at: Location::File { line, .. },
                field,
                problem,
            } => (Some(*line), format!("{problem} (config field {field})")),
            ConfigError::Invalid {
                at: Location::Path(p),
                field,
                problem,
            } => {
                let key_file = self.find_option("key_file");
                return match key_file {
                    Some(o) => UciError::Option {
                        path: uci_path.to_owned(),
                        line: o.line,
                        section: o.section.clone(),
                        option: o.option.clone(),
                        problem: format!("{}: {problem} ({field})", p.display()),
                    },
                    None => self.whole(uci_path, e.to_string()),
                };
            }
            ConfigError::Syntax {
                at: Location::File { line, .. },
                message,
            } => (Some(*line), message.clone()),
            _ => (None, e.to_string()),
        };
        match line
            .and_then(|l| self.origins.get(l - 1))
            .cloned()
            .flatten()
        {
            Some(o) => UciError::Option {
                path: uci_path.to_owned(),
                line: o.line,
                section: o.section,
                option: o.option,
                problem,
            },
            None => self.whole(uci_path, problem),
        }
    }

    fn find_option(&self, name: &str) -> Option<&Origin> {
        self.origins.iter().flatten().find(|o| o.option == name)
    }

    fn whole(&self, uci_path: &Path, problem: String) -> UciError {
        UciError::Section {
            path: uci_path.to_owned(),
            line: 1,
            section: "mpbridge".into(),
            problem,
        }
    }
}

/// Reads, renders and validates a UCI file.
pub fn load(uci_path: &Path, origin: &Path) -> Result<Rendered, UciError> {
    let text = std::fs::read_to_string(uci_path).map_err(|e| UciError::Read {
        path: uci_path.to_owned(),
        reason: e.to_string(),
    })?;
    // The file written last time (`origin` is where the output goes).
    let previous = std::fs::read_to_string(origin).ok();
    let sections = parse(&text, uci_path)?;
    let rendered = render_with(&sections, uci_path, &UbusCli, previous.as_deref())?;
    validate(&rendered, uci_path, origin)?;
    for warning in &rendered.warnings {
        eprintln!("mpbridge: warning: {warning}");
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "5f2b8c1e9a7d40c3b6e15a9f0d2c4e7b8a1f3d5c7e9b0a2c4d6f8e1a3b5c7d9e";

    fn uci(text: &str) -> Result<Rendered, UciError> {
        let path = Path::new("/etc/config/mpbridge");
        let rendered = render(&parse(text, path)?, path)?;
        validate(&rendered, path, Path::new("/var/etc/mpbridge.toml"))?;
        Ok(rendered)
    }

    fn router_a() -> String {
        format!(
            "
config mpbridge 'main'
	option role 'local'
	option key '{KEY}'
	list remote '10.20.0.2'
	list remote 'fd00:20::2'
	option port '4443'
	list lan_interface 'br-lan'
	list bypass '192.168.50.0/24'
	option quic 'pass'

config link 'wifi1'
	option device 'wlan1'
	option peer '10.20.0.2'

config link
	option device 'wlan2'
	list peer '10.20.1.2'
	list peer 'fd00:20:1::2'
	option backup '1'
"
        )
    }

    #[test]
    fn the_documented_router_a_config_renders_and_validates() {
        let r = uci(&router_a()).unwrap();
        assert_eq!(r.role, Role::Local);
        assert!(r.enabled);
        let file = config::parse_str(&r.toml, Path::new("x.toml")).unwrap();
        let (settings, _) = file.local(&config::Overrides::default()).unwrap();
        assert_eq!(
            settings.remotes,
            vec![
                "10.20.0.2:4443".parse().unwrap(),
                "[fd00:20::2]:4443".parse().unwrap()
            ]
        );
        assert_eq!(settings.interception.lan_interfaces, vec!["br-lan"]);
        assert_eq!(settings.interception.bypass.len(), 1);
        assert_eq!(settings.interception.quic, config::Quic::Pass);
        let without = router_a().replacen("\toption quic 'pass'\n", "", 1);
        let file = config::parse_str(&uci(&without).unwrap().toml, Path::new("x.toml")).unwrap();
        let (settings, _) = file.local(&config::Overrides::default()).unwrap();
        assert_eq!(
            settings.interception.quic,
            config::Quic::Refuse,
            "the default"
        );
        let links = &settings.common.paths.links;
        assert_eq!(links.len(), 2);
        assert_eq!(
            (links[0].interface.as_str(), links[0].backup),
            ("wlan1", false)
        );
        assert_eq!(
            (links[1].interface.as_str(), links[1].backup),
            ("wlan2", true)
        );
        assert_eq!(links[1].peers.len(), 2);
    }

    #[test]
    fn router_b_listens_on_its_port_in_both_families() {
        let text = format!(
            "config mpbridge 'main'\n option role 'remote'\n option key '{KEY}'\n \
             option listen_port '5000'\n list allow '192.168.0.0/16'\n\
             config link\n option device 'wlan1'\n"
        );
        let r = uci(&text).unwrap();
        let file = config::parse_str(&r.toml, Path::new("x.toml")).unwrap();
        let (settings, _) = file.remote(&config::Overrides::default()).unwrap();
        assert_eq!(
            settings.listen,
            vec![
                "0.0.0.0:5000".parse().unwrap(),
                "[::]:5000".parse().unwrap()
            ]
        );
        assert_eq!(settings.policy.allow.len(), 1);
    }

    #[test]
    fn the_control_socket_is_under_var_run_for_either_role() {
        let remote = format!(
            "config mpbridge 'main'\n option role 'remote'\n option key '{KEY}'\n\
             config link\n option device 'wlan1'\n"
        );
        for (text, role, path) in [
            (router_a(), Role::Local, "/var/run/mpbridge/local.sock"),
            (remote, Role::Remote, "/var/run/mpbridge/remote.sock"),
        ] {
            let r = uci(&text).unwrap();
            let file = config::parse_str(&r.toml, Path::new("x.toml")).unwrap();
            let sockets = file.control_sockets().unwrap();
            let (_, socket) = sockets.iter().find(|(r, _)| *r == role).unwrap();
            assert_eq!(socket.as_deref(), Some(Path::new(path)), "{}", r.toml);
            let overrides = config::Overrides::default();
            let control = match role {
                Role::Local => file.local(&overrides).unwrap().0.common.control,
                Role::Remote => file.remote(&overrides).unwrap().0.common.control,
            };
            assert_eq!(control.socket.as_deref(), Some(Path::new(path)));
        }
    }

    #[test]
    fn max_connections_reaches_the_limits_and_a_bad_one_is_blamed_on_its_option() {
        let with = |n: &str| {
            router_a().replacen(
                "option role 'local'",
                &format!("option role 'local'\n\toption max_connections '{n}'"),
                1,
            )
        };
        let r = uci(&with("300")).unwrap();
        let file = config::parse_str(&r.toml, Path::new("x.toml")).unwrap();
        let (settings, _) = file.local(&config::Overrides::default()).unwrap();
        assert_eq!(settings.common.limits.max_connections, 300);
        for bad in ["0", "many"] {
            let e = uci(&with(bad)).expect_err(bad).to_string();
            assert!(e.contains("mpbridge.main, option max_connections"), "{e}");
        }
    }

    /// Each mistake is reported with its UCI line, section and option.
    #[test]
    fn mistakes_name_the_uci_section_and_option() {
        let cases: &[(&str, &str, &str)] = &[
            // (what replaces what in router_a(), the section, the option)
            (
                "list remote '10.20.0.2'",
                "list remote '10.20.0.300'",
                "mpbridge.main, option remote",
            ),
            (
                "option port '4443'",
                "option port 'https'",
                "mpbridge.main, option port",
            ),
            (
                "list bypass '192.168.50.0/24'",
                "list bypass '192.168.50.0/33'",
                "mpbridge.main, option bypass",
            ),
            (
                "option device 'wlan2'",
                "option device 'a-name-far-too-long'",
                "mpbridge.@link[1], option device",
            ),
            (
                "option backup '1'",
                "option backup 'maybe'",
                "mpbridge.@link[1], option backup",
            ),
            (
                "option peer '10.20.0.2'",
                "option peer 'router-b'",
                "mpbridge.wifi1, option peer",
            ),
            (
                "option quic 'pass'",
                "option quic 'off'",
                "mpbridge.main, option quic",
            ),
            (
                "option role 'local'",
                "option role 'client'",
                "mpbridge.main, option role",
            ),
            (
                "list lan_interface 'br-lan'",
                "list lan_iface 'br-lan'",
                "mpbridge.main, option lan_iface",
            ),
            (
                "option port '4443'",
                "list port '4443'",
                "mpbridge.main, option port",
            ),
            (
                "option key '",
                "option key_id '300'\n\toption key '",
                "mpbridge.main, option key_id",
            ),
        ];
        assert!(!cases.is_empty());
        for (from, to, want) in cases {
            let text = router_a().replacen(from, to, 1);
            assert_ne!(text, router_a(), "{from} not in the fixture");
            let e = uci(&text).expect_err(to).to_string();
            assert!(e.contains(want), "{to}: {e}");
            assert!(e.starts_with("/etc/config/mpbridge:"), "{e}");
            // The line is the one holding the mistake.
            let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
            let bad = text.lines().nth(line - 1).unwrap();
            assert!(
                bad.contains(to.lines().next().unwrap().trim()),
                "{e}: line {line} is {bad:?}"
            );
        }
    }

    #[test]
    fn a_short_key_is_blamed_on_the_key_option() {
        let text = router_a().replace(KEY, "abcd");
        let e = uci(&text).unwrap_err().to_string();
        assert!(e.contains("mpbridge.main, option key:"), "{e}");
    }

    #[test]
    fn missing_sections_and_options_are_named() {
        let e = uci("config link\n option device 'wlan1'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `config mpbridge` section"), "{e}");
        let e = uci(&router_a().replace("\toption role 'local'\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("section mpbridge.main: option role is missing"),
            "{e}"
        );
        let e = uci(&router_a().replace("\toption device 'wlan1'\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("section mpbridge.wifi1: neither option network"),
            "{e}"
        );
        let e = uci(&router_a().replace(
            "\tlist remote '10.20.0.2'\n\tlist remote 'fd00:20::2'\n",
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("no `list remote`"), "{e}");
    }

    #[test]
    fn quoting_and_comments_follow_uci() {
        let w = words(r#"  option 'bypass' "10.0.0.0/8" # comment"#).unwrap();
        assert_eq!(w, ["option", "bypass", "10.0.0.0/8"]);
        assert_eq!(words(r"option a b\ c").unwrap(), ["option", "a", "b c"]);
        assert_eq!(words("option a 'x\"y'").unwrap(), ["option", "a", "x\"y"]);
        assert!(words("option a 'open").is_err());
        let e = parse("option a 'b'\n", Path::new("f"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f:1:") && e.contains("before any `config`"),
            "{e}"
        );
    }

    #[test]
    fn a_value_cannot_break_out_of_its_toml_string() {
        let text = router_a().replace("option device 'wlan1'", "option device 'wl\"an\n[auth]'");
        // A UCI value with a newline cannot be written on one line; the
        // quote is kept inside the string and refused as an interface name.
        let e = uci(&text).unwrap_err().to_string();
        assert!(
            e.contains("unterminated") || e.contains("option device"),
            "{e}"
        );
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn the_packaged_default_config_renders_disabled() {
        let text = include_str!("../../../openwrt/mpbridge/files/mpbridge.config");
        let path = Path::new(DEFAULT_PATH);
        let r = render(&parse(text, path).unwrap(), path).unwrap();
        assert!(!r.enabled);
        assert_eq!(r.role, Role::Local);
        // Valid TOML of the daemon's shape (the key file exists only on a router).
        config::parse_str(&r.toml, Path::new("/var/etc/mpbridge.toml")).unwrap();
        assert!(r.toml.contains("interface = \"wlan2\""), "{}", r.toml);
    }

    #[test]
    fn enabled_is_a_uci_boolean() {
        let r =
            uci(&router_a().replace("option role", "option enabled '0'\n\toption role")).unwrap();
        assert!(!r.enabled);
    }

    /// A stand-in for netifd: a map from network to its status.
    struct FakeNetifd(Vec<(&'static str, Result<Option<NetworkStatus>, String>)>);

    impl Netifd for FakeNetifd {
        fn status(&self, network: &str) -> Result<Option<NetworkStatus>, String> {
            self.0
                .iter()
                .find(|(n, _)| *n == network)
                .map_or(Ok(None), |(_, s)| s.clone())
        }
    }

    fn up(dev: &str) -> Result<Option<NetworkStatus>, String> {
        Ok(Some(NetworkStatus {
            up: true,
            l3_device: Some(dev.into()),
            device: Some("unused0".into()),
        }))
    }

    fn uci_with(text: &str, netifd: &FakeNetifd) -> Result<Rendered, UciError> {
        let path = Path::new("/etc/config/mpbridge");
        let rendered = render_with(&parse(text, path)?, path, netifd, None)?;
        validate(&rendered, path, Path::new("/var/etc/mpbridge.toml"))?;
        Ok(rendered)
    }

    fn links_of(r: &Rendered) -> Vec<String> {
        let file = config::parse_str(&r.toml, Path::new("x.toml")).unwrap();
        let (settings, _) = file.local(&config::Overrides::default()).unwrap();
        settings
            .common
            .paths
            .links
            .iter()
            .map(|l| l.interface.clone())
            .collect()
    }

    #[test]
    fn a_network_name_becomes_its_device() {
        let text = router_a()
            .replace("option device 'wlan1'", "option network 'wwan'")
            .replace("option device 'wlan2'", "option network 'wan2'");
        let netifd = FakeNetifd(vec![
            ("wwan", up("phy0-sta0")),
            // Down, but netifd knows its device: kept, so that its ifup
            // with the same device changes nothing.
            (
                "wan2",
                Ok(Some(NetworkStatus {
                    up: false,
                    l3_device: None,
                    device: Some("eth1".into()),
                })),
            ),
        ]);
        let r = uci_with(&text, &netifd).unwrap();
        assert_eq!(links_of(&r), ["phy0-sta0", "eth1"]);
        assert!(r.warnings.is_empty());
        assert!(r.toml.contains("# network wwan\n"), "{}", r.toml);
        // The device name stays accepted beside it.
        let text = router_a().replace("option device 'wlan2'", "option network 'wwan'");
        let r = uci_with(&text, &netifd).unwrap();
        assert_eq!(links_of(&r), ["wlan1", "phy0-sta0"]);
    }

    #[test]
    fn a_network_that_is_down_without_a_device_is_left_out_with_a_warning() {
        let text = router_a().replace("option device 'wlan2'", "option network 'wwan'");
        let down = FakeNetifd(vec![(
            "wwan",
            Ok(Some(NetworkStatus {
                up: false,
                l3_device: None,
                device: None,
            })),
        )]);
        let r = uci_with(&text, &down).unwrap();
        assert_eq!(links_of(&r), ["wlan1"]);
        assert_eq!(r.warnings.len(), 1);
        let w = &r.warnings[0];
        assert!(
            w.contains("section mpbridge.@link[1], option network")
                && w.contains("\"wwan\" is down"),
            "{w}"
        );
        assert!(r.toml.contains(&format!("# {w}")), "{}", r.toml);
    }

    /// An ifdown keeps the device the network had, so the daemon is not
    /// restarted for it; the ifup after it with a new device changes it.
    #[test]
    fn a_network_that_went_down_keeps_its_last_device() {
        let text = router_a().replace("option device 'wlan2'", "option network 'wwan'");
        let path = Path::new("/etc/config/mpbridge");
        let sections = parse(&text, path).unwrap();
        let first = render_with(
            &sections,
            path,
            &FakeNetifd(vec![("wwan", up("phy0-sta0"))]),
            None,
        )
        .unwrap();
        let down = FakeNetifd(vec![(
            "wwan",
            Ok(Some(NetworkStatus {
                up: false,
                l3_device: None,
                device: Some("other0".into()),
            })),
        )]);
        let second = render_with(&sections, path, &down, Some(&first.toml)).unwrap();
        assert_eq!(second.toml, first.toml);
        let third = render_with(
            &sections,
            path,
            &FakeNetifd(vec![("wwan", up("phy1-sta0"))]),
            Some(&second.toml),
        )
        .unwrap();
        assert_eq!(links_of(&third), ["wlan1", "phy1-sta0"]);
    }

    #[test]
    fn network_mistakes_name_the_section_and_option() {
        let netifd = FakeNetifd(vec![
            ("wwan", up("phy0-sta0")),
            ("long", up("a-name-far-too-long")),
            ("broken", Err("`ubus call …` failed: Timeout".into())),
        ]);
        let cases: &[(&str, &str)] = &[
            // (the line that replaces `option device 'wlan1'`, what the error says)
            (
                "option network 'wan9'",
                "section mpbridge.wifi1, option network: netifd knows no network \"wan9\"",
            ),
            (
                "option network 'wwan'\n\toption device 'wlan1'",
                "section mpbridge.wifi1, option network: set either network",
            ),
            (
                "option network 'w wan'",
                "section mpbridge.wifi1, option network: \"w wan\" is not an OpenWrt network",
            ),
            (
                "option network 'broken'",
                "section mpbridge.wifi1, option network: `ubus call …` failed: Timeout",
            ),
            // What netifd answers is checked as any device name, and blamed
            // on the option that asked for it.
            (
                "option network 'long'",
                "section mpbridge.wifi1, option network: ",
            ),
            ("", "section mpbridge.wifi1: neither option network"),
        ];
        for (to, want) in cases {
            let text = router_a().replacen("option device 'wlan1'", to, 1);
            let e = uci_with(&text, &netifd).expect_err(to).to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    /// The child's exit code, and its stdout and stderr in one string.
    #[test]
    fn a_child_is_run_with_its_output_and_exit_code() {
        let (code, said) =
            run_merged("sh", &["-c", "echo out; echo err >&2; read x || exit 7"]).unwrap();
        // stdin is /dev/null: `read` meets its end at once.
        assert_eq!((code, said.as_str()), (Some(7), "out\nerr\n"));
        let (code, _) = run_merged("sh", &["-c", "kill -9 $$"]).unwrap();
        assert_eq!(code, None);
        let e = run_merged("no-such-program-here", &[]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn netifds_answer_is_read() {
        // Abridged from `ubus call network.interface.wwan status` on 24.10.
        let text = r#"{"up": true, "pending": false, "available": true, "autostart": true,
            "dynamic": false, "uptime": 1234, "l3_device": "phy0-sta0", "proto": "dhcp",
            "device": "phy0-sta0", "metric": 0, "ipv4-address": [{"address": "192.168.8.20",
            "mask": 24}], "data": {}}"#;
        let s = NetworkStatus::from_json(text).unwrap();
        assert!(s.up);
        assert_eq!(s.link_device(), Some("phy0-sta0"));
        let down =
            NetworkStatus::from_json(r#"{"up": false, "proto": "dhcp", "data": {}}"#).unwrap();
        assert_eq!(down.link_device(), None);
        assert!(NetworkStatus::from_json("Command failed").is_err());
    }
}
