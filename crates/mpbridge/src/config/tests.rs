//! Tests of the whole validation pass: defaults, every value used, every
//! error naming file, line, column and field, warnings, overrides.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;

use super::fields::unspecified_on;
use super::*;

const ORIGIN: &str = "/etc/mpbridge/mpbridge.toml";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    parse_str(text, Path::new(ORIGIN))
}

fn local(text: &str) -> Result<(LocalSettings, Vec<Warning>), ConfigError> {
    parse(text)?.local(&Overrides::default())
}

fn remote(text: &str) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
    parse(text)?.remote(&Overrides::default())
}

fn error_text<T>(r: Result<T, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A file under the temp dir with a unique name, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str, mode: u32) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mpbridge-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn psk(auth: &Auth) -> (&KeySpec, &[KeySpec], u64, usize) {
    match auth {
        Auth::Psk {
            send,
            accept,
            window_secs,
            replay_capacity,
        } => (send, accept, *window_secs, *replay_capacity),
        Auth::None => panic!("expected psk"),
    }
}

#[test]
fn minimal_local_config_parses_with_defaults() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
    let (s, warnings) = local(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(s.listen, unspecified_on(12345));
    assert_eq!(s.interception.mode, InterceptionMode::Tproxy);
    assert_eq!(s.remotes, vec!["192.0.2.2:4443".parse().unwrap()]);
    assert_eq!(s.connect_timeout, Duration::from_millis(5000));
    assert_eq!(s.reply_timeout, Duration::from_millis(10000));
    assert!(s.mptcp && s.fastopen);
    assert_eq!(s.common.limits, Limits::default());
    assert_eq!(s.common.limits.max_connections, 4096);
    assert_eq!(s.common.limits.drain, Duration::from_secs(10));
    assert_eq!(s.common.limits.pipe_size, 262_144);
    assert_eq!(s.common.log_level, tracing::Level::INFO);
    assert_eq!(
        s.common.control,
        ControlSettings {
            socket: Some(PathBuf::from("/run/mpbridge/local.sock")),
            metrics_listen: None,
        }
    );
    let (send, accept, window, replay) = psk(&s.common.auth);
    assert_eq!(send.id, 1);
    assert_eq!(hex::encode(send.secret.expose()), KEY);
    assert_eq!(accept.len(), 1);
    assert_eq!(accept[0].id, 1);
    assert_eq!((window, replay), (60, 65536));
}

#[test]
fn minimal_remote_config_parses_with_defaults() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n");
    let (s, warnings) = remote(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(s.listen, unspecified_on(4443));
    assert_eq!(s.header_timeout, Duration::from_millis(5000));
    assert_eq!(s.connect_timeout, Duration::from_millis(5000));
    assert_eq!(s.policy, DestPolicy::default());
    assert_eq!(s.common.limits, Limits::default());
    assert_eq!(s.common.log_level, tracing::Level::INFO);
    assert_eq!(
        s.common.control.socket,
        Some(PathBuf::from("/run/mpbridge/remote.sock"))
    );
    assert_eq!(s.common.control.metrics_listen, None);
    psk(&s.common.auth);
}

#[test]
fn control_sockets_are_read_per_role_and_can_be_turned_off() {
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n\
         control_socket = \"/tmp/a/l.sock\"\n[remote]\ncontrol_socket = \"\"\n"
    );
    let (l, _) = local(&text).unwrap();
    assert_eq!(
        l.common.control.socket,
        Some(PathBuf::from("/tmp/a/l.sock"))
    );
    let (r, _) = remote(&text).unwrap();
    assert_eq!(r.common.control.socket, None);
    // `mpbridge status` reads both without the rest being valid.
    let sockets = parse("[local]\ncontrol_socket = \"/x.sock\"\n[auth]\nkey_id = 1\n")
        .unwrap()
        .control_sockets()
        .unwrap();
    assert_eq!(
        sockets,
        vec![
            (Role::Local, Some(PathBuf::from("/x.sock"))),
            (
                Role::Remote,
                Some(PathBuf::from("/run/mpbridge/remote.sock"))
            ),
        ]
    );
}

#[test]
fn metrics_listen_needs_the_metrics_feature() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[remote]\nmetrics_listen = \"127.0.0.1:9410\"\n");
    if cfg!(feature = "metrics") {
        let (r, warnings) = remote(&text).unwrap();
        assert_eq!(
            r.common.control.metrics_listen,
            Some("127.0.0.1:9410".parse().unwrap())
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let open = text.replace("127.0.0.1", "0.0.0.0");
        let (_, warnings) = remote(&open).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.0.contains("without authentication")),
            "{warnings:?}"
        );
    } else {
        let message = error_text(remote(&text));
        assert!(
            message.starts_with(&format!("{ORIGIN}:4:18: remote.metrics_listen: ")),
            "{message}"
        );
        assert!(
            message.contains("without the `metrics` feature"),
            "{message}"
        );
    }
}

#[test]
fn every_value_in_the_file_is_used() {
    let text = format!(
        "[auth]\nkey_id = 7\nkey = \"{KEY}\"\nwindow_secs = 30\nreplay_cache = 100\n\
         [[auth.accept]]\nid = 8\nkey = \"{KEY2}\"\n\
         [local]\nlisten = [\"127.0.0.1:0\"]\nintercept = \"redirect\"\n\
         remotes = [\"192.0.2.2:4443\", \"[2001:db8::2]:4443\"]\nconnect_timeout_ms = 100\n\
         reply_timeout_ms = 200\nmptcp = false\nfastopen = false\n\
         [remote]\nlisten = [\"[::1]:0\"]\nheader_timeout_ms = 300\nconnect_timeout_ms = 400\n\
         allow = [\"10.0.0.0/8\", \"192.0.2.1\"]\ndeny = [\"::ffff:10.1.0.0/112\"]\nallow_loopback = false\n\
         [limits]\nmax_connections = 5\ndrain_secs = 0\npipe_size = 4096\n[log]\nlevel = \"DEBUG\"\n"
    );
    let (l, _) = local(&text).unwrap();
    assert_eq!(l.listen, vec!["127.0.0.1:0".parse().unwrap()]);
    assert_eq!(l.interception.mode, InterceptionMode::Redirect);
    assert_eq!(l.remotes.len(), 2);
    assert_eq!(l.connect_timeout, Duration::from_millis(100));
    assert_eq!(l.reply_timeout, Duration::from_millis(200));
    assert!(!l.mptcp && !l.fastopen);
    assert_eq!(
        l.common.limits,
        Limits {
            max_connections: 5,
            drain: Duration::ZERO,
            pipe_size: 4096
        }
    );
    assert_eq!(l.common.log_level, tracing::Level::DEBUG);
    let (send, accept, window, replay) = psk(&l.common.auth);
    assert_eq!(send.id, 7);
    assert_eq!(accept.iter().map(|k| k.id).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(hex::encode(accept[1].secret.expose()), KEY2);
    assert_eq!((window, replay), (30, 100));

    let (r, _) = remote(&text).unwrap();
    assert_eq!(r.listen, vec!["[::1]:0".parse().unwrap()]);
    assert_eq!(r.header_timeout, Duration::from_millis(300));
    assert_eq!(r.connect_timeout, Duration::from_millis(400));
    assert_eq!(
        r.policy.allow,
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.1/32".parse().unwrap()
        ]
    );
    assert_eq!(r.policy.deny, vec!["10.1.0.0/16".parse().unwrap()]);
}

/// (what, file text, role, exact "file:line:col: field:" prefix, text the problem contains)
type ErrorCase = (&'static str, String, Role, &'static str, &'static str);

fn error_cases() -> Vec<ErrorCase> {
    let key = format!("[auth]\nkey = \"{KEY}\"\n");
    vec![
        (
            "relative control socket",
            format!("{key}[remote]\ncontrol_socket = \"run/r.sock\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:18: remote.control_socket: ",
            "\"run/r.sock\" is not an absolute path",
        ),
        (
            "control socket path too long",
            format!(
                "{key}[local]\nremotes = [\"192.0.2.2:4443\"]\ncontrol_socket = \"/{}\"\n",
                "s".repeat(107)
            ),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:5:18: local.control_socket: ",
            "is 108 bytes long (expected at most 107",
        ),
        (
            "unknown field",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n\n\n\n[auth.x]\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:8:7: auth.x: ",
            "unknown field (expected one of mode, key_id, key, key_file, window_secs, replay_cache, accept)",
        ),
        (
            "unknown field in a section",
            format!("{key}\n\n\n\ncolour = 1\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:7:1: auth.colour: ",
            "unknown field (expected one of mode, key_id",
        ),
        (
            "unknown section",
            format!("{key}[remtoe]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:2: remtoe: ",
            "unknown field (expected one of auth, local, remote, limits, log, link, probe, paths)",
        ),
        (
            "wrong type",
            format!("{key}key_id = \"one\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:3:10: auth.key_id: ",
            "found string \"one\" (expected an integer)",
        ),
        (
            "table where an array of tables belongs",
            format!("{key}[auth.accept]\nid = 2\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:1: auth.accept: ",
            "write [[auth.accept]]",
        ),
        (
            "missing id in an accept entry",
            format!("{key}[[auth.accept]]\nid = 2\nkey = \"{KEY2}\"\n[[auth.accept]]\nkey = \"{KEY2}\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:6:1: auth.accept[1].id: ",
            "required",
        ),
        (
            "syntax error",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:4:28: invalid TOML: ",
            "unclosed array",
        ),
        (
            "bad CIDR",
            format!("{key}[remote]\nallow = [\"10.0.0.0/8\", \"10.0.0/8\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:24: remote.allow[1]: ",
            "\"10.0.0/8\" is not a CIDR prefix (expected e.g. \"10.0.0.0/8\" or \"fd00::/8\")",
        ),
        (
            "CIDR with host bits",
            format!("{key}[remote]\ndeny = [\"10.1.2.3/8\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:9: remote.deny[0]: ",
            "(expected \"10.0.0.0/8\")",
        ),
        (
            "remotes missing, header present",
            format!("{key}[local]\nmptcp = true\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:3:1: local.remotes: ",
            "required for `mpbridge local` (expected e.g. remotes = [\"192.0.2.2:4443\"])",
        ),
        (
            "remotes missing, no section",
            key.clone(),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:1:1: local.remotes: ",
            "required for `mpbridge local`",
        ),
        (
            "remotes empty",
            format!("{key}[local]\nremotes = []\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:4:11: local.remotes: ",
            "is empty",
        ),
        (
            "host name instead of address",
            format!("{key}[local]\nremotes = [\"router-b:4443\"]\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:4:12: local.remotes[0]: ",
            "host names are not resolved",
        ),
        (
            "remote with port 0",
            format!("{key}[local]\nremotes = [\"192.0.2.2:0\"]\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:4:12: local.remotes[0]: ",
            "port 0",
        ),
        (
            "listen address without port",
            format!("{key}[remote]\nlisten = [\"::1\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:11: remote.listen[0]: ",
            "is an IPv6 address without brackets and port",
        ),
        (
            "bad intercept",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\nintercept = \"dnat\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:5:13: local.intercept: ",
            "\"dnat\" is not an interception mode (expected \"tproxy\" or \"redirect\")",
        ),
        (
            "timeout out of range",
            format!("{key}[remote]\nheader_timeout_ms = 5\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:21: remote.header_timeout_ms: ",
            "5 is out of range (expected 100..=120000 milliseconds)",
        ),
        (
            "window out of range",
            format!("{key}window_secs = 0\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:15: auth.window_secs: ",
            "0 is out of range (expected 1..=3600 seconds)",
        ),
        (
            "negative limit",
            format!("{key}[limits]\nmax_connections = -1\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:19: limits.max_connections: ",
            "-1 is out of range (expected 1..=1000000 connections)",
        ),
        (
            "pipe too small",
            format!("{key}[limits]\npipe_size = 100\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:13: limits.pipe_size: ",
            "(expected 4096..=16777216 bytes)",
        ),
        (
            "bad log level",
            format!("{key}[log]\nlevel = \"loud\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:9: log.level: ",
            "\"loud\" is not a log level (expected one of error, warn, info, debug, trace)",
        ),
        (
            "bad auth mode",
            format!("{key}mode = \"hmac\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:8: auth.mode: ",
            "(expected \"psk\" or \"none\")",
        ),
        (
            "key and key_file both",
            format!("{key}key_file = \"/etc/mpbridge/key\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:12: auth.key_file: ",
            "expected exactly one of key and key_file",
        ),
        (
            "neither key nor key_file",
            "\n[auth]\nkey_id = 2\n".to_owned(),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:2:1: auth.key: ",
            "required when auth.mode = \"psk\"",
        ),
        (
            "no auth at all",
            "[remote]\n".to_owned(),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:1:1: auth.key: ",
            "mpbridge genkey",
        ),
        (
            "invalid hex",
            "[auth]\nkey = \"00112233445566778899aabbccddeefg\"\n".to_owned(),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
            "key is not hex: character 32 is not 0-9 or a-f",
        ),
        (
            "odd hex length",
            "[auth]\nkey = \"001\"\n".to_owned(),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
            "odd number of hex digits (3)",
        ),
        (
            "short key",
            "[auth]\nkey = \"0011223344556677\"\n".to_owned(),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:2:7: auth.key: ",
            "key is 8 bytes, at least 16 are needed (generate one with: mpbridge genkey)",
        ),
        (
            "accept id equal to key_id",
            format!("{key}[[auth.accept]]\nid = 1\nkey = \"{KEY2}\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:6: auth.accept[0].id: ",
            "key id 1 is already used by auth.key_id",
        ),
        (
            "two accept entries with one id",
            format!("{key}[[auth.accept]]\nid = 3\nkey = \"{KEY2}\"\n[[auth.accept]]\nid = 3\nkey = \"{KEY2}\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:7:6: auth.accept[1].id: ",
            "key id 3 is already used by auth.accept[0].id",
        ),
        (
            "accept entry without key",
            format!("{key}[[auth.accept]]\nid = 3\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:1: auth.accept[0].key: ",
            "required",
        ),
        (
            "link interface name too long",
            format!("{key}[[link]]\ninterface = \"wan0\"\n[[link]]\ninterface = \"averyveryverylongname\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:6:13: link[1].interface: ",
            "is 21 bytes long (expected at most 15)",
        ),
        (
            "link interface twice",
            format!("{key}[[link]]\ninterface = \"wan0\"\n[[link]]\ninterface = \"wan0\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:6:13: link[1].interface: ",
            "\"wan0\" is already link[0]",
        ),
        (
            "link without interface",
            format!("{key}[[link]]\nbackup = true\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:1: link[0].interface: ",
            "required (expected e.g. interface = \"wan0\")",
        ),
        (
            "link as a plain table",
            format!("{key}[link]\ninterface = \"wan0\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:1: link: ",
            "write [[link]]",
        ),
        (
            "peer not an address",
            format!("{key}[[link]]\ninterface = \"wan0\"\npeer = \"router-b\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:5:8: link[0].peer: ",
            "\"router-b\" is not an IP address",
        ),
        (
            "two peers of one family",
            format!("{key}[[link]]\ninterface = \"wan0\"\npeer = [\"10.0.0.1\", \"10.0.0.2\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:5:8: link[0].peer: ",
            "two peers of one family",
        ),
        (
            "too many links",
            format!("{key}{}", (0..9).map(|i| format!("[[link]]\ninterface = \"wan{i}\"\n")).collect::<String>()),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:19:1: link[8]: ",
            "too many links (expected at most 8",
        ),
        (
            "probe interval out of range",
            format!("{key}[probe]\ninterval_ms = 5\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:15: probe.interval_ms: ",
            "5 is out of range (expected 10..=10000 milliseconds)",
        ),
        (
            "bad down action",
            format!("{key}[probe]\ndown_action = \"drop\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:15: probe.down_action: ",
            "(expected \"remove\" or \"backup\")",
        ),
        (
            "a rate on some links only",
            format!("{key}[[link]]\ninterface = \"wan0\"\nrate_mbit = 50\n[[link]]\ninterface = \"wan1\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:6:1: link[1].rate_mbit: ",
            "required because link[0] sets one",
        ),
        (
            "a rate of zero",
            format!("{key}[[link]]\ninterface = \"wan0\"\nrate_mbit = 0\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:5:13: link[0].rate_mbit: ",
            "0 is out of range (expected 1..=1000000 Mbit/s)",
        ),
        (
            "routes that are not prefixes",
            format!("{key}[paths]\nroutes = [\"0.0.0.0/0\", \"lan\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: paths.routes[1]: ",
            "\"lan\" is not a CIDR prefix",
        ),
        (
            "routes as a word other than none",
            format!("{key}[paths]\nroutes = \"all\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: paths.routes: ",
            "or \"none\"",
        ),
        (
            "routes listed twice",
            format!("{key}[paths]\nroutes = [\"10.10.0.0/24\", \"10.10.0.0/24\"]\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: paths.routes[1]: ",
            "listed twice",
        ),
        (
            "no routes in an empty list",
            format!("{key}[paths]\nroutes = []\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: paths.routes: ",
            "is empty",
        ),
        (
            "routes into the local table",
            format!("{key}[paths]\nroute_table = 255\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:15: paths.route_table: ",
            "the kernel's table of local addresses",
        ),
        (
            "table base among the kernel's tables",
            format!("{key}[paths]\ntable_base = 254\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:14: paths.table_base: ",
            "254 is out of range (expected 256..=2000000000)",
        ),
        (
            "key id beyond a byte",
            format!("{key}key_id = 256\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:3:10: auth.key_id: ",
            "256 is out of range (expected 0..=255)",
        ),
    ]
}

#[test]
fn links_probe_and_paths_parse_with_defaults() {
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:5000\"]\n\
         [[link]]\ninterface = \"wan0\"\npeer = \"10.20.0.2\"\n\
         [[link]]\ninterface = \"wan1\"\npeer = [\"10.20.1.2\", \"fd00:20:1::2\"]\nbackup = true\n\
         [[link]]\ninterface = \"lte0\"\n"
    );
    let (l, _) = local(&text).unwrap();
    let p = &l.common.paths;
    assert_eq!(p.links.len(), 3);
    assert_eq!(p.links[0].interface, "wan0");
    assert_eq!(p.links[0].peers, vec![ip("10.20.0.2")]);
    assert!(!p.links[0].backup);
    assert_eq!(p.links[1].peers, vec![ip("10.20.1.2"), ip("fd00:20:1::2")]);
    assert!(p.links[1].backup);
    assert!(p.links[2].peers.is_empty());
    assert!(p.probe.enabled);
    assert_eq!(p.probe.interval, Duration::from_millis(100));
    assert_eq!((p.probe.down_after, p.probe.up_after), (3, 3));
    // Probes go to the remote's port unless told otherwise.
    assert_eq!(p.probe.port, 5000);
    assert_eq!(p.probe.down_action, DownAction::Remove);
    assert_eq!((p.table_base, p.rule_priority), (7700, 7700));
    // Router A routes the default route over the links; router B,
    // which cannot guess router A's LAN, nothing unless told.
    let defaults: Vec<IpNet> = vec![net("0.0.0.0/0"), net("::/0")];
    assert_eq!(p.routes.prefixes, defaults);
    assert_eq!((p.routes.table, p.routes.metric), (254, None));
    assert_eq!(p.routes.nexthop_base, 7700);
    assert!(p.links.iter().all(|l| l.rate_mbit.is_none()));
    // The remote answers on its own listen port.
    let (r, _) = remote(&text).unwrap();
    assert_eq!(r.common.paths.probe.port, 4443);
    assert_eq!(r.common.paths.links, p.links);
    assert!(r.common.paths.routes.prefixes.is_empty());
}

#[test]
fn every_probe_and_paths_value_is_used() {
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[probe]\nenabled = false\ninterval_ms = 50\ndown_after = 2\n\
         up_after = 5\nport = 9000\ndown_action = \"backup\"\n[paths]\ntable_base = 300\nrule_priority = 99\n\
         routes = [\"10.10.0.0/24\", \"fd00:10::/64\"]\nroute_table = 100\nroute_metric = 50\n\
         nexthop_base = 900\n[[link]]\ninterface = \"wan0\"\nrate_mbit = 100\n\
         [[link]]\ninterface = \"wan1\"\nrate_mbit = 20\n"
    );
    let (r, _) = remote(&text).unwrap();
    let rates: Vec<Option<u32>> = r.common.paths.links.iter().map(|l| l.rate_mbit).collect();
    assert_eq!(rates, vec![Some(100), Some(20)]);
    assert_eq!(
        r.common.paths.probe,
        ProbeConfig {
            enabled: false,
            interval: Duration::from_millis(50),
            down_after: 2,
            up_after: 5,
            port: 9000,
            down_action: DownAction::Backup,
        }
    );
    assert_eq!(
        (r.common.paths.table_base, r.common.paths.rule_priority),
        (300, 99)
    );
    assert_eq!(
        r.common.paths.routes,
        RouteSettings {
            prefixes: vec![net("10.10.0.0/24"), net("fd00:10::/64")],
            table: 100,
            metric: Some(50),
            nexthop_base: 900,
        }
    );
    // "none" leaves routing to the system, on router A too.
    let none = format!(
        "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\nroutes = \"none\"\n"
    );
    assert!(local(&none)
        .unwrap()
        .0
        .common
        .paths
        .routes
        .prefixes
        .is_empty());
}

#[test]
fn every_error_names_file_line_column_and_field() {
    let cases = error_cases();
    assert!(!cases.is_empty());
    for (what, text, role, prefix, problem) in cases {
        let message = match role {
            Role::Local => error_text(local(&text)),
            Role::Remote => error_text(remote(&text)),
        };
        assert!(
            message.starts_with(prefix),
            "{what}: {message:?} should start with {prefix:?}"
        );
        assert!(
            message.contains(problem),
            "{what}: {message:?} should contain {problem:?}"
        );
        assert!(!message.contains(KEY), "{what}: leaks the key: {message}");
    }
}

#[test]
fn every_file_error_exits_with_ex_config() {
    for (_, text, _, _, _) in error_cases() {
        if let Err(e) = local(&text) {
            assert_eq!(e.exit_code(), 78);
        }
    }
}

#[test]
fn check_validates_every_section_present() {
    let key = format!("[auth]\nkey = \"{KEY}\"\n");
    let both = format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[remote]\n");
    let (roles, _) = parse(&both).unwrap().check().unwrap();
    assert_eq!(roles, vec![Role::Local, Role::Remote]);

    let bad_remote =
        format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[remote]\ndeny = [\"x\"]\n");
    let message = error_text(parse(&bad_remote).unwrap().check());
    assert!(
        message.starts_with(&format!("{ORIGIN}:6:9: remote.deny[0]: ")),
        "{message}"
    );

    let (roles, warnings) = parse(&key).unwrap().check().unwrap();
    assert!(roles.is_empty());
    assert!(
        warnings[0].0.contains("neither [local] nor [remote]"),
        "{warnings:?}"
    );
}

#[test]
fn overrides_win_over_the_file() {
    let key_file = TempFile::new(&format!("{KEY2}\n"), 0o600);
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[local]\nlisten = [\"0.0.0.0:1\"]\nremotes = [\"192.0.2.2:4443\"]\n\
         intercept = \"tproxy\"\n[log]\nlevel = \"warn\"\n"
    );
    let ov = Overrides {
        listen: Some(vec!["127.0.0.1:9".parse().unwrap()]),
        remotes: Some(vec!["198.51.100.1:4443".parse().unwrap()]),
        intercept: Some(InterceptionMode::Redirect),
        key_file: Some(key_file.0.clone()),
        log_level: Some("trace".to_owned()),
    };
    let (s, warnings) = parse(&text).unwrap().local(&ov).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(s.listen, vec!["127.0.0.1:9".parse().unwrap()]);
    assert_eq!(s.remotes, vec!["198.51.100.1:4443".parse().unwrap()]);
    assert_eq!(s.interception.mode, InterceptionMode::Redirect);
    assert_eq!(s.common.log_level, tracing::Level::TRACE);
    assert_eq!(hex::encode(psk(&s.common.auth).0.secret.expose()), KEY2);
}

#[test]
fn invalid_overrides_are_blamed_on_the_command_line() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
    let file = parse(&text).unwrap();
    let cases: Vec<(Overrides, &str)> = vec![
        (
            Overrides {
                listen: Some(vec![]),
                ..Default::default()
            },
            "command line: --listen: no address given",
        ),
        (
            Overrides {
                remotes: Some(vec!["192.0.2.2:0".parse().unwrap()]),
                ..Default::default()
            },
            "command line: --remote: 192.0.2.2:0 has port 0",
        ),
        (
            Overrides {
                log_level: Some("chatty".to_owned()),
                ..Default::default()
            },
            "command line: --log-level: \"chatty\" is not a log level",
        ),
        (
            Overrides {
                key_file: Some(PathBuf::from("/nonexistent/mpbridge-key")),
                ..Default::default()
            },
            "/nonexistent/mpbridge-key: --key-file: cannot read: no such file",
        ),
    ];
    assert!(!cases.is_empty());
    for (ov, expected) in cases {
        let message = error_text(file.local(&ov));
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
    let message = error_text(file.remote(&Overrides {
        intercept: Some(InterceptionMode::Tproxy),
        ..Default::default()
    }));
    assert!(
        message.starts_with("command line: --intercept: "),
        "{message}"
    );
}

#[test]
fn missing_default_path_is_an_empty_config() {
    let key_file = TempFile::new(KEY, 0o600);
    let path = std::env::temp_dir().join(format!("mpbridge-absent-{}.toml", std::process::id()));
    let ov = Overrides {
        remotes: Some(vec!["192.0.2.2:4443".parse().unwrap()]),
        key_file: Some(key_file.0.clone()),
        ..Default::default()
    };
    let (s, _) = load_local(&path, false, &ov).unwrap();
    assert_eq!(s.remotes, vec!["192.0.2.2:4443".parse().unwrap()]);
    assert_eq!(s.listen, unspecified_on(12345));

    let message = error_text(load_local(&path, false, &Overrides::default()));
    assert!(
        message.starts_with(&format!("{}: auth.key: required", path.display())),
        "{message}"
    );
    assert!(message.contains("this file does not exist"), "{message}");
}

#[test]
fn missing_explicit_path_is_an_error_naming_the_file() {
    let path = std::env::temp_dir().join(format!("mpbridge-absent-{}.toml", std::process::id()));
    let e = load_remote(&path, true, &Overrides::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: cannot read config file: no such file", path.display())
    );
    assert_eq!(e.exit_code(), EX_CONFIG);
    assert!(check(&path).is_err());
}

#[test]
fn load_reads_the_file_from_disk() {
    let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n[remote]\n"), 0o600);
    let (s, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    psk(&s.common.auth);
    let (roles, _) = check(&config.0).unwrap();
    assert_eq!(roles, vec![Role::Remote]);
}

#[test]
fn inline_key_in_world_readable_config_gives_a_warning() {
    let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n"), 0o644);
    let (_, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].0.contains("readable by others (mode 0644)"),
        "{warnings:?}"
    );
}

#[test]
fn world_readable_key_file_gives_a_warning() {
    let key_file = TempFile::new(&format!("  {KEY}\n"), 0o644);
    let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
    let (s, warnings) = remote(&text).unwrap();
    assert_eq!(hex::encode(psk(&s.common.auth).0.secret.expose()), KEY);
    let expected = format!(
        "{0} is readable by others (mode 0644); run chmod 600 {0}",
        key_file.0.display()
    );
    assert_eq!(warnings, vec![Warning(expected)]);
}

#[test]
fn private_key_file_gives_no_warning() {
    let key_file = TempFile::new(KEY, 0o600);
    let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
    let (_, warnings) = remote(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn relative_key_file_is_found_beside_the_config_file() {
    let key_file = TempFile::new(KEY, 0o600);
    let name = key_file.0.file_name().unwrap().to_str().unwrap();
    let origin = std::env::temp_dir().join("mpbridge.toml");
    let text = format!("[auth]\nkey_file = \"{name}\"\n");
    let (s, _) = parse_str(&text, &origin)
        .unwrap()
        .remote(&Overrides::default())
        .unwrap();
    assert_eq!(hex::encode(psk(&s.common.auth).0.secret.expose()), KEY);
}

#[test]
fn key_file_problems_name_the_key_file() {
    let short = TempFile::new("0011223344556677\n", 0o600);
    let not_hex = TempFile::new("not a key\n", 0o600);
    let cases = [
        (
            PathBuf::from("/nonexistent/mpbridge-key"),
            "cannot read: no such file",
        ),
        (
            short.0.clone(),
            "key is 8 bytes, at least 16 are needed (generate one with: mpbridge genkey)",
        ),
        (not_hex.0.clone(), "key is not hex"),
        (std::env::temp_dir(), "is not a regular file"),
    ];
    assert!(!cases.is_empty());
    for (path, problem) in cases {
        let text = format!("[auth]\nkey_file = \"{}\"\n", path.display());
        let message = error_text(remote(&text));
        let expected = format!("{}: auth.key_file: {problem}", path.display());
        assert!(
            message.starts_with(&expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn auth_mode_none_gives_a_warning_and_no_keys() {
    let (s, warnings) = remote("[auth]\nmode = \"none\"\n").unwrap();
    assert!(matches!(s.common.auth, Auth::None));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].0.contains("auth.mode = \"none\""),
        "{warnings:?}"
    );
    let with_key = parse("[auth]\nmode = \"none\"\n")
        .unwrap()
        .remote(&Overrides {
            key_file: Some(PathBuf::from("/etc/mpbridge/key")),
            ..Default::default()
        });
    assert!(error_text(with_key).starts_with("command line: --key-file: "));
}

#[test]
fn allow_loopback_gives_a_warning() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[remote]\nallow_loopback = true\n");
    let (s, warnings) = remote(&text).unwrap();
    assert!(s.policy.allow_loopback);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn secrets_are_masked_in_debug_output() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
    let (s, _) = local(&text).unwrap();
    let shown = format!("{s:?}");
    assert!(shown.contains("MASKED"));
    assert!(
        !shown.contains(KEY) && !shown.contains("[0, 17, 34"),
        "{shown}"
    );
    assert_eq!(Secret::new(vec![1]).to_string(), "MASKED");
}

#[test]
fn intercept_parses_and_displays_its_names() {
    for mode in [InterceptionMode::Tproxy, InterceptionMode::Redirect] {
        assert_eq!(mode.to_string().parse::<InterceptionMode>(), Ok(mode));
    }
    assert_eq!(
        "TPROXY".parse::<InterceptionMode>(),
        Ok(InterceptionMode::Tproxy)
    );
    assert!("dnat".parse::<InterceptionMode>().is_err());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

const EXAMPLE: &str = include_str!("../../examples-config/mpbridge.toml");

#[test]
fn example_config_parses_for_both_roles() {
    let key_file = TempFile::new(KEY, 0o600);
    let origin = Path::new("examples-config/mpbridge.toml");
    let file = parse_str(EXAMPLE, origin).unwrap();
    let ov = Overrides {
        key_file: Some(key_file.0.clone()),
        ..Default::default()
    };
    let (l, _) = file.local(&ov).unwrap();
    let (r, _) = file.remote(&ov).unwrap();
    // The example shows the defaults: an empty [local] would give the same.
    let remotes = format!("[local]\nremotes = [\"{}\"]\n[remote]\n", l.remotes[0]);
    let defaults = parse(&remotes).unwrap();
    let (dl, _) = defaults.local(&ov).unwrap();
    let (dr, _) = defaults.remote(&ov).unwrap();
    assert_eq!(format!("{l:?}"), format!("{dl:?}"));
    assert_eq!(format!("{r:?}"), format!("{dr:?}"));
}

/// The names serde knows for a section, read from its unknown-field message.
fn known_keys(section: &str) -> Vec<String> {
    let text = if section.is_empty() {
        "zzz_unknown = 1\n".to_owned()
    } else if section == "link" {
        "[[link]]\ninterface = \"wan0\"\nzzz_unknown = 1\n".to_owned()
    } else {
        format!("[{section}]\nzzz_unknown = 1\n")
    };
    let message = error_text(parse(&text));
    let list = message.split("expected one of ").nth(1).unwrap_or("");
    list.trim_end_matches(')')
        .split(", ")
        .map(str::to_owned)
        .collect()
}

#[test]
fn example_config_mentions_every_key() {
    let sections = [
        "", "auth", "local", "remote", "limits", "log", "link", "probe", "paths",
    ];
    let mut checked = 0;
    for section in sections {
        let keys = known_keys(section);
        assert!(!keys.is_empty(), "no keys found for [{section}]");
        for key in keys {
            let mentioned = if section.is_empty() {
                EXAMPLE.contains(&format!("[{key}]"))
            } else {
                EXAMPLE.contains(&format!("{key} = "))
                    || EXAMPLE.contains(&format!("[[{section}.{key}]]"))
            };
            assert!(mentioned, "example config does not mention {section}.{key}");
            checked += 1;
        }
    }
    assert!(checked > 20);
}
