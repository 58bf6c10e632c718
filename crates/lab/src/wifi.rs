//! The lab with real 802.11: two routers joined by two point-to-point
//! Wi-Fi links in 4-address (WDS) mode, as the original 2017 test bed was,
//! built from four `mac80211_hwsim` radios in the lab's VM.
//!
//! ```text
//!  router A                                         router B
//!  wan0 (bridge) ─ ap0 ─ ap0.sta1 ))) channel 1  ((( wan0 (4-address station)
//!  wan1 (bridge) ─ ap1 ─ ap1.sta1 ))) channel 11 ((( wan1 (4-address station)
//! ```
//!
//! Each link is one radio moved into router A (`iw phy … set netns`) running
//! an access point (hostapd, WPA2-PSK, `wds_sta=1`) and one in router B
//! running a station in 4-address mode (wpa_supplicant), each link on its
//! own channel and SSID. hostapd gives each 4-address station an interface
//! of its own (`ap0.sta1`) that lives only while the station is associated;
//! as on OpenWrt, it is put into a bridge (`wds_bridge`), which holds the
//! address and is the link the daemon names. On router B the station's
//! interface itself is the link. Addresses, routes and shaping are the
//! veth lab's ([`crate::plan`]).
//!
//! The failures are the ones veth never shows: a station that disconnects
//! and reconnects (`wpa_cli`), an access point that stops and starts again,
//! and a radio switched off by rfkill (its soft block: cfg80211 closes the
//! radio's interfaces, so the station's interface goes down, and what
//! OpenWrt's netifd would do on the way back — bring it up, add its IPv6
//! address again — the lab does). hwsim ignores the transmit power (`iw
//! dev … set txpower fixed 0` leaves it at 20 dBm), so that is no failure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use serde::Serialize;

use crate::bridge::{Bridge, BridgeOptions};
use crate::measure::{self, Progress};
use crate::plan::{self, LanRoutes};
use crate::scenario::{self, Aggregate, Lab};
use crate::{exec, iperf, lock, shaping, transfer, wait_until, Node, Proc, Topology, TopologySpec};

pub mod timeline;

use timeline::Mark;

/// Wi-Fi links: two, an access point and a station each.
pub const LINKS: usize = 2;
/// Radios the lab needs (`mac80211_hwsim radios=4`).
pub const RADIOS: usize = 2 * LINKS;
/// The links' channels (2.4 GHz, no overlap).
const CHANNELS: [u32; LINKS] = [1, 11];
/// The lab's WPA2 passphrase: for simulated radios only.
const PASSPHRASE: &str = "mpbridge-lab-wifi";
/// How long association (scan, authentication, 4-way handshake) may take
/// under TCG on a busy machine.
const ASSOCIATE_TIMEOUT: Duration = Duration::from_secs(30);
/// The nftables table (family netdev) that silences a link.
const SILENCE_TABLE: &str = "mpblab_silence";
/// How often the lab's stand-in for OpenWrt's hotplug looks for a
/// 4-address station's interface (a read of /proc, no process).
const HOTPLUG_PERIOD: Duration = Duration::from_millis(50);

/// How the Wi-Fi lab is built, beyond the topology.
#[derive(Debug, Clone, Default)]
pub struct WifiOptions {
    /// Router A without bridges: its daemon's links name the 4-address
    /// stations' own interfaces (`ap0.sta1`), which hostapd makes on
    /// association and deletes on disassociation; the lab gives each new
    /// one its address, route and shaping, as an OpenWrt hotplug script
    /// would.
    pub no_bridge: bool,
    /// hostapd renews the pairwise and the group key every this many
    /// seconds (`wpa_ptk_rekey`, `wpa_group_rekey`).
    pub rekey_secs: Option<u32>,
}

/// Channel `ch`'s centre frequency in MHz (2.4 GHz band).
fn frequency(ch: u32) -> u32 {
    2407 + 5 * ch
}

/// What must be installed for the Wi-Fi lab, checked before anything is
/// created: one sentence naming what is missing and how to get it.
pub fn check_tools() -> anyhow::Result<()> {
    for (tool, arg, package) in [
        ("hostapd", "-v", "hostapd"),
        ("wpa_supplicant", "-v", "wpasupplicant"),
        ("wpa_cli", "-v", "wpasupplicant"),
        ("iw", "--version", "iw"),
    ] {
        let found = Command::new(tool)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        ensure!(
            found,
            "the Wi-Fi lab needs {tool}, which is not installed: `apt-get install {package}` \
             (scripts/setup.sh installs hostapd, wpasupplicant and iw)"
        );
    }
    Ok(())
}

/// The `mac80211_hwsim` radios in this network namespace, by name
/// (`phy0`…), sorted by index; an error saying what is missing when there
/// are fewer than [`RADIOS`].
pub fn find_radios() -> anyhow::Result<Vec<String>> {
    const MODULE: &str = "/sys/module/mac80211_hwsim";
    ensure!(
        Path::new(MODULE).exists(),
        "this kernel has no mac80211_hwsim loaded ({MODULE} is missing): run the Wi-Fi lab in the \
         lab's VM (`mpbridge-lab run wifi-bridge` does so by itself; scripts/vm-lab.sh loads it \
         with radios={RADIOS}), or `modprobe mac80211_hwsim radios={RADIOS}` on a kernel that has it"
    );
    let mut radios: Vec<(u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/sys/class/ieee80211").context("/sys/class/ieee80211")? {
        let path = entry?.path();
        let driver = std::fs::read_link(path.join("device/driver")).unwrap_or_default();
        let device = std::fs::read_link(path.join("device")).unwrap_or_default();
        let hwsim = [driver, device]
            .iter()
            .any(|p| p.to_string_lossy().contains("hwsim"));
        let index = std::fs::read_to_string(path.join("index"))
            .ok()
            .and_then(|i| i.trim().parse().ok());
        if let (true, Some(index)) = (hwsim, index) {
            radios.push((index, path.file_name().unwrap().to_string_lossy().into()));
        }
    }
    radios.sort();
    ensure!(
        radios.len() >= RADIOS,
        "mac80211_hwsim offers {} radio(s) here, the Wi-Fi lab needs {RADIOS}: load it with \
         `radios={RADIOS}` (scripts/vm-lab.sh does)",
        radios.len()
    );
    Ok(radios.into_iter().take(RADIOS).map(|r| r.1).collect())
}

/// The running Wi-Fi links of a topology: which radio is where, the
/// access points and stations.
pub struct Wifi {
    /// Per link: router A's radio (the access point), router B's (the station).
    radios: Vec<(String, String)>,
    dir: PathBuf,
    options: WifiOptions,
    aps: Mutex<Vec<Option<Proc>>>,
    stations: Mutex<Vec<Option<Proc>>>,
    /// The logs of access points the lab stopped, for the timeline.
    retired: Mutex<Vec<(usize, String)>>,
    /// What the lab did, Unix seconds and words, for the timeline.
    notes: Arc<Mutex<Vec<(f64, String)>>>,
    /// The hotplug stand-in (without bridges): its stop flag and thread.
    hotplug: Mutex<Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>>,
    /// `nft -i` in router A and router B, ready to silence a link.
    silencers: Mutex<Vec<NftShell>>,
}

/// An `nft -i` started in one router, fed commands on its stdin: a change
/// takes effect without a process being started (each start costs up to
/// seconds in the VM under TCG on a busy machine).
struct NftShell {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl NftShell {
    fn start(topo: &Topology, node: Node, stderr: &Path) -> anyhow::Result<NftShell> {
        let err = std::fs::File::create(stderr)
            .with_context(|| format!("cannot create {}", stderr.display()))?;
        // Started from a thread inside the router: one process.
        let mut child = crate::netns::try_in_netns(&topo.ns_path(node), || {
            Command::new("nft")
                .arg("-i")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(err)
                .spawn()
        })?
        .context("cannot start nft -i")?;
        let stdin = child.stdin.take().context("nft -i without stdin")?;
        Ok(NftShell { child, stdin })
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("nft -i: cannot send {line:?}"))
    }

    /// Ends it: its stdin closed, it exits (killed after 5 s).
    fn finish(self) {
        let NftShell { mut child, stdin } = self;
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Wifi {
    fn new(radios: Vec<String>, dir: &Path, options: &WifiOptions) -> Wifi {
        Wifi {
            radios: radios
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            dir: dir.to_path_buf(),
            options: options.clone(),
            aps: Mutex::new(vec![None, None]),
            stations: Mutex::new(vec![None, None]),
            retired: Mutex::new(Vec::new()),
            notes: Arc::new(Mutex::new(Vec::new())),
            hotplug: Mutex::new(None),
            silencers: Mutex::new(Vec::new()),
        }
    }

    /// Router A's interface of link `link`, the one its daemon names: the
    /// bridge `wanN`, or without bridges the station's own `apN.sta1`.
    pub fn ra_ifname(&self, topo: &Topology, link: usize) -> String {
        match self.options.no_bridge {
            true => Wifi::wds_ifname(link),
            false => topo.link_ifname(link),
        }
    }

    fn note(&self, what: String) {
        lock(&self.notes).push((unix_now(), what));
    }

    /// Without bridges: starts the lab's stand-in for an OpenWrt hotplug
    /// script in router A. Each time a station's interface (`apN.sta1`)
    /// appears, it is brought up and given router A's addresses on the
    /// link, link 0's the route to the server LAN (the bridge had it), and
    /// the link's shaping; its new ifindex goes to the timeline. It looks
    /// every [`HOTPLUG_PERIOD`] (the interface list of /proc, read in
    /// router A's namespace).
    fn start_hotplug(&self, topo: &Topology) -> anyhow::Result<()> {
        let ns_path = topo.ns_path(Node::RouterA);
        let ns = topo.ns_name(Node::RouterA).to_string();
        let setups: Vec<(String, String, String)> = (0..LINKS)
            .map(|link| {
                let dev = Wifi::wds_ifname(link);
                let mut ip = format!(
                    "link set {dev} up\naddr replace {} dev {dev}\n\
                     addr replace {} dev {dev} nodad\n",
                    plan::with_prefix(topo.ra_link_addr(link, false)),
                    plan::with_prefix(topo.ra_link_addr(link, true)),
                );
                if link == 0 {
                    for v6 in [false, true] {
                        let _ = writeln!(
                            ip,
                            "route replace {} via {} dev {dev}",
                            plan::server_net(v6),
                            topo.rb_link_addr(0, v6)
                        );
                    }
                }
                let _ = writeln!(ip, "link show dev {dev}");
                let spec = &topo.links()[link];
                let tc = shaping::link_lines(&dev, spec, spec.rate_mbit).join("\n") + "\n";
                (dev, ip, tc)
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let notes = Arc::clone(&self.notes);
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let watch = crate::netns::try_in_netns(&ns_path, || {
                let mut configured = [false; LINKS];
                while !flag.load(Ordering::Relaxed) {
                    let dev =
                        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
                    for (link, (name, ip, tc)) in setups.iter().enumerate() {
                        let present = dev
                            .lines()
                            .any(|l| l.trim_start().starts_with(&format!("{name}:")));
                        if !present {
                            configured[link] = false;
                            continue;
                        }
                        if configured[link] {
                            continue;
                        }
                        let done = exec::run("ip", &["-n", &ns, "-batch", "-"], Some(ip)).and_then(
                            |out| {
                                exec::run("tc", &["-n", &ns, "-batch", "-"], Some(tc))?;
                                Ok(out)
                            },
                        );
                        // Not yet (hostapd still setting it up): next look.
                        if let Ok(out) = done {
                            configured[link] = true;
                            let index = out.split(':').next().unwrap_or("?").trim().to_string();
                            lock(&notes).push((
                                unix_now(),
                                format!("hotplug: {name} (ifindex {index}) up, addressed, shaped"),
                            ));
                        }
                    }
                    std::thread::sleep(HOTPLUG_PERIOD);
                }
            });
            if let Err(e) = watch {
                eprintln!("mpbridge-lab: the hotplug stand-in cannot enter router A: {e:#}");
            }
        });
        *lock(&self.hotplug) = Some((stop, thread));
        Ok(())
    }

    fn stop_hotplug(&self) {
        if let Some((stop, thread)) = lock(&self.hotplug).take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// The access point's interface on router A (the bridge's port).
    pub fn ap_ifname(link: usize) -> String {
        format!("ap{link}")
    }

    /// What was said about link `link` within `window` (seconds after
    /// `origin_unix`): both daemons' logs whole, hostapd's and
    /// wpa_supplicant's events, the lab's notes; in time order.
    fn timeline(
        &self,
        bridge: &Bridge,
        link: usize,
        origin_unix: f64,
        window: (f64, f64),
    ) -> Vec<Mark> {
        let (from, to) = window;
        let mut marks = Vec::new();
        for (who, proc) in [("router A", &bridge.local), ("router B", &bridge.remote)] {
            marks.extend(timeline::daemon_marks(
                who,
                &proc.output_text(),
                origin_unix,
                from,
                to,
            ));
        }
        const EVENTS: [&str; 6] = [
            "AP-STA-",
            "CTRL-EVENT-",
            "WPA: Key negotiation completed",
            "WPA: Group rekeying completed",
            "EAPOL-4WAY-HS-COMPLETED",
            "AP-ENABLED",
        ];
        let mut logs: Vec<(String, String)> = lock(&self.retired)
            .iter()
            .filter(|(l, _)| *l == link)
            .map(|(_, text)| (format!("hostapd {link}"), text.clone()))
            .collect();
        for (who, procs) in [("hostapd", &self.aps), ("wpa", &self.stations)] {
            if let Some(p) = &lock(procs)[link] {
                logs.push((format!("{who} {link}"), p.output_text()));
            }
        }
        for (who, text) in &logs {
            marks.extend(timeline::hostap_marks(
                who,
                text,
                origin_unix,
                window,
                &EVENTS,
            ));
        }
        marks.extend(
            lock(&self.notes)
                .iter()
                .map(|(t, what)| Mark {
                    t: t - origin_unix,
                    who: "lab".into(),
                    what: what.clone(),
                })
                .filter(|m| (from..=to).contains(&m.t)),
        );
        marks.sort_by(|a, b| a.t.total_cmp(&b.t));
        marks
    }

    /// Silences link `link` (`on`) or lets it speak again: every frame
    /// that arrives on it is dropped at both ends, at the netdev ingress
    /// hook (before the bridge, IP and ARP), by nftables tables of family
    /// netdev of the lab's own, while the station stays associated:
    /// 802.11 management and acknowledgements go on below that hook. A
    /// receiver that cannot decrypt (keys out of step during a re-key) or
    /// a roaming station's frames that reach no one look like this to IP.
    fn silence(&self, topo: &Topology, link: usize, on: bool) -> anyhow::Result<()> {
        let mut shells = lock(&self.silencers);
        if !shells.is_empty() {
            let rule = match on {
                true => format!("add rule netdev {SILENCE_TABLE} ingress drop"),
                false => format!("flush chain netdev {SILENCE_TABLE} ingress"),
            };
            for shell in shells.iter_mut() {
                shell.send(&rule)?;
            }
            self.note(format!(
                "{} link {link} (sent to nft -i in both routers)",
                if on { "silenced" } else { "unsilenced" }
            ));
            return Ok(());
        }
        drop(shells);
        // Without `prepare_silence`: both ends at once, each `nft` started from a thread inside its
        // router (one process, not `ip netns exec`'s two): under TCG on a
        // busy machine each process start takes up to seconds.
        let ends = [
            (Node::RouterA, Wifi::wds_ifname(link)),
            (Node::RouterB, topo.link_ifname(link)),
        ];
        std::thread::scope(|scope| {
            let each: Vec<_> = ends
                .iter()
                .map(|(node, dev)| scope.spawn(move || self.silence_end(topo, *node, dev, on)))
                .collect();
            each.into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    fn silence_end(&self, topo: &Topology, node: Node, dev: &str, on: bool) -> anyhow::Result<()> {
        let script = if on {
            format!(
                    "table netdev {SILENCE_TABLE} {{\n  chain ingress {{\n    \
                     type filter hook ingress device \"{dev}\" priority -500; policy drop;\n  }}\n}}\n"
                )
        } else {
            format!("delete table netdev {SILENCE_TABLE}\n")
        };
        crate::netns::try_in_netns(&topo.ns_path(node), || {
            exec::run("nft", &["-f", "-"], Some(&script))
        })
        .and_then(|r| r)
        .with_context(|| format!("cannot silence {dev} in {node:?}"))?;
        self.note(format!(
            "{} {dev} in {node:?}",
            if on { "silenced" } else { "unsilenced" }
        ));
        Ok(())
    }

    /// Makes silencing link `link` quick: an `nft -i` in each router with
    /// the table and an empty ingress chain on the link's interface, so
    /// that [`WifiFailure::Silence`] only sends one line to each.
    pub fn prepare_silence(&self, topo: &Topology, link: usize) -> anyhow::Result<()> {
        self.end_silence();
        let mut shells = Vec::new();
        for (node, dev) in [
            // Where what the station sends arrives, bridged or not.
            (Node::RouterA, Wifi::wds_ifname(link)),
            (Node::RouterB, topo.link_ifname(link)),
        ] {
            let mut shell =
                NftShell::start(topo, node, &self.dir.join(format!("nft-{node:?}.stderr")))?;
            shell.send(&format!("add table netdev {SILENCE_TABLE}"))?;
            shell.send(&format!(
                "add chain netdev {SILENCE_TABLE} ingress {{ type filter hook ingress device \"{dev}\" \
                 priority -500; policy accept; }}"
            ))?;
            shells.push(shell);
        }
        *lock(&self.silencers) = shells;
        Ok(())
    }

    /// Removes the silencing tables and ends the `nft -i`s.
    pub fn end_silence(&self) {
        for mut shell in lock(&self.silencers).drain(..) {
            let _ = shell.send(&format!("delete table netdev {SILENCE_TABLE}"));
            shell.finish();
        }
    }

    /// How often link `link`'s station has said `event` (wpa_supplicant's
    /// log, so no process is started to ask).
    fn station_said(&self, link: usize, event: &str) -> usize {
        lock(&self.stations)[link]
            .as_ref()
            .map_or(0, |p| p.output_text().matches(event).count())
    }

    /// The interface hostapd makes for link `link`'s 4-address station
    /// (named after the station's association ID, 1 for the only one).
    pub fn wds_ifname(link: usize) -> String {
        format!("{}.sta1", Wifi::ap_ifname(link))
    }

    /// Router A's and router B's radio of link `link`.
    pub fn radios(&self, link: usize) -> (&str, &str) {
        let (a, b) = &self.radios[link];
        (a, b)
    }

    fn hostapd_ctrl(&self, link: usize) -> PathBuf {
        self.dir.join(format!("hostapd-{link}"))
    }

    fn wpa_ctrl(&self, link: usize) -> PathBuf {
        self.dir.join(format!("wpa-{link}"))
    }

    /// Moves the radios into the routers, makes the interfaces, starts the
    /// access points and stations and waits until every station is
    /// associated (the hook of [`Topology::build_with_links`]).
    fn create(&self, topo: &Topology) -> anyhow::Result<()> {
        for link in 0..LINKS {
            let (a, b) = self.radios(link);
            for (phy, node) in [(a, Node::RouterA), (b, Node::RouterB)] {
                exec::run(
                    "iw",
                    &["phy", phy, "set", "netns", "name", topo.ns_name(node)],
                    None,
                )
                .with_context(|| format!("cannot move radio {phy} into {node:?}"))?;
                // Whatever interfaces the radio had (wlanN, or a name an
                // earlier run gave it) go: the lab makes its own.
                let script = format!(
                    "for d in /sys/class/net/*; do \
                       [ \"$(cat \"$d/phy80211/name\" 2>/dev/null)\" = {phy} ] && iw dev \"${{d##*/}}\" del; \
                     done; true"
                );
                topo.run(node, &["sh", "-c", &script])?;
            }
            let ifname = topo.link_ifname(link);
            let ap = Wifi::ap_ifname(link);
            topo.run(
                Node::RouterA,
                &["iw", "phy", a, "interface", "add", &ap, "type", "managed"],
            )?;
            // A fixed address: a bridge otherwise takes its ports', which
            // change as the station's interface comes and goes. Without
            // bridges, a veth pair inside router A stands in until the
            // topology is built (it addresses and checks every router's
            // `wanN`), then goes (the lab VM's kernel has no dummy module).
            let mac = format!("02:6d:70:62:a0:{link:02x}");
            let stub = format!("stub{link}");
            let kind: &[&str] = if self.options.no_bridge {
                &["type", "veth", "peer", "name", &stub]
            } else {
                &["type", "bridge"]
            };
            topo.run(
                Node::RouterA,
                &[&["ip", "link", "add", &ifname, "address", &mac], kind].concat(),
            )?;
            if self.options.no_bridge {
                topo.run(Node::RouterA, &["ip", "link", "set", &stub, "up"])?;
            }
            topo.run(
                Node::RouterB,
                &[
                    "iw",
                    "phy",
                    b,
                    "interface",
                    "add",
                    &ifname,
                    "type",
                    "managed",
                    "4addr",
                    "on",
                ],
            )?;
            self.start_ap(topo, link)?;
            self.start_station(topo, link)?;
        }
        // Without bridges the station's interface gets its address once
        // the topology is built (`WifiLab::start`): the radio part only.
        for link in 0..LINKS {
            self.wait_ready(topo, link, !self.options.no_bridge)?;
        }
        Ok(())
    }

    fn start_ap(&self, topo: &Topology, link: usize) -> anyhow::Result<()> {
        let conf = self.dir.join(format!("hostapd-{link}.conf"));
        let channel = CHANNELS[link];
        let mut text = format!(
            "interface={ap}\ndriver=nl80211\n\
             ctrl_interface={ctrl}\nssid=mpbridge-lab-{link}\nhw_mode=g\nchannel={channel}\n\
             wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={PASSPHRASE}\n\
             wds_sta=1\n",
            ap = Wifi::ap_ifname(link),
            ctrl = self.hostapd_ctrl(link).display(),
        );
        if !self.options.no_bridge {
            let br = topo.link_ifname(link);
            let _ = write!(text, "bridge={br}\nwds_bridge={br}\n");
        }
        if let Some(secs) = self.options.rekey_secs {
            let _ = write!(text, "wpa_ptk_rekey={secs}\nwpa_group_rekey={secs}\n");
        }
        std::fs::write(&conf, text)?;
        let name = crate::bridge::unused_name(topo, &format!("hostapd-{link}"));
        // -t: each line with its time, for the timeline.
        let proc = topo.spawn_named(
            Node::RouterA,
            &name,
            Command::new("hostapd").arg("-t").arg(&conf),
        )?;
        proc.wait_for_log("AP-ENABLED", ASSOCIATE_TIMEOUT)
            .with_context(|| {
                format!(
                    "hostapd on link {link} did not start:\n{}",
                    proc.output_text()
                )
            })?;
        lock(&self.aps)[link] = Some(proc);
        Ok(())
    }

    fn start_station(&self, topo: &Topology, link: usize) -> anyhow::Result<()> {
        let conf = self.dir.join(format!("wpa-{link}.conf"));
        let text = format!(
            "ctrl_interface={ctrl}\nnetwork={{\n  ssid=\"mpbridge-lab-{link}\"\n  \
             psk=\"{PASSPHRASE}\"\n  key_mgmt=WPA-PSK\n  scan_freq={freq}\n  freq_list={freq}\n}}\n",
            ctrl = self.wpa_ctrl(link).display(),
            freq = frequency(CHANNELS[link]),
        );
        std::fs::write(&conf, text)?;
        let name = crate::bridge::unused_name(topo, &format!("wpa_supplicant-{link}"));
        let mut cmd = Command::new("wpa_supplicant");
        cmd.args(["-t", "-D", "nl80211", "-i", &topo.link_ifname(link), "-c"])
            .arg(&conf);
        let proc = topo.spawn_named(Node::RouterB, &name, &mut cmd)?;
        lock(&self.stations)[link] = Some(proc);
        Ok(())
    }

    /// Whether link `link`'s station is associated and its access point
    /// has made (and bridged) the station's interface.
    pub fn associated(&self, topo: &Topology, link: usize) -> bool {
        self.associated_as(topo, link, true)
    }

    /// [`Wifi::associated`]; without `ra_side`, only the radio part:
    /// the station connected and its interface there on router A.
    fn associated_as(&self, topo: &Topology, link: usize, ra_side: bool) -> bool {
        let station = topo
            .run(
                Node::RouterB,
                &["iw", "dev", &topo.link_ifname(link), "link"],
            )
            .is_ok_and(|out| out.contains("Connected to"));
        let wds = Wifi::wds_ifname(link);
        let ready = if self.options.no_bridge && !ra_side {
            topo.run(Node::RouterA, &["ip", "-br", "link", "show", "dev", &wds])
                .is_ok()
        } else if self.options.no_bridge {
            // The station's interface is there with its address.
            let v4 = topo.ra_link_addr(link, false).to_string();
            topo.run(Node::RouterA, &["ip", "-br", "addr", "show", "dev", &wds])
                .is_ok_and(|out| out.contains(&format!("{v4}/")))
        } else {
            let br = topo.link_ifname(link);
            topo.run(Node::RouterA, &["ip", "-br", "link", "show", "master", &br])
                .is_ok_and(|out| out.contains(&wds))
        };
        station && ready
    }

    /// Waits until link `link` is associated and its key negotiated.
    pub fn wait_associated(&self, topo: &Topology, link: usize) -> anyhow::Result<()> {
        self.wait_ready(topo, link, true)
    }

    fn wait_ready(&self, topo: &Topology, link: usize, ra_side: bool) -> anyhow::Result<()> {
        if wait_until(ASSOCIATE_TIMEOUT, || {
            self.associated_as(topo, link, ra_side)
        }) {
            return Ok(());
        }
        let logs = |procs: &Mutex<Vec<Option<Proc>>>| {
            lock(procs)[link]
                .as_ref()
                .map_or_else(String::new, Proc::output_text)
        };
        bail!(
            "link {link}'s station did not associate within {ASSOCIATE_TIMEOUT:?}\n\
             --- hostapd ---\n{}\n--- wpa_supplicant ---\n{}",
            logs(&self.aps),
            logs(&self.stations)
        )
    }

    /// Runs `wpa_cli COMMAND` for link `link`'s station.
    fn wpa_cli(&self, topo: &Topology, link: usize, command: &str) -> anyhow::Result<()> {
        let ctrl = self.wpa_ctrl(link).display().to_string();
        // The control socket is a file: no namespace needed, one process
        // fewer than `ip netns exec` (each costs a lot under TCG).
        let out = exec::run(
            "wpa_cli",
            &["-p", &ctrl, "-i", &topo.link_ifname(link), command],
            None,
        )?;
        ensure!(
            out.contains("OK"),
            "wpa_cli {command} on link {link}: {out}"
        );
        Ok(())
    }

    /// Applies (`failed`) or lifts `failure` on link `link`.
    pub fn apply(
        &self,
        topo: &Topology,
        failure: WifiFailure,
        link: usize,
        failed: bool,
    ) -> anyhow::Result<()> {
        match (failure, failed) {
            (WifiFailure::Disconnect, true) => self.wpa_cli(topo, link, "disconnect"),
            (WifiFailure::Disconnect, false) => self.wpa_cli(topo, link, "reconnect"),
            (WifiFailure::ApRestart, true) => {
                if let Some(mut ap) = lock(&self.aps)[link].take() {
                    ap.terminate(Duration::from_secs(5));
                    lock(&self.retired).push((link, ap.output_text()));
                }
                Ok(())
            }
            (WifiFailure::Silence, _) => self.silence(topo, link, failed),
            (WifiFailure::ApRestart, false) => self.start_ap(topo, link),
            (WifiFailure::RadioOff, _) => {
                let (_, phy) = self.radios(link);
                let soft = u8::from(failed);
                // rfkill is not namespaced: its switch is written from here,
                // no process at all; the radio's own view needs router B's sysfs.
                match rfkill_soft(phy) {
                    Some(path) => std::fs::write(&path, format!("{soft}\n"))
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => {
                        let script = format!(
                            "for r in /sys/class/ieee80211/{phy}/rfkill*/soft; do echo {soft} > \"$r\"; done"
                        );
                        topo.run(Node::RouterB, &["sh", "-c", &script])?;
                    }
                }
                if !failed {
                    // What netifd does when the radio is back: the
                    // interface up, its IPv6 address again (the IPv4 one
                    // survives a down).
                    let ifname = topo.link_ifname(link);
                    let v4 = plan::with_prefix(topo.rb_link_addr(link, false));
                    let v6 = plan::with_prefix(topo.rb_link_addr(link, true));
                    let script = format!(
                        "link set {ifname} up\naddr replace {v4} dev {ifname}\n\
                         addr replace {v6} dev {ifname} nodad\n"
                    );
                    exec::run(
                        "ip",
                        &["-n", topo.ns_name(Node::RouterB), "-batch", "-"],
                        Some(&script),
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The Wi-Fi lab: a [`Lab`] whose links are radios.
pub struct WifiLab {
    pub lab: Lab,
    pub wifi: Wifi,
}

impl WifiLab {
    /// Checks the tools and radios, builds the topology over the radios
    /// (associated, addressed, shaped as `spec` says) and starts the
    /// daemons. `spec` must have [`LINKS`] links.
    pub fn start(
        spec: &TopologySpec,
        mpbridge: &Path,
        options: &BridgeOptions,
    ) -> anyhow::Result<WifiLab> {
        WifiLab::start_with(spec, mpbridge, options, &WifiOptions::default())
    }

    /// [`WifiLab::start`] built as `wifi_options` says.
    pub fn start_with(
        spec: &TopologySpec,
        mpbridge: &Path,
        options: &BridgeOptions,
        wifi_options: &WifiOptions,
    ) -> anyhow::Result<WifiLab> {
        ensure!(
            spec.links.len() == LINKS,
            "the Wi-Fi lab has {LINKS} links (four radios), not {}",
            spec.links.len()
        );
        check_tools()?;
        let radios = find_radios()?;
        // The topology's work dir does not exist before it is built: the
        // configs and control sockets go to one of their own.
        let dir = std::env::temp_dir().join(format!("mpbridge-lab-wifi.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let wifi = Wifi::new(radios, &dir, wifi_options);
        let topo = Topology::build_with_links(spec, LanRoutes::Static, &|topo| wifi.create(topo))?;
        let mut local_ifnames = Vec::new();
        if wifi_options.no_bridge {
            // The dummies held the addresses while the topology was built:
            // they go, the hotplug stand-in puts them on the stations'
            // interfaces, which router A's daemon names.
            let dummies: Vec<String> = (0..LINKS)
                .map(|l| format!("link del {}", topo.link_ifname(l)))
                .collect();
            exec::run(
                "ip",
                &["-n", topo.ns_name(Node::RouterA), "-batch", "-"],
                Some(&(dummies.join("\n") + "\n")),
            )?;
            wifi.start_hotplug(&topo)?;
            for link in 0..LINKS {
                wifi.wait_associated(&topo, link)?;
            }
            local_ifnames = (0..LINKS).map(Wifi::wds_ifname).collect();
        }
        // The daemons probe as they do by default: a Wi-Fi link is what
        // they must handle as shipped.
        let bridge = Bridge::start_naming(&topo, mpbridge, options, &local_ifnames)?;
        let iperf_server = iperf::start_server(
            &topo,
            Node::Server,
            topo.server_addr(false),
            "iperf3-server",
        )?;
        Ok(WifiLab {
            lab: Lab {
                bridge,
                iperf_server,
                topo,
            },
            wifi,
        })
    }
}

impl Drop for Wifi {
    fn drop(&mut self) {
        // First: its thread keeps router A's namespace, and so its radio, alive.
        self.stop_hotplug();
        self.end_silence();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The kernel sends a radio home when its namespace is destroyed,
        // which happens in the background after the lab deletes it (seen:
        // 2 of 4 radios back right after the teardown). Wait for them, so
        // that a lab started next finds all four.
        let home = |phy: &String| Path::new("/sys/class/ieee80211").join(phy).exists();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.radios.iter().all(|(a, b)| home(a) && home(b))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A failure only a real radio link has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WifiFailure {
    /// The station disconnects (`wpa_cli disconnect`), then reconnects.
    Disconnect,
    /// The access point (hostapd) stops, then starts again.
    ApRestart,
    /// The station's radio is soft-blocked by rfkill, then unblocked.
    RadioOff,
    /// The link stays associated but passes nothing (a re-key whose keys
    /// got out of step, a roam): both ends drop what they receive.
    Silence,
}

impl WifiFailure {
    pub const ALL: [WifiFailure; 4] = [
        WifiFailure::Disconnect,
        WifiFailure::ApRestart,
        WifiFailure::RadioOff,
        WifiFailure::Silence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WifiFailure::Disconnect => "disconnect",
            WifiFailure::ApRestart => "ap-restart",
            WifiFailure::RadioOff => "radio-off",
            WifiFailure::Silence => "silence",
        }
    }

    /// The link the full scenario fails this way: the station of link 0,
    /// the access point of link 1, the radio of link 0's station, link 1
    /// silent.
    pub fn default_link(self) -> usize {
        match self {
            WifiFailure::ApRestart | WifiFailure::Silence => 1,
            _ => 0,
        }
    }

    /// Parses a comma-separated list of names.
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<WifiFailure>> {
        text.split(',')
            .map(|t| {
                WifiFailure::ALL
                    .into_iter()
                    .find(|f| f.name() == t.trim())
                    .with_context(|| {
                        format!(
                            "--wifi-failures: {t:?} is not one of disconnect, ap-restart, radio-off, \
                             silence"
                        )
                    })
            })
            .collect()
    }
}

/// One failure during a checked transfer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FailureRun {
    pub failure: WifiFailure,
    pub link: usize,
    /// Seconds into the transfer when the failure began and was lifted.
    pub fail_at: f64,
    pub restore_at: f64,
    /// Both directions arrived whole and unchanged.
    pub intact: bool,
    pub outcome: transfer::Outcome,
    /// How long the transfer took, seconds.
    pub seconds: f64,
    /// Mean goodput server → client, Mbit/s.
    pub mean_mbit: f64,
    /// Longest time the client received nothing from the failure until a
    /// second after the link was regained (10 s after the restore if it
    /// never was), seconds (100 ms resolution).
    pub longest_stall: f64,
    /// Seconds from the lifting of the failure until the station was
    /// associated again.
    pub associated_after: Option<f64>,
    /// Seconds from the lifting of the failure until the link carried the
    /// connection again (`None`: not before the transfer ended).
    pub regained_after: Option<f64>,
    /// `mpbridge status` of both routers while the link was back.
    pub status: String,
    pub series: scenario::Series,
    /// Where the longest stall lay, seconds into the transfer.
    #[serde(default)]
    pub stall: Option<(f64, f64)>,
    /// How often the daemons took the *other* link out of service during
    /// the transfer (it never failed: each time is a false alarm).
    #[serde(default)]
    pub other_link_downs: usize,
    /// What the daemons, hostapd, wpa_supplicant and the lab said from a
    /// second before the failure to the end of the transfer.
    #[serde(default)]
    pub timeline: Vec<Mark>,
}

/// Everything one Wi-Fi run measured.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct WifiReport {
    pub links: Vec<crate::LinkSpec>,
    pub aggregate: Option<Aggregate>,
    pub failures: Vec<FailureRun>,
    /// Seconds the lab took to build (radios moved, associated, daemons up).
    pub setup_seconds: f64,
    pub wall_seconds: f64,
}

/// When a failure begins and ends, seconds into its transfer.
#[derive(Debug, Clone, Copy)]
pub struct FailureTiming {
    pub fail_at: f64,
    pub restore_at: f64,
}

/// A transfer of `bytes` each way through the bridge while link `link`
/// fails as `failure` says: SHA-256 checked, the longest stall, the time
/// until the station is associated again and until the link carries the
/// connection again. A broken connection is an error.
pub fn failure_run(
    wl: &WifiLab,
    mpbridge: &Path,
    failure: WifiFailure,
    link: usize,
    timing: FailureTiming,
    bytes: u64,
    progress: &Progress,
) -> anyhow::Result<FailureRun> {
    let topo = &wl.lab.topo;
    progress.phase(&format!(
        "wifi: {} MB each way; link {link} {} at {} s, back at {} s",
        bytes / 1_000_000,
        failure.name(),
        timing.fail_at,
        timing.restore_at
    ));
    if failure == WifiFailure::Silence {
        wl.wifi.prepare_silence(topo, link)?;
    }
    let server = transfer::Server::bind(topo)?;
    let client_rx = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let started = Instant::now();
    let started_unix = unix_now();
    let names: Vec<String> = (0..LINKS).map(|l| wl.wifi.ra_ifname(topo, l)).collect();
    let ((outcome, seconds, events, associated_after, status), links) =
        record(topo, &names, started, &client_rx, progress, || {
            std::thread::scope(|scope| {
                let transfer = scope.spawn(|| {
                    let result = transfer::run(topo, server, bytes, &client_rx);
                    let seconds = started.elapsed().as_secs_f64();
                    finished.store(true, Ordering::Relaxed);
                    result.map(|o| (o, seconds))
                });
                let faults = (|| -> anyhow::Result<_> {
                    let mut events = Vec::new();
                    let at = |t: f64| started + Duration::from_secs_f64(t);
                    sleep_until(at(timing.fail_at));
                    // The moment the command is given (under TCG starting
                    // it may take a second).
                    events.push(event(started, link, false));
                    let said = |e| wl.wifi.station_said(link, e);
                    let (connected, disconnected) = (
                        said("CTRL-EVENT-CONNECTED"),
                        said("CTRL-EVENT-DISCONNECTED"),
                    );
                    wl.wifi.note(format!("{} on link {link}", failure.name()));
                    wl.wifi.apply(topo, failure, link, true)?;
                    progress.note(&format!("link {link} {}", failure.name()));
                    sleep_until(at(timing.restore_at));
                    events.push(event(started, link, true));
                    let lifted = Instant::now();
                    wl.wifi
                        .note(format!("{} lifted on link {link}", failure.name()));
                    wl.wifi.apply(topo, failure, link, false)?;
                    progress.note("");
                    // Associated: never lost, or connected again (read from
                    // wpa_supplicant's log: asking `iw` and `ip` in a loop
                    // took the VM's only CPU from the daemons right when
                    // they regain the link).
                    let associated = wait_until(ASSOCIATE_TIMEOUT, || {
                        said("CTRL-EVENT-DISCONNECTED") == disconnected
                            || said("CTRL-EVENT-CONNECTED") > connected
                    })
                    .then(|| lifted.elapsed().as_secs_f64());
                    // The status once the link has had a moment to carry
                    // the connection again.
                    wait_until(Duration::from_secs(2), || finished.load(Ordering::Relaxed));
                    let status = status_text(topo, mpbridge, &wl.lab.bridge);
                    Ok((events, associated, status))
                })();
                let result = transfer
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                let (outcome, seconds) = result.with_context(|| {
                    format!(
                        "the connection broke during the transfer ({} on link {link}), {} s in",
                        failure.name(),
                        started.elapsed().as_secs()
                    )
                })?;
                let (events, associated, status) = faults?;
                Ok((outcome, seconds, events, associated, status))
            })
        })
        .inspect_err(|_| {
            // What led to it, for the reader of the error.
            let to = started.elapsed().as_secs_f64() + 1.0;
            let marks = wl.wifi.timeline(
                &wl.lab.bridge,
                link,
                started_unix,
                (timing.fail_at - 1.0, to),
            );
            eprintln!(
                "timeline of {} on link {link} until the transfer failed (seconds into it):\n{}",
                failure.name(),
                timeline::text(&marks)
            );
            eprintln!("{}", mptcp_view(topo));
        })?;
    let goodput = measure::app_intervals(&links);
    let fail_t = events.first().map_or(timing.fail_at, |e| e.t);
    let restore_t = events.get(1).map_or(timing.restore_at, |e| e.t);
    wl.wifi.end_silence();
    let timeline = wl.wifi.timeline(
        &wl.lab.bridge,
        link,
        started_unix,
        // Up to now: the station's return may come after the transfer's end.
        (fail_t - 1.0, started.elapsed().as_secs_f64() + 1.0),
    );
    let others: Vec<String> = (0..LINKS)
        .filter(|&l| l != link)
        .flat_map(|l| [topo.link_ifname(l), wl.wifi.ra_ifname(topo, l)])
        .collect();
    // The station's own time for its association, where it said one.
    let associated_after = associated_after.map(|polled| {
        timeline
            .iter()
            .find(|m| m.t >= restore_t && m.what.contains("CTRL-EVENT-CONNECTED"))
            .map_or(polled, |m| m.t - restore_t)
    });
    // The failure's stall lies between the failure and the link's return
    // (a second after it): a later one, on a busy machine, is not its.
    let regained_after = regained(&links, link, restore_t);
    let until = restore_t + regained_after.unwrap_or(10.0) + 1.0;
    let around: Vec<iperf::Interval> = goodput
        .iter()
        .filter(|i| i.start <= until)
        .cloned()
        .collect();
    Ok(FailureRun {
        stall: timeline::longest_stall_window(&around, fail_t - 0.1),
        other_link_downs: timeline::downs_of(&timeline, &others),
        timeline,
        failure,
        link,
        fail_at: fail_t,
        restore_at: restore_t,
        intact: outcome.intact(),
        regained_after,
        longest_stall: iperf::longest_stall(&around, fail_t - 0.1),
        mean_mbit: bytes as f64 * 8.0 / seconds.max(1e-3) / 1e6,
        associated_after,
        outcome,
        seconds,
        status,
        series: scenario::Series {
            goodput,
            links,
            events,
        },
    })
}

/// Runs `body` while a thread samples router A's link counters and the
/// client's received count every [`measure::SAMPLE_PERIOD`] (cheap reads
/// of sysfs: the lab's `ss`-based sampler takes seconds per sample in a
/// VM under TCG on a busy machine, which turns 100 ms stalls into
/// multi-second intervals). Subflow counters are left at 0.
fn record<T>(
    topo: &Topology,
    names: &[String],
    started: Instant,
    app_rx: &AtomicU64,
    progress: &Progress,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<measure::LinkSample>)> {
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::<measure::LinkSample>::new());
    let ns = topo.ns_path(Node::RouterA);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let counters = crate::netns::try_in_netns(&ns, || {
                let mut tick = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let t = started.elapsed().as_secs_f64();
                    let c: Vec<(u64, u64)> = names
                        .iter()
                        .map(|n| crate::netns::read_if_bytes(n).unwrap_or((0, 0)))
                        .collect();
                    let s = measure::LinkSample {
                        t,
                        tx_bytes: c.iter().map(|c| c.0).collect(),
                        rx_bytes: c.iter().map(|c| c.1).collect(),
                        subflow_rx_bytes: vec![0; c.len()],
                        app_rx_bytes: Some(app_rx.load(Ordering::Relaxed)),
                    };
                    let mut all = lock(&samples);
                    if let Some(prev) = all.last() {
                        progress.tick(t, &measure::rx_mbit(prev, &s), None);
                    }
                    all.push(s);
                    drop(all);
                    tick += 1;
                    let next = measure::SAMPLE_PERIOD * tick;
                    if let Some(left) = next.checked_sub(started.elapsed()) {
                        std::thread::sleep(left);
                    }
                }
            });
            if let Err(e) = counters {
                eprintln!("mpbridge-lab: cannot sample router A's links: {e:#}");
            }
        });
        let result = body();
        stop.store(true, Ordering::Relaxed);
        result
    });
    progress.clear_line();
    result.map(|r| (r, samples.into_inner().unwrap_or_else(|p| p.into_inner())))
}

/// Seconds after `restore_at` until router A received more than 1 Mbit/s
/// over a sample period on `link`: the returned link carries the
/// connection again (the probes alone are a few kbit/s; a Wi-Fi failure
/// drops nothing once the link is back, so interface bytes are real ones).
pub fn regained(samples: &[measure::LinkSample], link: usize, restore_at: f64) -> Option<f64> {
    samples.windows(2).find_map(|w| {
        let (a, b) = (&w[0], &w[1]);
        let bytes = b.rx_bytes.get(link)?.saturating_sub(*a.rx_bytes.get(link)?);
        let mbit = bytes as f64 * 8.0 / (b.t - a.t).max(1e-3) / 1e6;
        (a.t + 1e-6 >= restore_at && mbit > 1.0).then_some(b.t - restore_at)
    })
}

fn event(started: Instant, link: usize, restored: bool) -> scenario::Event {
    scenario::Event {
        t: started.elapsed().as_secs_f64(),
        link,
        // The lab's own kinds: a Wi-Fi failure takes the link down.
        failure: scenario::Failure::Down,
        restored,
        unix: None,
    }
}

/// The rfkill soft-block switch of radio `phy` (`/sys/class/rfkill/*/soft`
/// of the rfkill named after it), if there is one.
fn rfkill_soft(phy: &str) -> Option<PathBuf> {
    std::fs::read_dir("/sys/class/rfkill")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("name")).is_ok_and(|n| n.trim() == phy))
        .map(|p| p.join("soft"))
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Both routers' MPTCP sockets (`ss -tMni`) and the MPTCP counters that
/// moved (`MPJoinRejected`: the peer refused a join, e.g. at its subflow
/// limit), for the reader of a broken transfer: whether router A still has
/// a subflow on each link, and why a join failed.
fn mptcp_view(topo: &Topology) -> String {
    let mut out = String::new();
    for node in [Node::RouterA, Node::RouterB] {
        let sockets = topo
            .run(node, &["ss", "-tMni"])
            .unwrap_or_else(|e| format!("ss: {e:#}\n"));
        let netstat = topo
            .run(node, &["cat", "/proc/net/netstat"])
            .unwrap_or_default();
        let lines: Vec<&str> = netstat.lines().collect();
        let mut counters = Vec::new();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            if !names.starts_with("MPTcpExt:") {
                continue;
            }
            for (n, v) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if v != "0" {
                    counters.push(format!("{n} {v}"));
                }
            }
        }
        let _ = write!(
            out,
            "--- {node:?}: ss -tMni\n{sockets}--- {node:?}: MPTCP counters\n{}\n",
            counters.join(", ")
        );
    }
    out
}

/// `mpbridge status` of router A's and router B's daemons.
pub fn status_text(topo: &Topology, mpbridge: &Path, bridge: &Bridge) -> String {
    let mut out = String::new();
    for (node, socket, who) in [
        (Node::RouterA, &bridge.local_socket, "router A"),
        (Node::RouterB, &bridge.remote_socket, "router B"),
    ] {
        let mpb = mpbridge.display().to_string();
        let sock = socket.display().to_string();
        let text = topo
            .run(node, &[&mpb, "status", "--socket", &sock, "--connections"])
            .unwrap_or_else(|e| format!("{e:#}"));
        let _ = writeln!(out, "$ mpbridge status   ({who})\n{text}");
    }
    out
}

/// The readable table of a Wi-Fi run.
pub fn table(report: &WifiReport) -> String {
    let mut out = String::new();
    let each: Vec<String> = report.links.iter().map(|l| l.to_string()).collect();
    let _ = writeln!(
        out,
        "Wi-Fi lab: {LINKS} WPA2 4-address links (mac80211_hwsim, channels {} and {}), shaped {}",
        CHANNELS[0],
        CHANNELS[1],
        each.join(", ")
    );
    if let Some(a) = &report.aggregate {
        let _ = writeln!(
            out,
            "\naggregation (one TCP flow, {}; each link alone, then through mpbridge, {} s each)",
            a.direction.arrow(),
            a.secs
        );
        for (i, mbit) in a.per_link.iter().enumerate() {
            let _ = writeln!(out, "  link {i} alone            {mbit:8.1} Mbit/s");
        }
        let _ = writeln!(out, "  limit (sum of links)    {:8.1} Mbit/s", a.limit);
        let _ = writeln!(
            out,
            "  through mpbridge        {:8.1} Mbit/s   {:.1} % of the limit",
            a.bridge, a.percent_of_limit
        );
    }
    if !report.failures.is_empty() {
        let _ = writeln!(
            out,
            "\nfailures (a SHA-256-checked transfer each way during each)\n  \
             {:<11} {:>4} {:>7} {:>8} {:>6} {:>14} {:>13} {:>16} {:>8} {:>7}",
            "failure",
            "link",
            "down at",
            "back at",
            "MB",
            "mean",
            "longest stall",
            "associated",
            "regained",
            "other↓"
        );
        for f in &report.failures {
            let secs = |t: Option<f64>| t.map_or("never".into(), |t| format!("after {t:.1} s"));
            let _ = writeln!(
                out,
                "  {:<11} {:>4} {:>5.1} s {:>6.1} s {:>6} {:>7.1} Mbit/s {:>11.1} s {:>16} {:>8} {:>7}   {}",
                f.failure.name(),
                f.link,
                f.fail_at,
                f.restore_at,
                f.outcome.server_to_client.sent_bytes / 1_000_000,
                f.mean_mbit,
                f.longest_stall,
                secs(f.associated_after),
                f.regained_after.map_or("never".into(), |t| format!("{t:.1} s")),
                f.other_link_downs,
                if f.intact { "intact" } else { "CORRUPT" }
            );
        }
        let _ = writeln!(
            out,
            "\n  longest stall: the longest run of 100 ms intervals in which the client received \
             nothing, from the failure until a second after the link was regained; associated: the station's association after the \
             failure was lifted; regained: until the link's subflow carried the connection again; \
             other↓: how often a daemon took the other link, which never failed, out of service"
        );
    }
    let _ = writeln!(
        out,
        "\nset-up {:.1} s, scenario {:.1} s",
        report.setup_seconds, report.wall_seconds
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_parse_by_name_and_a_wrong_one_is_named() {
        assert_eq!(
            WifiFailure::parse_list("disconnect, radio-off").unwrap(),
            vec![WifiFailure::Disconnect, WifiFailure::RadioOff]
        );
        let e = WifiFailure::parse_list("disconnect,unplug").unwrap_err();
        assert!(format!("{e}").contains("\"unplug\""), "{e}");
    }

    #[test]
    fn channels_are_apart_and_their_frequencies_right() {
        assert_eq!(frequency(1), 2412);
        assert_eq!(frequency(11), 2462);
        assert!(CHANNELS[1] - CHANNELS[0] >= 5, "overlapping channels");
    }

    #[test]
    fn a_link_is_regained_when_router_a_receives_over_a_megabit_on_it_after_the_restore() {
        let s = |t: f64, rx: [u64; 2]| measure::LinkSample {
            t,
            tx_bytes: vec![0, 0],
            rx_bytes: rx.to_vec(),
            subflow_rx_bytes: vec![0, 0],
            app_rx_bytes: None,
        };
        // 100 ms periods: 1,000 bytes are probes (80 kbit/s), 100,000 data.
        let samples = [
            s(5.9, [0, 0]),
            s(6.0, [1_000, 100_000]),
            s(6.1, [2_000, 200_000]),
            s(6.2, [102_000, 300_000]),
        ];
        let t = regained(&samples, 0, 6.0).unwrap();
        assert!((t - 0.2).abs() < 1e-9, "{t}");
        assert_eq!(regained(&samples[..3], 0, 6.0), None);
        // Link 1 carried all along: regained in the first period after.
        assert!((regained(&samples, 1, 6.0).unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn the_wds_interface_is_named_after_the_access_point() {
        assert_eq!(Wifi::wds_ifname(1), "ap1.sta1");
    }
}
