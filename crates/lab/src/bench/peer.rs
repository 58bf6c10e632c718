//! The peer: shadowsocks-rust, which OpenMPTCProuter runs for this job,
//! installed reproducibly (a pinned `cargo install` into a cache folder
//! outside the repository, its cold build timed once) and run in the lab
//! as `sslocal --protocol redir` on router A and `ssserver` on router B,
//! both with `--tcp-multipath` (MPTCP) and cipher `none`.
//!
//! Its kernel MPTCP set-up is mpbridge's own: `mpbridge paths local|remote`
//! (the path manager without the proxy) sets the same limits, endpoints and
//! policy routing, with probing off (the peer has none). Its interception is
//! the TPROXY rule set of docs/FIREWALL.md, installed in router A's
//! namespace as a table of the lab's own (`inet mpblab_peer`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::bridge::{self, BridgeOptions};
use crate::measure::Progress;
use crate::{exec, wait_until, Node, Proc, Topology};

/// The pinned peer release.
pub const VERSION: &str = "1.25.0";
/// The crate features asked for (the crate's default features, `full`,
/// stay on: `local-redir` is named so that a change of defaults cannot drop it).
pub const FEATURES: &str = "local-redir";
/// Where `sslocal` listens for diverted connections on router A.
pub const LOCAL_PORT: u16 = 1080;
/// Where `ssserver` listens on router B.
pub const SERVER_PORT: u16 = 8388;
/// The TPROXY mark and routing table of the peer's interception (distinct
/// from mpbridge's, though the two never run at once).
const MARK: &str = "0x6d70000f";
const TABLE: u32 = 28017;
/// The nftables table the peer's interception lives in (router A).
const NFT_TABLE: &str = "mpblab_peer";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The cache folder: `$MPBRIDGE_BENCH_CACHE`, else
/// `$XDG_CACHE_HOME/mpbridge-bench`, else `/var/cache/mpbridge-bench`.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("MPBRIDGE_BENCH_CACHE") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("mpbridge-bench"),
        _ => PathBuf::from("/var/cache/mpbridge-bench"),
    }
}

/// How the peer's first (cold) build went, kept beside the binaries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    /// Wall time of `cargo install`, seconds.
    pub seconds: f64,
    /// When it ran (UTC, `date -u` format).
    pub date: String,
    /// The exact command.
    pub command: String,
    /// `/proc/loadavg` when it started: how busy the machine was.
    pub load_before: String,
}

/// An installed peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Install {
    pub version: String,
    pub sslocal: PathBuf,
    pub ssserver: PathBuf,
    /// The cold build, if this cache's install was timed.
    pub cold_build: Option<BuildRecord>,
}

/// `cargo install …` for the pinned peer into `root`.
pub fn install_args(root: &Path) -> Vec<String> {
    [
        "install",
        "shadowsocks-rust",
        "--version",
        VERSION,
        "--features",
        FEATURES,
        "--locked",
        "--root",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([root.display().to_string()])
    .collect()
}

/// The peer's binaries in `cache`, built (and the build timed) first if
/// they are missing. A failed build is an error quoting the end of its log.
pub fn ensure_installed(cache: &Path, progress: &Progress) -> anyhow::Result<Install> {
    let root = cache.join(format!("shadowsocks-rust-{VERSION}"));
    let bin = root.join("bin");
    let (sslocal, ssserver) = (bin.join("sslocal"), bin.join("ssserver"));
    let record_path = root.join("build.json");
    if !(sslocal.is_file() && ssserver.is_file()) {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the peer's cache {}", root.display()))?;
        exec::require_tool("cargo", "--version", "cargo (https://rustup.rs)")?;
        let args = install_args(&root);
        let command = format!("cargo {}", args.join(" "));
        progress.phase(&format!(
            "installing the peer (first time only; its cold build takes minutes): {command}"
        ));
        let log_path = root.join("install.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        let load_before = load_average();
        let started = Instant::now();
        // A target dir of its own (cargo's temporary one): a cold build,
        // never the caller's build directory.
        let status = Command::new("cargo")
            .args(&args)
            .env_remove("CARGO_TARGET_DIR")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("cannot run cargo install")?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            anyhow::bail!(
                "building the peer failed ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let record = BuildRecord {
            seconds,
            date: utc_now(),
            command,
            load_before,
        };
        std::fs::write(&record_path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("cannot write {}", record_path.display()))?;
    }
    let cold_build = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok(Install {
        version: VERSION.into(),
        sslocal,
        ssserver,
        cold_build,
    })
}

/// `/proc/loadavg`, trimmed.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `date -u`, or empty if it cannot run.
pub fn utc_now() -> String {
    exec::run("date", &["-u", "+%Y-%m-%d %H:%M UTC"], None)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The peer running in a topology, with its kernel set-up.
pub struct Peer {
    pub sslocal: Proc,
    pub ssserver: Proc,
    paths: PathsOnly,
}

impl Peer {
    /// Starts the path managers (`mpbridge paths`), `ssserver` on router
    /// B, `sslocal` on router A, then the interception rules; returns once
    /// each listens.
    pub fn start(topo: &Topology, install: &Install, mpbridge: &Path) -> anyhow::Result<Peer> {
        let paths = PathsOnly::start(topo, mpbridge, false)?;

        let common = [
            "-m",
            "none",
            "-k",
            "mpbridge-bench",
            "--tcp-multipath",
            "--tcp-no-delay",
        ];
        let mut cmd = Command::new(&install.ssserver);
        cmd.args(["-s", &format!("0.0.0.0:{SERVER_PORT}")])
            .args(common);
        let name = bridge::unused_name(topo, "ssserver");
        let ssserver = topo.spawn_named(Node::RouterB, &name, &mut cmd)?;
        wait_listening(topo, Node::RouterB, SERVER_PORT, &ssserver)?;

        let mut cmd = Command::new(&install.sslocal);
        cmd.args(["--protocol", "redir", "--tcp-redir", "tproxy"])
            .args(["-b", &format!("0.0.0.0:{LOCAL_PORT}")])
            .args([
                "-s",
                &format!("{}:{SERVER_PORT}", topo.rb_link_addr(0, false)),
            ])
            .args(common);
        let name = bridge::unused_name(topo, "sslocal");
        let sslocal = topo.spawn_named(Node::RouterA, &name, &mut cmd)?;
        wait_listening(topo, Node::RouterA, LOCAL_PORT, &sslocal)?;

        let peer = Peer {
            sslocal,
            ssserver,
            paths,
        };
        install_interception(topo)?;
        Ok(peer)
    }

    /// The proxy processes (not the path managers: those are the kernel
    /// set-up both subjects get).
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        vec![
            ("sslocal", self.sslocal.pid()),
            ("ssserver", self.ssserver.pid()),
        ]
    }

    /// Removes the interception, stops the proxies, then the path managers
    /// (which take their endpoints and rules away).
    pub fn stop(mut self, topo: &Topology, grace: Duration) {
        if let Err(e) = remove_interception(topo) {
            eprintln!("mpbridge-lab: cannot remove the peer's interception: {e:#}");
        }
        self.sslocal.terminate(grace);
        self.ssserver.terminate(grace);
        self.paths.stop(grace);
    }

    /// All four processes' output, for failure messages.
    pub fn logs(&self) -> String {
        [
            &self.sslocal,
            &self.ssserver,
            &self.paths.local,
            &self.paths.remote,
        ]
        .iter()
        .map(|p| p.output_text())
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// `mpbridge paths local` on router A and `mpbridge paths remote` on router
/// B: mpbridge's kernel MPTCP set-up without its proxy.
pub struct PathsOnly {
    pub local: Proc,
    pub remote: Proc,
}

impl PathsOnly {
    /// Writes their configs (every link, as `Bridge::start` does) and starts
    /// both, remote first; returns once each has set its links up.
    pub fn start(topo: &Topology, mpbridge: &Path, probing: bool) -> anyhow::Result<PathsOnly> {
        let dir = topo.workdir();
        let key = dir.join("paths-only.key");
        bridge::write_private(&key, bridge::LAB_KEY_HEX)?;
        let options = BridgeOptions {
            paths_extra: format!("[probe]\nenabled = {probing}\n"),
            ..BridgeOptions::default()
        };
        let mut remote_conf = format!(
            "[auth]\nkey_file = {:?}\n\n[remote]\nlisten = [\"0.0.0.0:{}\"]\n",
            key.display().to_string(),
            bridge::REMOTE_PORT
        );
        remote_conf.push_str(&bridge::link_lines(topo, &options, Node::RouterB));
        let mut local_conf = format!(
            "[auth]\nkey_file = {:?}\n\n[local]\nremotes = [\"{}:{}\"]\nlan_interfaces = [\"{}\"]\n",
            key.display().to_string(),
            topo.rb_link_addr(0, false),
            bridge::REMOTE_PORT,
            bridge::LAN_INTERFACE
        );
        local_conf.push_str(&bridge::link_lines(topo, &options, Node::RouterA));
        let remote_path = dir.join("paths-only-remote.toml");
        let local_path = dir.join("paths-only-local.toml");
        bridge::write_private(&remote_path, &remote_conf)?;
        bridge::write_private(&local_path, &local_conf)?;
        let start = |node: Node, config: &Path, role: &str| -> anyhow::Result<Proc> {
            let mut cmd = Command::new(mpbridge);
            cmd.arg("-c").arg(config).args(["paths", role]);
            let name = bridge::unused_name(topo, &format!("paths-{role}"));
            let proc = topo.spawn_named(node, &name, &mut cmd)?;
            proc.wait_for_log("paths ready", crate::vm::slow(START_TIMEOUT))
                .with_context(|| format!("mpbridge paths {role} did not start"))?;
            Ok(proc)
        };
        let remote = start(Node::RouterB, &remote_path, "remote")?;
        let local = start(Node::RouterA, &local_path, "local")?;
        Ok(PathsOnly { local, remote })
    }

    /// SIGTERM to both (they remove what they set up), SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.local.terminate(grace);
        self.remote.terminate(grace);
    }
}

fn wait_listening(topo: &Topology, node: Node, port: u16, proc: &Proc) -> anyhow::Result<()> {
    let filter = format!("sport = :{port}");
    let listening = wait_until(crate::vm::slow(START_TIMEOUT), || {
        !proc.is_running()
            || topo
                .run(node, &["ss", "-ltnH", &filter])
                .is_ok_and(|out| !out.trim().is_empty())
    });
    anyhow::ensure!(
        listening && proc.is_running(),
        "{} did not start listening on port {port}:\n{}",
        proc.name(),
        proc.output_text()
    );
    Ok(())
}

/// The nftables script of the peer's interception: TCP arriving on router
/// A's LAN interface goes to `sslocal` by TPROXY (IPv4; the benchmarks use
/// IPv4), except what is addressed to router A itself. The socket rule
/// leaves a connection-opening SYN to the TPROXY rule, as mpbridge's own
/// table does: a SYN reusing a port that router A holds in TIME_WAIT would
/// otherwise meet that socket, get a stale ACK, and be sent again ~12 ms
/// later; the peer gets the same rules, or the comparison is not fair.
fn nft_script() -> String {
    let lan = bridge::LAN_INTERFACE;
    let mut s = String::new();
    let _ = writeln!(s, "table inet {NFT_TABLE} {{");
    let _ = writeln!(s, "\tchain prerouting {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook prerouting priority mangle; policy accept;"
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{lan}\" meta l4proto tcp tcp flags != syn / syn,ack socket transparent 1 meta mark set {MARK} accept"
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{lan}\" meta l4proto tcp fib daddr type local return"
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{lan}\" meta nfproto ipv4 meta l4proto tcp tproxy ip to :{LOCAL_PORT} \
         meta mark set {MARK} accept"
    );
    let _ = writeln!(s, "\t}}\n}}");
    s
}

fn install_interception(topo: &Topology) -> anyhow::Result<()> {
    let ns = topo.ns_name(Node::RouterA);
    exec::run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", "-"],
        Some(&nft_script()),
    )?;
    tproxy_routing(topo, "add")
}

fn remove_interception(topo: &Topology) -> anyhow::Result<()> {
    topo.run(
        Node::RouterA,
        &["nft", "delete", "table", "inet", NFT_TABLE],
    )?;
    tproxy_routing(topo, "del")
}

/// `verb` ("add" or "del") the policy rule and local route by which marked
/// packets reach the transparent listener.
fn tproxy_routing(topo: &Topology, verb: &str) -> anyhow::Result<()> {
    let table = TABLE.to_string();
    let rule = [
        "rule", verb, "fwmark", MARK, "lookup", &table, "priority", &table,
    ];
    let route = [
        "route", verb, "local", "default", "dev", "lo", "table", &table,
    ];
    for args in [&rule[..], &route[..]] {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        topo.run(Node::RouterA, &full)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_command_is_pinned_and_locked() {
        let args = install_args(Path::new("/cache/ss"));
        let line = args.join(" ");
        assert_eq!(
            line,
            format!(
                "install shadowsocks-rust --version {VERSION} --features local-redir --locked \
                 --root /cache/ss"
            )
        );
    }

    #[test]
    fn the_interception_diverts_only_lan_tcp_not_for_the_router() {
        let s = nft_script();
        assert!(s.contains("table inet mpblab_peer"), "{s}");
        assert!(s.contains("fib daddr type local return"), "{s}");
        assert!(s.contains(&format!("tproxy ip to :{LOCAL_PORT}")), "{s}");
        assert_eq!(s.matches("iifname \"lan0\"").count(), 3, "{s}");
    }
}
