//! The Prometheus endpoint (cargo feature `metrics`): the status's counters
//! in the text exposition format, served by a minimal HTTP/1.1 handler
//! (`GET /metrics`, one request per connection) on a tokio TcpListener.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::protocol::{LinkState, Status};
use super::Observed;
use crate::ratelimit::LogLimit;
use crate::server::{accept_bounded, Bounds};
use crate::warn_limited;

/// Scrapers served at once; more are closed at once.
const MAX_CLIENTS: usize = 4;
/// The request head must arrive within this, and the answer leave.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 8192;

static BAD_REQUEST: LogLimit = LogLimit::refusals();

/// Binds the metrics listener (before the daemon changes anything).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(16)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Serves `GET /metrics` until dropped.
pub async fn serve(listener: TcpListener, observed: Arc<Observed>) {
    serve_with(listener, observed, TIMEOUT).await;
}

/// [`serve`], each client given `timeout` to ask and be answered.
async fn serve_with(listener: TcpListener, observed: Arc<Observed>, timeout: Duration) {
    let bounds = Bounds {
        what: "metrics",
        max: MAX_CLIENTS,
        drain: Duration::ZERO,
    };
    let scrape = |(stream, _), permit| {
        let observed = Arc::clone(&observed);
        async move {
            let _ = tokio::time::timeout(timeout, handle(stream, observed)).await;
            drop(permit);
        }
    };
    // Over the cap: dropped, closed at once.
    let refuse = |_, _: &mut tokio::task::JoinSet<()>| {};
    // Until dropped: the daemon aborts it at teardown.
    let forever = std::future::pending();
    accept_bounded(vec![listener], bounds, forever, scrape, refuse).await;
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Reads the request line of an HTTP/1.x request head.
pub fn route(head: &[u8]) -> Route {
    let Some(line) = head
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Reads a request head (up to the blank line), answers, closes.
async fn handle(mut stream: TcpStream, observed: Arc<Observed>) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            break;
        }
    }
    let route = if head.len() > MAX_HEAD {
        Route::BadRequest
    } else {
        route(&head)
    };
    let (status, content_type, body) = match route {
        Route::Metrics => {
            let status = crate::host::unblock(move || observed.snapshot(Some(0))).await;
            match status {
                Some(status) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    render(&status),
                ),
                None => (
                    "500 Internal Server Error",
                    "text/plain",
                    "the daemon is shutting down\n".into(),
                ),
            }
        }
        Route::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        Route::BadRequest => {
            warn_limited!(BAD_REQUEST, "metrics: refused a malformed HTTP request");
            ("400 Bad Request", "text/plain", "bad request\n".into())
        }
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the header of one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The status in Prometheus text exposition format (version 0.0.4).
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mode = label(&status.mode.to_string());
    let t = &status.totals;
    let m = format!("mode=\"{mode}\"");

    family(
        &mut out,
        "mpbridge_up_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(out, "mpbridge_up_seconds{{{m}}} {}", status.uptime_secs);
    family(
        &mut out,
        "mpbridge_connections_open",
        "gauge",
        "Connections being handled now.",
    );
    let _ = writeln!(
        out,
        "mpbridge_connections_open{{{m}}} {}",
        t.connections_open
    );
    family(
        &mut out,
        "mpbridge_connections_total",
        "counter",
        "Connections accepted since start.",
    );
    let _ = writeln!(
        out,
        "mpbridge_connections_total{{{m}}} {}",
        t.connections_total
    );
    /// Name, help, label, and each label value's count.
    type Labelled<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);
    let labelled: [Labelled; 3] = [
        (
            "mpbridge_bytes_total",
            "Bytes relayed, client to destination (up) and back (down).",
            "direction",
            &[("up", t.bytes_up), ("down", t.bytes_down)],
        ),
        (
            "mpbridge_refused_total",
            "Connections refused, by reason.",
            "reason",
            &t.refused.by_reason(),
        ),
        (
            "mpbridge_errors_total",
            "Failures, by kind.",
            "kind",
            &t.errors.by_kind(),
        ),
    ];
    for (name, help, label, values) in labelled {
        family(&mut out, name, "counter", help);
        for (value, n) in values {
            let _ = writeln!(out, "{name}{{{m},{label}=\"{value}\"}} {n}");
        }
    }

    type LinkValue = fn(&super::protocol::Link) -> Option<f64>;
    let link_families: [(&str, &str, &str, LinkValue); 9] = [
        (
            "mpbridge_link_up",
            "gauge",
            "1 if the link carries traffic (up or backup), else 0.",
            |l| Some(if l.state == LinkState::Down { 0.0 } else { 1.0 }),
        ),
        (
            "mpbridge_link_backup",
            "gauge",
            "1 if the link is configured as a backup link.",
            |l| Some(if l.backup { 1.0 } else { 0.0 }),
        ),
        (
            "mpbridge_link_rtt_seconds",
            "gauge",
            "Smoothed probe round-trip time.",
            |l| l.rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "mpbridge_link_loss_ratio",
            "gauge",
            "Lost share of the last 50 probes.",
            |l| l.loss_percent.map(|p| p / 100.0),
        ),
        (
            "mpbridge_link_transmit_bytes_total",
            "counter",
            "Bytes the interface sent.",
            |l| l.tx_bytes.map(|b| b as f64),
        ),
        (
            "mpbridge_link_receive_bytes_total",
            "counter",
            "Bytes the interface received.",
            |l| l.rx_bytes.map(|b| b as f64),
        ),
        (
            "mpbridge_link_carries_routes",
            "gauge",
            "1 if the link carries the multipath routes of non-bridged traffic.",
            |l| Some(if l.carries_routes { 1.0 } else { 0.0 }),
        ),
        (
            "mpbridge_link_subflows",
            "gauge",
            "Subflows of relayed connections on the link.",
            |l| l.subflows.map(f64::from),
        ),
        (
            "mpbridge_link_state_seconds",
            "gauge",
            "Seconds since the link entered or left service.",
            |l| Some(l.state_secs as f64),
        ),
    ];
    if !status.links.is_empty() {
        for (name, kind, help, value) in link_families {
            family(&mut out, name, kind, help);
            for link in &status.links {
                if let Some(v) = value(link) {
                    let _ = writeln!(
                        out,
                        "{name}{{{m},interface=\"{}\"}} {v}",
                        label(&link.interface)
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::stats::Stats;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                route(bad),
                Route::BadRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_exposition_has_one_help_and_type_per_family_and_escaped_labels() {
        let stats = Arc::new(Stats::default());
        Stats::bump(&stats.refused_auth);
        let observed = Observed::new(Role::Local, stats, None, true);
        let mut status = observed.snapshot(Some(0));
        status.links.push(super::super::protocol::Link {
            interface: "we\"ird".into(),
            addresses: vec![],
            state: LinkState::Up,
            state_secs: 3,
            backup: false,
            kernel_up: true,
            probe: super::super::protocol::ProbeState::Up,
            rtt_ms: Some(0.5),
            loss_percent: Some(2.0),
            tx_bits_per_sec: None,
            rx_bits_per_sec: None,
            tx_bytes: Some(10),
            rx_bytes: Some(20),
            subflows: Some(2),
            carries_routes: true,
        });
        let text = render(&status);
        assert!(
            text.contains("mpbridge_refused_total{mode=\"local\",reason=\"auth\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "mpbridge_link_rtt_seconds{mode=\"local\",interface=\"we\\\"ird\"} 0.0005\n"
            ),
            "{text}"
        );
        assert!(text
            .contains("mpbridge_link_loss_ratio{mode=\"local\",interface=\"we\\\"ird\"} 0.02\n"));
        assert!(text.contains("mpbridge_link_subflows{mode=\"local\",interface=\"we\\\"ird\"} 2\n"));
        // Every sample line belongs to a family declared once, before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name.to_owned()), "{name} twice");
                declared.push(name.to_owned());
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[tokio::test]
    async fn get_metrics_answers_200_and_anything_else_an_http_error() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        Stats::bump(&stats.accepted);
        let observed = Arc::new(Observed::new(Role::Remote, stats, None, false));
        let server = tokio::spawn(serve(listener, observed));
        let get = |request: &'static [u8]| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(
            ok.contains("mpbridge_connections_total{mode=\"remote\"} 1\n"),
            "{ok}"
        );
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(get(b"GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get(b"DELETE /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        assert!(get(b"hello\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        server.abort();
    }

    #[tokio::test]
    async fn silent_scrapers_cannot_keep_others_out_for_long() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let observed = Arc::new(Observed::new(Role::Local, Arc::default(), None, false));
        let timeout = Duration::from_secs(1);
        let server = tokio::spawn(serve_with(listener, observed, timeout));
        let mut silent = Vec::new();
        for _ in 0..MAX_CLIENTS {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // Accepted in order: the next finds every permit taken.
        let over = async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await;
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            answer
        };
        assert!(
            over.await.is_empty(),
            "over the cap: closed without an answer"
        );
        // The silent ones are closed after the timeout...
        for mut s in silent {
            let mut sink = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink))
                .await
                .expect("closed after the timeout")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        // ...and the next scraper is served.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }
}
