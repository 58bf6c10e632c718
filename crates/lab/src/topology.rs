//! The [`Topology`]: building the four namespaces, their veth links,
//! addresses, routes and shaping; running code and programs inside them;
//! failure injection; and tearing it all down again in `Drop`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use rustix::process::Signal;

use crate::delayline;
use crate::faults::{self, Faults};
use crate::names;
use crate::netns;
use crate::plan::{self, LanRoutes, LinkSpec, Node, TopologySpec, LAN_IFNAME};
use crate::process::{self, Proc};
use crate::schedule;
use crate::shaping;
use crate::wait_until;
use crate::{exec, lock};

/// How long `build` and `link_up` wait for interfaces to be operationally up.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Environment variable that keeps the work dir after drop when set to `1`.
pub const KEEP_ENV: &str = "MPB_KEEP";

/// Serialises `ip netns add` within this process: the first one mounts
/// `/run/netns`, and concurrent first calls could stack two mounts.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// What [`Topology::build_with_links`] calls to make the links.
pub type MakeLinks<'a> = &'a dyn Fn(&Topology) -> anyhow::Result<()>;

/// A running lab: `client — ra — N links — rb — server`, each in its own
/// network namespace. Dropping it (also while unwinding from a panic)
/// stops every process started in it and deletes the namespaces.
#[derive(Debug)]
pub struct Topology {
    /// Namespace names, indexed by [`Node::index`].
    names: [String; 4],
    links: Vec<LinkSpec>,
    lan_routes: LanRoutes,
    workdir: PathBuf,
    faults: Mutex<Faults>,
    procs: Mutex<Vec<Arc<process::Shared>>>,
    proc_serial: AtomicU32,
    /// Plays the links' rate schedules, if any.
    schedule: Mutex<Option<schedule::Player>>,
    /// The links delayed without netem ([`delayline`]), one per router.
    delay_lines: Mutex<Vec<delayline::DelayLine>>,
}

impl Topology {
    /// Builds the topology. Checks first, before creating anything, that we
    /// are root, that `ip` (and `tc`/`nft` if the spec needs them) can run
    /// and that MPTCP is enabled. Then removes the namespaces of lab
    /// processes that died without cleaning up ([`crate::clean_leftovers`]).
    /// On any later failure whatever was created is removed again. The
    /// LANs reach each other by static routes over link 0.
    pub fn build(spec: &TopologySpec) -> anyhow::Result<Topology> {
        Topology::build_with(spec, LanRoutes::Static)
    }

    /// [`Topology::build`], with `lan_routes` saying who routes between the
    /// LANs.
    pub fn build_with(spec: &TopologySpec, lan_routes: LanRoutes) -> anyhow::Result<Topology> {
        Topology::build_inner(spec, lan_routes, None)
    }

    /// [`Topology::build_with`], with the links between the routers made by
    /// `make_links` instead of veth pairs (the Wi-Fi lab's radios): it
    /// runs once the namespaces and the LAN veths exist and must leave an
    /// interface named [`Topology::link_ifname`] on each router for every
    /// link; addresses, routes and shaping then follow as for veth.
    pub fn build_with_links(
        spec: &TopologySpec,
        lan_routes: LanRoutes,
        make_links: MakeLinks<'_>,
    ) -> anyhow::Result<Topology> {
        Topology::build_inner(spec, lan_routes, Some(make_links))
    }

    fn build_inner(
        spec: &TopologySpec,
        lan_routes: LanRoutes,
        make_links: Option<MakeLinks<'_>>,
    ) -> anyhow::Result<Topology> {
        spec.validate()?;
        preflight(spec)?;
        // Namespaces of test runs that were killed would pile up otherwise.
        if let Err(e) = names::clean_leftovers() {
            eprintln!("mpbridge-lab: cannot clean up leftover namespaces: {e:#}");
        }
        let (pid, serial) = names::next_id();
        let workdir = names::workdir(pid, serial);
        if workdir.exists() {
            // Left by an earlier process that had our PID.
            std::fs::remove_dir_all(&workdir)
                .with_context(|| format!("cannot clear stale {}", workdir.display()))?;
        }
        std::fs::create_dir_all(&workdir)
            .with_context(|| format!("cannot create work dir {}", workdir.display()))?;
        let topo = Topology {
            names: Node::ALL.map(|node| names::ns_name(pid, serial, node)),
            links: spec.links.clone(),
            lan_routes,
            workdir,
            faults: Mutex::new(Faults::new(spec.links.len())),
            procs: Mutex::new(Vec::new()),
            proc_serial: AtomicU32::new(0),
            schedule: Mutex::new(None),
            delay_lines: Mutex::new(Vec::new()),
        };
        // From here on, an early return drops `topo`, which cleans up.
        topo.create_namespaces()?;
        topo.set_sysctls()?;
        topo.create_links(make_links.is_none())?;
        if let Some(make_links) = make_links {
            make_links(&topo)?;
        }
        topo.configure_addresses_and_routes()?;
        topo.wait_ready(None)?;
        topo.create_blackhole_sinks()?;
        topo.apply_initial_shaping_and_loss()?;
        topo.start_delay_lines()?;
        *lock(&topo.schedule) = schedule::Player::start(
            [Node::RouterA, Node::RouterB].map(|n| topo.ns_name(n).to_string()),
            &topo.links,
        );
        Ok(topo)
    }

    /// The namespace name of `node` (for `ip netns exec`, logs, …).
    pub fn ns_name(&self, node: Node) -> &str {
        &self.names[node.index()]
    }

    /// `/run/netns/NAME` of `node`.
    pub fn ns_path(&self, node: Node) -> PathBuf {
        names::ns_path(self.ns_name(node))
    }

    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The links as built (rates, initial loss).
    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }

    /// Who routes between the LANs.
    pub fn lan_routes(&self) -> LanRoutes {
        self.lan_routes
    }

    /// Runs `ip netns exec NS args…` to completion and returns its stdout;
    /// the error quotes the command, its exit status and stderr.
    pub fn run(&self, node: Node, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["netns", "exec", self.ns_name(node)];
        full.extend_from_slice(args);
        exec::run("ip", &full, None)
    }

    /// Starts `cmd` inside `node` as `ip netns exec NS program args…` (which
    /// execs in place, so [`Proc::pid`] is the program's). The program, its
    /// arguments, environment changes and working directory are taken from
    /// `cmd`; stdin is `/dev/null`, stdout/stderr go to files in
    /// [`Topology::workdir`] named after the node and program. Only that one
    /// PID is ever signalled: a program that forks must stop its children.
    pub fn spawn(&self, node: Node, cmd: &mut Command) -> anyhow::Result<Proc> {
        let program = Path::new(cmd.get_program())
            .file_name()
            .map_or_else(|| "proc".into(), |n| n.to_string_lossy().into_owned());
        let serial = self.proc_serial.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{program}-{serial}", node_label(node));
        self.spawn_named(node, &name, cmd)
    }

    /// Like [`Topology::spawn`], with the log files named `NAME.stdout` and
    /// `NAME.stderr`.
    pub fn spawn_named(&self, node: Node, name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        ensure!(
            !name.is_empty() && !name.contains('/'),
            "process name {name:?} must be a plain file name"
        );
        ensure!(
            !self.workdir.join(format!("{name}.stdout")).exists(),
            "process name {name:?} is already used in this topology"
        );
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", self.ns_name(node)])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let proc = Proc::start(wrapped, &self.workdir, name)?;
        lock(&self.procs).push(proc.shared());
        Ok(proc)
    }

    /// Runs `f` on a fresh thread inside `node`'s network namespace and
    /// returns its result. Sockets created in `f` stay in that namespace
    /// when used from any thread. Panics if the namespace cannot be
    /// entered (it exists as long as `self` does).
    pub fn enter<T: Send>(&self, node: Node, f: impl FnOnce() -> T + Send) -> T {
        netns::try_in_netns(&self.ns_path(node), f)
            .unwrap_or_else(|e| panic!("cannot enter {}: {e:#}", self.ns_name(node)))
    }

    pub fn client_addr(&self, v6: bool) -> IpAddr {
        plan::client_addr(v6)
    }
    pub fn server_addr(&self, v6: bool) -> IpAddr {
        plan::server_addr(v6)
    }
    pub fn ra_lan_addr(&self, v6: bool) -> IpAddr {
        plan::ra_lan_addr(v6)
    }
    pub fn rb_lan_addr(&self, v6: bool) -> IpAddr {
        plan::rb_lan_addr(v6)
    }
    /// Router A's address on link `link`. Panics if there is no such link.
    pub fn ra_link_addr(&self, link: usize, v6: bool) -> IpAddr {
        self.check_link(link).unwrap_or_else(|e| panic!("{e}"));
        plan::ra_link_addr(link, v6)
    }
    /// Router B's address on link `link`. Panics if there is no such link.
    pub fn rb_link_addr(&self, link: usize, v6: bool) -> IpAddr {
        self.check_link(link).unwrap_or_else(|e| panic!("{e}"));
        plan::rb_link_addr(link, v6)
    }
    /// The interface of link `link`: the same name (`wanN`) on both routers.
    pub fn link_ifname(&self, link: usize) -> String {
        plan::link_ifname(link)
    }

    /// The PIDs of every process started here so far, running or not.
    pub fn spawned_pids(&self) -> Vec<u32> {
        lock(&self.procs).iter().map(|p| p.pid()).collect()
    }

    /// The fresh directory for this topology's configs and logs. Removed on
    /// drop unless `MPB_KEEP=1`.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Takes link `link` administratively down on router A's side; router
    /// B's side loses carrier.
    pub fn link_down(&self, link: usize) -> anyhow::Result<()> {
        self.check_link(link)?;
        self.ip_batch(
            Node::RouterA,
            &[format!("link set {} down", plan::link_ifname(link))],
        )
    }

    /// Brings link `link` back up on router A's side and restores what the
    /// kernel removed when it went down: the IPv6 addresses (IPv4 ones
    /// survive) and the main table's routes through the link (the daemon's
    /// path manager restores its own policy routes). Router B
    /// keeps its addresses and routes across a carrier loss. Returns once
    /// the link is operationally up again.
    pub fn link_up(&self, link: usize) -> anyhow::Result<()> {
        self.check_link(link)?;
        let ifname = plan::link_ifname(link);
        // Up first: the kernel refuses routes through a down device.
        let mut lines = vec![format!("link set {ifname} up")];
        lines.extend(link_address_lines(Node::RouterA, link));
        lines.extend(self.ra_route_lines(link));
        self.ip_batch(Node::RouterA, &lines)?;
        self.wait_ready(Some(link))
    }

    /// Silently drops every packet on link `link`, both ways, while the
    /// interface stays up (`on = true`), or stops doing so: each router's
    /// packets out by the link are redirected to a sink that drops them (the
    /// sender sees them sent) and what still arrives is dropped by the
    /// nftables table `inet mpblab` (see `faults`).
    pub fn blackhole(&self, link: usize, on: bool) -> anyhow::Result<()> {
        self.check_link(link)?;
        self.update_faults(|f| f.set_blackhole(link, on))
    }

    /// Drops `pct` percent (0.1 % steps) of packets on link `link`, each
    /// way; 0 removes the loss. While a link is lossy both routers' ends of
    /// it have `gso_max_segs 1`: a veth otherwise carries 64 KiB GSO
    /// super-packets, and dropping one of those would lose ~45 segments at
    /// once. Rules sit in table `inet mpblab` of each router, on arrival.
    pub fn set_loss(&self, link: usize, pct: f32) -> anyhow::Result<()> {
        self.check_link(link)?;
        let permille = faults::permille(pct)?;
        self.update_faults(|f| f.set_loss_permille(link, permille))
    }

    /// Changes link `link`'s rate on both routers; 0 removes shaping.
    pub fn set_rate(&self, link: usize, rate_mbit: u32) -> anyhow::Result<()> {
        self.check_link(link)?;
        exec::require_tool("tc", "-V", "iproute2")?;
        let ifname = plan::link_ifname(link);
        let spec = &self.links[link];
        for node in [Node::RouterA, Node::RouterB] {
            let lines = if rate_mbit == 0 && shaping::netem_options(spec).is_none() {
                vec![shaping::tc_delete_line(&ifname)]
            } else {
                shaping::rate_lines(&ifname, spec, rate_mbit)
            };
            let result = self.tc_batch(node, &lines);
            // Deleting the default qdisc (or a tbf that is not there) is
            // refused; that is "unshaped" too.
            if rate_mbit > 0 || !is_no_qdisc_error(&result) {
                result?;
            }
        }
        Ok(())
    }

    /// `(tx_bytes, rx_bytes)` of router A's interface for link `link`.
    pub fn link_counters(&self, link: usize) -> anyhow::Result<(u64, u64)> {
        self.check_link(link)?;
        let ifname = plan::link_ifname(link);
        netns::try_in_netns(&self.ns_path(Node::RouterA), || {
            netns::read_if_bytes(&ifname)
        })?
    }

    // ---- building blocks ----

    fn check_link(&self, link: usize) -> anyhow::Result<()> {
        ensure!(
            link < self.links.len(),
            "link {link} does not exist: this topology has {} link(s)",
            self.links.len()
        );
        Ok(())
    }

    /// Runs `ip -n NS -batch -` with one command per line.
    pub(crate) fn ip_batch(&self, node: Node, lines: &[String]) -> anyhow::Result<()> {
        self.ip_batch_with(node, &[], lines)
    }

    /// [`Topology::ip_batch`] with global options such as `-6` (batch
    /// lines cannot carry them, and `ip rule` does not guess the family).
    pub(crate) fn ip_batch_with(
        &self,
        node: Node,
        opts: &[&str],
        lines: &[String],
    ) -> anyhow::Result<()> {
        let script = lines.join("\n") + "\n";
        let mut args = opts.to_vec();
        args.extend(["-n", self.ns_name(node), "-batch", "-"]);
        exec::run("ip", &args, Some(&script)).map(drop)
    }

    fn tc_batch(&self, node: Node, lines: &[String]) -> anyhow::Result<()> {
        let script = lines.join("\n") + "\n";
        exec::run(
            "tc",
            &["-n", self.ns_name(node), "-batch", "-"],
            Some(&script),
        )
        .map(drop)
    }

    fn create_namespaces(&self) -> anyhow::Result<()> {
        let _serial = lock(&NETNS_ADD);
        let mut script = String::new();
        for name in &self.names {
            if names::ns_path(name).exists() {
                // Only a dead process that had our PID can have left it.
                exec::run("ip", &["netns", "delete", name], None)?;
            }
            let _ = writeln!(script, "netns add {name}");
        }
        exec::run("ip", &["-batch", "-"], Some(&script)).map(drop)
    }

    fn set_sysctls(&self) -> anyhow::Result<()> {
        for node in Node::ALL {
            let router = matches!(node, Node::RouterA | Node::RouterB);
            netns::try_in_netns(&self.ns_path(node), || -> anyhow::Result<()> {
                // Server and client TCP Fast Open.
                netns::write_sysctl("net.ipv4.tcp_fastopen", "3")?;
                // No duplicate address detection: link-local and global
                // IPv6 addresses are usable the moment a link is up.
                netns::write_sysctl("net.ipv6.conf.all.accept_dad", "0")?;
                netns::write_sysctl("net.ipv6.conf.default.accept_dad", "0")?;
                // Subflows of one connection use different links and
                // sources; no reverse-path filtering to trip over.
                netns::write_sysctl("net.ipv4.conf.all.rp_filter", "0")?;
                netns::write_sysctl("net.ipv4.conf.default.rp_filter", "0")?;
                if router {
                    netns::write_sysctl("net.ipv4.ip_forward", "1")?;
                    netns::write_sysctl("net.ipv6.conf.all.forwarding", "1")?;
                }
                Ok(())
            })??;
        }
        Ok(())
    }

    /// Creates the veth pairs directly inside their namespaces, so the host
    /// namespace never sees them, with the indexes of [`plan::ifindex`]:
    /// the LANs' and, when `wan`, the links'.
    fn create_links(&self, wan: bool) -> anyhow::Result<()> {
        let veth = |node: Node, link: Option<usize>, peer: Node| {
            let ifname = link.map_or_else(|| LAN_IFNAME.to_string(), plan::link_ifname);
            format!(
                "link add {ifname} index {} type veth peer name {ifname} index {} netns {}",
                plan::ifindex(node, link),
                plan::ifindex(peer, link),
                self.ns_name(peer)
            )
        };
        self.ip_batch(Node::Client, &[veth(Node::Client, None, Node::RouterA)])?;
        if wan {
            let wan: Vec<String> = (0..self.links.len())
                .map(|i| veth(Node::RouterA, Some(i), Node::RouterB))
                .collect();
            self.ip_batch(Node::RouterA, &wan)?;
        }
        self.ip_batch(Node::Server, &[veth(Node::Server, None, Node::RouterB)])
    }

    fn configure_addresses_and_routes(&self) -> anyhow::Result<()> {
        for node in Node::ALL {
            let mut lines = vec!["link set lo up".to_string()];
            lines.extend(lan_lines(node));
            if matches!(node, Node::RouterA | Node::RouterB) {
                for link in 0..self.links.len() {
                    lines.extend(link_address_lines(node, link));
                    lines.push(format!("link set {} up", plan::link_ifname(link)));
                }
            }
            match node {
                Node::Client | Node::Server => {
                    let gw = |v6| match node {
                        Node::Client => plan::ra_lan_addr(v6),
                        _ => plan::rb_lan_addr(v6),
                    };
                    for v6 in [false, true] {
                        lines.push(format!(
                            "route replace default via {} dev {LAN_IFNAME}",
                            gw(v6)
                        ));
                    }
                }
                Node::RouterA => lines.extend(self.ra_route_lines(0)),
                Node::RouterB if self.lan_routes == LanRoutes::Daemons => {}
                Node::RouterB => {
                    for v6 in [false, true] {
                        lines.push(format!(
                            "route replace {} via {} dev {}",
                            plan::client_net(v6),
                            plan::ra_link_addr(0, v6),
                            plan::link_ifname(0)
                        ));
                    }
                }
            }
            self.ip_batch(node, &lines)?;
        }
        Ok(())
    }

    /// Router A's main-table routes that go through link `link`: the plain
    /// route to the server LAN (link 0 only, static LAN routes only).
    fn ra_route_lines(&self, link: usize) -> Vec<String> {
        let mut lines = Vec::new();
        if link == 0 && self.lan_routes == LanRoutes::Static {
            for v6 in [false, true] {
                lines.push(format!(
                    "route replace {} via {} dev {}",
                    plan::server_net(v6),
                    plan::rb_link_addr(0, v6),
                    plan::link_ifname(0)
                ));
            }
        }
        lines
    }

    /// Waits until every interface (or only link `only_link`'s on router A)
    /// is operationally up and no IPv6 address is still tentative. Operstate,
    /// not the carrier flag: IPv6 only starts on an interface (solicited-node
    /// groups, so neighbour discovery) once the kernel has seen it go up.
    fn wait_ready(&self, only_link: Option<usize>) -> anyhow::Result<()> {
        let nodes: &[Node] = match only_link {
            Some(_) => &[Node::RouterA],
            None => &Node::ALL,
        };
        let mut last_problem = String::new();
        let ready = wait_until(READY_TIMEOUT, || {
            match nodes
                .iter()
                .try_for_each(|&node| self.check_ready(node, only_link))
            {
                Ok(()) => true,
                Err(e) => {
                    last_problem = format!("{e:#}");
                    false
                }
            }
        });
        ensure!(
            ready,
            "interfaces not ready after {READY_TIMEOUT:?}: {last_problem}"
        );
        Ok(())
    }

    fn check_ready(&self, node: Node, only_link: Option<usize>) -> anyhow::Result<()> {
        let ns = self.ns_name(node);
        let ifname = only_link.map(plan::link_ifname);
        let dev: Vec<&str> = ifname.iter().flat_map(|i| ["dev", i.as_str()]).collect();
        let links = exec::run(
            "ip",
            &[&["-n", ns, "-br", "link", "show"], &dev[..]].concat(),
            None,
        )?;
        for line in links.lines() {
            // NAME[@peer]  STATE  MAC  <FLAGS>; lo's state is UNKNOWN.
            let mut cols = line.split_whitespace();
            let (name, state) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
            // UNKNOWN: an interface without carrier reporting, such as
            // the one hostapd makes for a 4-address station.
            ensure!(
                name == "lo" || state == "UP" || state == "UNKNOWN",
                "{ns}: {name} is {state}"
            );
        }
        let tentative = exec::run(
            "ip",
            &[
                &["-n", ns, "-6", "-o", "addr", "show", "tentative"],
                &dev[..],
            ]
            .concat(),
            None,
        )?;
        ensure!(tentative.trim().is_empty(), "{ns}: tentative: {tentative}");
        Ok(())
    }

    fn apply_initial_shaping_and_loss(&self) -> anyhow::Result<()> {
        let shaped: Vec<String> = self
            .links
            .iter()
            .enumerate()
            .flat_map(|(i, l)| shaping::link_lines(&plan::link_ifname(i), l, l.rate_mbit))
            .collect();
        // netem drops whole skbs: cut GSO super-packets first, as for the
        // random loss (see `set_loss`).
        let segs: Vec<String> = (0..self.links.len())
            .filter(|&i| self.links[i].burst_loss.is_some())
            .map(|i| format!("link set {} gso_max_segs 1", plan::link_ifname(i)))
            .collect();
        if !segs.is_empty() {
            self.ip_batch(Node::RouterA, &segs)?;
            self.ip_batch(Node::RouterB, &segs)?;
        }
        if !shaped.is_empty() {
            self.tc_batch(Node::RouterA, &shaped)?;
            self.tc_batch(Node::RouterB, &shaped)?;
        }
        if self.links.iter().any(|l| l.loss_pct > 0.0) {
            let mut f = lock(&self.faults);
            let mut next = f.clone();
            for (i, l) in self.links.iter().enumerate() {
                next.set_loss_permille(i, faults::permille(l.loss_pct)?);
            }
            self.apply_faults(&f, &next)?;
            *f = next;
        }
        Ok(())
    }

    /// The delay of the links that [`delayline::takes`], on arrival at
    /// each router: the queue (link `i`'s is queue `i` of each router's
    /// namespace) is bound before the rule hands it anything.
    fn start_delay_lines(&self) -> anyhow::Result<()> {
        for (i, link) in self.links.iter().enumerate() {
            if !delayline::takes(link) {
                continue;
            }
            let queue = u16::try_from(i).context("link index")?;
            let delay = Duration::from_micros(u64::from(link.delay_us));
            let ifname = plan::link_ifname(i);
            for node in [Node::RouterA, Node::RouterB] {
                let bound = self
                    .enter(node, || delayline::bind(queue))
                    .with_context(|| {
                        format!(
                            "link {i}: the delay line (NFQUEUE) in {}: this kernel needs \
                             nfnetlink_queue",
                            self.ns_name(node)
                        )
                    })?;
                lock(&self.delay_lines).push(bound.start(delay)?);
                let rule = delayline::rule_args(&ifname, queue);
                let mut args = vec!["netns", "exec", self.ns_name(node), "iptables"];
                args.extend(rule.iter().map(String::as_str));
                exec::run("ip", &args, None).with_context(|| {
                    format!(
                        "link {i}: the delay line's rule in {} (this kernel needs the \
                         NFQUEUE target, xt_NFQUEUE)",
                        self.ns_name(node)
                    )
                })?;
            }
        }
        Ok(())
    }

    fn update_faults(&self, change: impl FnOnce(&mut Faults)) -> anyhow::Result<()> {
        let mut current = lock(&self.faults);
        let mut next = current.clone();
        change(&mut next);
        self.apply_faults(&current, &next)?;
        *current = next;
        Ok(())
    }

    /// Each router's black-hole sink ([`faults::SINK`]), with a clsact
    /// qdisc of its own: that turns on the kernel's egress hook now, while
    /// nothing flows, and holds it on, so that a black hole starting or
    /// ending under traffic flips no static key. Under TCG a static key
    /// flipped under traffic can Oops the lab VM (scripts/vm-lab.sh); the
    /// first VM runs with a clsact added and removed per black hole did.
    fn create_blackhole_sinks(&self) -> anyhow::Result<()> {
        for node in [Node::RouterA, Node::RouterB] {
            self.ip_batch(
                node,
                &[
                    format!(
                        "link add {} type veth peer name {}",
                        faults::SINK,
                        faults::SINK_PEER
                    ),
                    format!("link set {} up", faults::SINK),
                ],
            )?;
            self.tc_batch(node, &[format!("qdisc add dev {} clsact", faults::SINK)])?;
        }
        Ok(())
    }

    /// Moves the kernel from fault settings `before` to `after`.
    fn apply_faults(&self, before: &Faults, after: &Faults) -> anyhow::Result<()> {
        exec::require_tool("nft", "-v", "nftables")?;
        // GSO first, so that the loss rules meet real packets from the start.
        let gso: Vec<String> = (0..self.links.len())
            .filter(|&link| before.lossy(link) != after.lossy(link))
            .map(|link| {
                let segs = if after.lossy(link) {
                    1
                } else {
                    faults::DEFAULT_GSO_MAX_SEGS
                };
                format!("link set {} gso_max_segs {segs}", plan::link_ifname(link))
            })
            .collect();
        if !gso.is_empty() {
            for node in [Node::RouterA, Node::RouterB] {
                self.ip_batch(node, &gso)?;
            }
        }
        let tc = after.tc_lines(before, plan::link_ifname);
        let nft = after.nft_script(plan::link_ifname);
        // Both routers at once, so that a black hole starts (and ends) in
        // both directions within the same few milliseconds.
        std::thread::scope(|scope| {
            let applying: Vec<_> = [Node::RouterA, Node::RouterB]
                .map(|node| {
                    let (tc, nft) = (&tc, &nft);
                    scope.spawn(move || {
                        if !tc.is_empty() {
                            self.tc_batch(node, tc)?;
                        }
                        let ns = self.ns_name(node);
                        exec::run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(nft))
                            .map(drop)
                    })
                })
                .into_iter()
                .collect();
            applying.into_iter().try_for_each(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })
    }

    /// Stops every process started here: SIGTERM to all, a short grace
    /// period for all together, then SIGKILL to what is left.
    fn stop_processes(&self) {
        let procs = std::mem::take(&mut *lock(&self.procs));
        let signalled: Vec<_> = procs.iter().filter(|p| p.signal(Signal::TERM)).collect();
        if !signalled.is_empty() {
            wait_until(process::DEFAULT_GRACE, || {
                signalled.iter().all(|p| p.try_status().is_some())
            });
        }
        for p in &procs {
            p.kill_and_reap();
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl Topology {
    /// What dropping does: stops every process started here, deletes the
    /// namespaces and the work dir. Safe to call more than once, and from
    /// another thread than the one running a scenario (the lab CLI does so
    /// on Ctrl-C).
    pub fn teardown(&self) {
        if let Some(mut player) = lock(&self.schedule).take() {
            player.stop();
        }
        self.stop_processes();
        // Stopped before the namespaces go: each thread ends within 0.1 s.
        lock(&self.delay_lines).clear();
        for name in &self.names {
            if !names::ns_path(name).exists() {
                continue;
            }
            if let Err(e) = exec::run("ip", &["netns", "delete", name], None) {
                eprintln!("mpbridge-lab: cannot delete namespace {name}: {e:#}");
            }
        }
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            eprintln!(
                "mpbridge-lab: {KEEP_ENV}=1, keeping {}",
                self.workdir.display()
            );
        } else if !self.workdir.exists() {
            // Already removed by an earlier teardown.
        } else if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            eprintln!(
                "mpbridge-lab: cannot remove {}: {e}",
                self.workdir.display()
            );
        }
    }
}

/// The checks that must pass before anything is created, one clear error each.
fn preflight(spec: &TopologySpec) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the lab needs root: it creates network namespaces (run the tests with sudo)");
    }
    exec::require_tool("ip", "-V", "iproute2")?;
    if spec
        .links
        .iter()
        .any(|l| l.rate_mbit > 0 || shaping::needs_netem_here(l))
    {
        exec::require_tool("tc", "-V", "iproute2")?;
    }
    if spec.links.iter().any(delayline::takes) {
        exec::require_tool("iptables", "-V", "iptables")?;
    }
    if spec.links.iter().any(|l| l.loss_pct > 0.0) {
        exec::require_tool("nft", "-v", "nftables")?;
    }
    if let Some((i, link)) = spec
        .links
        .iter()
        .enumerate()
        .find(|(_, l)| shaping::needs_netem_here(l))
    {
        ensure!(
            shaping::netem_available(),
            "link {i} ({}) needs netem, which this kernel lacks: run it in the lab's VM \
             (`mpbridge-lab run` does so by itself; scripts/vm-lab.sh runs any command there)",
            link.spec_text()
        );
    }
    const MPTCP: &str = "/proc/sys/net/mptcp/enabled";
    match std::fs::read_to_string(MPTCP) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(v) => bail!(
            "MPTCP is disabled ({MPTCP} = {}): run `sysctl -w net.mptcp.enabled=1`",
            v.trim()
        ),
        Err(e) => bail!("this kernel has no MPTCP ({MPTCP}: {e})"),
    }
}

/// Address and link-up lines for `node`'s LAN side.
fn lan_lines(node: Node) -> Vec<String> {
    let own = |v6| match node {
        Node::Client => plan::client_addr(v6),
        Node::RouterA => plan::ra_lan_addr(v6),
        Node::RouterB => plan::rb_lan_addr(v6),
        Node::Server => plan::server_addr(v6),
    };
    vec![
        format!(
            "addr replace {} dev {LAN_IFNAME}",
            plan::with_prefix(own(false))
        ),
        format!(
            "addr replace {} dev {LAN_IFNAME} nodad",
            plan::with_prefix(own(true))
        ),
        format!("link set {LAN_IFNAME} up"),
    ]
}

/// `addr replace` lines for a router's end of link `link` (idempotent, so
/// `link_up` can reuse them).
fn link_address_lines(node: Node, link: usize) -> Vec<String> {
    let ifname = plan::link_ifname(link);
    let addr = |v6| match node {
        Node::RouterA => plan::ra_link_addr(link, v6),
        _ => plan::rb_link_addr(link, v6),
    };
    vec![
        format!(
            "addr replace {} dev {ifname}",
            plan::with_prefix(addr(false))
        ),
        format!(
            "addr replace {} dev {ifname} nodad",
            plan::with_prefix(addr(true))
        ),
    ]
}

fn node_label(node: Node) -> &'static str {
    match node {
        Node::Client => "client",
        Node::RouterA => "ra",
        Node::RouterB => "rb",
        Node::Server => "server",
    }
}

fn is_no_qdisc_error(result: &anyhow::Result<()>) -> bool {
    matches!(result, Err(e) if {
        let text = format!("{e:#}");
        text.contains("Cannot delete qdisc with handle of zero") || text.contains("Cannot find specified qdisc")
    })
}
