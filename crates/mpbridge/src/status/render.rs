//! The text `mpbridge status` prints: a few lines of totals, then aligned
//! tables of links and connections (each connection's subflows under it),
//! coloured only when asked (on a terminal).

use std::fmt::Write as _;

use crate::config::Role;
use crate::control::protocol::{Connection, Link, LinkState, ProbeState, Status, TcpState};
use crate::host::sys::Transport;

/// How a cell is painted on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
}

impl Paint {
    fn code(self) -> Option<&'static str> {
        match self {
            Paint::Plain => None,
            Paint::Bold => Some("1"),
            Paint::Dim => Some("2"),
            Paint::Green => Some("32"),
            Paint::Yellow => Some("33"),
            Paint::Red => Some("31"),
        }
    }

    fn apply(self, text: &str, colour: bool) -> String {
        match (colour, self.code()) {
            (true, Some(code)) if !text.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }
}

/// One table cell.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    paint: Paint,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            paint: Paint::Plain,
        }
    }

    pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
        Cell {
            text: text.into(),
            paint,
        }
    }
}

/// Rows of cells, printed in aligned columns two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The table, each line starting with `indent`. Widths count
    /// characters of the plain text, so paint never moves a column.
    pub fn render(&self, indent: &str, colour: bool) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (i, cell) in row.iter().enumerate() {
                line.push_str(&cell.paint.apply(&cell.text, colour));
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.text.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `n` in `base`-fold units: `n unit` below `base`, else one decimal of
/// the largest unit that keeps the value at or above 1.
fn scaled(n: u64, base: f64, unit: &str, units: &[&str]) -> String {
    if (n as f64) < base {
        return format!("{n} {unit}");
    }
    let mut value = n as f64 / base;
    let mut i = 0;
    while value >= base && i + 1 < units.len() {
        value /= base;
        i += 1;
    }
    format!("{value:.1} {}", units[i])
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    scaled(n, 1024.0, "B", &["KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// A rate in bits per second, decimal units: `950 bit/s`, `95.3 Mbit/s`.
pub fn rate(bits_per_sec: u64) -> String {
    scaled(
        bits_per_sec,
        1000.0,
        "bit/s",
        &["kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"],
    )
}

/// A duration in its two largest units: `45s`, `2m05s`, `3h07m`, `2d04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A round-trip time: `0.4 ms`, `23 ms`.
pub fn rtt(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn percent(p: f64) -> String {
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

fn or_dash<T>(value: Option<T>, f: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), f)
}

/// A state's cell: green when it carries traffic, yellow when in doubt,
/// red when out of service.
fn state_cell(state: impl std::fmt::Display, paint: Paint) -> Cell {
    Cell::painted(state.to_string(), paint)
}

fn link_paint(state: LinkState) -> Paint {
    match state {
        LinkState::Up => Paint::Green,
        LinkState::Backup => Paint::Yellow,
        LinkState::Down => Paint::Red,
    }
}

fn probe_paint(state: ProbeState) -> Paint {
    match state {
        ProbeState::Up => Paint::Green,
        ProbeState::Unknown => Paint::Yellow,
        ProbeState::Down => Paint::Red,
        ProbeState::Off => Paint::Plain,
    }
}

fn tcp_paint(state: TcpState) -> Paint {
    match state {
        TcpState::Established => Paint::Green,
        TcpState::Unknown => Paint::Yellow,
        _ => Paint::Plain,
    }
}

fn headings(names: &[&str]) -> Vec<Cell> {
    names
        .iter()
        .map(|n| Cell::painted(*n, Paint::Bold))
        .collect()
}

/// A totals row of named counts, painted when any is not zero.
fn counts(name: &str, values: &[(&str, u64)]) -> Vec<Cell> {
    let text = values
        .iter()
        .map(|(what, n)| format!("{} {n}", what.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    let paint = if values.iter().any(|(_, n)| *n > 0) {
        Paint::Yellow
    } else {
        Paint::Plain
    };
    vec![Cell::painted(name, Paint::Dim), Cell::painted(text, paint)]
}

/// What `mpbridge status` prints for one daemon.
pub fn render(status: &Status, colour: bool) -> String {
    let mut out = String::new();
    let title = format!("mpbridge {}", status.mode);
    let _ = writeln!(
        out,
        "{}  pid {}  up {}  version {}",
        Paint::Bold.apply(&title, colour),
        status.pid,
        duration(status.uptime_secs),
        status.daemon_version
    );
    let t = &status.totals;
    let mut totals = Table::default();
    totals.row(vec![
        Cell::painted("connections", Paint::Dim),
        Cell::new(format!(
            "{} open, {} since start",
            t.connections_open, t.connections_total
        )),
    ]);
    totals.row(vec![
        Cell::painted("bytes", Paint::Dim),
        Cell::new(format!(
            "up {}, down {}",
            bytes(t.bytes_up),
            bytes(t.bytes_down)
        )),
    ]);
    totals.row(counts("refused", &t.refused.by_reason()));
    totals.row(counts("errors", &t.errors.by_kind()));
    out.push_str(&totals.render("  ", colour));

    out.push('\n');
    if status.links.is_empty() {
        out.push_str(
            "  no [[link]] configured: MPTCP endpoints and routing are managed outside mpbridge\n",
        );
    } else {
        out.push_str(&links_table(&status.links).render("  ", colour));
    }

    out.push('\n');
    if status.connections.is_empty() && status.connections_omitted == 0 {
        out.push_str("  no connections\n");
    } else {
        let local = status.mode == Role::Local;
        out.push_str(&connections_table(&status.connections, local).render("  ", colour));
        if status.connections_omitted > 0 {
            let _ = writeln!(
                out,
                "  … and {} more (mpbridge status --connections)",
                status.connections_omitted
            );
        }
    }
    if let Some(why) = &status.subflows_unavailable {
        let _ = writeln!(
            out,
            "  {}",
            Paint::Yellow.apply(&format!("subflows unavailable: {why}"), colour)
        );
    }
    out
}

fn links_table(links: &[Link]) -> Table {
    let mut table = Table::default();
    table.row(headings(&[
        "link",
        "addresses",
        "state",
        "since",
        "probe",
        "rtt",
        "loss",
        "tx",
        "rx",
        "subflows",
        "routes",
    ]));
    for l in links {
        let addresses = if l.addresses.is_empty() {
            "-".to_owned()
        } else {
            l.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        table.row(vec![
            Cell::new(&l.interface),
            Cell::new(addresses),
            state_cell(l.state, link_paint(l.state)),
            Cell::new(duration(l.state_secs)),
            state_cell(l.probe, probe_paint(l.probe)),
            Cell::new(or_dash(l.rtt_ms, rtt)),
            Cell::new(or_dash(l.loss_percent, percent)),
            Cell::new(or_dash(l.tx_bits_per_sec, rate)),
            Cell::new(or_dash(l.rx_bits_per_sec, rate)),
            Cell::new(or_dash(l.subflows, |n| n.to_string())),
            Cell::new(if l.carries_routes { "yes" } else { "-" }),
        ]);
    }
    table
}

/// `local`: this daemon is router A, whose subflows send upstream.
fn connections_table(connections: &[Connection], local: bool) -> Table {
    let mut table = Table::default();
    table.row(headings(&[
        "connection",
        "age",
        "up",
        "down",
        "up/s",
        "down/s",
        "path",
    ]));
    for c in connections {
        let path = match (c.transport, c.fallback, &c.subflows) {
            (Transport::Tcp, _, _) => Cell::new("tcp"),
            (_, Some(true), _) => Cell::painted("tcp (MPTCP fell back)", Paint::Yellow),
            (_, _, Some(subflows)) => Cell::new(format!(
                "mptcp, {} subflow{}",
                subflows.len(),
                if subflows.len() == 1 { "" } else { "s" }
            )),
            _ => Cell::new("mptcp"),
        };
        table.row(vec![
            Cell::new(format!("{} → {}", c.client, c.destination)),
            Cell::new(duration(c.age_secs)),
            Cell::new(bytes(c.bytes_up)),
            Cell::new(bytes(c.bytes_down)),
            Cell::new(rate(c.up_bits_per_sec)),
            Cell::new(rate(c.down_bits_per_sec)),
            path,
        ]);
        for s in c.subflows.iter().flatten() {
            let (up, down) = if local {
                (s.bytes_sent, s.bytes_received)
            } else {
                (s.bytes_received, s.bytes_sent)
            };
            let link = s.link.as_deref().unwrap_or("?");
            let rtt = s
                .rtt_ms
                .map(|ms| format!(" {}", rtt(ms)))
                .unwrap_or_default();
            table.row(vec![
                Cell::painted(format!("  ↳ {} → {}", s.local, s.remote), Paint::Dim),
                Cell::new(""),
                Cell::new(or_dash(up, bytes)),
                Cell::new(or_dash(down, bytes)),
                Cell::new(""),
                Cell::new(""),
                Cell::painted(format!("{link} {}{rtt}", s.state), tcp_paint(s.state)),
            ]);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{Subflow, Totals};

    /// The text with its colour codes removed.
    fn plain(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn link(name: &str, addrs: &[&str], up: bool) -> Link {
        Link {
            interface: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            state: if up { LinkState::Up } else { LinkState::Down },
            state_secs: 125,
            backup: false,
            kernel_up: true,
            probe: if up { ProbeState::Up } else { ProbeState::Down },
            rtt_ms: up.then_some(0.42),
            loss_percent: Some(if up { 0.0 } else { 100.0 }),
            tx_bits_per_sec: Some(95_300_000),
            rx_bits_per_sec: Some(1_200),
            tx_bytes: Some(1),
            rx_bytes: Some(1),
            subflows: Some(1),
            carries_routes: up,
        }
    }

    fn sample() -> Status {
        let sf = |local: &str, link: &str| Subflow {
            local: local.parse().unwrap(),
            remote: "10.20.0.2:4443".parse().unwrap(),
            link: Some(link.into()),
            state: TcpState::Established,
            rtt_ms: Some(0.5),
            bytes_sent: Some(4 << 20),
            bytes_received: Some(300 << 20),
        };
        Status {
            mode: Role::Local,
            pid: 4242,
            daemon_version: "0.1.0".into(),
            uptime_secs: 125,
            links: vec![
                link("wan0", &["10.20.0.1", "fd00:20::1"], true),
                link("wlan-long1", &["10.20.1.1"], false),
            ],
            totals: Totals {
                connections_open: 1,
                connections_total: 57,
                bytes_up: 12 << 20,
                bytes_down: 600 << 20,
                ..Totals::default()
            },
            connections: vec![Connection {
                id: 3,
                client: "10.10.0.2:40312".parse().unwrap(),
                destination: "10.30.0.2:5201".parse().unwrap(),
                age_secs: 62,
                bytes_up: 12 << 20,
                bytes_down: 600 << 20,
                up_bits_per_sec: 0,
                down_bits_per_sec: 95_300_000,
                transport: Transport::Mptcp,
                fallback: Some(false),
                subflows: Some(vec![
                    sf("10.20.0.1:40312", "wan0"),
                    sf("10.20.1.1:51234", "wlan-long1"),
                ]),
            }],
            connections_omitted: 4,
            subflows_unavailable: None,
        }
    }

    /// The character offsets where each heading of `line` starts.
    fn starts(line: &str, words: &[&str]) -> Vec<usize> {
        words
            .iter()
            .map(|w| {
                let byte = line.find(w).unwrap_or_else(|| panic!("{w} in {line:?}"));
                line[..byte].chars().count()
            })
            .collect()
    }

    #[test]
    fn table_columns_line_up_whatever_the_cell_widths_and_colours() {
        let mut t = Table::default();
        t.row(vec![Cell::new("a"), Cell::new("bb"), Cell::new("c")]);
        t.row(vec![
            Cell::painted("longer", Paint::Red),
            Cell::new("→x"),
            Cell::new("d"),
        ]);
        t.row(vec![Cell::new(""), Cell::new("e")]);
        let text = t.render("  ", false);
        assert_eq!(text, "  a       bb  c\n  longer  →x  d\n          e\n");
        // Colour adds codes only: without them the text is the same.
        let coloured = t.render("  ", true);
        assert!(coloured.contains("\x1b[31mlonger\x1b[0m"));
        assert_eq!(plain(&coloured), text);
    }

    #[test]
    fn the_status_lines_up_links_and_connections_and_colours_only_when_asked() {
        let status = sample();
        let text = render(&status, false);
        assert!(!text.contains('\x1b'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("mpbridge local  pid 4242  up 2m05s"));
        // Each link's state starts where the "state" heading does.
        let heading = lines.iter().find(|l| l.contains("addresses")).unwrap();
        let at = starts(heading, &["state", "rtt", "subflows"]);
        for name in ["wan0", "wlan-long1"] {
            let row = lines
                .iter()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap();
            let state = if name == "wan0" { "up " } else { "down" };
            assert_eq!(starts(row, &[state])[0], at[0], "{row}");
        }
        assert!(text.contains("95.3 Mbit/s"), "{text}");
        // The connection and its two subflows, the "path" column aligned.
        let heading = lines.iter().find(|l| l.contains("down/s")).unwrap();
        let path_at = starts(heading, &["path"])[0];
        let conn = lines
            .iter()
            .find(|l| l.contains("10.10.0.2:40312 →"))
            .unwrap();
        assert_eq!(starts(conn, &["mptcp, 2 subflows"])[0], path_at, "{text}");
        for link in ["wan0 established 0.5 ms", "wlan-long1 established"] {
            let row = lines.iter().find(|l| l.contains(link)).unwrap();
            assert_eq!(starts(row, &[link])[0], path_at, "{text}");
        }
        assert!(text.contains("… and 4 more"), "{text}");
        // On a terminal: the same text with colour codes.
        let coloured = render(&status, true);
        assert!(coloured.contains("\x1b[32mup\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[31mdown\x1b[0m"));
        assert_eq!(plain(&coloured), text);
    }

    #[test]
    fn unavailable_subflows_and_fallbacks_are_said_so() {
        let mut status = sample();
        status.subflows_unavailable = Some("the kernel refused MPTCP_INFO".into());
        status.connections[0].subflows = None;
        status.connections[0].fallback = None;
        status.links.clear();
        let text = render(&status, false);
        assert!(text.contains("subflows unavailable: the kernel refused MPTCP_INFO"));
        assert!(text.contains("no [[link]] configured"));
        status.connections[0].fallback = Some(true);
        assert!(render(&status, false).contains("tcp (MPTCP fell back)"));
    }

    #[test]
    fn units_are_short_and_exact() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(600 << 20), "600.0 MiB");
        assert_eq!(rate(950), "950 bit/s");
        assert_eq!(rate(95_300_000), "95.3 Mbit/s");
        assert_eq!(rate(12_900_000_000), "12.9 Gbit/s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3 * 3600 + 7 * 60), "3h07m");
        assert_eq!(duration(2 * 86400 + 4 * 3600), "2d04h");
        assert_eq!(rtt(0.42), "0.4 ms");
        assert_eq!(rtt(23.4), "23 ms");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(percent(2.5), "2.5 %");
        assert_eq!(percent(100.0), "100 %");
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let value = serde_json::to_value(sample()).unwrap();
        for key in [
            "mode",
            "pid",
            "daemon_version",
            "uptime_secs",
            "links",
            "totals",
            "connections",
            "connections_omitted",
            "subflows_unavailable",
        ] {
            assert!(value.get(key).is_some(), "no {key}");
        }
        let link = &value["links"][0];
        assert_eq!(link["interface"], "wan0");
        assert_eq!(link["state"], "up");
        assert_eq!(link["addresses"][1], "fd00:20::1");
        assert_eq!(link["tx_bits_per_sec"], 95_300_000);
        assert_eq!(value["totals"]["refused"]["auth"], 0);
        assert_eq!(value["totals"]["errors"]["reset"], 0);
        let conn = &value["connections"][0];
        assert_eq!(conn["client"], "10.10.0.2:40312");
        assert_eq!(conn["fallback"], false);
        assert_eq!(conn["subflows"][1]["link"], "wlan-long1");
        assert_eq!(conn["subflows"][0]["local"], "10.20.0.1:40312");
        // It reads back as it was.
        let back: Status = serde_json::from_value(value).unwrap();
        assert_eq!(back, sample());
    }
}
