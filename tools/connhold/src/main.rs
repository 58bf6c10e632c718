//! Opens and holds many TCP connections, with std alone so that it builds
//! for every router CPU (`scripts/cross.sh --connhold ARCH`). A connection
//! counts once one byte has gone each way over it: through mpbridge that is
//! a bridged connection whose far end, the server's, is connected.
//!
//! ```text
//! connhold serve PORT N        accept N, echo one byte on each, hold them
//! connhold open ADDR:PORT N    open N one after the other, hold them
//! connhold selftest N          both in one process over loopback, then exit
//! ```
//!
//! `serve` and `open` print `held N` once all N are there and then sleep
//! until killed; any failure is one line on stderr and exit status 1.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long one connect or one byte may take (an emulated router is slow).
const STEP: Duration = Duration::from_secs(30);

/// Accepts `n` connections and echoes the first byte of each.
fn serve(listener: &TcpListener, n: usize) -> Result<Vec<TcpStream>, String> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let (mut s, peer) = listener
            .accept()
            .map_err(|e| format!("accept after {} connections: {e}", held.len()))?;
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(STEP))
            .and_then(|()| s.read_exact(&mut b))
            .and_then(|()| s.write_all(&b))
            .map_err(|e| {
                format!(
                    "connection {} from {peer}: no byte to echo: {e}",
                    held.len() + 1
                )
            })?;
        held.push(s);
    }
    Ok(held)
}

/// Opens `n` connections to `addr`, each sending one byte and awaiting it back.
fn open(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, String> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let what = |step: &str, e: io::Error| {
            format!("connection {} of {n} to {addr}: {step}: {e}", i + 1)
        };
        let mut s = TcpStream::connect_timeout(&addr, STEP).map_err(|e| what("connect", e))?;
        let sent = [i as u8];
        s.set_read_timeout(Some(STEP))
            .and_then(|()| s.write_all(&sent))
            .map_err(|e| what("send", e))?;
        let mut got = [0u8; 1];
        s.read_exact(&mut got).map_err(|e| what("echo", e))?;
        if got != sent {
            return Err(what(
                "echo",
                io::Error::other(format!("{got:?} came back for {sent:?}")),
            ));
        }
        held.push(s);
        if (i + 1) % 100 == 0 && i + 1 < n {
            println!("open {}", i + 1);
        }
    }
    Ok(held)
}

fn hold(held: Vec<TcpStream>) -> ! {
    println!("held {}", held.len());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let count = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("{s:?} is not a number of connections"))
    };
    match args {
        [cmd, port, n] if cmd == "serve" => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{port:?} is not a port"))?;
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
            println!("listening on port {port}");
            hold(serve(&listener, count(n)?)?)
        }
        [cmd, addr, n] if cmd == "open" => {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not ADDRESS:PORT"))?;
            hold(open(addr, count(n)?)?)
        }
        [cmd, n] if cmd == "selftest" => {
            let n = count(n)?;
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let server = std::thread::spawn(move || serve(&listener, n).map(|h| h.len()));
            let opened = open(addr, n)?.len();
            let served = server
                .join()
                .map_err(|_| "the server thread panicked".to_string())??;
            println!(
                "selftest: {opened} connections opened, {served} served, one byte each way on each"
            );
            Ok(())
        }
        _ => Err("usage: connhold serve PORT N | open ADDR:PORT N | selftest N".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connhold: {e}");
            ExitCode::FAILURE
        }
    }
}
