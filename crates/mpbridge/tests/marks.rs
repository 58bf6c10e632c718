//! mpbridge's packet marks beside those of mwan3 and pbr, OpenWrt's
//! multi-WAN and policy-routing packages: mwan3 keeps its marks in
//! 0x3F00 (its default `mmx_mask`), pbr in 0x00ff0000 (its default
//! `fw_mask`). mpbridge's marks live in the top byte (MARK_MASK), and the
//! policy rule TPROXY needs matches that byte alone, so a LAN packet that
//! also carries a mwan3 or pbr mark is still delivered to the bridge.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown};
use std::time::Duration;

use common::{Bridge, Options};
use mpbridge::firewall::{DIVERT_MARK, MARK_MASK, OWN_MARK};
use mpbridge_lab::Node;

/// mwan3's default mask (`option mmx_mask '0x3F00'`).
const MWAN3_MASK: u32 = 0x3f00;
/// pbr's default mask (`option fw_mask '00ff0000'`).
const PBR_MASK: u32 = 0x00ff_0000;

#[test]
fn mpbridges_marks_stay_out_of_mwan3s_and_pbrs_bits() {
    for mark in [DIVERT_MARK, OWN_MARK] {
        assert_eq!(mark & !MARK_MASK, 0, "{mark:#x} outside {MARK_MASK:#x}");
        assert_ne!(mark, 0);
    }
    assert_ne!(DIVERT_MARK, OWN_MARK);
    assert_eq!(MARK_MASK & MWAN3_MASK, 0, "overlaps mwan3's mask");
    assert_eq!(MARK_MASK & PBR_MASK, 0, "overlaps pbr's mask");
}

#[test]
fn a_lan_packet_that_also_carries_mwan3_and_pbr_marks_is_still_bridged() {
    let bridge = Bridge::start(Options::default());
    // The policy rule matches mpbridge's byte only.
    let rules = bridge
        .topo
        .run(Node::RouterA, &["ip", "-4", "rule"])
        .unwrap();
    let expected = format!("fwmark {DIVERT_MARK:#x}/{MARK_MASK:#x}");
    assert!(rules.contains(&expected), "no {expected} in\n{rules}");

    // As mwan3 and pbr do in prerouting: add their marks to the LAN's
    // packets, keeping the other bits, after mpbridge's chain (mangle).
    let nft = bridge.topo.workdir().join("mwan3-pbr.nft");
    std::fs::write(
        &nft,
        "table inet mwan3pbr {\n chain pre {\n  type filter hook prerouting priority mangle + 1; policy accept;\n  \
         iifname \"lan0\" meta l4proto tcp meta mark set meta mark | 0x00010100 counter\n }\n}\n",
    )
    .unwrap();
    bridge
        .topo
        .run(Node::RouterA, &["nft", "-f", &nft.display().to_string()])
        .unwrap();

    let listener = bridge.server_listener(false);
    let dest = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).unwrap();
        conn.write_all(&request).unwrap();
        peer.ip()
    });
    let mut client = bridge.client_connect(dest).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"marked three ways").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"marked three ways", "{}", bridge.logs());
    let seen_from: IpAddr = server.join().unwrap();
    // Bridged: the server sees router B's connection, not the client's.
    assert_ne!(
        seen_from,
        bridge.topo.client_addr(false),
        "{}",
        bridge.logs()
    );

    // The marking chain did see the connection's packets.
    let table = bridge
        .topo
        .run(Node::RouterA, &["nft", "list", "table", "inet", "mwan3pbr"])
        .unwrap();
    assert!(!table.contains("packets 0 "), "{table}");
}

/// The rules of `option firewall 'none'` (openwrt/mpbridge/files/
/// fw4-include.nft) load into a table as fw4 includes them, and use the
/// daemon's marks, set without touching the other bits, and keep a
/// connection-opening SYN out of the socket rule.
#[test]
fn the_fw4_include_loads_and_sets_only_mpbridges_byte() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../openwrt/mpbridge/files/fw4-include.nft");
    let include = std::fs::read_to_string(&path).unwrap();
    let keep_others = format!(
        "meta mark set meta mark & {:#010x} | {DIVERT_MARK:#x}",
        !MARK_MASK
    );
    assert_eq!(
        include.matches(&keep_others).count(),
        3,
        "{keep_others}\n{include}"
    );
    assert!(include.contains(&format!(
        "meta mark & {MARK_MASK:#x} == {OWN_MARK:#x} return"
    )));
    assert!(include.contains(&format!("fwmark {DIVERT_MARK:#x}/{MARK_MASK:#x}")));
    assert!(!include.contains("0x6d70"), "old marks left:\n{include}");
    // As the daemon's own table: a connection-opening SYN is left to the
    // tproxy rule, not sent to a TIME_WAIT by the socket rule.
    assert!(
        include.contains("tcp flags != syn / syn,ack socket transparent 1 "),
        "{include}"
    );

    // As fw4 includes it: inside `table inet fw4`. Checked (nft -c) in a
    // network namespace of its own that ends with the command.
    let file =
        std::env::temp_dir().join(format!("mpbridge-fw4-include-{}.nft", std::process::id()));
    std::fs::write(&file, format!("table inet fw4 {{\n{include}\n}}\n")).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--net", "nft", "-c", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
