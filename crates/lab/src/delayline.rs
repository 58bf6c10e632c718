//! Delay without netem: a userspace delay line on NFQUEUE.
//!
//! This machine's kernel (6.18) has no netem, so delayed links ran only in
//! the lab's VM, under TCG and on Debian's 6.12. The kernel does have
//! NFQUEUE (`xt_NFQUEUE` through nft's compatibility layer, and
//! `nfnetlink_queue`): a rule hands every packet arriving on a link to a
//! queue, and the lab holds each one for the link's delay before it
//! accepts it. The packets stay in the kernel; the lab sees only their
//! ids (`NFQNL_COPY_META`, GSO packets whole), and one batch verdict
//! accepts every packet due at once, so a thread keeps up with a few
//! hundred Mbit/s.
//!
//! Two choices follow from measurements on this machine (a hand-made test
//! bed, 2026-12-06): the packets are held on arrival (PREROUTING of the
//! receiving router), not on departure, because a sender whose packets
//! are held in its own stack is throttled by TCP small queues (one flow
//! got 1.5 Mbit/s through a 50 Mbit/s link with 30 ms held in
//! POSTROUTING); and the queue is bound before the rule exists, since a
//! queue nobody listens to drops its packets. Only a fixed delay: jitter,
//! which reorders packets, and bursty loss stay netem's (the VM's).
//!
//! Used when asked (`mpbridge-lab --delay-line`, or
//! `MPBRIDGE_LAB_DELAY_LINE=1`), for links whose only netem need is a
//! delay: the same figures on the host's own kernel, at its speed.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{self, netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::links::LinkSpec;

/// Set by the CLI's `--delay-line`.
static PREFERRED: AtomicBool = AtomicBool::new(false);
/// The same asked from the environment (scripts, tests' children).
pub const ENV: &str = "MPBRIDGE_LAB_DELAY_LINE";

/// Delay-only links get the delay line from now on in this process.
pub fn prefer() {
    PREFERRED.store(true, Ordering::Relaxed);
}

/// Whether delay-only links get the delay line rather than netem.
pub fn preferred() -> bool {
    PREFERRED.load(Ordering::Relaxed) || std::env::var(ENV).as_deref() == Ok("1")
}

/// Whether `link` is delayed by the delay line here: asked for, and a
/// delay is all it needs of netem.
pub fn takes(link: &LinkSpec) -> bool {
    takes_when(preferred(), link)
}

fn takes_when(preferred: bool, link: &LinkSpec) -> bool {
    preferred && link.delay_us > 0 && link.jitter_us == 0 && link.burst_loss.is_none()
}

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
/// Hand GSO packets over whole, not segmented first.
const NFQA_CFG_F_GSO: u32 = 1 << 2;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// `struct nfgenmsg`: family, version, resource id (the queue, big-endian).
const NFGENMSG_LEN: usize = 4;
/// Packets a queue holds at most: 300 Mbit/s × 100 ms of full-size
/// packets is 2,600.
const QUEUE_MAXLEN: u32 = 65_536;
/// The socket's receive buffer: a burst of packet messages waits there.
const RCVBUF: usize = 8 << 20;
/// Longest sleep of the thread, so that a stop is seen soon.
const TICK: Duration = Duration::from_millis(100);

/// One nfnetlink message of the queue subsystem for queue `queue`.
fn message(msg_type: u16, flags: u16, seq: u32, queue: u16, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg_type).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // AF_UNSPEC, NFNETLINK_V0, the queue.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&queue.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// Appends one netlink attribute, padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Binds the socket to `queue`.
fn bind_message(seq: u32, queue: u16) -> Vec<u8> {
    let mut a = Vec::new();
    attr(&mut a, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
    message(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queue, &a)
}

/// Ids only, GSO packets whole, a long queue.
fn params_message(seq: u32, queue: u16) -> Vec<u8> {
    let mut a = Vec::new();
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    attr(&mut a, NFQA_CFG_PARAMS, &params);
    attr(&mut a, NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes());
    attr(&mut a, NFQA_CFG_MASK, &NFQA_CFG_F_GSO.to_be_bytes());
    attr(&mut a, NFQA_CFG_FLAGS, &NFQA_CFG_F_GSO.to_be_bytes());
    message(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queue, &a)
}

/// Accepts every packet of `queue` up to id `last`.
fn verdict_message(queue: u16, last: u32) -> Vec<u8> {
    let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&last.to_be_bytes());
    let mut a = Vec::new();
    attr(&mut a, NFQA_VERDICT_HDR, &hdr);
    message(NFQNL_MSG_VERDICT_BATCH, 0, 0, queue, &a)
}

/// The messages of one datagram: (type, payload after the netlink header).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        let body = buf.get(at + NLMSG_HDRLEN..at + len.max(NLMSG_HDRLEN))?;
        at += len.max(NLMSG_HDRLEN).next_multiple_of(4);
        Some((kind, body))
    })
}

/// The attributes in `buf`: (type, value).
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        // The top bits are flags (nested, byte order).
        let kind = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff;
        let value = buf.get(at + 4..at + len.max(4))?;
        at += len.max(4).next_multiple_of(4);
        Some((kind, value))
    })
}

/// The ids of the packets a datagram hands over, in order.
fn packet_ids(buf: &[u8]) -> Vec<u32> {
    let packet = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
    messages(buf)
        .filter(|(kind, _)| *kind == packet)
        .filter_map(|(_, body)| {
            let (_, hdr) =
                attributes(body.get(NFGENMSG_LEN..)?).find(|(k, _)| *k == NFQA_PACKET_HDR)?;
            Some(u32::from_be_bytes(hdr.get(..4)?.try_into().ok()?))
        })
        .collect()
}

/// The error an acknowledgement carries (0: done), if the datagram holds one.
fn ack_error(buf: &[u8]) -> Option<i32> {
    messages(buf)
        .find(|(kind, _)| *kind == NLMSG_ERROR)
        .and_then(|(_, body)| Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?)))
}

/// The packets held, in the order they came (and are due).
#[derive(Debug, Default)]
struct Held {
    packets: VecDeque<(Instant, u32)>,
    /// The most held at once, for the report.
    most: usize,
}

impl Held {
    fn push(&mut self, due: Instant, id: u32) {
        self.packets.push_back((due, id));
        self.most = self.most.max(self.packets.len());
    }

    /// When the next packet is due.
    fn next_due(&self) -> Option<Instant> {
        self.packets.front().map(|&(due, _)| due)
    }

    /// Takes every packet due by `now`; the last one's id (a batch
    /// verdict accepts it and every one before).
    fn take_due(&mut self, now: Instant) -> Option<u32> {
        let mut last = None;
        while let Some(&(due, id)) = self.packets.front() {
            if due > now {
                break;
            }
            last = Some(id);
            self.packets.pop_front();
        }
        last
    }
}

/// A queue bound in a namespace, not yet delaying: made inside the
/// namespace ([`crate::Topology::enter`]), run from anywhere.
#[derive(Debug)]
pub struct Bound {
    fd: OwnedFd,
    queue: u16,
}

/// Binds NFQUEUE queue `queue` of the current network namespace. Fails
/// where the kernel lacks `nfnetlink_queue`, or the queue has a reader.
pub fn bind(queue: u16) -> io::Result<Bound> {
    let fd = net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(net::netlink::NETFILTER),
    )?;
    net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0))?;
    if net::sockopt::set_socket_recv_buffer_size_force(&fd, RCVBUF).is_err() {
        net::sockopt::set_socket_recv_buffer_size(&fd, RCVBUF)?;
    }
    net::sockopt::set_socket_timeout(
        &fd,
        net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(2)),
    )?;
    let mut buf = vec![0u8; 8192];
    for (seq, m) in [(1, bind_message(1, queue)), (2, params_message(2, queue))] {
        let what = if seq == 1 { "bind" } else { "configure" };
        net::send(&fd, &m, SendFlags::empty())?;
        let (n, _) = net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
        match ack_error(&buf[..n]) {
            Some(0) => {}
            Some(e) => {
                let e = io::Error::from_raw_os_error(-e);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot {what} NFQUEUE queue {queue}: {e}"),
                ));
            }
            None => {
                return Err(io::Error::other(format!(
                    "NFQUEUE queue {queue}: no answer to {what}"
                )))
            }
        }
    }
    Ok(Bound { fd, queue })
}

/// What a delay line did, once stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub most_held: usize,
    /// Datagrams the kernel could not hand over (ENOBUFS): their packets
    /// were dropped.
    pub overruns: u64,
}

/// A running delay line; stops when dropped.
#[derive(Debug)]
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Tally>>>,
}

impl Bound {
    /// Holds every packet of the queue for `delay`, on a thread of its own.
    pub fn start(self, delay: Duration) -> io::Result<DelayLine> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("delay-line-{}", self.queue))
            .spawn(move || {
                let queue = self.queue;
                let done = self.run(delay, &stopping);
                // Said at once: the link passes nothing from here on.
                if let Err(e) = &done {
                    eprintln!("mpbridge-lab: delay line of queue {queue} stopped: {e}");
                }
                done
            })?;
        Ok(DelayLine {
            stop,
            thread: Some(thread),
        })
    }

    fn run(self, delay: Duration, stop: &AtomicBool) -> io::Result<Tally> {
        let mut held = Held::default();
        let mut tally = Tally::default();
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            let wait = held
                .next_due()
                .map_or(TICK, |due| due.saturating_duration_since(Instant::now()))
                .min(TICK);
            let timeout = Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            loop {
                match net::recv(&self.fd, &mut buf[..], RecvFlags::DONTWAIT) {
                    Ok((n, _)) => {
                        let now = Instant::now();
                        for id in packet_ids(&buf[..n]) {
                            held.push(now + delay, id);
                            tally.packets += 1;
                        }
                    }
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(rustix::io::Errno::NOBUFS) => tally.overruns += 1,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(last) = held.take_due(Instant::now()) {
                let m = verdict_message(self.queue, last);
                match net::send(&self.fd, &m, SendFlags::empty()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tally.most_held = held.most;
        Ok(tally)
    }
}

impl DelayLine {
    /// Stops the line and says what it did. Packets still held are dropped
    /// with the socket.
    pub fn stop(mut self) -> io::Result<Tally> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the delay line's thread panicked"))?,
            None => Ok(Tally::default()),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        // A failure was said when it happened.
        let _ = self.finish();
    }
}

/// The `iptables` rule that hands what arrives on `ifname` to `queue`
/// (arguments after `iptables`).
pub fn rule_args(ifname: &str, queue: u16) -> Vec<String> {
    [
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-i",
        ifname,
        "-j",
        "NFQUEUE",
        "--queue-num",
        &queue.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel writes it: nfgenmsg, then the packet
    /// header attribute (id, hw protocol, hook) among others.
    fn packet(id: u32) -> Vec<u8> {
        let mut a = Vec::new();
        attr(&mut a, 9, &[0; 8]); // another attribute first
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 0]);
        attr(&mut a, NFQA_PACKET_HDR, &hdr);
        message(NFQNL_MSG_PACKET, 0, 0, 1, &a)
    }

    #[test]
    fn the_ids_of_a_datagrams_packets_are_read_in_order() {
        let mut dgram = packet(7);
        dgram.extend(packet(8));
        // An acknowledgement between them is no packet.
        let mut ack = vec![0u8; 20];
        ack[..4].copy_from_slice(&20u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        dgram.extend(&ack);
        dgram.extend(packet(9));
        assert_eq!(packet_ids(&dgram), [7, 8, 9]);
        assert_eq!(ack_error(&dgram), Some(0));
        // Cut anywhere: whatever is whole is read, nothing panics.
        for cut in 0..dgram.len() {
            let ids = packet_ids(&dgram[..cut]);
            assert!(ids.len() <= 3);
        }
        assert_eq!(packet_ids(&dgram[..packet(7).len()]), [7]);
    }

    #[test]
    fn an_acknowledgement_carries_the_kernels_error() {
        let mut ack = vec![0u8; 36];
        ack[..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-16i32).to_ne_bytes());
        assert_eq!(ack_error(&ack), Some(-16));
        assert_eq!(ack_error(&packet(1)), None);
    }

    #[test]
    fn the_messages_name_the_queue_and_are_padded() {
        let m = bind_message(1, 3);
        assert_eq!(m.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 3 << 8 | 2);
        assert_eq!(&m[18..20], &3u16.to_be_bytes());
        let v = verdict_message(1, 0x0102_0304);
        let (kind, hdr) = attributes(&v[20..]).next().unwrap();
        assert_eq!(kind, NFQA_VERDICT_HDR);
        assert_eq!(hdr, [0, 0, 0, 1, 1, 2, 3, 4]);
        let p = params_message(2, 1);
        let kinds: Vec<u16> = attributes(&p[20..]).map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            [
                NFQA_CFG_PARAMS,
                NFQA_CFG_QUEUE_MAXLEN,
                NFQA_CFG_MASK,
                NFQA_CFG_FLAGS
            ]
        );
    }

    #[test]
    fn packets_leave_in_order_once_due_and_one_verdict_covers_them() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut held = Held::default();
        held.push(ms(30), 1);
        held.push(ms(30), 2);
        held.push(ms(31), 3);
        assert_eq!(held.next_due(), Some(ms(30)));
        assert_eq!(held.take_due(ms(29)), None);
        assert_eq!(held.take_due(ms(30)), Some(2));
        assert_eq!(held.next_due(), Some(ms(31)));
        assert_eq!(held.take_due(ms(40)), Some(3));
        assert_eq!((held.next_due(), held.most), (None, 3));
    }

    #[test]
    fn only_a_delay_goes_to_the_line_and_only_when_asked() {
        let parse = |s: &str| crate::checks::parse_links(s).unwrap().remove(0);
        assert!(!takes_when(false, &parse("50@30ms")));
        assert!(takes_when(true, &parse("50@30ms")));
        assert!(takes_when(true, &parse("50@30ms-2%")));
        assert!(!takes_when(true, &parse("50")));
        assert!(!takes_when(true, &parse("50@30ms~5ms")));
        assert!(!takes_when(true, &parse("wifi")));
    }

    #[test]
    fn the_rule_hands_a_links_arrivals_to_its_queue() {
        assert_eq!(
            rule_args("wan1", 1).join(" "),
            "-t mangle -A PREROUTING -i wan1 -j NFQUEUE --queue-num 1"
        );
    }
}
