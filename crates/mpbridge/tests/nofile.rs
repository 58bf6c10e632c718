//! The open-files limit as procd hands it to a service: the kernel's
//! default, 1,024 soft and 4,096 hard. Each bridged connection may hold six
//! descriptors (two sockets, two pipes), so the default `max_connections =
//! 4096` cannot fit under 4,096. The real daemons run under `prlimit` in
//! the lab: each raises its soft limit to the hard one at start, and the
//! one whose hard limit is too low says so in exactly one line.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Bridge, Options};
use mpbridge_lab::{LinkSpec, Topology, TopologySpec};

/// A script that runs this build's `mpbridge` under `prlimit --nofile`.
/// `exec` all the way down keeps the PID the lab signals.
fn under_prlimit(topo: &Topology, name: &str, soft: u64, hard: u64) -> PathBuf {
    let path = topo.workdir().join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={soft}:{hard} {} \"$@\"\n",
            env!("CARGO_BIN_EXE_mpbridge")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// (soft, hard) of "Max open files" in /proc/PID/limits.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in\n{limits}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

fn warning_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("open-files limit is"))
        .collect()
}

#[test]
fn under_procds_default_limits_the_soft_limit_is_raised_and_a_too_low_hard_limit_is_said_once() {
    let spec = TopologySpec {
        links: vec![LinkSpec::UNSHAPED],
    };
    let topo = Topology::build_with(&spec, mpbridge_lab::LanRoutes::Static).unwrap();
    assert!(
        Path::new("/usr/bin/prlimit").exists() || Path::new("/bin/prlimit").exists(),
        "prlimit (util-linux) is missing: scripts/setup.sh installs it"
    );
    // Router B as procd starts it: 1024:4096, and the default
    // max_connections (4096: up to 24,640 descriptors).
    let remote = under_prlimit(&topo, "mpbridge-procd-limits", 1024, 4096);
    // Router A with a hard limit that fits its max_connections (1000: up
    // to 6,064). A higher hard limit than the test's own would need
    // CAP_SYS_RESOURCE, which procd has but a test need not.
    let local = under_prlimit(&topo, "mpbridge-enough", 1024, 8192);
    let bridge = Bridge::start_in(
        topo,
        Options {
            links: 1,
            binary: Some(local),
            remote_binary: Some(remote),
            local_extra: "\n[limits]\nmax_connections = 1000",
            ..Options::default()
        },
    );

    let remote_log = bridge.remote.output_text();
    let lines = warning_lines(&remote_log);
    assert_eq!(lines.len(), 1, "one warning line, got:\n{remote_log}");
    let line = lines[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("open-files limit is 4096 (raised from 1024)"),
        "{line}"
    );
    assert!(line.contains("max_connections = 4096"), "{line}");
    assert!(line.contains("24640"), "{line}");
    assert_eq!(open_files_limit(bridge.remote.pid()), (4096, 4096));

    let local_log = bridge.local.output_text();
    assert_eq!(warning_lines(&local_log), Vec::<&str>::new(), "{local_log}");
    assert_eq!(open_files_limit(bridge.local.pid()), (8192, 8192));

    // Both still bridge a connection.
    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).unwrap();
        conn.write_all(&request).unwrap();
    });
    let mut client = bridge.client_connect(dest).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"within the limits").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"within the limits", "{}", bridge.logs());
    server.join().unwrap();
    // Still one line after serving.
    assert_eq!(
        warning_lines(&bridge.remote.output_text()).len(),
        1,
        "{}",
        bridge.logs()
    );
}
