//! The packages as a router or a server would receive them: each `.ipk` of
//! scripts/ipk.sh (opkg's layout, control fields, file modes and owners, a
//! static binary of the architecture it claims) and the `.deb` of
//! scripts/deb.sh (its files, the systemd unit, its control fields). Only
//! reads the packages; installs nothing. Ignored by default: scripts/test.sh
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
    (machine, interp)
}

/// OpenWrt package architecture → ELF machine (EM_*).
fn machine_of(arch: &str) -> u16 {
    match arch {
        "aarch64_cortex-a53" => 183,
        "arm_cortex-a7_neon-vfpv4" => 40,
        "mipsel_24kc" => 8,
        "x86_64" => 62,
        other => panic!("unknown OpenWrt architecture {other}"),
    }
}

#[test]
#[ignore = "needs the packages of scripts/ipk.sh"]
fn every_ipk_has_opkg_layout_control_fields_and_modes() {
    let ipks = files_with_ext(&target_dir().join("ipk"), "ipk");
    assert!(!ipks.is_empty(), "no .ipk under {}", target_dir().display());
    for ipk in ipks {
        let name = ipk.file_name().unwrap().to_str().unwrap().to_owned();
        let arch = name
            .trim_start_matches("mpbridge_")
            .trim_end_matches(".ipk")
            .split_once('_')
            .unwrap()
            .1
            .to_owned();
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
        for kmod in ["kmod-nft-tproxy", "kmod-nft-socket", "kmod-nft-fib"] {
            assert!(field("Depends").contains(kmod), "{fields}");
        }
        assert!(field("Installed-Size").parse::<u64>().unwrap() > 100_000);
        assert_eq!(
            member(control_tgz, "./conffiles").trim(),
            "/etc/config/mpbridge"
        );
        assert!(member(control_tgz, "./postinst").contains("/etc/init.d/mpbridge enable"));

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
        assert!(
            data.iter().all(|(_, owner, _)| owner == "0/0"),
            "{name}: {data:?}"
        );
        let binary = run("tar", &["-xzOf", data_tgz, "./usr/bin/mpbridge"]);
        let (machine, interp) = elf(&binary);
        assert_eq!(machine, machine_of(&arch), "{name}: binary of another CPU");
        assert!(!interp, "{name}: the binary must be static");
        let init = member(data_tgz, "./etc/init.d/mpbridge");
        for needle in [
            "USE_PROCD=1",
            "procd_set_param respawn",
            "procd_add_reload_trigger mpbridge",
            "procd_open_validate",
            "\"$PROG\" uci --output",
        ] {
            assert!(init.contains(needle), "{name}: init script lacks {needle}");
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
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

/// A fresh directory for one test's unpacking.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpbridge-pkg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
