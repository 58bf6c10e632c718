//! This host's links and addresses as one live value, [`HostView`], kept
//! current by a thread that owns the daemon's one rtnetlink subscription
//! (link and address changes) and shared as a tokio `watch` channel. Every
//! part of the daemon that asks "is this address ours?", "what is
//! interface 3 called?" or "which prefixes are connected here?" reads it:
//! no address syscall per connection, no polling, no cache that expires.
//!
//! The thread reads every link and address afresh after each burst of
//! notifications (a few dumps, cheap next to what changes them), so a
//! notification the kernel dropped (ENOBUFS) costs nothing either: the
//! next dump has it.
//!
//! A link that goes down and up again within one burst (a Wi-Fi station
//! re-associating, `ip link set X down && ip link set X up`) reads back as
//! it was, yet the kernel dropped its routes and nexthops meanwhile. So the
//! thread also counts each link's downs as the notifications tell them
//! ([`HostView::downs`]): such a flap still changes the view, and whoever
//! owns routes over the link sees it and puts them back. A flap whose
//! notifications the kernel dropped (ENOBUFS) is not counted.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use ipnet::IpNet;
pub use netlink_packet_route::address::AddressScope;
use rustix::event::{PollFd, PollFlags};
use tokio::sync::{oneshot, watch};

use super::netlink as nl;
use super::rtnetlink::{parse_link, Rtnl};
use crate::ratelimit::LogLimit;

/// Multicast groups of link and address changes.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

static READ_FAILED: LogLimit = LogLimit::refusals();

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// With carrier (IFF_LOWER_UP).
    pub lower_up: bool,
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The interface holding it.
    pub index: u32,
    /// The host's own address (IFA_LOCAL where there is one, else IFA_ADDRESS).
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub scope: AddressScope,
    /// Not yet usable (IPv6 duplicate address detection running or failed).
    pub tentative: bool,
}

/// This host's links and addresses at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    links: Vec<Link>,
    addresses: Vec<Address>,
    /// Every address, once each.
    own: Vec<IpAddr>,
    /// Interface index → how many times it went down (see [`HostView::downs`]).
    downs: Vec<(u32, u32)>,
}

impl HostView {
    pub fn new(links: Vec<Link>, addresses: Vec<Address>) -> HostView {
        // A handful of entries: a linear scan beats a sort (and its code).
        let mut own: Vec<IpAddr> = Vec::with_capacity(addresses.len());
        for a in &addresses {
            if !own.contains(&a.addr) {
                own.push(a.addr);
            }
        }
        HostView {
            links,
            addresses,
            own,
            downs: Vec::new(),
        }
    }

    /// The view with each link's count of downs (interface index, count).
    pub fn with_downs(mut self, downs: Vec<(u32, u32)>) -> HostView {
        self.downs = downs;
        self
    }

    /// How many times interface `index` went down (lost IFF_UP or carrier,
    /// or was deleted) since the view was first read: a link that reads the
    /// same as before but whose count grew has been down in between, and
    /// what the kernel drops with a down link (routes, nexthops) is gone.
    pub fn downs(&self, index: u32) -> u32 {
        self.downs
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(0, |&(_, n)| n)
    }

    /// Every interface, as the kernel listed them (by index).
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Every address, of every scope, as the kernel listed them.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    pub fn link_named(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Every address configured on this host, loopback and link-local
    /// included (what getifaddrs(3) lists).
    pub fn own_addresses(&self) -> &[IpAddr] {
        &self.own
    }

    /// Whether `ip` (IPv4-mapped or not) is one of this host's addresses.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.own.contains(&ip.to_canonical())
    }

    /// The name of the interface holding address `ip`.
    pub fn interface_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        let a = self.addresses.iter().find(|a| a.addr == ip)?;
        self.link(a.index).map(|l| l.name.as_str())
    }

    /// The prefixes of this host's addresses (`10.1.0.1/24` gives
    /// `10.1.0.0/24`), sorted, once each.
    pub fn connected_prefixes(&self) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self
            .addresses
            .iter()
            .filter_map(|a| IpNet::new(a.addr, a.prefix_len).ok())
            .map(|n| n.trunc())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Reads every link and address; `downs` learns the links' state as read
/// and gives its counts to the view.
fn read(rtnl: &mut Rtnl, downs: &mut Downs) -> io::Result<HostView> {
    let links = rtnl.links()?;
    downs.read(&links);
    Ok(HostView::new(links, rtnl.addresses()?).with_downs(downs.counts()))
}

/// Each link's downs, counted from the link notifications between reads.
#[derive(Debug, Default)]
struct Downs {
    /// Interface index, up with carrier as last told. A handful of links:
    /// linear scans, as in [`HostView`].
    up: Vec<(u32, bool)>,
    /// Interface index, downs counted (only links that went down).
    count: Vec<(u32, u32)>,
}

impl Downs {
    /// A notification: interface `index` is `up` (with carrier) or not, or
    /// was deleted (`up` false). Only a change to down counts.
    fn notice(&mut self, index: u32, up: bool) {
        let was = match self.up.iter_mut().find(|(i, _)| *i == index) {
            Some((_, state)) => Some(std::mem::replace(state, up)),
            None => {
                self.up.push((index, up));
                None
            }
        };
        if !up && was != Some(false) {
            match self.count.iter_mut().find(|(i, _)| *i == index) {
                Some((_, n)) => *n += 1,
                None => self.count.push((index, 1)),
            }
        }
    }

    /// The links as read: their state is the latest; gone ones are
    /// forgotten.
    fn read(&mut self, links: &[Link]) {
        self.up = links
            .iter()
            .map(|l| (l.index, l.up && l.lower_up))
            .collect();
        let up = &self.up;
        self.count.retain(|(i, _)| up.iter().any(|(j, _)| j == i));
    }

    fn counts(&self) -> Vec<(u32, u32)> {
        self.count.clone()
    }

    /// Takes in the link notifications in `buf` (one receive).
    fn take(&mut self, buf: &[u8]) {
        for msg in nl::messages(buf) {
            let deleted = match msg.kind {
                nl::RTM_NEWLINK => false,
                nl::RTM_DELLINK => true,
                _ => continue,
            };
            if let Some(link) = parse_link(msg.payload) {
                self.notice(link.index, !deleted && link.up && link.lower_up);
            }
        }
    }
}

/// The receiving end of the view: `borrow()` for the view now,
/// `changed().await` to wait for the next one.
pub type Watch = watch::Receiver<Arc<HostView>>;

/// The thread that keeps the view current. Dropping this stops it.
#[derive(Debug)]
pub struct Host {
    watch: Watch,
    /// Closing it wakes the thread, which then ends.
    _stop: OwnedFd,
}

impl Host {
    /// Subscribes to link and address changes, reads the view once (on the
    /// thread, not on the caller's async worker) and returns when it has.
    pub async fn start() -> io::Result<Host> {
        let (stop_rx, stop) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (tx, watch) = watch::channel(Arc::new(HostView::default()));
        let (ready_tx, ready) = oneshot::channel();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("host-view".into())
            .spawn(move || span.in_scope(|| follow(tx, stop_rx, ready_tx)))?;
        match ready.await {
            Ok(Ok(())) => Ok(Host { watch, _stop: stop }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the host view's thread ended at once")),
        }
    }

    /// A receiver of the view, for one consumer.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// The view now.
    pub fn now(&self) -> Arc<HostView> {
        self.watch.borrow().clone()
    }
}

/// The thread: subscribe, read, publish; then after every burst of
/// notifications read again and publish what changed. Ends when `stop`
/// becomes readable (its other end closed) or nobody watches any more.
fn follow(tx: watch::Sender<Arc<HostView>>, stop: OwnedFd, ready: oneshot::Sender<io::Result<()>>) {
    // Subscribed before the first read: a change in between is queued.
    let opened = nl::Socket::open(None, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        .and_then(|events| Ok((events, Rtnl::open()?)));
    let mut downs = Downs::default();
    let (events, mut rtnl) = match opened.and_then(|(events, mut rtnl)| {
        tx.send_replace(Arc::new(read(&mut rtnl, &mut downs)?));
        Ok((events, rtnl))
    }) {
        Ok(sockets) => {
            let _ = ready.send(Ok(()));
            sockets
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if let Err(e) = follow_changes(&tx, &stop, &events, &mut rtnl, &mut downs) {
        tracing::warn!("stopped following this host's links and addresses: {e}");
    }
}

/// [`follow`]'s loop; returns `Ok` when told to stop.
fn follow_changes(
    tx: &watch::Sender<Arc<HostView>>,
    stop: &OwnedFd,
    events: &nl::Socket,
    rtnl: &mut Rtnl,
    downs: &mut Downs,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(events, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() || tx.is_closed() {
            return Ok(());
        }
        // Everything queued now is one burst.
        loop {
            match events.try_recv(&mut buf) {
                Ok(()) => downs.take(&buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The kernel dropped notifications: the read below sees all.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        match read(rtnl, downs) {
            Ok(view) => {
                tx.send_if_modified(|now| {
                    let changed = **now != view;
                    if changed {
                        *now = Arc::new(view);
                    }
                    changed
                });
            }
            Err(e) => crate::warn_limited!(
                READ_FAILED,
                "cannot read this host's links and addresses ({e}): the view stays as it was \
                 until the next change"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn address(index: u32, addr: &str, prefix_len: u8) -> Address {
        Address {
            index,
            addr: addr.parse().unwrap(),
            prefix_len,
            scope: AddressScope::Universe,
            tentative: false,
        }
    }

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            up: true,
            lower_up: true,
        }
    }

    /// An RTM_NEWLINK (or DELLINK) notification of interface `index`.
    fn notification(kind: u16, index: u32, up: bool) -> Vec<u8> {
        use netlink_packet_core::Emitable;
        use netlink_packet_route::link::{LinkFlags, LinkHeader};
        let header = LinkHeader {
            index,
            flags: if up {
                LinkFlags::Up | LinkFlags::LowerUp
            } else {
                LinkFlags::empty()
            },
            ..LinkHeader::default()
        };
        let mut body = vec![0; header.buffer_len()];
        header.emit(&mut body);
        let mut w = nl::Writer::default();
        w.begin(kind, 0, 0);
        w.raw(&body);
        w.attr_str(3, "wan0"); // IFLA_IFNAME
        w.end();
        w.buf
    }

    #[test]
    fn a_down_and_up_between_two_reads_still_changes_the_view() {
        let mut downs = Downs::default();
        let links = vec![link(3, "wan0"), link(4, "wan1")];
        downs.read(&links);
        let before = HostView::new(links.clone(), vec![]).with_downs(downs.counts());
        // Down and up again before the next read: the links read the same.
        downs.take(&notification(nl::RTM_NEWLINK, 3, false));
        downs.take(&notification(nl::RTM_NEWLINK, 3, true));
        downs.read(&links);
        let after = HostView::new(links.clone(), vec![]).with_downs(downs.counts());
        assert_eq!(after.links(), before.links());
        assert_ne!(after, before, "the flap is seen");
        assert_eq!((after.downs(3), after.downs(4)), (1, 0));
        // Notifications while it stays down (carrier, then admin) count once.
        downs.take(&notification(nl::RTM_NEWLINK, 3, false));
        downs.take(&notification(nl::RTM_NEWLINK, 3, false));
        downs.take(&notification(nl::RTM_NEWLINK, 3, true));
        // Deleted and made again: a down too.
        downs.take(&notification(nl::RTM_DELLINK, 4, true));
        downs.read(&links);
        assert_eq!(downs.counts(), [(3, 2), (4, 1)]);
        // Other messages are no links; a link gone is forgotten.
        downs.take(&notification(nl::RTM_NEWADDR, 3, false));
        downs.read(&links[1..]);
        assert_eq!(downs.counts(), [(4, 1)]);
    }

    #[test]
    fn the_view_answers_ownership_names_and_prefixes() {
        let view = HostView::new(
            vec![link(3, "wan1"), link(1, "lo")],
            vec![
                address(1, "127.0.0.1", 8),
                address(3, "10.20.1.1", 24),
                address(3, "10.20.1.7", 24),
                address(3, "fd00:20:1::1", 64),
            ],
        );
        assert!(view.owns("10.20.1.7".parse().unwrap()));
        assert!(
            view.owns("::ffff:10.20.1.1".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!view.owns("10.20.1.2".parse().unwrap()));
        assert_eq!(
            view.interface_of("fd00:20:1::1".parse().unwrap()),
            Some("wan1")
        );
        assert_eq!(view.interface_of("10.9.9.9".parse().unwrap()), None);
        assert_eq!(view.link_named("wan1").map(|l| l.index), Some(3));
        let prefixes: Vec<String> = view
            .connected_prefixes()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(prefixes, ["10.20.1.0/24", "127.0.0.0/8", "fd00:20:1::/64"]);
    }

    /// Runs `f` on a thread of its own inside a new network namespace with
    /// only `lo`, so the test changes nothing outside it.
    fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: only the network namespace is unshared, by a thread
            // that shares nothing else the flag could split.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("unshare(CLONE_NEWNET) needs root");
            f()
        })
        .join()
        .expect("test thread")
    }

    fn ip(args: &str) {
        let ok = std::process::Command::new("ip")
            .args(args.split(' '))
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip {args}");
    }

    async fn wait_for(watch: &Watch, what: &str, ok: impl Fn(&HostView) -> bool) {
        let mut watch = watch.clone();
        let found = tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|v| ok(v)))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(found, "{what}: {:?}", watch.borrow());
    }

    #[test]
    fn links_and_addresses_changed_at_run_time_reach_the_watchers() {
        in_fresh_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let host = Host::start().await.unwrap();
                let mut watch = host.watch();
                let lo = host.now().link_named("lo").cloned().unwrap();
                assert!(!lo.up);
                ip("link set lo up");
                wait_for(&watch, "lo up", |v| v.link(1).is_some_and(|l| l.up)).await;
                ip("addr add 10.99.0.1/24 dev lo");
                wait_for(&watch, "address added", |v| {
                    v.owns("10.99.0.1".parse().unwrap())
                        && v.connected_prefixes()
                            .contains(&"10.99.0.0/24".parse().unwrap())
                        && v.interface_of("10.99.0.1".parse().unwrap()) == Some("lo")
                })
                .await;
                ip("addr del 10.99.0.1/24 dev lo");
                wait_for(&watch, "address removed", |v| {
                    !v.owns("10.99.0.1".parse().unwrap())
                })
                .await;
                // Down and up in one go: however the thread reads it, the
                // view counts the down.
                let ok = std::process::Command::new("ip")
                    .args(["-batch", "-"])
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut child| {
                        use std::io::Write;
                        let mut stdin = child.stdin.take().expect("stdin");
                        stdin.write_all(b"link set lo down\nlink set lo up\n")?;
                        drop(stdin);
                        child.wait()
                    })
                    .expect("ip -batch")
                    .success();
                assert!(ok, "ip -batch: link set lo down, up");
                wait_for(&watch, "the down counted", |v| {
                    v.downs(1) == 1 && v.link(1).is_some_and(|l| l.up)
                })
                .await;
                // Dropping the host ends its thread, and with it the channel.
                drop(host);
                let ended = tokio::time::timeout(Duration::from_secs(10), async {
                    while watch.changed().await.is_ok() {}
                })
                .await;
                assert!(ended.is_ok(), "the host view's thread still runs");
            });
        });
    }
}
