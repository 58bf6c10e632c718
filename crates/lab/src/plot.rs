//! The SVG picture of a run (`--plot`): one panel per timed flow, goodput
//! and each link's traffic over time, failures shaded and restores marked,
//! with titles and a legend that explain it without the code.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::measure;
use crate::report::Report;
use crate::scenario::{Failure, Series};

/// Line colours of links 0, 1, 2, … (then repeated).
const LINK_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];
const DOWN: RGBColor = RGBColor(214, 39, 40);
const BLACKHOLE: RGBColor = RGBColor(120, 40, 160);
const RESTORED: RGBColor = RGBColor(0, 140, 60);

const WIDTH: u32 = 1100;
const HEADER: u32 = 130;
const PANEL: u32 = 360;

/// One panel: a title and the flow it shows.
struct Panel<'a> {
    title: String,
    series: &'a Series,
}

fn panels(report: &Report) -> Vec<Panel<'_>> {
    let mut panels = Vec::new();
    if let Some(a) = &report.aggregate {
        panels.push(Panel {
            title: format!(
                "Aggregation: one TCP flow through mpbridge — {:.1} Mbit/s, {:.0} % of the {:.1} Mbit/s the links carry one by one",
                a.bridge, a.percent_of_limit, a.limit
            ),
            series: &a.series,
        });
    }
    for f in &report.failover {
        let p = &f.plan;
        let regained = match f.regained_after {
            Some(t) => format!(
                "link {} carries data again {t:.1} s after its return",
                p.link
            ),
            None => format!("link {} not used again within the run", p.link),
        };
        panels.push(Panel {
            title: format!(
                "Failover ({}): link {} {} at {} s, back at {} s — nothing received for {:.0} ms (under 10 % for {:.1} s), {regained}",
                p.direction.name(),
                p.link,
                p.failure.state(),
                p.fail_at,
                p.restore_at,
                f.longest_stall * 1000.0,
                f.longest_dip
            ),
            series: &f.series,
        });
    }
    if let Some(i) = &report.integrity {
        panels.push(Panel {
            title: format!(
                "Integrity: {:.0} MB each way over one connection while links fail — SHA-256 {}",
                i.plan.bytes as f64 / 1e6,
                if i.intact { "intact" } else { "MISMATCH" }
            ),
            series: &i.series,
        });
    }
    panels
}

/// Draws `report` into an SVG file at `path`.
pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let panels = panels(report);
    anyhow::ensure!(
        !panels.is_empty(),
        "scenario {} has no flow over time to plot",
        report.scenario
    );
    let height = HEADER + PANEL * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(&root, report, &panels)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", path.display()))?;
    root.present()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &Report,
    panels: &[Panel],
) -> DrawResult {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    header.draw(&Text::new(
        format!("mpbridge lab, {}: {}", report.scenario, report.links_line()),
        (20, 12),
        ("sans-serif", 22).into_font().style(FontStyle::Bold),
    ))?;
    for (i, line) in [
        "client ⇄ router A ⇄ the links ⇄ router B ⇄ server: one TCP connection from the client, carried by mpbridge over all links.",
        "Black: goodput, what the receiving program got (server → client), averaged over 0.5 s; grey: the same per 100 ms (its peaks clipped).",
        "Coloured: traffic arriving at router A on each link (its byte counter, per 100 ms).",
        "Shaded: a link has failed (red: interface down; purple: black hole, packets silently dropped). Green line: the link is back.",
    ]
    .iter()
    .enumerate()
    {
        header.draw(&Text::new(
            *line,
            (20, 44 + 20 * i as i32),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    let areas = body.split_evenly((panels.len(), 1));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    Ok(())
}

/// A legend line: a swatch (a line of some width, or a filled box) and its text.
enum Swatch {
    Line(RGBAColor, u32),
    Box(RGBAColor),
}

/// Width of the legend column right of each chart.
const LEGEND_WIDTH: u32 = 250;

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> DrawResult {
    let s = panel.series;
    let rates = measure::link_rates(&s.links);
    let goodput: Vec<(f64, f64)> = s.goodput.iter().map(|i| (i.end, i.mbit_per_s())).collect();
    let x_max = goodput
        .iter()
        .map(|p| p.0)
        .chain(rates.iter().map(|r| r.0))
        .fold(1.0_f64, f64::max);
    // Scaled to the averaged goodput and the links: single 100 ms spikes
    // (data released at once after a hole is filled) are clipped.
    let smooth = moving_average(&goodput, 5);
    let y_top = smooth
        .iter()
        .map(|p| p.1)
        .chain(rates.iter().flat_map(|r| r.1.iter().copied()))
        .fold(1.0_f64, f64::max);
    let y_max = y_top * 1.2;
    let goodput: Vec<(f64, f64)> = goodput.iter().map(|&(t, v)| (t, v.min(y_max))).collect();

    let (title_area, rest) = area.split_vertically(30);
    title_area.draw(&Text::new(
        panel.title.clone(),
        (20, 10),
        ("sans-serif", 16).into_font().style(FontStyle::Bold),
    ))?;
    let (plot_area, legend_area) = rest.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the flow started")
        .y_desc("Mbit/s")
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    let mut legend: Vec<(String, Swatch)> = Vec::new();

    // Failure windows, shaded by kind, with what failed written in them;
    // with many windows only the link number fits.
    let few = s.events.iter().filter(|e| !e.restored).count() <= 4;
    let mut kinds_seen: Vec<Failure> = Vec::new();
    for fail in s.events.iter().filter(|e| !e.restored) {
        let end = s
            .events
            .iter()
            .find(|r| r.restored && r.link == fail.link && r.t >= fail.t)
            .map_or(x_max, |r| r.t);
        let colour = failure_colour(fail.failure);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(fail.t, 0.0), (end, y_max)],
            colour.mix(0.13).filled(),
        )))?;
        if !kinds_seen.contains(&fail.failure) {
            legend.push((
                format!("link {}", fail.failure.state()),
                Swatch::Box(colour.mix(0.3)),
            ));
            kinds_seen.push(fail.failure);
        }
        let text = if few {
            format!("link {} {}", fail.link, fail.failure.state())
        } else {
            format!("L{}", fail.link)
        };
        chart.draw_series(std::iter::once(Text::new(
            text,
            (fail.t + 0.05 * (end - fail.t).min(1.0), y_max * 0.97),
            ("sans-serif", 13).into_font().color(&colour),
        )))?;
    }
    for (i, back) in s.events.iter().filter(|e| e.restored).enumerate() {
        chart.draw_series(LineSeries::new(
            [(back.t, 0.0), (back.t, y_max)],
            RESTORED.stroke_width(2),
        ))?;
        if i == 0 {
            legend.push(("link restored".into(), Swatch::Line(RESTORED.to_rgba(), 2)));
        }
        if few {
            chart.draw_series(std::iter::once(Text::new(
                format!("link {} back", back.link),
                (back.t, y_max * 0.91),
                ("sans-serif", 13).into_font().color(&RESTORED),
            )))?;
        }
    }

    let links = rates.first().map_or(0, |r| r.1.len());
    for link in 0..links {
        let colour = LINK_COLOURS[link % LINK_COLOURS.len()];
        chart.draw_series(LineSeries::new(
            rates.iter().map(|(t, r)| (*t, r[link])),
            colour.stroke_width(2),
        ))?;
        legend.push((
            format!("link {link} (wan{link}) at router A"),
            Swatch::Line(colour.to_rgba(), 2),
        ));
    }
    chart.draw_series(LineSeries::new(goodput, BLACK.mix(0.3).stroke_width(1)))?;
    chart.draw_series(LineSeries::new(smooth, BLACK.stroke_width(3)))?;
    legend.push((
        "goodput, 0.5 s average".into(),
        Swatch::Line(BLACK.to_rgba(), 3),
    ));
    legend.push((
        "goodput per 100 ms (peaks clipped)".into(),
        Swatch::Line(BLACK.mix(0.3), 1),
    ));

    for (i, (text, swatch)) in legend.iter().enumerate() {
        let y = 24 + 22 * i as i32;
        match swatch {
            Swatch::Line(colour, width) => legend_area.draw(&PathElement::new(
                [(6, y), (30, y)],
                colour.stroke_width(*width),
            ))?,
            Swatch::Box(colour) => {
                legend_area.draw(&Rectangle::new([(6, y - 7), (30, y + 7)], colour.filled()))?
            }
        }
        legend_area.draw(&Text::new(
            text.clone(),
            (38, y - 7),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}

fn failure_colour(failure: Failure) -> RGBColor {
    match failure {
        Failure::Down => DOWN,
        Failure::Blackhole => BLACKHOLE,
    }
}

/// Centred moving average over `n` points (fewer at the ends).
fn moving_average(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    let half = n / 2;
    (0..points.len())
        .map(|i| {
            let window = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let mean = window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iperf::Interval;
    use crate::measure::LinkSample;
    use crate::plan::LinkSpec;
    use crate::scenario::{Direction, Event, Failover, FailoverPlan};

    #[test]
    fn a_failover_plot_has_its_title_legend_and_marks() {
        let links: Vec<LinkSample> = (0..50)
            .map(|k| LinkSample {
                t: k as f64 * 0.1,
                tx_bytes: vec![0, 0],
                rx_bytes: vec![k * 600_000, k * 600_000],
                subflow_rx_bytes: vec![0, 0],
                app_rx_bytes: None,
            })
            .collect();
        let goodput = (0..50)
            .map(|k| Interval {
                start: k as f64 * 0.1,
                end: (k + 1) as f64 * 0.1,
                bytes: 1_200_000,
            })
            .collect();
        let event = |t, restored| Event {
            t,
            link: 0,
            failure: Failure::Down,
            restored,
            unix: None,
        };
        let mut report = Report::new("failover", &vec![LinkSpec::shaped(50); 2]);
        report.failover.push(Failover {
            plan: FailoverPlan {
                failure: Failure::Down,
                link: 0,
                direction: Direction::Download,
                fail_at: 1.0,
                restore_at: 3.0,
                secs: 5.0,
            },
            longest_stall: 0.2,
            stall_began: 0.0,
            longest_dip: 0.2,
            before_mbit: 96.0,
            survivors_mbit: 48.0,
            after_mbit: 96.0,
            regained_after: Some(0.3),
            received_bytes: 1,
            silences: Vec::new(),
            series: Series {
                goodput,
                links,
                events: vec![event(1.0, false), event(3.0, true)],
            },
        });
        let path = std::env::temp_dir().join(format!("mpblab-plot-{}.svg", std::process::id()));
        write_svg(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        for needle in [
            "<svg",
            "Failover (download): link 0 down at 1 s, back at 3 s",
            "seconds since the flow started",
            "link 0 back",
            "goodput, 0.5 s average",
            "link 1 (wan1) at router A",
        ] {
            assert!(svg.contains(needle), "{needle:?} not in the SVG");
        }
    }

    #[test]
    fn the_average_is_centred_and_shorter_at_the_ends() {
        let pts: Vec<(f64, f64)> = [0.0, 10.0, 20.0, 30.0, 40.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, *v))
            .collect();
        let avg = moving_average(&pts, 3);
        assert_eq!(avg[0], (0.0, 5.0));
        assert_eq!(avg[2], (2.0, 20.0));
        assert_eq!(avg[4], (4.0, 35.0));
    }

    #[test]
    fn a_run_without_flows_cannot_be_plotted() {
        let report = Report::new("throughput", &[LinkSpec::UNSHAPED]);
        let path = std::env::temp_dir().join("mpblab-never-written.svg");
        assert!(write_svg(&report, &path).is_err());
        assert!(!path.exists());
    }
}
