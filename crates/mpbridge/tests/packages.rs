//! The packages as a router or a server would receive them: each `.ipk` of
//! scripts/ipk.sh (opkg's layout, control fields, file modes and owners, a
//! static binary of the architecture it claims, the build system's default
//! scripts), each `.apk` of scripts/apk.sh installed with the real apk
//! (apk-tools 3, which scripts/apk.sh built) into an empty root, upgraded
//! and removed there, and the `.deb` of scripts/deb.sh (its files, the
//! systemd unit, its control fields). Ignored by default: scripts/test.sh
//! builds the packages, then runs these.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// `tar -tv` lines as (mode, owner, path).
fn listing(tar_args: &[&str]) -> Vec<(String, String, String)> {
    text(run("tar", tar_args))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned(), f[f.len() - 1].to_owned())
        })
        .collect()
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (build the packages first)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    found.sort();
    found
}

/// The ELF machine of a binary, and whether it asks for a program
/// interpreter (dynamic linking).
fn elf(bytes: &[u8]) -> (u16, bool) {
    let (machine, interp, _) = elf_endian(bytes);
    (machine, interp)
}

/// [`elf`], and whether the binary is little-endian.
fn elf_endian(bytes: &[u8]) -> (u16, bool, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF");
    let is64 = bytes[4] == 2;
    let le = bytes[5] == 1;
    let u16_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = if is64 {
        (
            u32_at(32) as usize,
            u16_at(54) as usize,
            u16_at(56) as usize,
        )
    } else {
        (
            u32_at(28) as usize,
            u16_at(42) as usize,
            u16_at(44) as usize,
        )
    };
    let interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3);
    (machine, interp, le)
}

/// The OpenWrt package architectures docs/OPENWRT.md lists (its table's
/// first column), which scripts/ipk.sh and scripts/apk.sh know.
fn documented_arches() -> Vec<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPENWRT.md"),
    )
    .unwrap();
    let arches: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(arch, _)| arch.to_owned())
        .filter(|a| a.contains('_') || a == "x86_64")
        .collect();
    assert!(arches.len() >= 8, "{arches:?}");
    arches
}

/// OpenWrt package architecture → ELF machine (EM_*) and byte order
/// (true: little-endian).
fn machine_of(arch: &str) -> (u16, bool) {
    match arch {
        "aarch64_cortex-a53" | "aarch64_cortex-a72" | "aarch64_generic" => (183, true),
        "arm_cortex-a7_neon-vfpv4" | "arm_cortex-a15_neon-vfpv4" => (40, true),
        "mips_24kc" => (8, false),
        "mipsel_24kc" => (8, true),
        "x86_64" => (62, true),
        other => panic!("unknown OpenWrt architecture {other}"),
    }
}

/// The packages' architectures against the documented ones: each package
/// is of a documented architecture, and with MPBRIDGE_ALL_ARCHES set (by
/// scripts/test.sh, which builds them all) every documented one has one.
fn check_arch_coverage(kind: &str, arches: &[String]) {
    let documented = documented_arches();
    for a in arches {
        assert!(
            documented.contains(a),
            "{kind} for {a}, not in docs/OPENWRT.md"
        );
    }
    if std::env::var_os("MPBRIDGE_ALL_ARCHES").is_some() {
        for a in &documented {
            assert!(
                arches.contains(a),
                "no {kind} for {a} (docs/OPENWRT.md lists it)"
            );
        }
    }
}

/// The conffiles of openwrt/mpbridge/Makefile, which the packages carry.
const CONFFILES: [&str; 3] = [
    "/etc/config/mpbridge",
    "/etc/sysctl.d/90-mpbridge.conf",
    "/etc/mpbridge/",
];
/// What the init script must hold, in every package.
const INIT_NEEDLES: [&str; 8] = [
    "USE_PROCD=1",
    "procd_set_param respawn",
    "procd_add_reload_trigger mpbridge",
    "procd_open_validate",
    "\"$PROG\" uci --output",
    "procd_set_param limits nofile=",
    "procd_open_data",
    "procd_send_signal mpbridge",
];
/// The package's dependencies (kernel modules for interception).
const DEPENDS: [&str; 4] = [
    "kmod-nft-tproxy",
    "kmod-nft-socket",
    "kmod-nft-fib",
    "kmod-nft-nat",
];

#[test]
#[ignore = "needs the packages of scripts/ipk.sh"]
fn every_ipk_has_opkg_layout_control_fields_and_modes() {
    let ipks = files_with_ext(&target_dir().join("ipk"), "ipk");
    assert!(!ipks.is_empty(), "no .ipk under {}", target_dir().display());
    let mut arches = Vec::new();
    for ipk in ipks {
        let name = ipk.file_name().unwrap().to_str().unwrap().to_owned();
        let arch = name
            .trim_start_matches("mpbridge_")
            .trim_end_matches(".ipk")
            .split_once('_')
            .unwrap()
            .1
            .to_owned();
        arches.push(arch.clone());
        let work = tempdir(&name);
        let ipk = ipk.to_str().unwrap();
        // Outer: a gzip'd tar of exactly these three, in opkg's order.
        let outer: Vec<String> = listing(&["-tvzf", ipk])
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
        assert_eq!(
            outer,
            ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
            "{name}"
        );
        run("tar", &["-xzf", ipk, "-C", work.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(work.join("debian-binary")).unwrap(),
            "2.0\n"
        );

        let control_tgz = work.join("control.tar.gz");
        let control_tgz = control_tgz.to_str().unwrap();
        let control = listing(&["-tvzf", control_tgz]);
        let mode = |list: &[(String, String, String)], path: &str| {
            let (m, owner, _) = list
                .iter()
                .find(|(_, _, p)| p == path)
                .unwrap_or_else(|| panic!("{name}: no {path} in {list:?}"));
            assert_eq!(owner, "0/0", "{name}: {path} must belong to root");
            m.clone()
        };
        assert_eq!(mode(&control, "./control"), "-rw-r--r--");
        assert_eq!(mode(&control, "./conffiles"), "-rw-r--r--");
        assert_eq!(mode(&control, "./postinst"), "-rwxr-xr-x");
        assert_eq!(mode(&control, "./prerm"), "-rwxr-xr-x");
        let member = |tgz: &str, path: &str| text(run("tar", &["-xzOf", tgz, path]));
        let fields = member(control_tgz, "./control");
        let field = |key: &str| {
            fields
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("{name}: no {key} in\n{fields}"))
                .to_owned()
        };
        assert_eq!(field("Package"), "mpbridge");
        assert_eq!(field("Architecture"), arch);
        assert!(
            field("Version").starts_with(env!("CARGO_PKG_VERSION")),
            "{fields}"
        );
        assert_eq!(field("Depends"), DEPENDS.join(", "), "{fields}");
        assert!(field("Installed-Size").parse::<u64>().unwrap() > 100_000);
        assert_eq!(
            member(control_tgz, "./conffiles")
                .lines()
                .collect::<Vec<_>>(),
            CONFFILES
        );
        // The build system's defaults, nothing of our own: on upgrade
        // (PKG_UPGRADE=1) default_postinst leaves a disabled service so.
        let postinst = member(control_tgz, "./postinst");
        assert!(
            postinst.contains("default_postinst \"$0\" \"$@\""),
            "{postinst}"
        );
        let prerm = member(control_tgz, "./prerm");
        assert!(prerm.contains("default_prerm \"$0\" \"$@\""), "{prerm}");
        for script in [&postinst, &prerm] {
            assert!(!script.contains("/etc/init.d/mpbridge"), "{script}");
        }

        let data_tgz = work.join("data.tar.gz");
        let data_tgz = data_tgz.to_str().unwrap();
        let data = listing(&["-tvzf", data_tgz]);
        assert_eq!(mode(&data, "./usr/bin/mpbridge"), "-rwxr-xr-x");
        assert_eq!(mode(&data, "./etc/init.d/mpbridge"), "-rwxr-xr-x");
        assert_eq!(mode(&data, "./etc/config/mpbridge"), "-rw-------");
        assert_eq!(mode(&data, "./etc/mpbridge/"), "drwx------");
        assert_eq!(
            mode(&data, "./usr/share/mpbridge/fw4-include.nft"),
            "-rw-r--r--"
        );
        assert_eq!(mode(&data, "./etc/sysctl.d/90-mpbridge.conf"), "-rw-r--r--");
        assert_eq!(mode(&data, "./lib/upgrade/keep.d/mpbridge"), "-rw-r--r--");
        assert!(
            data.iter().all(|(_, owner, _)| owner == "0/0"),
            "{name}: {data:?}"
        );
        let binary = run("tar", &["-xzOf", data_tgz, "./usr/bin/mpbridge"]);
        let (machine, interp, le) = elf_endian(&binary);
        assert_eq!(
            (machine, le),
            machine_of(&arch),
            "{name}: binary of another CPU"
        );
        assert!(!interp, "{name}: the binary must be static");
        let init = member(data_tgz, "./etc/init.d/mpbridge");
        for needle in INIT_NEEDLES {
            assert!(init.contains(needle), "{name}: init script lacks {needle}");
        }
        assert!(member(data_tgz, "./etc/sysctl.d/90-mpbridge.conf")
            .lines()
            .any(|l| l == "net.ipv4.tcp_fastopen=3"));
        // sysupgrade keeps the key, which the package does not ship.
        assert_eq!(
            member(data_tgz, "./lib/upgrade/keep.d/mpbridge"),
            "/etc/mpbridge/\n"
        );
        std::fs::remove_dir_all(&work).unwrap();
    }
    check_arch_coverage(".ipk", &arches);
}

#[test]
#[ignore = "needs the package of scripts/deb.sh"]
fn the_deb_holds_the_binary_the_unit_and_the_docs() {
    let debs = files_with_ext(&target_dir().join("debian"), "deb");
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = debs[0].to_str().unwrap();
    let fields = text(run("dpkg-deb", &["-f", deb]));
    let field = |key: &str| {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .map(str::to_owned)
    };
    assert_eq!(field("Package").as_deref(), Some("mpbridge"));
    assert_eq!(field("Architecture").as_deref(), Some("amd64"));
    // cargo-deb writes the field even when empty.
    assert_eq!(
        field("Depends").unwrap_or_default().trim(),
        "",
        "a static binary depends on nothing"
    );
    let contents = text(run("dpkg-deb", &["-c", deb]));
    let entry = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("no {path} in\n{contents}"))
            .to_owned()
    };
    // `mode owner` of an entry; the owner as numbers or names.
    let mode_owner = |path: &str| {
        let line = entry(path);
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[0].to_owned(), f[1].replace("root", "0"))
    };
    assert_eq!(
        mode_owner("./usr/bin/mpbridge"),
        ("-rwxr-xr-x".to_owned(), "0/0".to_owned())
    );
    assert_eq!(
        mode_owner("systemd/system/mpbridge-remote.service"),
        ("-rw-r--r--".to_owned(), "0/0".to_owned())
    );
    entry("./usr/share/doc/mpbridge/examples/mpbridge.toml");
    entry("./usr/share/doc/mpbridge/SERVER.md");

    let work = tempdir("deb");
    run("dpkg-deb", &["-x", deb, work.to_str().unwrap()]);
    let (machine, interp) = elf(&std::fs::read(work.join("usr/bin/mpbridge")).unwrap());
    assert_eq!((machine, interp), (62, false), "static x86_64");
    let unit_path = ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .map(|d| work.join(d).join("mpbridge-remote.service"))
        .find(|p| p.exists())
        .unwrap();
    let unit = std::fs::read_to_string(unit_path).unwrap();
    for needle in [
        "ExecStart=/usr/bin/mpbridge --config /etc/mpbridge/mpbridge.toml remote",
        "Restart=on-failure",
        "RestartPreventExitStatus=78 69",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(needle), "the unit lacks {needle}:\n{unit}");
    }
    std::fs::remove_dir_all(&work).unwrap();
}

/// Where scripts/apk.sh finds apk-tools' source: MPBRIDGE_VENDOR, else
/// ../shared/vendor beside the clone. `None` when there is none there.
fn apk_tools_source() -> Option<PathBuf> {
    let vendor = std::env::var_os("MPBRIDGE_VENDOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vendor")
        });
    std::fs::read_dir(&vendor)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("apk-tools-") && n.ends_with(".tar.gz"))
        })
}

/// Runs apk-tools' `apk` with `args`; its output, or a panic with it.
fn apk(apk: &Path, args: &[&str]) -> String {
    let out = Command::new(apk).args(args).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "apk {args:?}:\n{all}");
    all
}

/// Stand-ins for what OpenWrt provides: its kernel modules as empty
/// packages of `arch` (so that apk resolves the dependencies), a static
/// busybox as /bin/sh for the scripts, and a /lib/functions.sh whose
/// default_postinst and default_prerm record how they were called.
fn openwrt_stand_ins(apk_bin: &Path, root: &Path, arch: &str, stubs: &Path) -> Vec<String> {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let busybox = Path::new("/usr/bin/busybox");
    let (_, interp) = elf(&std::fs::read(busybox).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (install busybox-static: apt-get install busybox-static)",
            busybox.display()
        )
    }));
    assert!(!interp, "/usr/bin/busybox must be static (busybox-static)");
    std::fs::copy(busybox, root.join("bin/sh")).unwrap();
    std::fs::write(
        root.join("lib/functions.sh"),
        "add_group_and_user() { echo \"add_group_and_user $pkgname\" >> /tmp/calls; }\n\
         default_postinst() { echo \"default_postinst $pkgname upgrade=${PKG_UPGRADE:-0} root=$root\" >> /tmp/calls; }\n\
         default_prerm() { echo \"default_prerm $pkgname upgrade=${PKG_UPGRADE:-0} root=$root\" >> /tmp/calls; }\n",
    )
    .unwrap();
    std::fs::create_dir_all(stubs).unwrap();
    DEPENDS
        .iter()
        .map(|kmod| {
            let out = stubs.join(format!("{kmod}.apk"));
            apk(
                apk_bin,
                &[
                    "mkpkg",
                    "--info",
                    &format!("name:{kmod}"),
                    "--info",
                    "version:6.12-r1",
                    "--info",
                    &format!("arch:{arch}"),
                    "--output",
                    out.to_str().unwrap(),
                ],
            );
            out.to_str().unwrap().to_owned()
        })
        .collect()
}

/// The script of `kind` in `apk adbdump` output.
fn dumped_script(dump: &str, kind: &str) -> String {
    let mut lines = dump
        .lines()
        .skip_while(|l| l.trim() != format!("{kind}: |"));
    assert!(lines.next().is_some(), "no {kind} script in\n{dump}");
    lines
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect()
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "{} must belong to root",
        path.display()
    );
    meta.mode() & 0o7777
}

fn calls(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("tmp/calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs the packages of scripts/apk.sh"]
fn every_apk_installs_upgrades_and_goes_with_the_real_apk() {
    let dir = target_dir().join("apk");
    if apk_tools_source().is_none() && files_with_ext_or_none(&dir, "apk").is_empty() {
        eprintln!(
            "SKIPPED: no apk-tools source (MPBRIDGE_VENDOR or ../shared/vendor) and no .apk \
             packages: scripts/apk.sh could not build them"
        );
        return;
    }
    let apk_bin = PathBuf::from(
        std::fs::read_to_string(dir.join("apk-tools"))
            .expect("scripts/apk.sh writes the path of its apk binary to apk/apk-tools")
            .trim(),
    );
    let apks = files_with_ext(&dir, "apk");
    assert!(!apks.is_empty(), "no .apk under {}", dir.display());
    let mut arches = Vec::new();
    for package in apks {
        let name = package.file_name().unwrap().to_str().unwrap().to_owned();
        let arch = name
            .trim_end_matches(".apk")
            .split_once('_')
            .unwrap()
            .1
            .to_owned();
        arches.push(arch.clone());
        let work = tempdir(&name);
        let root = work.join("root");
        let stubs = openwrt_stand_ins(&apk_bin, &root, &arch, &work.join("stubs"));
        let pkg = package.to_str().unwrap();
        let root_arg = root.to_str().unwrap();

        // The metadata: name, version, arch, the kernel modules, scripts.
        let dump = apk(&apk_bin, &["adbdump", pkg]);
        let version = format!("{}-r", env!("CARGO_PKG_VERSION"));
        assert!(dump.contains(&format!("  version: {version}")), "{dump}");
        assert!(dump.contains(&format!("  arch: {arch}\n")), "{dump}");
        for kmod in DEPENDS {
            assert!(dump.contains(&format!("    - {kmod}\n")), "{dump}");
        }
        let post_upgrade = dumped_script(&dump, "post-upgrade");
        assert!(
            post_upgrade.contains("export PKG_UPGRADE=1"),
            "{post_upgrade}"
        );
        assert!(post_upgrade.contains("default_postinst"), "{post_upgrade}");
        assert!(dumped_script(&dump, "pre-deinstall").contains("default_prerm"));

        // Install into the empty root, as `apk add` on the router would.
        let mut add = vec![
            "add",
            "--root",
            root_arg,
            "--initdb",
            "--allow-untrusted",
            "--arch",
            &arch,
        ];
        add.extend(stubs.iter().map(String::as_str));
        add.push(pkg);
        let out = apk(&apk_bin, &add);
        assert!(out.contains("Installing mpbridge"), "{out}");
        assert_eq!(
            calls(&root),
            [
                "add_group_and_user mpbridge",
                "default_postinst mpbridge upgrade=0 root="
            ],
            "post-install must hand over to OpenWrt's default_postinst\n{out}"
        );

        // Files and modes.
        for (path, mode) in [
            ("usr/bin/mpbridge", 0o755),
            ("etc/init.d/mpbridge", 0o755),
            ("etc/config/mpbridge", 0o600),
            ("etc/mpbridge", 0o700),
            ("etc/sysctl.d/90-mpbridge.conf", 0o644),
            ("usr/share/mpbridge/fw4-include.nft", 0o644),
            ("lib/upgrade/keep.d/mpbridge", 0o644),
            ("lib/apk/packages/mpbridge.list", 0o644),
            ("lib/apk/packages/mpbridge.conffiles", 0o644),
            ("lib/apk/packages/mpbridge.conffiles_static", 0o644),
        ] {
            assert_eq!(mode_of(&root.join(path)), mode, "{name}: mode of /{path}");
        }
        let (machine, interp, le) =
            elf_endian(&std::fs::read(root.join("usr/bin/mpbridge")).unwrap());
        assert_eq!(
            (machine, le),
            machine_of(&arch),
            "{name}: binary of another CPU"
        );
        assert!(!interp, "{name}: the binary must be static");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let init = read("etc/init.d/mpbridge");
        for needle in INIT_NEEDLES {
            assert!(init.contains(needle), "{name}: init script lacks {needle}");
        }
        assert!(read("etc/sysctl.d/90-mpbridge.conf")
            .lines()
            .any(|l| l == "net.ipv4.tcp_fastopen=3"));
        assert_eq!(read("lib/upgrade/keep.d/mpbridge"), "/etc/mpbridge/\n");

        // OpenWrt's package database files: the list default_postinst
        // reads, the conffiles and the shipped ones' SHA-256 (sysupgrade
        // keeps those that differ).
        let list = read("lib/apk/packages/mpbridge.list");
        assert!(list.lines().any(|l| l == "/etc/init.d/mpbridge"), "{list}");
        for path in list.lines() {
            assert!(
                root.join(&path[1..]).exists(),
                "{name}: listed {path} not installed"
            );
        }
        assert_eq!(
            read("lib/apk/packages/mpbridge.conffiles")
                .lines()
                .collect::<Vec<_>>(),
            CONFFILES
        );
        let statics = read("lib/apk/packages/mpbridge.conffiles_static");
        for path in ["/etc/config/mpbridge", "/etc/sysctl.d/90-mpbridge.conf"] {
            use sha2::Digest;
            let sum = hex::encode(sha2::Sha256::digest(
                std::fs::read(root.join(&path[1..])).unwrap(),
            ));
            assert!(
                statics.lines().any(|l| l == format!("{path} {sum}")),
                "{name}: {path} {sum} not in\n{statics}"
            );
        }

        // An upgrade to the next release keeps the user's config (the new
        // one beside it as .apk-new) and runs post-upgrade, whose
        // PKG_UPGRADE=1 keeps default_postinst from enabling the service.
        let next = next_release(&apk_bin, pkg, &work, &dump);
        std::fs::write(root.join("etc/config/mpbridge"), "# the user's\n").unwrap();
        std::fs::remove_file(root.join("tmp/calls")).unwrap();
        let out = apk(
            &apk_bin,
            &[
                "add",
                "--root",
                root_arg,
                "--allow-untrusted",
                next.to_str().unwrap(),
            ],
        );
        assert!(out.contains("Upgrading mpbridge"), "{out}");
        assert_eq!(
            calls(&root),
            [
                "add_group_and_user mpbridge",
                "default_postinst mpbridge upgrade=1 root="
            ],
            "{out}"
        );
        assert_eq!(read("etc/config/mpbridge"), "# the user's\n");
        assert!(root.join("etc/config/mpbridge.apk-new").exists(), "{out}");

        // Removal: pre-deinstall hands over to default_prerm; the user's
        // config stays.
        std::fs::remove_file(root.join("tmp/calls")).unwrap();
        let out = apk(&apk_bin, &["del", "--root", root_arg, "mpbridge"]);
        assert_eq!(
            calls(&root),
            ["default_prerm mpbridge upgrade=0 root="],
            "{out}"
        );
        assert!(!root.join("usr/bin/mpbridge").exists(), "{out}");
        assert_eq!(read("etc/config/mpbridge"), "# the user's\n");
        std::fs::remove_dir_all(&work).unwrap();
    }
    check_arch_coverage(".apk", &arches);
}

/// The same package one release later, made from its own files and
/// scripts with `apk mkpkg`.
fn next_release(apk_bin: &Path, pkg: &str, work: &Path, dump: &str) -> PathBuf {
    let files = work.join("next-files");
    std::fs::create_dir_all(&files).unwrap();
    apk(
        apk_bin,
        &[
            "extract",
            "--allow-untrusted",
            "--destination",
            files.to_str().unwrap(),
            pkg,
        ],
    );
    let field = |key: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(&format!("  {key}: ")))
            .unwrap_or_else(|| panic!("no {key} in\n{dump}"))
            .to_owned()
    };
    let version = field("version");
    let (base, release) = version.rsplit_once("-r").unwrap();
    let next_version = format!("{base}-r{}", release.parse::<u32>().unwrap() + 1);
    let mut args = vec![
        "mkpkg".to_owned(),
        "--info".to_owned(),
        "name:mpbridge".to_owned(),
        "--info".to_owned(),
        format!("version:{next_version}"),
        "--info".to_owned(),
        format!("arch:{}", field("arch")),
        "--info".to_owned(),
        format!("depends:{}", DEPENDS.join(" ")),
    ];
    for kind in ["post-install", "post-upgrade", "pre-deinstall"] {
        let script = work.join(kind);
        std::fs::write(&script, dumped_script(dump, kind)).unwrap();
        args.push("--script".to_owned());
        args.push(format!("{kind}:{}", script.display()));
    }
    let out = work.join("next.apk");
    args.extend([
        "--files".to_owned(),
        files.display().to_string(),
        "--output".to_owned(),
        out.display().to_string(),
    ]);
    apk(
        apk_bin,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    out
}

fn files_with_ext_or_none(dir: &Path, ext: &str) -> Vec<PathBuf> {
    if dir.is_dir() {
        files_with_ext(dir, ext)
    } else {
        Vec::new()
    }
}

/// A fresh directory for one test's unpacking.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpbridge-pkg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
