//! The lab's delay line (`mpbridge-lab --delay-line`): links with a fixed
//! delay built on this machine's own kernel, without netem. Needs root
//! and iptables (scripts/test.sh installs it). Every test here asks for
//! the delay line, so they sit in a file of their own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mpbridge_lab::{checks, delayline, Node, Topology, TopologySpec};

fn build(links: &str) -> Topology {
    delayline::prefer();
    let spec = TopologySpec {
        links: checks::parse_links(links).unwrap(),
    };
    Topology::build(&spec).unwrap_or_else(|e| panic!("cannot build lab: {e:#}"))
}

/// The best of a few TCP handshakes from router A to router B over
/// `link`.
fn handshake(topo: &Topology, link: usize) -> Duration {
    let at = topo.rb_link_addr(link, false);
    let listener = topo
        .enter(Node::RouterB, || TcpListener::bind((at, 0)))
        .unwrap();
    let to = listener.local_addr().unwrap();
    (0..5)
        .map(|_| {
            let started = Instant::now();
            let s = topo
                .enter(Node::RouterA, || {
                    TcpStream::connect_timeout(&to, Duration::from_secs(2))
                })
                .unwrap();
            let took = started.elapsed();
            drop(s);
            let _ = listener.accept();
            took
        })
        .min()
        .unwrap()
}

#[test]
fn each_link_gets_its_own_delay_each_way() {
    let topo = build("0@20ms,0@5ms,0");
    // A handshake is one round trip: twice the one-way delay.
    let rtt = [0, 1, 2].map(|i| handshake(&topo, i));
    eprintln!("handshakes over the three links: {rtt:?}");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    assert!((39.0..60.0).contains(&ms(rtt[0])), "link 0: {rtt:?}");
    assert!((9.5..25.0).contains(&ms(rtt[1])), "link 1: {rtt:?}");
    assert!(ms(rtt[2]) < 5.0, "link 2 (no delay): {rtt:?}");
}

#[test]
fn a_delayed_shaped_link_still_carries_its_rate() {
    // Held on arrival, the sender's stack keeps nothing back: held on
    // departure, TCP small queues kept one flow at 1.5 Mbit/s here.
    let topo = build("50@30ms");
    let at = topo.rb_link_addr(0, false);
    let listener = topo
        .enter(Node::RouterB, || TcpListener::bind((at, 0)))
        .unwrap();
    let to = listener.local_addr().unwrap();
    let sender = std::thread::spawn({
        let mut s = topo
            .enter(Node::RouterA, || {
                TcpStream::connect_timeout(&to, Duration::from_secs(2))
            })
            .unwrap();
        move || {
            let chunk = vec![7u8; 64 << 10];
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    let (mut r, _) = listener.accept().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    // The first second is slow start; the next two are counted.
    let start = Instant::now();
    let mut counted = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let t = start.elapsed().as_secs_f64();
        if (1.0..3.0).contains(&t) {
            counted += n as u64;
        }
        if t >= 3.0 {
            break;
        }
    }
    drop(r);
    sender.join().unwrap();
    let mbit = counted as f64 * 8.0 / 2.0 / 1e6;
    eprintln!("one flow over 50 Mbit/s with 30 ms each way: {mbit:.1} Mbit/s");
    assert!(mbit > 35.0, "{mbit:.1} Mbit/s over a 50 Mbit/s link");
}
