//! The real daemons in a topology: writes their configs and key files,
//! starts `mpbridge remote` in router B and `mpbridge local` in router A
//! (whose path managers set up MPTCP endpoints and policy routing for every
//! link, and the local its own interception rules on router A's `lan0`),
//! their control sockets in the topology's work directory.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::plan::{self, LanRoutes};
use crate::{Node, Proc, Topology};

/// Port `mpbridge local` listens on for diverted connections.
pub const LOCAL_PORT: u16 = 12345;
/// Port `mpbridge remote` listens on.
pub const REMOTE_PORT: u16 = 4443;
/// The lab's pre-shared key (hex): for namespaces only, never a real router.
pub const LAB_KEY_HEX: &str = "5f2b8c1e9a7d40c3b6e15a9f0d2c4e7b8a1f3d5c7e9b0a2c4d6f8e1a3b5c7d9e";
/// How long a daemon may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Router A's interface towards the client, the one the local intercepts.
pub const LAN_INTERFACE: &str = "lan0";

/// How client connections reach `mpbridge local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intercept {
    Tproxy,
    Redirect,
}

impl Intercept {
    /// The config file's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Intercept::Tproxy => "tproxy",
            Intercept::Redirect => "redirect",
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub intercept: Intercept,
    /// The key `mpbridge local` signs with (hex); the remote knows only
    /// [`LAB_KEY_HEX`].
    pub local_key_hex: String,
    /// Extra lines for the local's `[local]` section.
    pub local_extra: String,
    /// Extra lines for the remote's `[remote]` section.
    pub remote_extra: String,
    /// The remotes `mpbridge local` tries, in order (default: router B's
    /// address on link 0).
    pub remotes: Option<Vec<SocketAddr>>,
    /// Both daemons' log level.
    pub log_level: String,
    /// Links (by index) configured `backup = true` on both routers.
    pub backup_links: Vec<usize>,
    /// Extra top-level TOML for both daemons (e.g. a `[probe]` section).
    pub paths_extra: String,
    /// The program run as `mpbridge remote`, when not the same as the
    /// local's (e.g. another architecture's binary under qemu-user).
    pub remote_mpbridge: Option<PathBuf>,
    /// Lines for router A's `[paths]` section alone, e.g.
    /// `subflows = "on-demand"` (merged into a `[paths]` of `paths_extra`).
    pub local_paths: String,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            intercept: Intercept::Tproxy,
            local_key_hex: LAB_KEY_HEX.into(),
            local_extra: String::new(),
            remote_extra: String::new(),
            remotes: None,
            log_level: "info".into(),
            backup_links: Vec::new(),
            paths_extra: String::new(),
            remote_mpbridge: None,
            local_paths: String::new(),
        }
    }
}

/// The two running daemons. The topology also tracks them, so they are
/// stopped when it is dropped even if this is dropped later.
pub struct Bridge {
    pub local: Proc,
    pub remote: Proc,
    /// The local's config file (add a bypass, then SIGHUP the local).
    pub local_config: PathBuf,
    /// The daemons' control sockets (`mpbridge status --socket`), in the
    /// topology's work directory.
    pub local_socket: PathBuf,
    pub remote_socket: PathBuf,
}

impl Bridge {
    /// Writes configs, starts the remote then the local (each once it says
    /// it is listening; the local says so once its rules are in place).
    pub fn start(
        topo: &Topology,
        mpbridge: &Path,
        options: &BridgeOptions,
    ) -> anyhow::Result<Bridge> {
        Bridge::start_naming(topo, mpbridge, options, &[])
    }

    /// [`Bridge::start`] with router A's daemon naming `local_ifnames` for
    /// its links, by index (where empty: the topology's `wanN`), e.g. the
    /// Wi-Fi lab's station interfaces without bridges.
    pub fn start_naming(
        topo: &Topology,
        mpbridge: &Path,
        options: &BridgeOptions,
        local_ifnames: &[String],
    ) -> anyhow::Result<Bridge> {
        let dir = topo.workdir();
        let remote_key = dir.join("remote.key");
        write_private(&remote_key, LAB_KEY_HEX)?;
        let mut remote_conf = String::new();
        writeln!(
            remote_conf,
            "[auth]\nkey_file = {:?}\n",
            remote_key.display().to_string()
        )?;
        let remote_socket = dir.join("remote.sock");
        writeln!(
            remote_conf,
            "[remote]\nlisten = [\"0.0.0.0:{REMOTE_PORT}\", \"[::]:{REMOTE_PORT}\"]\n\
             control_socket = {:?}\n{}\n",
            remote_socket.display().to_string(),
            options.remote_extra
        )?;
        writeln!(remote_conf, "[log]\nlevel = {:?}", options.log_level)?;
        remote_conf.push_str(&link_lines(topo, options, Node::RouterB));
        let remote_path = dir.join("remote.toml");
        write_private(&remote_path, &remote_conf)?;

        let local_key = dir.join("local.key");
        write_private(&local_key, &options.local_key_hex)?;
        let remotes = options
            .remotes
            .clone()
            .unwrap_or_else(|| vec![SocketAddr::new(topo.rb_link_addr(0, false), REMOTE_PORT)]);
        let remotes: Vec<String> = remotes.iter().map(|r| format!("\"{r}\"")).collect();
        let mut local_conf = String::new();
        writeln!(
            local_conf,
            "[auth]\nkey_file = {:?}\n",
            local_key.display().to_string()
        )?;
        let local_socket = dir.join("local.sock");
        writeln!(
            local_conf,
            "[local]\nlisten = [\"0.0.0.0:{LOCAL_PORT}\", \"[::]:{LOCAL_PORT}\"]\n\
             intercept = \"{}\"\nlan_interfaces = [\"{LAN_INTERFACE}\"]\nremotes = [{}]\n\
             control_socket = {:?}\n{}\n",
            options.intercept.name(),
            remotes.join(", "),
            local_socket.display().to_string(),
            options.local_extra
        )?;
        writeln!(local_conf, "[log]\nlevel = {:?}", options.log_level)?;
        local_conf.push_str(&link_lines_naming(
            topo,
            options,
            Node::RouterA,
            local_ifnames,
        ));
        let local_path = dir.join("local.toml");
        write_private(&local_path, &local_conf)?;

        let remote = start_daemon(
            topo,
            Node::RouterB,
            options.remote_mpbridge.as_deref().unwrap_or(mpbridge),
            &remote_path,
            "remote",
            "remote",
        )?;
        let local = start_daemon(topo, Node::RouterA, mpbridge, &local_path, "local", "local")?;
        Ok(Bridge {
            local,
            remote,
            local_config: local_path,
            local_socket,
            remote_socket,
        })
    }

    /// Stops the local, then the remote (SIGTERM, so that each removes its
    /// interception rules and MPTCP set-up), each within `grace`, else SIGKILL.
    pub fn stop(mut self, grace: Duration) {
        self.local.terminate(grace);
        self.remote.terminate(grace);
    }

    /// Both daemons' output, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- mpbridge local ---\n{}\n--- mpbridge remote ---\n{}",
            self.local.output_text(),
            self.remote.output_text()
        )
    }
}

/// The `[[link]]` entries of `node`'s daemon: every link, the other
/// router's addresses on it as peers; then [`BridgeOptions::paths_extra`].
/// When the topology leaves the LAN routes to the daemons, router B's
/// `[paths]` routes the client LAN (router A routes the default route by
/// default), so `paths_extra` must not hold a `[paths]` section then.
pub(crate) fn link_lines(topo: &Topology, options: &BridgeOptions, node: Node) -> String {
    link_lines_naming(topo, options, node, &[])
}

/// [`link_lines`] with router A's links naming `local_ifnames` (by index).
fn link_lines_naming(
    topo: &Topology,
    options: &BridgeOptions,
    node: Node,
    local_ifnames: &[String],
) -> String {
    let mut out = String::new();
    for link in 0..topo.link_count() {
        let peer = |v6| match node {
            Node::RouterA => topo.rb_link_addr(link, v6),
            _ => topo.ra_link_addr(link, v6),
        };
        let _ = writeln!(
            out,
            "\n[[link]]\ninterface = \"{}\"\npeer = [\"{}\", \"{}\"]\nbackup = {}",
            match (node, local_ifnames.get(link)) {
                (Node::RouterA, Some(name)) => name.clone(),
                _ => topo.link_ifname(link),
            },
            peer(false),
            peer(true),
            options.backup_links.contains(&link)
        );
    }
    if node == Node::RouterB && topo.lan_routes() == LanRoutes::Daemons {
        let _ = writeln!(
            out,
            "\n[paths]\nroutes = [\"{}\", \"{}\"]",
            plan::client_net(false),
            plan::client_net(true)
        );
    }
    out.push('\n');
    let local_paths = options.local_paths.trim();
    if node == Node::RouterA && !local_paths.is_empty() {
        // One `[paths]` table: into the shared one if there is one.
        match options.paths_extra.find("[paths]\n") {
            Some(at) => {
                let (head, tail) = options.paths_extra.split_at(at + "[paths]\n".len());
                let _ = write!(out, "{head}{local_paths}\n{tail}");
            }
            None => {
                out.push_str(&options.paths_extra);
                let _ = write!(out, "\n[paths]\n{local_paths}\n");
            }
        }
    } else {
        out.push_str(&options.paths_extra);
    }
    out.push('\n');
    out
}

fn start_daemon(
    topo: &Topology,
    node: Node,
    mpbridge: &Path,
    config: &Path,
    role: &str,
    name: &str,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(mpbridge);
    cmd.arg("-c").arg(config).arg(role);
    let proc = topo.spawn_named(node, &unused_name(topo, name), &mut cmd)?;
    proc.wait_for_log(&format!("{role} listening"), crate::vm::slow(START_TIMEOUT))
        .with_context(|| format!("mpbridge {role} did not start:\n{}", proc.output_text()))?;
    Ok(proc)
}

/// `name`, or `name-2`, `name-3`, … if a process of that name already ran
/// in `topo` (the daemons may be started more than once in one topology).
pub(crate) fn unused_name(topo: &Topology, name: &str) -> String {
    let used = |n: &str| topo.workdir().join(format!("{n}.stdout")).exists();
    if !used(name) {
        return name.to_string();
    }
    (2..)
        .map(|k| format!("{name}-{k}"))
        .find(|n| !used(n))
        .expect("an unused name")
}

pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Starts `mpbridge local` again with the config `Bridge::start` wrote
/// (after it was stopped or killed), once it says it is listening; `name`
/// names its log files and must differ from earlier runs'.
pub fn restart_local(topo: &Topology, mpbridge: &Path, name: &str) -> anyhow::Result<Proc> {
    let config = topo.workdir().join("local.toml");
    start_daemon(topo, Node::RouterA, mpbridge, &config, "local", name)
}

/// Adds `cidr` to the local's `bypass` list in its config file and sends it
/// SIGHUP; returns once the local says the set was updated.
pub fn add_bypass(topo: &Topology, local: &Proc, cidr: &str) -> anyhow::Result<()> {
    let config = topo.workdir().join("local.toml");
    let text = std::fs::read_to_string(&config)?;
    let text = text.replacen("[local]\n", &format!("[local]\nbypass = [\"{cidr}\"]\n"), 1);
    write_private(&config, &text)?;
    let before = local.output_text().matches("bypass set updated").count();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(local.pid() as i32).context("no pid")?,
        rustix::process::Signal::HUP,
    )?;
    let updated = crate::wait_until(START_TIMEOUT, || {
        local.output_text().matches("bypass set updated").count() > before
    });
    anyhow::ensure!(
        updated,
        "mpbridge local did not update its bypass set:\n{}",
        local.output_text()
    );
    Ok(())
}

/// The `mpbridge` binary: `MPBRIDGE_BIN`, else beside this executable (the
/// same cargo target directory), else one level up (from `deps/`).
pub fn find_mpbridge() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MPBRIDGE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join("mpbridge");
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
        dir = d.parent();
    }
    anyhow::bail!(
        "cannot find the mpbridge binary next to {}: build it (cargo build --release -p mpbridge) \
         or set MPBRIDGE_BIN",
        exe.display()
    )
}
