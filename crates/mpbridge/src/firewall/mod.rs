//! The interception rules `mpbridge local` owns: the nftables table
//! `inet mpbridge`, created with the owner flag on a netlink socket held for
//! the daemon's lifetime (the kernel drops the table when the process dies,
//! SIGKILL included: fail-open), and for TPROXY the fwmark rule and local
//! route. Also the start-up refusal of rules that would loop. The `local`
//! sets follow this host's addresses as [`crate::host::HostView`] reports
//! them.
//!
//! ```text
//! table inet mpbridge (owner)
//!   chain prerouting  (filter/mangle for TPROXY, nat/dstnat for REDIRECT)
//!     iifname <lan> tcp ipv4 → jump divert4;  ipv6 → jump divert6
//!   chain divert4/6
//!     not a lone SYN, socket transparent 1 → mark, accept  (TPROXY: already diverted)
//!     own mark / fib daddr local / @remote / @local / @bypass → return
//!     tproxy to :port, mark, accept  |  redirect to :port
//!   chain quic  (filter/mangle; only with local.quic = "refuse")
//!     iifname <lan> udp dport 443 ipv4 → jump quic4;  ipv6 → jump quic6
//!   chain quic4/6
//!     own mark / fib daddr local / @remote / @local / @bypass → return
//!     reject with icmpx port-unreachable      (the client falls back to TCP)
//! ```

mod nft;
mod routing;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::config::{InterceptionMode, Quic};
use crate::host::netlink as nl;
use crate::host::{HostView, Watch};
pub use nft::TABLE;
use nft::{Batch, Family, SetKind, Spec};
use routing::Routing;

/// The bits of the packet mark that are mpbridge's: the top byte. mwan3
/// (mask 0x3F00 by default) and pbr (0x00ff0000) keep theirs elsewhere,
/// so a packet may carry their marks besides mpbridge's, and the policy
/// rule of TPROXY matches these bits only (`fwmark 0x6d000000/0xff000000`).
pub const MARK_MASK: u32 = 0xff00_0000;
/// The mark of diverted packets (TPROXY), which the policy rule sends to
/// the local route. Distinct from [`OWN_MARK`]; inside [`MARK_MASK`].
pub const DIVERT_MARK: u32 = 0x6d00_0000;
/// The mark (SO_MARK) of the daemon's own connections to the remotes; the
/// table never diverts packets carrying it. Inside [`MARK_MASK`].
pub const OWN_MARK: u32 = 0x6e00_0000;

/// Hidden switch for the tests: behave as on a kernel without the table
/// owner flag (Linux < 5.12), to exercise the fallback.
const NO_OWNER_ENV: &str = "MPBRIDGE_TEST_NO_OWNER_FLAG";

/// Why the interception rules could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// No netfilter netlink socket: a kernel without nf_tables, or an
    /// emulator (qemu-user) that refuses the netlink family.
    #[error(
        "cannot open a netfilter netlink socket ({0}): this kernel has no nf_tables or the \
         process runs where netlink is refused (qemu-user?); set local.firewall = \"none\" and \
         install the rules yourself (docs/FIREWALL.md)"
    )]
    Socket(io::Error),
    /// The kernel refused a message of a batch.
    #[error("the kernel refused to {what}: {source}{hint}")]
    Refused {
        what: String,
        source: io::Error,
        hint: &'static str,
    },
    /// Another process owns `inet mpbridge`.
    #[error(
        "the nftables table inet {TABLE} belongs to another process (another `mpbridge local` \
         is running?): the kernel refused to delete it ({0})"
    )]
    Busy(io::Error),
    /// The fwmark rule or local route of TPROXY could not be added.
    #[error("cannot set up TPROXY's policy routing: {0}")]
    Routing(io::Error),
    /// The rules would send the bridge's own traffic back into it.
    #[error("{0}")]
    SelfDivert(String),
}

impl FirewallError {
    fn refused(what: String, source: io::Error) -> FirewallError {
        let hint = match source.raw_os_error() {
            Some(libc::EPERM) => " (needs CAP_NET_ADMIN)",
            Some(libc::ENOENT | libc::EOPNOTSUPP) => {
                " (is the kernel missing an nftables module: nft_tproxy, nft_fib_inet, \
                 nft_socket, nft_redir, nft_reject_inet for local.quic = \"refuse\"?)"
            }
            _ => "",
        };
        FirewallError::Refused { what, source, hint }
    }
}

/// What the daemon diverts, and to where.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: InterceptionMode,
    pub lan_interfaces: Vec<String>,
    /// The bound listeners (their real addresses).
    pub listeners: Vec<SocketAddr>,
    pub remotes: Vec<SocketAddr>,
    pub bypass: Vec<IpNet>,
    /// Whether LAN QUIC (UDP to port 443) is refused, so that it falls back to TCP.
    pub quic: Quic,
}

/// The installed rules. Dropping it removes them (the owned table would go
/// with the process anyway; the fallback table and the routing would not).
pub struct Firewall {
    sock: nl::Socket,
    seq: u32,
    owned: bool,
    spec: Spec,
    routing: Option<Routing>,
    local_prefixes: Vec<IpNet>,
    removed: bool,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("owned", &self.owned)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Refuses a plan whose rules would loop. Precisely:
/// - a remote is one of the daemon's own listeners (the local would
///   connect to itself), or
/// - the route to a remote leaves through a LAN interface: connections the
///   remote makes towards this side would then arrive on an intercepted
///   interface and be diverted straight back to the remote.
///
/// `oif` says through which interface (index) each remote is routed, and
/// `lan` maps the LAN interfaces that exist to their index.
pub fn check_self_divert(
    plan: &Plan,
    own: &[IpAddr],
    oif: &dyn Fn(IpAddr) -> Option<u32>,
    lan: &[(String, u32)],
) -> Result<(), FirewallError> {
    for remote in &plan.remotes {
        let is_listener = plan.listeners.iter().any(|l| {
            l.port() == remote.port()
                && (l.ip() == remote.ip()
                    || (l.ip().is_unspecified() && own.contains(&remote.ip())))
        });
        if is_listener {
            return Err(FirewallError::SelfDivert(format!(
                "local.remotes: {remote} is this daemon's own listener: every connection would \
                 loop back into it"
            )));
        }
        if let Some(index) = oif(remote.ip()) {
            if let Some((name, _)) = lan.iter().find(|(_, i)| *i == index) {
                return Err(FirewallError::SelfDivert(format!(
                    "the remote {remote} is routed through {name}, which local.lan_interfaces \
                     intercepts: connections from the remote's side would be diverted back to \
                     the remote (a loop); remove {name} from local.lan_interfaces or fix the route"
                )));
            }
        }
    }
    Ok(())
}

impl Firewall {
    /// Removes leftovers of an earlier run, checks the plan for loops, then
    /// installs the routing (TPROXY) and the table. Call it once the
    /// listeners are bound and listening.
    pub fn install(plan: &Plan, host: &HostView) -> Result<Firewall, FirewallError> {
        let mut routing = Routing::open().map_err(FirewallError::Routing)?;
        let lan: Vec<(String, u32)> = plan
            .lan_interfaces
            .iter()
            .filter_map(|n| host.link_named(n).map(|l| (n.clone(), l.index)))
            .collect();
        for name in &plan.lan_interfaces {
            if !lan.iter().any(|(n, _)| n == name) {
                tracing::warn!(
                    interface = %name,
                    "LAN interface does not exist (yet): its TCP is diverted once it appears"
                );
            }
        }
        let routes: Vec<(IpAddr, Option<u32>)> = plan
            .remotes
            .iter()
            .map(|r| (r.ip(), routing.output_interface(r.ip()).ok().flatten()))
            .collect();
        let oif = |ip: IpAddr| routes.iter().find(|(r, _)| *r == ip).and_then(|(_, i)| *i);
        check_self_divert(plan, host.own_addresses(), &oif, &lan)?;

        let sock = nl::Socket::open(Some(rustix::net::netlink::NETFILTER), 0)
            .map_err(FirewallError::Socket)?;
        let spec = Spec {
            mode: plan.mode,
            lan: plan.lan_interfaces.clone(),
            target4: plan.listeners.iter().find_map(|l| match l {
                SocketAddr::V4(v4) => Some(*v4),
                _ => None,
            }),
            target6: plan.listeners.iter().find_map(|l| match l {
                SocketAddr::V6(v6) => Some(*v6),
                _ => None,
            }),
            divert_mark: DIVERT_MARK,
            own_mark: OWN_MARK,
            refuse_quic: plan.quic == Quic::Refuse,
        };
        let mut fw = Firewall {
            sock,
            seq: 1,
            owned: true,
            spec,
            routing: None,
            local_prefixes: Vec::new(),
            removed: false,
        };
        fw.remove_leftover_table()?;
        for v6 in [false, true] {
            let n = routing.remove(v6, DIVERT_MARK);
            if n > 0 {
                tracing::warn!(
                    removed = n,
                    "removed policy routing left by an earlier run (fwmark rule, local route)"
                );
            }
        }
        if plan.mode == InterceptionMode::Tproxy {
            // Routing first: on its own it changes nothing (no packet carries
            // the mark yet), whereas a table without it would black-hole.
            let families = [
                (false, fw.spec.target4.is_some()),
                (true, fw.spec.target6.is_some()),
            ];
            for (v6, wanted) in families {
                if !wanted {
                    continue;
                }
                if let Err(e) = routing.install(v6, DIVERT_MARK) {
                    routing.remove(false, DIVERT_MARK);
                    routing.remove(true, DIVERT_MARK);
                    return Err(FirewallError::Routing(e));
                }
            }
            fw.routing = Some(routing);
        }
        fw.local_prefixes = host.connected_prefixes();
        let remotes: Vec<IpNet> = plan.remotes.iter().map(|r| IpNet::from(r.ip())).collect();
        let mut first = if std::env::var_os(NO_OWNER_ENV).is_none() {
            fw.create(true, true, &remotes, &plan.bypass)
        } else {
            let e = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
            Err((0, FirewallError::refused("create an owned table".into(), e)))
        };
        // A kernel without nft_reject_inet refuses the QUIC rule (ENOENT)
        // and, the batch being atomic, everything with it: bridging TCP
        // matters more than refusing QUIC, so try once more without it.
        if let Err((_, FirewallError::Refused { source, .. })) = &first {
            if fw.spec.refuse_quic && source.raw_os_error() == Some(libc::ENOENT) {
                fw.spec.refuse_quic = false;
                let retry = fw.create(true, true, &remotes, &plan.bypass);
                if retry.is_ok() {
                    tracing::warn!(
                        "QUIC is not refused (local.quic = \"refuse\"): the kernel lacks the \
                         reject expression (module nft_reject_inet; kmod-nft-core on OpenWrt), \
                         so browsers' QUIC rides one link per flow instead of falling back to \
                         bridged TCP"
                    );
                    first = retry;
                } else {
                    fw.spec.refuse_quic = true;
                }
            }
        }
        match first {
            Ok(()) => {}
            Err((0, FirewallError::Refused { source, .. }))
                if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
            {
                tracing::warn!(
                    "this kernel cannot tie an nftables table to its process (owner flag, \
                     Linux >= 5.12: {source}); using a normal table, removed on exit and at the \
                     next start. If mpbridge is killed, delete it by hand: \
                     nft delete table inet {TABLE}"
                );
                fw.owned = false;
                if let Err((_, e)) = fw.create(true, false, &remotes, &plan.bypass) {
                    return Err(fw.fail(e));
                }
            }
            Err((_, e)) => return Err(fw.fail(e)),
        }
        if fw.spec.target4.is_none() || fw.spec.target6.is_none() {
            tracing::warn!(
                "only {} connections are diverted: no listener of the other family",
                if fw.spec.target4.is_some() {
                    "IPv4"
                } else {
                    "IPv6"
                }
            );
        }
        tracing::info!(
            table = %format!("inet {TABLE}"),
            owned = fw.owned,
            lan = %fw.spec.lan.join(","),
            mode = %plan.mode,
            refuse_quic = fw.spec.refuse_quic,
            "interception rules installed"
        );
        Ok(fw)
    }

    /// Cleans up what `install` did so far and passes `e` on.
    fn fail(&mut self, e: FirewallError) -> FirewallError {
        self.remove();
        e
    }

    fn send(&mut self, batch: Batch) -> Result<(), (usize, FirewallError)> {
        let (bytes, acks, next) = batch.finish();
        self.seq = next;
        let seqs: Vec<u32> = acks.iter().map(|(s, _)| *s).collect();
        self.sock.transact(&bytes, &seqs).map_err(|(index, e)| {
            let what = index
                .and_then(|i| acks.get(i))
                .map_or_else(|| "apply the nftables batch".to_owned(), |(_, w)| w.clone());
            (index.unwrap_or(usize::MAX), FirewallError::refused(what, e))
        })
    }

    fn remove_leftover_table(&mut self) -> Result<(), FirewallError> {
        let mut b = Batch::new(self.seq);
        b.del_table();
        match self.send(b) {
            Ok(()) => {
                tracing::warn!(
                    "removed the nftables table inet {TABLE} left by an earlier run \
                     (a kernel without the owner flag, or a crash)"
                );
                Ok(())
            }
            Err((_, FirewallError::Refused { source, .. }))
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err((_, FirewallError::Refused { source, .. }))
                if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) =>
            {
                // EPERM also when we lack CAP_NET_ADMIN: the create below says so.
                if source.raw_os_error() == Some(libc::EBUSY) || crate::host::sys::has_net_admin() {
                    Err(FirewallError::Busy(source))
                } else {
                    Ok(())
                }
            }
            Err((_, e)) => Err(e),
        }
    }

    fn create(
        &mut self,
        ruleset: bool,
        owner: bool,
        remotes: &[IpNet],
        bypass: &[IpNet],
    ) -> Result<(), (usize, FirewallError)> {
        let mut b = Batch::new(self.seq);
        if ruleset {
            b.create_ruleset(&self.spec, owner);
        }
        for family in [Family::V4, Family::V6] {
            b.replace_set(SetKind::Remote, family, remotes);
            b.replace_set(SetKind::Local, family, &self.local_prefixes);
            b.replace_set(SetKind::Bypass, family, bypass);
        }
        self.send(b)
    }

    /// Whether the kernel ties the table to this process.
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Replaces the bypass prefixes (SIGHUP), atomically.
    pub fn set_bypass(&mut self, bypass: &[IpNet]) -> Result<(), FirewallError> {
        let mut b = Batch::new(self.seq);
        for family in [Family::V4, Family::V6] {
            b.replace_set(SetKind::Bypass, family, bypass);
        }
        self.send(b).map_err(|(_, e)| e)
    }

    /// Makes the `local` sets hold `now`, this host's prefixes (sorted,
    /// once each), if they hold something else; returns whether they did.
    pub fn set_local(&mut self, now: Vec<IpNet>) -> Result<bool, FirewallError> {
        if self.removed {
            return Ok(false);
        }
        if now == self.local_prefixes {
            return Ok(false);
        }
        let mut b = Batch::new(self.seq);
        for family in [Family::V4, Family::V6] {
            b.replace_set(SetKind::Local, family, &now);
        }
        self.send(b).map_err(|(_, e)| e)?;
        self.local_prefixes = now;
        Ok(true)
    }

    /// Called when the listeners close (shutdown, before the drain). With
    /// TPROXY nothing changes: new SYNs find no listener, the tproxy
    /// expression does not match and they are routed as usual, while open
    /// connections still reach their sockets. With REDIRECT new connections
    /// would be redirected to a closed port, so the redirect rules go; the
    /// (now empty) nat chain stays, as the kernel keeps translating the
    /// open connections only while a nat chain is registered.
    pub fn stop_diverting(&mut self) {
        if self.spec.mode != InterceptionMode::Redirect || self.removed {
            return;
        }
        let mut b = Batch::new(self.seq);
        if self.spec.target4.is_some() {
            b.flush_chain(&Family::V4.chain());
        }
        if self.spec.target6.is_some() {
            b.flush_chain(&Family::V6.chain());
        }
        if let Err((_, e)) = self.send(b) {
            tracing::warn!("cannot stop diverting new connections: {e}");
        }
    }

    /// Deletes the table and the routing (idempotent).
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let mut b = Batch::new(self.seq);
        b.del_table();
        match self.send(b) {
            Ok(()) => {}
            Err((_, FirewallError::Refused { source, .. }))
                if source.raw_os_error() == Some(libc::ENOENT) => {}
            Err((_, e)) => tracing::warn!("cannot remove the interception rules: {e}"),
        }
        if let Some(routing) = &mut self.routing {
            routing.remove(false, DIVERT_MARK);
            routing.remove(true, DIVERT_MARK);
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A change [`SharedFirewall::apply`] makes.
#[derive(Debug)]
enum Op {
    Local(Vec<IpNet>),
    Bypass(Vec<IpNet>),
    StopDiverting,
}

/// The installed rules, shared by the daemon's tasks. Every change is a
/// netlink exchange that blocks: it runs off the async workers.
#[derive(Debug, Clone)]
pub struct SharedFirewall(Arc<Mutex<Firewall>>);

impl SharedFirewall {
    /// [`Firewall::install`], off the async workers.
    pub async fn install(plan: Plan, host: Arc<HostView>) -> Result<SharedFirewall, FirewallError> {
        let fw = crate::host::unblock(move || Firewall::install(&plan, &host))
            .await
            .ok_or_else(|| {
                FirewallError::Routing(io::Error::other("the runtime is shutting down"))
            })??;
        Ok(SharedFirewall(Arc::new(Mutex::new(fw))))
    }

    /// Applies `op` to the rules on a blocking thread; `None` when the
    /// runtime shuts down before it ran. (One function for every change:
    /// one blocking future in the router binary, not one per kind.)
    async fn apply(&self, op: Op) -> Option<Result<bool, FirewallError>> {
        let fw = Arc::clone(&self.0);
        crate::host::unblock(move || {
            let mut fw = fw.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match op {
                Op::Local(prefixes) => fw.set_local(prefixes),
                Op::Bypass(bypass) => fw.set_bypass(&bypass).map(|()| true),
                Op::StopDiverting => {
                    fw.stop_diverting();
                    Ok(true)
                }
            }
        })
        .await
    }

    /// [`Firewall::set_bypass`].
    pub async fn set_bypass(&self, bypass: Vec<IpNet>) -> Result<(), FirewallError> {
        self.apply(Op::Bypass(bypass)).await.unwrap_or(Ok(true))?;
        Ok(())
    }

    /// [`Firewall::stop_diverting`].
    pub async fn stop_diverting(&self) {
        self.apply(Op::StopDiverting).await;
    }

    /// [`Firewall::remove`], on the calling thread: for teardown from a
    /// `Drop`, which cannot wait for a blocking task.
    pub fn remove_now(&self) {
        let mut fw = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        fw.remove();
    }

    /// Keeps the `local` sets equal to this host's prefixes as `host`
    /// reports them, until the view ends (or the task is aborted).
    pub async fn follow_addresses(self, mut host: Watch) {
        loop {
            let prefixes = host.borrow_and_update().connected_prefixes();
            match self.apply(Op::Local(prefixes)).await {
                Some(Ok(true)) => {
                    tracing::info!("this host's addresses changed: local sets updated")
                }
                Some(Ok(false)) | None => {}
                Some(Err(e)) => tracing::warn!("cannot update the local sets: {e}"),
            }
            if host.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(remotes: &[&str]) -> Plan {
        Plan {
            mode: InterceptionMode::Tproxy,
            lan_interfaces: vec!["lan0".into()],
            listeners: vec![
                "0.0.0.0:12345".parse().unwrap(),
                "[::]:12345".parse().unwrap(),
            ],
            remotes: remotes.iter().map(|r| r.parse().unwrap()).collect(),
            bypass: Vec::new(),
            quic: Quic::Refuse,
        }
    }

    #[test]
    fn a_remote_routed_through_a_lan_interface_is_refused() {
        let lan = [("lan0".to_owned(), 3)];
        let via = |index: u32| move |_: IpAddr| Some(index);
        let p = plan(&["10.20.0.2:4443"]);
        assert!(check_self_divert(&p, &[], &via(5), &lan).is_ok());
        let e = check_self_divert(&p, &[], &via(3), &lan).unwrap_err();
        assert!(matches!(e, FirewallError::SelfDivert(_)));
        let text = e.to_string();
        assert!(
            text.contains("10.20.0.2:4443") && text.contains("lan0"),
            "{text}"
        );
        // No route at all: nothing to refuse.
        assert!(check_self_divert(&p, &[], &|_| None, &lan).is_ok());
    }

    #[test]
    fn a_remote_that_is_our_own_listener_is_refused() {
        let own: Vec<IpAddr> = vec!["10.10.0.1".parse().unwrap()];
        let none = |_: IpAddr| None;
        for remote in ["10.10.0.1:12345", "[::]:12345"] {
            let mut p = plan(&[remote]);
            p.listeners.push("[::]:12345".parse().unwrap());
            assert!(check_self_divert(&p, &own, &none, &[]).is_err(), "{remote}");
        }
        assert!(check_self_divert(&plan(&["10.10.0.1:4443"]), &own, &none, &[]).is_ok());
    }
}
