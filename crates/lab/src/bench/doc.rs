//! What a bench run leaves: docs/BENCHMARKS.md (the tables with medians,
//! spread and ratios, the machine, the peer's build, the exact command and
//! the targets) and an SVG of the same figures as bars.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::peer;
use super::{BenchReport, Case, Figure, Subject};
use crate::scenario::{Direction, Failure};
use crate::LinkSpec;

/// `median [min–max]` with `digits` decimals; `—` when there is nothing.
pub(super) fn fig(f: &Figure, digits: usize) -> String {
    if f.is_empty() || f.median().is_nan() {
        return "—".into();
    }
    if f.samples.len() == 1 {
        return format!("{:.*}", digits, f.median());
    }
    format!(
        "{:.*} [{:.*}–{:.*}]",
        digits,
        f.median(),
        digits,
        f.min(),
        digits,
        f.max()
    )
}

/// `a / b` of the medians as a percentage, `—` if either is missing.
fn pct(a: &Figure, b: &Figure) -> String {
    let r = a.median() / b.median();
    if r.is_finite() {
        format!("{:.0} %", 100.0 * r)
    } else {
        "—".into()
    }
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "—".into()
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("—".into(), |b| format!("{:.2} MiB", b as f64 / 1048576.0))
}

fn links_label(rates: &[u32]) -> String {
    if rates.iter().all(|r| *r == rates[0]) {
        format!("{} × {} Mbit/s", rates.len(), rates[0])
    } else {
        format!(
            "{} Mbit/s",
            rates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        )
    }
}

/// A target of the issue and how this run fared.
struct Target {
    what: &'static str,
    figure: String,
    met: Option<bool>,
}

fn targets(r: &BenchReport) -> Vec<Target> {
    let mut out = Vec::new();
    let worst = |case: Case| -> Option<(f64, String)> {
        r.shaped
            .iter()
            .filter(|s| s.case == case)
            .flat_map(|s| {
                s.per_flows.iter().map(move |f| {
                    (
                        f.mpbridge.median() / s.limit.median(),
                        format!("{}, {} flow(s)", links_label(&s.links), f.flows),
                    )
                })
            })
            .filter(|(v, _)| v.is_finite())
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    for (case, what, bound) in [
        (
            Case::Equal,
            "≥ 98 % of the limit on equal links (worst case)",
            0.98,
        ),
        (Case::Mixed, "≥ 90 % of the limit on mixed links", 0.90),
    ] {
        if let Some((v, label)) = worst(case) {
            out.push(Target {
                what,
                figure: format!("{:.1} % ({label})", 100.0 * v),
                met: Some(v >= bound),
            });
        }
    }
    if let Some(u) = &r.unshaped {
        let sum = |s: Subject| -> f64 {
            u.cpu
                .iter()
                .filter(|c| c.subject == s)
                .map(|c| c.s_per_gb.median())
                .sum()
        };
        let (m, p) = (sum(Subject::Mpbridge), sum(Subject::Peer));
        if m.is_finite() && p.is_finite() && m > 0.0 && p > 0.0 {
            out.push(Target {
                what: "≥ 2× the peer's goodput per CPU second, unshaped (both routers)",
                figure: format!("{:.2}× ({m:.2} against {p:.2} CPU s per GB)", p / m),
                met: Some(p / m >= 2.0),
            });
        }
    }
    if let Some(s) = &r.setup {
        let get = |subject| s.rows.iter().find(|x| x.subject == subject);
        if let (Some(d), Some(m)) = (get(Subject::Limit), get(Subject::Mpbridge)) {
            let v = m.per_sec.median() / d.per_sec.median();
            out.push(Target {
                what: "connection set-up within 10 % of direct (connections per second)",
                figure: format!("{:.0} % of direct", 100.0 * v),
                met: Some(v >= 0.9),
            });
        }
    }
    if let Some(c) = &r.conns {
        for (what, figure, met) in super::conns::targets(c) {
            out.push(Target { what, figure, met });
        }
    }
    out
}

/// The whole of docs/BENCHMARKS.md. `svg_name` is the picture's file name
/// beside it, if one was drawn.
pub fn markdown(r: &BenchReport, svg_name: Option<&str>, note: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Benchmarks: mpbridge, shadowsocks-rust and the physical limit\n"
    );
    let _ = writeln!(
        o,
        "Written by `mpbridge-lab bench` — do not edit by hand. To regenerate it (as root, on a \
         Debian machine with MPTCP; the first run builds the peer):\n\n```sh\nscripts/bench.sh\n```\n"
    );
    let _ = writeln!(
        o,
        "This run: `{}`, {}, {:.0} min{}.\n",
        r.command,
        r.date,
        r.wall_seconds / 60.0,
        if r.quick {
            " — **quick mode: short flows, one round; a smoke test, not figures to quote**"
        } else {
            ""
        }
    );
    let m = &r.machine;
    let _ = writeln!(
        o,
        "- Machine: {}, {} cores, {:.0} GiB, Linux {}.",
        m.cpu, m.cores, m.memory_gib, m.kernel
    );
    if r.delay_line {
        let _ = writeln!(
            o,
            "- Delays: the lab's delay line (NFQUEUE, packets held on arrival) on this kernel, \
             not netem."
        );
    }
    let _ = writeln!(
        o,
        "- Load average (1, 5, 15 min) before: {}; after: {}.{}",
        first3(&r.load_before),
        first3(&r.load_after),
        if note.is_empty() {
            String::new()
        } else {
            format!(" {note}")
        }
    );
    if !r.local_extra.is_empty() {
        let _ = writeln!(
            o,
            "- mpbridge local ran with these extra `[local]` settings: `{}`.",
            r.local_extra.replace('\n', "; ")
        );
    }
    match &r.peer {
        Some(p) => {
            let _ = write!(
                o,
                "- Peer: shadowsocks-rust {} (`sslocal --protocol redir --tcp-redir tproxy` on \
                 router A, `ssserver` on router B, both `--tcp-multipath` (its MPTCP switch), `-m none --tcp-no-delay`), \
                 installed by `cargo install shadowsocks-rust --version {} --features {} --locked` \
                 into a cache outside the repository.",
                p.version,
                peer::VERSION,
                peer::FEATURES
            );
            match &p.cold_build {
                Some(b) => {
                    let _ = writeln!(
                        o,
                        " Its cold build took {:.1} min ({}; load average then {}).",
                        b.seconds / 60.0,
                        b.date,
                        first3(&b.load_before)
                    );
                }
                None => {
                    let _ = writeln!(o, " (Its build was not timed in this cache.)");
                }
            }
        }
        None => {
            let _ = writeln!(o, "- Peer: not run (`--no-peer`).");
        }
    }
    let _ = writeln!(
        o,
        "\nThe lab: client — router A — N veth links shaped with tbf — router B — server, each in \
         its own network namespace. mpbridge runs as `mpbridge local` / `mpbridge remote` with \
         its defaults (TPROXY, TCP Fast Open, probes every 20 ms). The peer gets the same \
         kernel MPTCP set-up — limits, one `subflow` endpoint per link, per-link policy routing — \
         from `mpbridge paths local|remote` (mpbridge's path manager without its proxy, probing \
         off), and the same TPROXY interception as an nftables table in router A. The **limit** \
         is each link alone (one TCP flow per link, all links at once, summed) on shaped links, \
         and plain routing (no proxy) on unshaped ones. Each round runs every subject once, the \
         order reversed every other round; {} round(s). Figures are medians with [min–max] over \
         the rounds; ratios are of medians. iperf3 flows go server → client unless said, 1 s of \
         slow start left out, then {} s measured.\n",
        r.rounds,
        if r.quick { 2 } else { 6 }
    );

    let targets = targets(r);
    if !targets.is_empty() {
        let _ = writeln!(o, "## Targets\n");
        let _ = writeln!(o, "| target | this run | met |\n| --- | --- | --- |");
        for t in targets {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(o, "| {} | {} | {met} |", t.what, t.figure);
        }
        let _ = writeln!(o);
    }
    if let Some(svg) = svg_name {
        let _ = writeln!(o, "![The figures below as bars]({svg})\n");
    }

    if !r.shaped.is_empty() {
        let _ = writeln!(
            o,
            "## 1–2. Shaped links: goodput (Mbit/s)\n\n| links | flows | limit | mpbridge | peer | \
             mpbridge / limit | peer / limit | mpbridge / peer |\n| --- | --- | --- | --- | --- | \
             --- | --- | --- |"
        );
        for s in &r.shaped {
            for f in &s.per_flows {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    links_label(&s.links),
                    f.flows,
                    fig(&s.limit, 1),
                    fig(&f.mpbridge, 1),
                    fig(&f.peer, 1),
                    pct(&f.mpbridge, &s.limit),
                    pct(&f.peer, &s.limit),
                    pct(&f.mpbridge, &f.peer)
                );
            }
        }
        let _ = writeln!(o);
    }

    if let Some(u) = &r.unequal {
        o.push_str(&super::unequal::markdown(u));
    }

    if let Some(u) = &r.unshaped {
        let _ = writeln!(
            o,
            "## 3. Unshaped links ({} links): goodput (Mbit/s, one flow) and CPU\n\n| direction | \
             plain routing | mpbridge | peer | mpbridge / routing | mpbridge / peer |\n| --- | --- \
             | --- | --- | --- | --- |",
            u.links
        );
        for d in &u.directions {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                d.name,
                fig(&d.limit, 0),
                fig(&d.mpbridge, 0),
                fig(&d.peer, 0),
                pct(&d.mpbridge, &d.limit),
                pct(&d.mpbridge, &d.peer)
            );
        }
        let _ = writeln!(
            o,
            "\nCPU time (user + system, from `/proc/PID/stat`) of each proxy process per GB it \
             relayed (both flows together):\n\n| process | CPU s per GB | GB per CPU s |\n| --- | \
             --- | --- |"
        );
        for c in &u.cpu {
            let _ = writeln!(
                o,
                "| {} | {} | {:.2} |",
                c.process,
                fig(&c.s_per_gb, 2),
                1.0 / c.s_per_gb.median()
            );
        }
        let side = |name: &str| {
            u.cpu
                .iter()
                .find(|c| c.process == name)
                .map_or(f64::NAN, |c| c.s_per_gb.median())
        };
        let _ = writeln!(
            o,
            "\nGoodput per CPU second, mpbridge against the peer: router A {} (`mpbridge local` \
             against `sslocal`), router B {} (`mpbridge remote` against `ssserver`).\n",
            ratio(side("sslocal"), side("mpbridge local")),
            ratio(side("ssserver"), side("mpbridge remote"))
        );
    }

    if let Some(s) = &r.setup {
        let _ = writeln!(
            o,
            "## 4. Connection set-up\n\n{} clients at once, each doing one exchange after the \
             other for {} s: connect, 1 KB request, 1 KB reply, the server closes, the client \
             closes. Over unshaped links. CPU: user + system time of the proxy's two processes \
             per exchange.\n\n| path | connections / s | median ms | p90 ms | CPU µs per \
             connection | failed | of direct |\n| --- | --- | --- | --- | --- | --- | --- |",
            s.workers, s.secs
        );
        let direct = s.rows.iter().find(|x| x.subject == Subject::Limit);
        for row in &s.rows {
            let name = match row.subject {
                Subject::Limit => "direct (plain routing)",
                Subject::Mpbridge => "mpbridge",
                Subject::Peer => "peer",
            };
            let _ = writeln!(
                o,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                fig(&row.per_sec, 0),
                fig(&row.median_ms, 2),
                fig(&row.p90_ms, 2),
                fig(&row.cpu_us_per_conn, 0),
                row.failed,
                direct.map_or("—".into(), |d| pct(&row.per_sec, &d.per_sec))
            );
        }
        let _ = writeln!(o);
    }

    if let Some(idle) = &r.idle {
        let n = idle.connections as f64;
        let _ = writeln!(
            o,
            "## 5. Memory with {} idle connections\n\nEach connection carried one byte each way \
             (so the whole chain is set up), then stays open. Resident memory of each proxy \
             process (KiB; the kernel's socket buffers are not in it).\n\n| process | VmRSS idle \
             | VmRSS with connections | per connection | Pss with connections |\n| --- | --- | \
             --- | --- | --- |",
            idle.connections
        );
        for row in &idle.rows {
            let per = (row.rss_kib.median() - row.rss_idle_kib.median()) / n;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.1} | {} |",
                row.process,
                fig(&row.rss_idle_kib, 0),
                fig(&row.rss_kib, 0),
                per,
                fig(&row.pss_kib, 0)
            );
        }
        let _ = writeln!(o);
    }

    if let Some(why) = &r.failover_skipped {
        let _ = writeln!(o, "## 6. Failover\n\nNot run: {why}.\n");
    }
    if !r.failover.is_empty() {
        let _ = writeln!(
            o,
            "## 6. Failover ({}, one long flow each way; link 0, which carries the \
             first subflow, fails and comes back)\n\n\"Kernel only\" is `[probe] enabled = \
             false`: the path manager still takes a link's endpoints away when the kernel reports \
             it down, but nothing notices a black hole except TCP itself. A download has router B \
             resend what the failed link lost, an upload router A. Stall: longest time the \
             receiving application got no byte at all (ms); below 10 %: longest time under a \
             tenth of the goodput before (100 ms steps). Regained: time from the restore until \
             the link carried the connection's data again.{}\n\n| flow | failure | configuration \
             | before | on survivors | after | stall ms | below 10 % s | regained s |\n| --- | \
             --- | --- | --- | --- | --- | --- | --- | --- |",
            failover_links_words(&r.failover_links),
            failover_variants_words(r)
        );
        for f in &r.failover {
            let regained = if f.not_regained > 0 {
                format!(
                    "{} (not in {} run(s))",
                    fig(&f.regained_s, 1),
                    f.not_regained
                )
            } else {
                fig(&f.regained_s, 1)
            };
            let stall_ms = Figure {
                samples: f.stall_s.samples.iter().map(|s| s * 1000.0).collect(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.direction.name(),
                f.failure.name(),
                f.subject,
                fig(&f.before_mbit, 1),
                fig(&f.survivors_mbit, 1),
                fig(&f.after_mbit, 1),
                fig(&stall_ms, 0),
                fig(&f.dip_s, 1),
                regained
            );
        }
        let _ = writeln!(o);
    }

    if !r.failures.is_empty() {
        let _ = writeln!(
            o,
            "## Measurements that failed\n\nLeft out of the medians above:\n"
        );
        for f in &r.failures {
            let _ = writeln!(o, "- {f}");
        }
        let _ = writeln!(o);
    }

    if let Some(s) = &r.sizes {
        let _ = writeln!(
            o,
            "## 7. Binary size\n\n| binary | size |\n| --- | --- |\n| `mpbridge` (`router` \
             profile: opt-level z, LTO, stripped; local, remote and path manager in one) | {} |\n\
             | `sslocal` as `cargo install` built it | {} |\n| `sslocal` stripped | {} |\n| \
             `ssserver` as built | {} |\n| `ssserver` stripped | {} |\n\nThe peer is built with \
             its default features (`full`, which includes `local-redir`) and its own release \
             profile.\n",
            mib(s.mpbridge_router),
            mib(s.sslocal),
            mib(s.sslocal_stripped),
            mib(s.ssserver),
            mib(s.ssserver_stripped)
        );
    }
    if let Some(c) = &r.conns {
        super::conns::markdown(c, &mut o);
    }
    o
}

/// Case 6's links for its heading: `2 × 50 Mbit/s` (also for runs from
/// before they could be chosen), else the `--links` text and each link in
/// words.
fn failover_links_words(links: &[LinkSpec]) -> String {
    if links.is_empty() || links == super::default_failover_links().as_slice() {
        return "2 × 50 Mbit/s".into();
    }
    let words: Vec<String> = links
        .iter()
        .enumerate()
        .map(|(i, l)| format!("link {i}: {l}"))
        .collect();
    format!(
        "links `{}` — {}",
        super::failover_links_text(links),
        words.join("; ")
    )
}

/// A sentence per `--variant` measured in case 6 (its rows are labelled
/// "mpbridge, probing, LABEL"), or nothing.
fn failover_variants_words(r: &BenchReport) -> String {
    let mut o = String::new();
    for v in &r.variants {
        let subject = format!("mpbridge, probing, {}", v.label);
        if !r.failover.iter().any(|f| f.subject == subject) {
            continue;
        }
        let lines: Vec<String> = v.lines.lines().map(|l| format!("`{l}`")).collect();
        let _ = write!(
            o,
            " \"{subject}\" is mpbridge probing with {} added to both daemons' \
             configurations (a `paths.` line to router A's `[paths]`, a `probe.` line to both \
             `[probe]`, the others to `[local]` and `[remote]`).",
            lines.join(", ")
        );
    }
    o
}

fn first3(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// The SVG
// ---------------------------------------------------------------------------

const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 330;
const COLOURS: [RGBColor; 4] = [
    RGBColor(127, 127, 127),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

fn names(series: &[&str]) -> Vec<String> {
    series.iter().map(|s| s.to_string()).collect()
}

/// One group of bars: a label and, per series, a figure.
struct Group {
    label: String,
    bars: Vec<Option<Figure>>,
}

/// A panel of grouped bars with min–max whiskers.
struct Panel {
    title: String,
    unit: String,
    series: Vec<String>,
    groups: Vec<Group>,
    /// A dashed horizontal line (a target), with its label.
    line: Option<(f64, String)>,
}

fn panels(r: &BenchReport) -> Vec<Panel> {
    let mut out = Vec::new();
    if !r.shaped.is_empty() {
        let groups = r
            .shaped
            .iter()
            .flat_map(|s| {
                let limit = s.limit.median();
                s.per_flows.iter().map(move |f| Group {
                    label: format!("{} / {}", short_links(&s.links), f.flows),
                    bars: vec![
                        Some(scaled(&f.mpbridge, 100.0 / limit)),
                        Some(scaled(&f.peer, 100.0 / limit)),
                    ],
                })
            })
            .collect();
        out.push(Panel {
            title:
                "Shaped links: goodput through each proxy, % of the limit (the links one by one)"
                    .into(),
            unit: "% of the limit".into(),
            series: names(&["mpbridge", "peer (shadowsocks-rust)"]),
            groups,
            line: Some((98.0, "98 % target".into())),
        });
    }
    if let Some(u) = &r.unshaped {
        out.push(Panel {
            title: "Unshaped links: goodput of one flow (Gbit/s)".into(),
            unit: "Gbit/s".into(),
            series: names(&["plain routing", "mpbridge", "peer (shadowsocks-rust)"]),
            groups: u
                .directions
                .iter()
                .map(|d| Group {
                    label: d.name.clone(),
                    bars: [&d.limit, &d.mpbridge, &d.peer]
                        .iter()
                        .map(|f| Some(scaled(f, 1e-3)))
                        .collect(),
                })
                .collect(),
            line: None,
        });
        let side = |name: &str| {
            u.cpu
                .iter()
                .find(|c| c.process == name)
                .map(|c| c.s_per_gb.clone())
        };
        out.push(Panel {
            title: "Unshaped links: CPU seconds per GB relayed (lower is better)".into(),
            unit: "CPU s / GB".into(),
            series: names(&["mpbridge", "peer (shadowsocks-rust)"]),
            groups: vec![
                Group {
                    label: "router A (local / sslocal)".into(),
                    bars: vec![side("mpbridge local"), side("sslocal")],
                },
                Group {
                    label: "router B (remote / ssserver)".into(),
                    bars: vec![side("mpbridge remote"), side("ssserver")],
                },
            ],
            line: None,
        });
    }
    if let Some(s) = &r.setup {
        let get = |subject| {
            s.rows
                .iter()
                .find(|x| x.subject == subject)
                .map(|x| x.per_sec.clone())
        };
        out.push(Panel {
            title: "Connection set-up: short connections per second".into(),
            unit: "connections / s".into(),
            series: names(&["direct", "mpbridge", "peer (shadowsocks-rust)"]),
            groups: vec![Group {
                label: "connect, 1 KB request, 1 KB reply, close".into(),
                bars: vec![
                    get(Subject::Limit),
                    get(Subject::Mpbridge),
                    get(Subject::Peer),
                ],
            }],
            line: None,
        });
    }
    if !r.failover.is_empty() {
        // The three configurations, each variant before the peer.
        let mut labels = names(&["mpbridge, probing", "mpbridge, kernel only"]);
        for f in &r.failover {
            if f.subject.starts_with("mpbridge, probing, ") && !labels.contains(&f.subject) {
                labels.push(f.subject.clone());
            }
        }
        labels.push("peer, kernel only".into());
        out.push(Panel {
            title: "Failover: longest time with nothing received after link 0 fails (ms, lower \
                    is better)"
                .into(),
            unit: "ms".into(),
            series: labels.clone(),
            groups: [Direction::Download, Direction::Upload]
                .iter()
                .flat_map(|&d| [(d, Failure::Down), (d, Failure::Blackhole)])
                .map(|(direction, failure)| Group {
                    label: format!("{}, link {}", direction.name(), failure.state()),
                    bars: labels
                        .iter()
                        .map(|l| {
                            r.failover
                                .iter()
                                .find(|f| {
                                    f.failure == failure
                                        && f.direction == direction
                                        && f.subject == *l
                                })
                                .map(|f| Figure {
                                    samples: f.stall_s.samples.iter().map(|s| s * 1000.0).collect(),
                                })
                        })
                        .collect(),
                })
                .collect(),
            line: None,
        });
    }
    out
}

/// `2×50`, `100+50+20`: a bar group's label.
fn short_links(rates: &[u32]) -> String {
    if rates.iter().all(|r| *r == rates[0]) {
        format!("{}×{}", rates.len(), rates[0])
    } else {
        rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("+")
    }
}

fn scaled(f: &Figure, k: f64) -> Figure {
    Figure {
        samples: f.samples.iter().map(|v| v * k).collect(),
    }
}

/// Draws the bench figures into an SVG file at `path`; false if there was
/// nothing to draw.
pub fn write_svg(r: &BenchReport, path: &Path) -> anyhow::Result<bool> {
    let panels = panels(r);
    if panels.is_empty() {
        return Ok(false);
    }
    let height = 60 + PANEL_HEIGHT * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(&root, r, &panels)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", path.display()))?;
    root.present()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(root: &Area<'_>, r: &BenchReport, panels: &[Panel]) -> DrawResult {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(60);
    header.draw(&Text::new(
        format!(
            "mpbridge against shadowsocks-rust and the limit — {}, {} round(s); bars: medians, \
             whiskers: min–max",
            r.date, r.rounds
        ),
        (20, 20),
        ("sans-serif", 18).into_font().style(FontStyle::Bold),
    ))?;
    for (area, panel) in body.split_evenly((panels.len(), 1)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    Ok(())
}

fn draw_panel(area: &Area<'_>, p: &Panel) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Text::new(
        p.title.clone(),
        (20, 8),
        ("sans-serif", 16).into_font().style(FontStyle::Bold),
    ))?;
    // Legend on the title's line, right-aligned-ish.
    for (i, name) in p.series.iter().enumerate() {
        let x = w - 260;
        let y = 34 + 18 * i as i32;
        area.draw(&Rectangle::new(
            [(x, y), (x + 14, y + 12)],
            COLOURS[colour_index(p, i)].filled(),
        ))?;
        area.draw(&Text::new(
            name.to_string(),
            (x + 20, y),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    let (left, right, top, bottom) = (80, w - 290, 40, h - 50);
    let top_value = p
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten())
        .map(|f| f.max())
        .chain(p.line.as_ref().map(|l| l.0))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        * 1.15;
    let top_value = if top_value > 0.0 { top_value } else { 1.0 };
    let y_of = |v: f64| bottom - ((v / top_value) * (bottom - top) as f64) as i32;
    // Axis and grid.
    let axis = BLACK.mix(0.6);
    area.draw(&PathElement::new(
        vec![(left, top), (left, bottom), (right, bottom)],
        axis,
    ))?;
    for k in 0..=4 {
        let v = top_value / 1.15 * k as f64 / 4.0;
        let y = y_of(v);
        area.draw(&PathElement::new(
            vec![(left, y), (right, y)],
            BLACK.mix(0.08),
        ))?;
        area.draw(&Text::new(
            short(v),
            (left - 60, y - 6),
            ("sans-serif", 12).into_font(),
        ))?;
    }
    area.draw(&Text::new(
        p.unit.clone(),
        (left - 70, top - 22),
        ("sans-serif", 12).into_font(),
    ))?;
    let groups = p.groups.len().max(1) as i32;
    let slot = (right - left) / groups;
    let bars = p.series.len().max(1) as i32;
    let bar_w = ((slot - 20) / bars).clamp(6, 60);
    for (gi, g) in p.groups.iter().enumerate() {
        let x0 = left + slot * gi as i32 + (slot - bar_w * bars) / 2;
        for (bi, bar) in g.bars.iter().enumerate() {
            let Some(f) = bar.as_ref().filter(|f| f.median().is_finite()) else {
                continue;
            };
            let x = x0 + bar_w * bi as i32;
            area.draw(&Rectangle::new(
                [(x + 2, y_of(f.median())), (x + bar_w - 2, bottom)],
                COLOURS[colour_index(p, bi)].filled(),
            ))?;
            let mid = x + bar_w / 2;
            if f.samples.len() > 1 {
                area.draw(&PathElement::new(
                    vec![(mid, y_of(f.min())), (mid, y_of(f.max()))],
                    BLACK.stroke_width(1),
                ))?;
            }
            area.draw(&Text::new(
                short(f.median()),
                (x + 2, y_of(f.median()) - 16),
                ("sans-serif", 11).into_font(),
            ))?;
        }
        area.draw(&Text::new(
            g.label.clone(),
            (left + slot * gi as i32 + 4, bottom + 8),
            ("sans-serif", 12).into_font(),
        ))?;
    }
    if let Some((v, label)) = &p.line {
        let y = y_of(*v);
        area.draw(&PathElement::new(
            vec![(left, y), (right, y)],
            RGBColor(214, 39, 40).stroke_width(1),
        ))?;
        area.draw(&Text::new(
            label.clone(),
            (right + 4, y - 6),
            ("sans-serif", 12).into_font().color(&RGBColor(214, 39, 40)),
        ))?;
    }
    Ok(())
}

/// Colours: grey for the reference (routing, direct), blue mpbridge, orange the peer.
fn colour_index(p: &Panel, i: usize) -> usize {
    if p.series[0] == "mpbridge, probing" {
        // The failover configurations: kernel only grey, the variants green.
        return match p.series[i].as_str() {
            "mpbridge, probing" => 1,
            "mpbridge, kernel only" => 0,
            "peer, kernel only" => 2,
            _ => 3,
        };
    }
    if p.series.len() == 3 {
        i
    } else {
        i + 1
    }
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn f(v: &[f64]) -> Figure {
        Figure {
            samples: v.to_vec(),
        }
    }

    fn report() -> BenchReport {
        let options = Options::default();
        let mut r = BenchReport::new(&options, "mpbridge-lab bench".into());
        r.shaped.push(Shaped {
            case: Case::Equal,
            links: vec![50, 50],
            limit: f(&[95.0, 96.0, 95.5]),
            per_flows: vec![FlowFigures {
                flows: 1,
                mpbridge: f(&[94.0, 95.0, 93.0]),
                peer: f(&[90.0, 91.0, 92.0]),
            }],
        });
        r.shaped.push(Shaped {
            case: Case::Mixed,
            links: vec![100, 50, 20],
            limit: f(&[160.0]),
            per_flows: vec![FlowFigures {
                flows: 8,
                mpbridge: f(&[150.0]),
                peer: Figure::default(),
            }],
        });
        r.setup = Some(Setup {
            workers: 4,
            secs: 3.0,
            rows: vec![
                SetupRow {
                    subject: Subject::Limit,
                    per_sec: f(&[1000.0]),
                    median_ms: f(&[1.0]),
                    p90_ms: f(&[2.0]),
                    cpu_us_per_conn: Figure::default(),
                    failed: 0,
                    runs: vec![],
                },
                SetupRow {
                    subject: Subject::Mpbridge,
                    per_sec: f(&[850.0]),
                    median_ms: f(&[1.2]),
                    p90_ms: f(&[2.5]),
                    cpu_us_per_conn: f(&[120.0]),
                    failed: 1,
                    runs: vec![],
                },
            ],
        });
        r
    }

    #[test]
    fn the_document_has_the_tables_ratios_and_targets() {
        let md = markdown(&report(), Some("benchmarks.svg"), "The machine was shared.");
        for needle in [
            "scripts/bench.sh",
            "| 2 × 50 Mbit/s | 1 | 95.5 [95.0–96.0] | 94.0 [93.0–95.0] | 91.0 [90.0–92.0] | 98 % | 95 % | 103 % |",
            "| 100 + 50 + 20 Mbit/s | 8 | 160.0 | 150.0 | — | 94 % | — | — |",
            "| ≥ 98 % of the limit on equal links (worst case) | 98.4 % (2 × 50 Mbit/s, 1 flow(s)) | yes |",
            "| ≥ 90 % of the limit on mixed links | 93.8 % (100 + 50 + 20 Mbit/s, 8 flow(s)) | yes |",
            "| connection set-up within 10 % of direct (connections per second) | 85 % of direct | **no** |",
            "| mpbridge | 850 | 1.20 | 2.50 | 120 | 1 | 85 % |",
            "![The figures below as bars](benchmarks.svg)",
            "The machine was shared.",
            "Peer: not run",
        ] {
            assert!(md.contains(needle), "{needle:?} missing in\n{md}");
        }
    }

    fn failover_row(
        direction: crate::scenario::Direction,
        failure: Failure,
        subject: &str,
        stall: f64,
    ) -> FailoverRow {
        FailoverRow {
            failure,
            direction,
            subject: subject.into(),
            before_mbit: f(&[19.0]),
            survivors_mbit: f(&[9.5]),
            after_mbit: f(&[19.0]),
            stall_s: f(&[stall]),
            dip_s: f(&[0.4]),
            regained_s: f(&[1.5]),
            not_regained: 0,
        }
    }

    #[test]
    fn a_run_from_before_failover_links_and_variants_renders_as_before() {
        let mut r = report();
        r.failover = vec![failover_row(
            crate::scenario::Direction::Download,
            Failure::Blackhole,
            "mpbridge, probing",
            0.25,
        )];
        // The JSON of a run from before the new fields.
        let mut json = serde_json::to_value(&r).unwrap();
        let fields = json.as_object_mut().unwrap();
        for key in ["failover_links", "failover_skipped", "variants"] {
            fields.remove(key);
        }
        let old: BenchReport = serde_json::from_value(json).unwrap();
        assert!(old.failover_links.is_empty() && old.variants.is_empty());
        let md = markdown(&old, None, "");
        for needle in [
            "## 6. Failover (2 × 50 Mbit/s, one long flow each way; link 0, which carries the \
             first subflow, fails and comes back)",
            "tenth of the goodput before (100 ms steps). Regained: time from the restore until \
             the link carried the connection's data again.\n\n| flow |",
            "| download | blackhole | mpbridge, probing | 19.0 | 9.5 | 19.0 | 250 | 0.4 | 1.5 |",
        ] {
            assert!(md.contains(needle), "{needle:?} missing in\n{md}");
        }
        // The same as today's default links.
        r.failover_links = default_failover_links();
        assert_eq!(markdown(&r, None, ""), md);
    }

    #[test]
    fn failover_on_delayed_links_names_them_and_shows_the_variant_rows() {
        let mut r = report();
        r.failover_links = parse_failover_links("10@5ms,10@30ms").unwrap();
        r.variants = vec![
            unequal::Variant::parse("sndbuf 1M|sndbuf = 524288").unwrap(),
            // Not measured in case 6 (no row): not described there.
            unequal::Variant::parse("other|x = 1").unwrap(),
        ];
        for direction in [
            crate::scenario::Direction::Download,
            crate::scenario::Direction::Upload,
        ] {
            for (subject, stall) in [
                ("mpbridge, probing", 1.2),
                ("mpbridge, kernel only", 1.4),
                ("mpbridge, probing, sndbuf 1M", 0.1),
                ("peer, kernel only", 2.0),
            ] {
                r.failover
                    .push(failover_row(direction, Failure::Blackhole, subject, stall));
            }
        }
        let md = markdown(&r, None, "");
        for needle in [
            "## 6. Failover (links `10@5ms,10@30ms` — link 0: 10 Mbit/s, 5 ms one way; link 1: \
             10 Mbit/s, 30 ms one way, one long flow each way;",
            "\"mpbridge, probing, sndbuf 1M\" is mpbridge probing with `sndbuf = 524288` added \
             to both daemons' configurations",
            "| download | blackhole | mpbridge, probing | 19.0 | 9.5 | 19.0 | 1200 |",
            "| download | blackhole | mpbridge, probing, sndbuf 1M | 19.0 | 9.5 | 19.0 | 100 |",
            "| upload | blackhole | mpbridge, probing, sndbuf 1M | 19.0 | 9.5 | 19.0 | 100 |",
            "| upload | blackhole | peer, kernel only | 19.0 | 9.5 | 19.0 | 2000 |",
        ] {
            assert!(md.contains(needle), "{needle:?} missing in\n{md}");
        }
        assert!(!md.contains("\"mpbridge, probing, other\""), "{md}");
        let panels = panels(&r);
        let p = panels
            .iter()
            .find(|p| p.title.starts_with("Failover"))
            .unwrap();
        assert_eq!(
            p.series,
            [
                "mpbridge, probing",
                "mpbridge, kernel only",
                "mpbridge, probing, sndbuf 1M",
                "peer, kernel only"
            ]
        );
        let colours: Vec<usize> = (0..4).map(|i| colour_index(p, i)).collect();
        assert_eq!(colours, [1, 0, 3, 2]);
        let bars = &p.groups[1].bars;
        assert_eq!(p.groups[1].label, "download, link black-holed");
        assert_eq!(bars[2].as_ref().unwrap().median(), 100.0);
        let path = std::env::temp_dir().join(format!("mpblab-bench-fo-{}.svg", std::process::id()));
        assert!(write_svg(&r, &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("mpbridge, probing, sndbuf 1M"));
    }

    #[test]
    fn case_6_not_run_says_why() {
        let mut r = report();
        r.failover_skipped = Some("its links (10@5ms,10@30ms) need netem".into());
        let md = markdown(&r, None, "");
        assert!(
            md.contains("## 6. Failover\n\nNot run: its links (10@5ms,10@30ms) need netem.\n"),
            "{md}"
        );
    }

    #[test]
    fn the_svg_draws_a_panel_per_kind_of_figure() {
        let path = std::env::temp_dir().join(format!("mpblab-bench-{}.svg", std::process::id()));
        assert!(write_svg(&report(), &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("% of the limit"), "shaped panel");
        assert!(svg.contains("short connections per second"), "setup panel");
        assert!(svg.contains("98 % target"));
    }
}
