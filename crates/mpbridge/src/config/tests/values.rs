//! The values read: defaults, every key of the file used, links, probes
//! and paths, overrides, and the example config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::*;
use crate::config::fields::unspecified_on;

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
            pipe_size: 4096,
            rcvbuf_budget: 0
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
    assert_eq!(p.probe.interval, Duration::from_millis(20));
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
    assert_eq!(p.subflows, SubflowMode::Kernel);
    assert_eq!(p.slow_links, SlowLinks::Bench);
    // The remote answers on its own listen port.
    let (r, _) = remote(&text).unwrap();
    assert_eq!(r.common.paths.probe.port, 4443);
    assert_eq!(r.common.paths.links, p.links);
    assert!(r.common.paths.routes.prefixes.is_empty());
    // Router B follows router A's backup flags.
    assert_eq!(r.common.paths.slow_links, SlowLinks::Use);
}

#[test]
fn slow_links_may_be_used_on_both_routers_and_benched_by_router_a() {
    let config = |word: &str| {
        format!(
            "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\n\
             slow_links = \"{word}\"\n"
        )
    };
    let (l, _) = local(&config("use")).unwrap();
    assert_eq!(l.common.paths.slow_links, SlowLinks::Use);
    let (r, _) = remote(&config("use")).unwrap();
    assert_eq!(r.common.paths.slow_links, SlowLinks::Use);
    let (l, _) = local(&config("bench")).unwrap();
    assert_eq!(l.common.paths.slow_links, SlowLinks::Bench);
}

#[test]
fn subflows_on_demand_take_their_threshold() {
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n[paths]\n\
         subflows = \"on-demand\"\nsubflows_after_ms = 750\n"
    );
    let (l, _) = local(&text).unwrap();
    assert_eq!(
        l.common.paths.subflows,
        SubflowMode::OnDemand {
            after: Duration::from_millis(750)
        }
    );
}

#[test]
fn every_probe_and_paths_value_is_used() {
    let text = format!(
        "[auth]\nkey = \"{KEY}\"\n[probe]\nenabled = false\ninterval_ms = 50\ndown_after = 2\n\
         up_after = 5\nport = 9000\ndown_action = \"backup\"\ninterface_counter = false\nclose_subflows = false\n[paths]\ntable_base = 300\nrule_priority = 99\n\
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
            interface_counter: false,
            close_subflows: false,
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

const EXAMPLE: &str = include_str!("../../../examples-config/mpbridge.toml");

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

#[test]
fn send_buffers_default_to_auto_and_are_read_per_role() {
    let key = format!("[auth]\nkey = \"{KEY}\"\n");
    let (l, _) = local(&format!("{key}[local]\nremotes = [\"192.0.2.2:4443\"]\n")).unwrap();
    let (r, _) = remote(&key).unwrap();
    assert_eq!((l.sndbuf, r.sndbuf), (Sndbuf::Auto, Sndbuf::Auto));
    let (l, _) = local(&format!(
        "{key}[local]\nremotes = [\"192.0.2.2:4443\"]\nsndbuf = 4194304\n"
    ))
    .unwrap();
    let (r, _) = remote(&format!("{key}[remote]\nsndbuf = 8388608\n")).unwrap();
    assert_eq!(
        (l.sndbuf, r.sndbuf),
        (Sndbuf::Fixed(4_194_304), Sndbuf::Fixed(8_388_608))
    );
    let (l, _) = local(&format!(
        "{key}[local]\nremotes = [\"192.0.2.2:4443\"]\nsndbuf = \"auto\"\n"
    ))
    .unwrap();
    let (r, _) = remote(&format!("{key}[remote]\nsndbuf = 0\n")).unwrap();
    assert_eq!((l.sndbuf, r.sndbuf), (Sndbuf::Auto, Sndbuf::Kernel));
}

#[test]
fn congestion_control_is_a_name_or_the_kernels_default() {
    let key = format!("[auth]\nkey = \"{KEY}\"\n");
    let (r, _) = remote(&key).unwrap();
    assert_eq!(r.congestion.as_deref(), Some("cubic"));
    let (r, _) = remote(&format!("{key}[remote]\ncongestion = \"reno\"\n")).unwrap();
    assert_eq!(r.congestion.as_deref(), Some("reno"));
    let (l, _) = local(&format!(
        "{key}[local]\nremotes = [\"192.0.2.2:4443\"]\ncongestion = \"\"\n"
    ))
    .unwrap();
    assert_eq!(l.congestion, None);
}
