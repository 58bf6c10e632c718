//! The OpenWrt init script (openwrt/mpbridge/files/mpbridge.init) under
//! busybox's ash, as on the router, with this build's `mpbridge uci`
//! rendering real UCI files. OpenWrt's procd and rc.common are not here:
//! stand-ins record what the script hands to procd (`procd_set_param`,
//! `procd_send_signal`, the firewall data in `json_*`), and `start` runs
//! `start_service` as rc.common does. What this checks: the open-files
//! limit given to procd, the remote's port opened through procd's firewall
//! data, and that a change of the bypass list alone reaches the running
//! local as SIGHUP while any other change alters the file procd watches
//! (so procd restarts the daemon).

#![cfg(feature = "uci")]

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "5f2b8c1e9a7d40c3b6e15a9f0d2c4e7b8a1f3d5c7e9b0a2c4d6f8e1a3b5c7d9e";

fn init_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openwrt/mpbridge/files/mpbridge.init")
}

fn router_a(bypass: &str, remote: &str) -> String {
    format!(
        "config mpbridge 'main'\n\toption enabled '1'\n\toption role 'local'\n\toption key '{KEY}'\n\
         \tlist remote '{remote}'\n\tlist lan_interface 'br-lan'\n\tlist bypass '{bypass}'\n\n\
         config link 'wifi1'\n\toption device 'wlan1'\n\toption peer '10.20.0.2'\n"
    )
}

fn router_b(port: &str) -> String {
    format!(
        "config mpbridge 'main'\n\toption enabled '1'\n\toption role 'remote'\n\toption key '{KEY}'\n\
         \toption listen_port '{port}'\n\nconfig link 'wifi1'\n\toption device 'wlan1'\n"
    )
}

/// A router's /etc and /var/etc in a temporary directory, and the script
/// run there under busybox ash.
struct Router {
    dir: PathBuf,
}

impl Router {
    fn new(name: &str) -> Router {
        let dir = std::env::temp_dir().join(format!("mpbridge-init-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("var/etc")).unwrap();
        Router { dir }
    }

    fn uci(&self, text: &str) {
        std::fs::write(self.dir.join("mpbridge.uci"), text).unwrap();
    }

    /// Runs `commands` after sourcing the init script with procd's and
    /// rc.common's functions replaced by recorders; returns what was
    /// recorded, one call a line.
    fn run(&self, commands: &str) -> String {
        let log = self.dir.join("procd.log");
        let _ = std::fs::remove_file(&log);
        let d = self.dir.display();
        let script = format!(
            r#"
record() {{ echo "$*" >> {d}/procd.log; }}
logger() {{ record logger "$@"; }}
procd_open_instance() {{ record open_instance "$@"; }}
procd_close_instance() {{ record close_instance; }}
procd_set_param() {{ record set_param "$@"; }}
procd_open_data() {{ record open_data; }}
procd_close_data() {{ record close_data; }}
procd_send_signal() {{ record send_signal "$@"; }}
procd_set_config_changed() {{ record config_changed "$@"; }}
json_add_array() {{ record json_array "$@"; }}
json_close_array() {{ record json_close_array; }}
json_add_object() {{ record json_object; }}
json_close_object() {{ record json_close_object; }}
json_add_string() {{ record json_string "$@"; }}
config_load() {{ :; }}
config_get() {{
	local v
	v=$(sed -n "s/^[[:space:]]*option $3 '\(.*\)'/\1/p" {d}/mpbridge.uci)
	eval "$1=\${{v:-$4}}"
}}
. {init}
PROG={prog}
UCI_FILE={d}/mpbridge.uci
CONF={d}/var/etc/mpbridge.toml
RESTART_VIEW={d}/var/etc/mpbridge.restart
start() {{ start_service; service_started; }}
{commands}
"#,
            init = init_script().display(),
            prog = env!("CARGO_BIN_EXE_mpbridge"),
        );
        let out = Command::new("busybox")
            .args(["sh", "-e", "-c", &script])
            .output()
            .expect("busybox (busybox-static) runs the init script as OpenWrt's ash would");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log).unwrap_or_default()
    }

    fn restart_view(&self) -> String {
        std::fs::read_to_string(self.dir.join("var/etc/mpbridge.restart")).unwrap()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_has(log: &str, line: &str) {
    assert!(log.lines().any(|l| l == line), "no {line:?} in\n{log}");
}

#[test]
fn the_local_gets_the_open_files_its_max_connections_need_and_watches_the_config_without_bypass() {
    let router = Router::new("limits");
    router.uci(&router_a("192.168.50.0/24", "10.20.0.2"));
    let log = router.run("start_service");
    let view = router.dir.join("var/etc/mpbridge.restart");
    assert_has(&log, "open_instance local");
    // The default max_connections (4096) × 6 + 64.
    assert_has(&log, "set_param limits nofile=24640 24640");
    assert_has(&log, &format!("set_param file {}", view.display()));
    assert!(
        !log.contains("json"),
        "no firewall data on router A:\n{log}"
    );
    let toml = std::fs::read_to_string(router.dir.join("var/etc/mpbridge.toml")).unwrap();
    assert!(toml.contains("192.168.50.0/24"), "{toml}");
    let view = router.restart_view();
    assert!(!view.contains("bypass"), "{view}");
    assert!(view.contains("10.20.0.2:4443"), "{view}");
    assert!(view.contains("[[link]]"), "{view}");
}

#[test]
fn a_bypass_change_alone_is_a_sighup_anything_else_changes_what_procd_watches() {
    let router = Router::new("reload");
    router.uci(&router_a("192.168.50.0/24", "10.20.0.2"));
    router.run("start_service");
    let first = router.restart_view();

    // Only the bypass list: SIGHUP to the local, the watched file as it was.
    router.uci(&router_a("192.168.60.0/24", "10.20.0.2"));
    let log = router.run("reload_service");
    assert_has(&log, "send_signal mpbridge local HUP");
    assert_eq!(router.restart_view(), first);

    // Nothing changed: nothing sent.
    let log = router.run("reload_service");
    assert!(!log.contains("send_signal"), "{log}");

    // Another remote: no signal; the watched file changes, so procd
    // restarts the daemon with the new config.
    router.uci(&router_a("192.168.60.0/24", "10.20.0.9"));
    let log = router.run("reload_service");
    assert!(!log.contains("send_signal"), "{log}");
    assert_ne!(router.restart_view(), first);
    assert!(router.restart_view().contains("10.20.0.9:4443"));
}

#[test]
fn the_remote_opens_its_port_through_procds_firewall_data() {
    let router = Router::new("remote");
    router.uci(&router_b("5000"));
    let log = router.run("start_service; service_started");
    assert_has(&log, "open_instance remote");
    assert_has(&log, "json_array firewall");
    assert_has(&log, "json_string type rule");
    assert_has(&log, "json_string src *");
    assert_has(&log, "json_string proto tcp udp");
    assert_has(&log, "json_string dest_port 5000");
    assert_has(&log, "json_string target ACCEPT");
    assert_has(&log, "config_changed firewall");
    let toml = std::fs::read_to_string(router.dir.join("var/etc/mpbridge.toml")).unwrap();
    assert!(toml.contains("0.0.0.0:5000"), "{toml}");
}

#[test]
fn a_mistake_is_logged_naming_the_option_and_nothing_starts() {
    let router = Router::new("mistake");
    router.uci(&router_a("192.168.50.0/33", "10.20.0.2"));
    let log = router.run("start_service || echo failed >> $UCI_FILE.rc");
    assert!(log.contains("logger -t mpbridge -p daemon.err"), "{log}");
    assert!(log.contains("option bypass"), "{log}");
    assert!(!log.contains("open_instance"), "{log}");
    assert!(Path::new(&format!("{}.rc", router.dir.join("mpbridge.uci").display())).exists());
}

#[test]
fn a_package_upgrade_leaves_a_disabled_service_stopped_and_starts_an_enabled_one() {
    let router = Router::new("upgrade");
    router.uci(&router_a("192.168.50.0/24", "10.20.0.2"));
    // rc.common's `enabled`: the service's /etc/rc.d link is there or not.
    let log = router.run("enabled() { return 1; }; PKG_UPGRADE=1 start_service");
    assert!(!log.contains("open_instance"), "{log}");
    let log = router.run("enabled() { return 0; }; PKG_UPGRADE=1 start_service");
    assert_has(&log, "open_instance local");
    // Not an upgrade: `service mpbridge start` starts even a disabled one.
    let log = router.run("enabled() { return 1; }; start_service");
    assert_has(&log, "open_instance local");
}
