//! Every error names the file, line, column and field exactly: one table of
//! mistakes in the file, and the flags' own.

use std::path::PathBuf;

use super::*;
use crate::config::fields::unspecified_on;

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
            "send buffer out of range",
            format!("{key}[remote]\nsndbuf = -4096\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: remote.sndbuf: ",
            "-4096 is out of range (expected 0..=268435456 bytes)",
        ),
        (
            "send buffer neither auto nor a number",
            format!("{key}[remote]\nsndbuf = \"big\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:10: remote.sndbuf: ",
            "\"big\" is not a send buffer (expected \"auto\", 0 for the kernel's autotuning, \
             or a number of bytes)",
        ),
        (
            "send buffer of the wrong type",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\nsndbuf = 1.5\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:5:10: local.sndbuf: ",
            "a float is not a send buffer",
        ),
        (
            "congestion control not a name",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\ncongestion = \"Cubic!\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:5:14: local.congestion: ",
            "\"Cubic!\" is not a congestion control name",
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
            "bad subflow mode",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\nsubflows = \"lazy\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:6:12: paths.subflows: ",
            "\"lazy\" is not a subflow mode (expected \"kernel\" or \"on-demand\")",
        ),
        (
            "subflows on demand on router B",
            format!("{key}[paths]\nsubflows = \"on-demand\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:12: paths.subflows: ",
            "\"on-demand\" is for router A (mpbridge local)",
        ),
        (
            "bad slow-links policy",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\nslow_links = \"drop\"\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:6:14: paths.slow_links: ",
            "\"drop\" is not a slow-links policy (expected \"use\" or \"bench\")",
        ),
        (
            "slow links benched by router B",
            format!("{key}[paths]\nslow_links = \"bench\"\n"),
            Role::Remote,
            "/etc/mpbridge/mpbridge.toml:4:14: paths.slow_links: ",
            "\"bench\" is for router A (mpbridge local)",
        ),
        (
            "subflow threshold out of range",
            format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\nsubflows_after_ms = 61000\n"),
            Role::Local,
            "/etc/mpbridge/mpbridge.toml:6:21: paths.subflows_after_ms: ",
            "(expected 0..=60000 milliseconds)",
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
