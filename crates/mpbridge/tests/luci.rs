//! OpenWrt's management plane around a live mpbridge, on Debian: the real
//! ubusd, rpcd (with the LuCI app's ucode plugin `luci.mpbridge` and its
//! ACL) and uhttpd (`/ubus` JSON-RPC), built from ../shared/vendor by
//! scripts/openwrt-mgmt.sh, run in router A's namespace of the lab next to
//! the real daemons.
//!
//! netifd is not among them: a stand-in (tests/openwrt/netifd-standin.uc,
//! a ucode script on the real ubusd, NOT netifd) publishes
//! `network.interface.NAME` objects whose `status` answers as netifd's do,
//! from a JSON file the test rewrites.
//!
//! rpcd reads /etc/config/rpcd, /var/run/rpcd and PREFIX/share/rpcd at
//! fixed paths, so it runs in a mount namespace of its own (`unshare -m`):
//! an overlay on /etc and /var with the test's files, a tmpfs on /run and
//! the test's plugin and ACLs over PREFIX/share/rpcd. Nothing outside the
//! test's namespaces changes.
//!
//! Ignored by default: run by scripts/test.sh after scripts/openwrt-mgmt.sh,
//! with MPBRIDGE_OPENWRT_PREFIX set to the prefix it printed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Bridge, Download, Options};
use mpbridge_lab::{bridge as lab_bridge, wait_until, Node, Proc, Topology};
use serde_json::{json, Value};

const MPBRIDGE: &str = env!("CARGO_BIN_EXE_mpbridge");
const SETTLE: Duration = Duration::from_secs(10);
/// uhttpd's address inside router A's namespace.
const UHTTPD: &str = "127.0.0.1:8080";
/// rpcd's password for both test users, "secret", as `openssl passwd -1
/// -salt mpbtest secret` hashes it (rpcd checks it with crypt(3)).
const PASSWORD_HASH: &str = "$1$mpbtest$omAoLvWuk5LjNmOFj2CSZ1";
const KEY: &str = "5f2b8c1e9a7d40c3b6e15a9f0d2c4e7b8a1f3d5c7e9b0a2c4d6f8e1a3b5c7d9e";
/// The session id of a request without a session.
const NO_SESSION: &str = "00000000000000000000000000000000";
/// The JSON-RPC error rpcd's ACLs give through uhttpd.
const ACCESS_DENIED: i64 = -32002;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The prefix scripts/openwrt-mgmt.sh built into.
fn prefix() -> PathBuf {
    let Some(p) = std::env::var_os("MPBRIDGE_OPENWRT_PREFIX") else {
        panic!(
            "MPBRIDGE_OPENWRT_PREFIX is not set: run `MPBRIDGE_OPENWRT_PREFIX=$(scripts/openwrt-mgmt.sh)` \
             first (scripts/test.sh does)"
        );
    };
    let p = PathBuf::from(p);
    assert!(
        p.join("sbin/rpcd").exists() && p.join("bin/uhttpd").exists(),
        "{} holds no rpcd/uhttpd: run scripts/openwrt-mgmt.sh",
        p.display()
    );
    p
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// ubusd and the netifd stand-in in router A, and a `ubus` in `dir/bin`
/// that talks to that ubusd (what `mpbridge uci` runs for network names).
struct Bus {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    _ubusd: Proc,
    _netifd: Proc,
}

impl Bus {
    fn start(topo: &Topology, prefix: &Path, networks: &Value) -> Bus {
        let dir = topo.workdir().join("openwrt");
        let socket = dir.join("ubus.sock");
        let state = dir.join("netifd-state.json");
        write(&state, &networks.to_string());
        let ubusd = topo
            .spawn(
                Node::RouterA,
                Command::new(prefix.join("sbin/ubusd"))
                    .arg("-s")
                    .arg(&socket),
            )
            .unwrap();
        assert!(
            wait_until(SETTLE, || socket.exists()),
            "ubusd did not make {}: {}",
            socket.display(),
            ubusd.output_text()
        );
        let netifd = topo
            .spawn_named(
                Node::RouterA,
                "netifd-standin",
                Command::new(prefix.join("bin/ucode"))
                    .arg("-L")
                    .arg(prefix.join("lib/ucode"))
                    .arg(repo().join("crates/mpbridge/tests/openwrt/netifd-standin.uc"))
                    .arg(&socket)
                    .arg(&state),
            )
            .unwrap();
        netifd
            .wait_for_log("netifd stand-in: published", SETTLE)
            .unwrap();
        let bin = dir.join("bin");
        write(
            &bin.join("ubus"),
            &format!(
                "#!/bin/sh\nexec {} -s {} \"$@\"\n",
                prefix.join("bin/ubus").display(),
                socket.display()
            ),
        );
        std::os::unix::fs::symlink(MPBRIDGE, bin.join("mpbridge")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("ubus"), std::fs::Permissions::from_mode(0o755)).unwrap();
        Bus {
            dir,
            socket,
            state,
            _ubusd: ubusd,
            _netifd: netifd,
        }
    }

    /// What netifd says from now on.
    fn set_networks(&self, networks: &Value) {
        let tmp = self.state.with_extension("tmp");
        write(&tmp, &networks.to_string());
        std::fs::rename(&tmp, &self.state).unwrap();
    }

    /// PATH with this bus's `ubus` and `mpbridge` first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `mpbridge uci --output OUT FILE` as the init script runs it, with
    /// this bus's `ubus`; (exit code, stdout, stderr).
    fn render(&self, topo: &Topology, uci: &Path, out: &Path) -> (i32, String, String) {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                topo.ns_name(Node::RouterA),
                MPBRIDGE,
                "uci",
            ])
            .arg("--output")
            .arg(out)
            .arg(uci)
            .env("PATH", self.path())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// rpcd (with the app's plugin and ACL) and uhttpd on top of a [`Bus`].
struct Web {
    /// Bound at /etc/config in rpcd's mount namespace.
    config: PathBuf,
    rpcd: Proc,
    uhttpd: Proc,
}

impl Web {
    fn start(topo: &Topology, prefix: &Path, bus: &Bus, rendered: &Path) -> Web {
        let dir = &bus.dir;
        let app = repo().join("openwrt/luci-app-mpbridge/root/usr/share/rpcd");
        let share = dir.join("rpcd-share");
        for sub in ["ucode", "acl.d"] {
            std::fs::create_dir_all(share.join(sub)).unwrap();
        }
        std::fs::copy(
            app.join("ucode/luci.mpbridge"),
            share.join("ucode/luci.mpbridge"),
        )
        .unwrap();
        std::fs::copy(
            app.join("acl.d/luci-app-mpbridge.json"),
            share.join("acl.d/luci-app-mpbridge.json"),
        )
        .unwrap();
        // What rpcd's own package installs for requests without a session
        // (written here: rpcd's source has it, our prefix does not).
        write(
            &share.join("acl.d/unauthenticated.json"),
            &json!({"unauthenticated": {
                "description": "Access controls for unauthenticated requests",
                "read": {"ubus": {"session": ["access", "login"]}}
            }})
            .to_string(),
        );
        let config = dir.join("etc-config");
        // root may do everything; guest only what an unauthenticated
        // session may (it logs in, and is refused the rest).
        write(
            &config.join("rpcd"),
            &format!(
                "config login\n\toption username 'root'\n\toption password '{PASSWORD_HASH}'\n\
                 \tlist read '*'\n\tlist write '*'\n\n\
                 config login\n\toption username 'guest'\n\toption password '{PASSWORD_HASH}'\n\
                 \tlist read 'unauthenticated'\n"
            ),
        );
        // The file the init script renders and starts the daemon with.
        let var_upper = dir.join("var-upper");
        std::fs::create_dir_all(var_upper.join("etc")).unwrap();
        std::fs::copy(rendered, var_upper.join("etc/mpbridge.toml")).unwrap();
        for d in ["etc-upper/config", "etc-work", "var-work", "www"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let d = dir.display();
        let script = format!(
            "set -e\n\
             mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc\n\
             mount --bind {config} /etc/config\n\
             mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var-upper,workdir={d}/var-work /var\n\
             mount -t tmpfs tmpfs /run\n\
             mount --bind {share} {prefix}/share/rpcd\n\
             exec {prefix}/sbin/rpcd -s {sock}\n",
            config = config.display(),
            share = share.display(),
            prefix = prefix.display(),
            sock = bus.socket.display(),
        );
        let rpcd = topo
            .spawn_named(
                Node::RouterA,
                "rpcd",
                Command::new("unshare")
                    .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                    .env("PATH", bus.path()),
            )
            .unwrap();
        let uhttpd = topo
            .spawn_named(
                Node::RouterA,
                "uhttpd",
                Command::new(prefix.join("bin/uhttpd"))
                    .args(["-f", "-p", UHTTPD, "-u", "/ubus", "-U"])
                    .arg(&bus.socket)
                    .arg("-h")
                    .arg(dir.join("www")),
            )
            .unwrap();
        let web = Web {
            config,
            rpcd,
            uhttpd,
        };
        // Ready once rpcd has registered `session` (before that, uhttpd
        // answers "Object not found", -32000) and the plugin.
        let ready = wait_until(SETTLE, || {
            web.post(
                topo,
                &call(NO_SESSION, "luci.mpbridge", "status", json!({})),
            )
            .is_ok_and(|v| v["error"]["code"].as_i64() == Some(ACCESS_DENIED))
        });
        assert!(ready, "uhttpd/rpcd did not answer:\n{}", web.logs());
        web
    }

    fn logs(&self) -> String {
        format!(
            "--- rpcd ---\n{}\n--- uhttpd ---\n{}",
            self.rpcd.output_text(),
            self.uhttpd.output_text()
        )
    }

    /// One JSON-RPC POST to uhttpd's /ubus, from inside router A.
    fn post(&self, topo: &Topology, body: &Value) -> std::io::Result<Value> {
        let body = body.to_string();
        let reply = topo.enter(Node::RouterA, move || -> std::io::Result<String> {
            let addr: SocketAddr = UHTTPD.parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            write!(
                s,
                "POST /ubus HTTP/1.0\r\nHost: {UHTTPD}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })?;
        let (_, payload) = reply
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, reply.clone()))?;
        serde_json::from_str(payload).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {reply}"))
        })
    }

    /// A `call` whose result must be ubus status 0: its data.
    fn ok(&self, topo: &Topology, sid: &str, object: &str, method: &str, args: Value) -> Value {
        let reply = self
            .post(topo, &call(sid, object, method, args))
            .unwrap_or_else(|e| panic!("{object}.{method}: {e}\n{}", self.logs()));
        match reply["result"].as_array().map(Vec::as_slice) {
            Some([code, data]) if code == 0 => data.clone(),
            Some([code]) if code == 0 => Value::Null,
            _ => panic!("{object}.{method}: {reply}\n{}", self.logs()),
        }
    }

    fn login(&self, topo: &Topology, user: &str) -> String {
        let data = self.ok(
            topo,
            NO_SESSION,
            "session",
            "login",
            json!({"username": user, "password": "secret"}),
        );
        data["ubus_rpc_session"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {data}"))
            .to_owned()
    }
}

fn call(sid: &str, object: &str, method: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "call", "params": [sid, object, method, args]})
}

/// The UCI file of router A in the lab: `links` are the `config link`
/// sections' bodies.
fn uci_router_a(topo: &Topology, links: &[&str]) -> String {
    let mut text = format!(
        "config mpbridge 'main'\n\toption role 'local'\n\toption key '{KEY}'\n\
         \tlist remote '{}'\n\toption port '{}'\n\tlist lan_interface 'lan0'\n",
        topo.rb_link_addr(0, false),
        common::REMOTE_PORT
    );
    for (i, body) in links.iter().enumerate() {
        text.push_str(&format!("\nconfig link 'link{i}'\n{body}"));
    }
    text
}

/// The lab's config of the local with its `[[link]]` tables replaced by
/// those `mpbridge uci` rendered (the rest, its control socket in the
/// test's directory above all, stays the lab's).
fn with_rendered_links(lab: &str, rendered: &str) -> String {
    let head = &lab[..lab.find("\n[[link]]").expect("links in the lab's config")];
    let first = ["\n# network ", "\n[[link]]"]
        .iter()
        .filter_map(|m| rendered.find(m))
        .min()
        .expect("links in the rendered config");
    format!("{head}\n{}", &rendered[first..])
}

fn link_names(status: &Value) -> Vec<String> {
    status["links"]
        .as_array()
        .unwrap_or_else(|| panic!("no links in {status}"))
        .iter()
        .map(|l| l["interface"].as_str().unwrap().to_owned())
        .collect()
}

/// A link named by its OpenWrt network follows the device netifd reports:
/// resolved when the config is rendered, kept across an ifdown (no
/// restart), and moved to the new device at the ifup that brings one,
/// while the daemon runs.
#[test]
#[ignore = "needs scripts/openwrt-mgmt.sh's build (MPBRIDGE_OPENWRT_PREFIX): scripts/test.sh"]
fn network_names_follow_netifd() {
    let prefix = prefix();
    let mut bridge = Bridge::start(Options::default());
    let topo = &bridge.topo;
    let (dev0, dev1) = (topo.link_ifname(0), topo.link_ifname(1));
    let bus = Bus::start(
        topo,
        &prefix,
        &json!({"wwan": {"up": true, "l3_device": dev0, "device": dev0}}),
    );
    let uci = bus.dir.join("config-mpbridge");
    write(&uci, &uci_router_a(topo, &["\toption network 'wwan'\n"]));
    let rendered = bus.dir.join("mpbridge.toml");
    let lab_config = std::fs::read_to_string(topo.workdir().join("local.toml")).unwrap();

    let (code, out, err) = bus.render(topo, &uci, &rendered);
    assert_eq!((code, out.trim()), (0, "local enabled"), "{err}");
    let first = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        first.contains(&format!("interface = \"{dev0}\"")),
        "{first}"
    );

    // The daemon runs with the links mpbridge uci resolved.
    bridge.local.terminate(SETTLE);
    write(
        &topo.workdir().join("local.toml"),
        &with_rendered_links(&lab_config, &first),
    );
    bridge.local = lab_bridge::restart_local(topo, Path::new(MPBRIDGE), "local-wwan").unwrap();
    assert_eq!(link_names(&bridge.status(Node::RouterA)), [dev0.as_str()]);

    // ifdown: netifd no longer names a device; the rendered file does not
    // change, so procd would leave the daemon alone.
    bus.set_networks(&json!({"wwan": {"up": false}}));
    let (code, _, err) = bus.render(topo, &uci, &rendered);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&rendered).unwrap(), first);

    // ifup on another device (the radio was reconfigured): rendered again,
    // the new device is in the file, and the daemon restarted with it (as
    // procd does when the file changed) runs on it.
    bus.set_networks(&json!({"wwan": {"up": true, "l3_device": dev1, "device": dev1}}));
    let (code, _, err) = bus.render(topo, &uci, &rendered);
    assert_eq!(code, 0, "{err}");
    let second = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        second.contains(&format!("interface = \"{dev1}\"")),
        "{second}"
    );
    assert!(!second.contains(&format!("\"{dev0}\"")), "{second}");
    bridge.local.terminate(SETTLE);
    write(
        &topo.workdir().join("local.toml"),
        &with_rendered_links(&lab_config, &second),
    );
    bridge.local = lab_bridge::restart_local(topo, Path::new(MPBRIDGE), "local-wwan2").unwrap();
    let moved = wait_until(SETTLE, || {
        let s = bridge.status(Node::RouterA);
        link_names(&s) == [dev1.as_str()] && s["links"][0]["kernel_up"] == true
    });
    assert!(moved, "{:#}", bridge.status(Node::RouterA));

    // A network down with no device ever seen: the init script's
    // mpbridge_render logs the warning and still hands procd the role.
    let fresh = bus.dir.join("fresh.toml");
    bus.set_networks(&json!({"wwan": {"up": false}}));
    let script = format!(
        ". '{init}'\nPROG={MPBRIDGE}\nUCI_FILE='{uci}'\nCONF='{conf}'\n\
         logger() {{ echo \"logger $*: $(cat)\"; }}\nmpbridge_render\n",
        init = repo()
            .join("openwrt/mpbridge/files/mpbridge.init")
            .display(),
        uci = uci.display(),
        conf = fresh.display(),
    );
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            topo.ns_name(Node::RouterA),
            "sh",
            "-c",
            &script,
        ])
        .env("PATH", bus.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines[0].starts_with("logger -t mpbridge -p daemon.warn: mpbridge: warning: ")
            && lines[0]
                .contains("section mpbridge.link0, option network: network \"wwan\" is down"),
        "{said}"
    );
    assert_eq!(lines[1..], ["local enabled"], "{said}");
    assert!(!fresh.with_extension("toml.uci-stderr").exists());

    // Mistakes name the section and option.
    for (body, want) in [
        (
            "\toption network 'wan9'\n",
            "section mpbridge.link0, option network: netifd knows no network \"wan9\"",
        ),
        (
            "\toption network 'wwan'\n\toption device 'wan0'\n",
            "section mpbridge.link0, option network: set either network",
        ),
        (
            "\toption peer '10.20.0.2'\n",
            "section mpbridge.link0: neither option network",
        ),
    ] {
        let bad = bus.dir.join("config-bad");
        write(&bad, &uci_router_a(topo, &[body]));
        let (code, _, err) = bus.render(topo, &bad, &bus.dir.join("bad.toml"));
        assert_eq!(code, 78, "{body}: {err}");
        assert!(err.contains(want), "{body}: {err}");
    }
}

/// LuCI's back end against the live daemon: a real rpcd session through
/// uhttpd's /ubus, `luci.mpbridge status` equal to the daemon's own view,
/// the ACL refusing who has no grant, `check` naming the section and option
/// of a mistake, `genkey`.
#[test]
#[ignore = "needs scripts/openwrt-mgmt.sh's build (MPBRIDGE_OPENWRT_PREFIX): scripts/test.sh"]
fn luci_back_end_through_uhttpd() {
    let prefix = prefix();
    let bridge = Bridge::start(Options::default());
    let topo = &bridge.topo;
    let download = Download::start(&bridge);
    let bus = Bus::start(
        topo,
        &prefix,
        &json!({"wwan": {"up": true, "l3_device": topo.link_ifname(0)}}),
    );
    let web = Web::start(topo, &prefix, &bus, &topo.workdir().join("local.toml"));
    let uci = uci_router_a(
        topo,
        &["\toption network 'wwan'\n", "\toption device 'wan1'\n"],
    );
    write(&web.config.join("mpbridge"), &uci);

    // Refused without a session and with a session whose user has no
    // grant for the app's ACL group.
    for sid in [NO_SESSION.to_owned(), web.login(topo, "guest")] {
        for method in ["status", "check", "genkey"] {
            let reply = web
                .post(topo, &call(&sid, "luci.mpbridge", method, json!({})))
                .unwrap();
            assert_eq!(
                reply["error"]["code"].as_i64(),
                Some(ACCESS_DENIED),
                "{method} with session {sid}: {reply}"
            );
            println!(
                "session {sid}: luci.mpbridge {method} -> {}",
                reply["error"]
            );
        }
    }

    let sid = web.login(topo, "root");
    // Once the download shows in the daemon's status, the plugin's answer
    // is the same daemon's: same process, same links, the connection.
    let daemon = bridge.status(Node::RouterA);
    let seen = wait_until(SETTLE, || {
        let s = web.ok(topo, &sid, "luci.mpbridge", "status", json!({}));
        s["status"]["connections"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["client"] == download.client.to_string()))
    });
    let reply = web.ok(topo, &sid, "luci.mpbridge", "status", json!({}));
    assert!(seen, "{reply:#}\n{}", web.logs());
    assert_eq!(reply["running"], true, "{reply:#}");
    let status = &reply["status"];
    assert_eq!(status["mode"], "local");
    assert_eq!(status["pid"], daemon["pid"]);
    assert_eq!(link_names(status), link_names(&daemon));
    for (ours, theirs) in status["links"]
        .as_array()
        .unwrap()
        .iter()
        .zip(daemon["links"].as_array().unwrap())
    {
        assert_eq!(ours["addresses"], theirs["addresses"]);
        assert_eq!(ours["backup"], theirs["backup"]);
        for key in [
            "state",
            "rtt_ms",
            "loss_percent",
            "tx_bits_per_sec",
            "subflows",
        ] {
            assert!(ours.get(key).is_some(), "no {key} in {ours}");
        }
    }
    for l in status["links"].as_array().unwrap() {
        println!(
            "luci.mpbridge status: link {} {} rtt {} ms, loss {} %, tx {} bit/s, rx {} bit/s, {} subflows",
            l["interface"], l["state"], l["rtt_ms"], l["loss_percent"],
            l["tx_bits_per_sec"], l["rx_bits_per_sec"], l["subflows"]
        );
    }
    for c in status["connections"].as_array().unwrap() {
        println!(
            "luci.mpbridge status: connection {} -> {}, {} subflows",
            c["client"],
            c["destination"],
            c["subflows"].as_array().map_or(0, Vec::len)
        );
    }
    // The plugin asks for the top 10 by default, as the page shows them.
    let limited = web.ok(topo, &sid, "luci.mpbridge", "status", json!({"limit": 0}));
    assert_eq!(limited["status"]["connections"], json!([]), "{limited}");

    // check: the file as it is, then with mistakes.
    let ok = web.ok(topo, &sid, "luci.mpbridge", "check", json!({}));
    assert_eq!(
        (&ok["valid"], &ok["role"], &ok["enabled"]),
        (&json!(true), &json!("local"), &json!(true)),
        "{ok}"
    );
    for (from, to, section, option) in [
        (
            format!("option port '{}'", common::REMOTE_PORT),
            "option port 'https'".to_owned(),
            "mpbridge.main",
            "port",
        ),
        (
            "option network 'wwan'".to_owned(),
            "option network 'wan9'".to_owned(),
            "mpbridge.link0",
            "network",
        ),
        (
            "option device 'wan1'".to_owned(),
            "option device 'wan1'\n\toption backup 'maybe'".to_owned(),
            "mpbridge.link1",
            "backup",
        ),
    ] {
        let bad = uci.replacen(&from, &to, 1);
        assert_ne!(bad, uci, "{from}");
        write(&web.config.join("mpbridge"), &bad);
        let r = web.ok(topo, &sid, "luci.mpbridge", "check", json!({}));
        println!("luci.mpbridge check ({to:?}) -> {r}");
        assert_eq!(r["valid"], false, "{to}: {r}");
        assert_eq!(
            (r["section"].as_str(), r["option"].as_str()),
            (Some(section), Some(option)),
            "{to}: {r}"
        );
        let line = r["line"].as_u64().unwrap() as usize;
        assert!(
            bad.lines()
                .nth(line - 1)
                .unwrap()
                .contains(to.lines().last().unwrap().trim()),
            "{to}: line {line}: {r}"
        );
    }
    write(&web.config.join("mpbridge"), &uci);

    let key = web.ok(topo, &sid, "luci.mpbridge", "genkey", json!({}));
    let key = key["key"].as_str().unwrap_or_else(|| panic!("{key}"));
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    download.stop();
}

/// The init script's trigger wiring, run by a POSIX shell with stand-ins
/// for OpenWrt's shell library (config_load/config_foreach/config_get from
/// /lib/functions.sh and procd's procd_add_*_trigger, which only record
/// here): each link named by a network gets an interface trigger that
/// re-renders (`reload`); links named by device get none. procd itself,
/// which would fire them, is not part of this test.
#[test]
fn init_script_reloads_on_the_link_networks_interface_events() {
    let init = repo().join("openwrt/mpbridge/files/mpbridge.init");
    let script = format!(
        r#"
set -e
. '{init}'
# Three link sections: two by network, one by device.
config_load() {{ [ "$1" = mpbridge ]; }}
config_foreach() {{ for s in wifi1 wifi2 wired; do "$1" "$s"; done; }}
config_get() {{
    case "$2.$3" in
    wifi1.network) eval "$1=wwan" ;;
    wifi2.network) eval "$1=wan2" ;;
    *) eval "$1=" ;;
    esac
}}
procd_add_interface_trigger() {{ echo "interface-trigger $*"; }}
mpbridge_network_triggers
"#,
        init = init.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "interface-trigger interface.* wwan /etc/init.d/mpbridge reload",
            "interface-trigger interface.* wan2 /etc/init.d/mpbridge reload",
        ]
    );
}
