//! BENCHMARKS.md and the plot of throughput and p99 against concurrency.
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

use crate::stats::{format_value, Figures};

pub struct Machine {
    pub lines: Vec<(String, String)>,
}

impl Machine {
    pub async fn describe(postgres: String, nats: String) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kb: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let nproc = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let load = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            lines: vec![
                ("nproc".into(), nproc.to_string()),
                ("CPU".into(), cpu),
                ("RAM".into(), format!("{:.1} GiB", mem_kb / 1024.0 / 1024.0)),
                (
                    "kernel (uname -r)".into(),
                    read("/proc/sys/kernel/osrelease").trim().to_owned(),
                ),
                ("Postgres".into(), postgres),
                ("NATS server".into(), nats),
                ("load average at start".into(), load),
            ],
        }
    }
}

/// One line of the plot: a label and (concurrency, throughput, p99 ms) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(usize, f64, f64)>,
}

pub fn plot(path: &Path, title: &str, series: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let max_x = 32.0f64;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let max_tp = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let max_p99 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.2))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    for (area, which) in [(left, 0), (right, 1)] {
        let (caption, top) = if which == 0 {
            (format!("{title}: throughput (ops/s)"), max_tp * 1.1)
        } else {
            (format!("{title}: p99 latency (ms)"), max_p99 * 1.1)
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0f64..max_x + 1.0, (0.1f64..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("concurrent clients")
            .x_labels(8)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.0 as f64, if which == 0 { p.1 } else { p.2 }))
                .filter(|p| p.1.is_finite() && p.1 > 0.0)
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// plotters draws text with a font it is given: DejaVu Sans when the
/// system has it (without one, the plot has lines but no labels).
fn register_font() {
    for path in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
            return;
        }
    }
}

pub struct Document<'a> {
    pub title: String,
    pub quick: bool,
    pub command: String,
    pub machine: &'a Machine,
    pub scale: String,
    pub figures: &'a Figures,
    pub plot_file: String,
    pub notes: Vec<String>,
    pub log: Option<String>,
}

pub fn markdown(doc: &Document) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", doc.title);
    if doc.quick {
        let _ = writeln!(
            out,
            "> **QUICK RUN** (`--quick`): small seed and short windows; for a smoke check, \
             not for the record. The full run is in BENCHMARKS.md.\n"
        );
    }
    let _ = writeln!(out, "Generated by the load driver (`benches/load.rs`).\n");
    let _ = writeln!(out, "## Command\n\n```sh\n{}\n```\n", doc.command);
    let _ = writeln!(out, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &doc.machine.lines {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    let _ = writeln!(out, "\nScale: {}\n", doc.scale);
    let _ = writeln!(
        out,
        "## Targets\n\n| figure | value | target | met |\n|---|---|---|---|"
    );
    for line in doc.figures.lines.iter().filter(|l| l.target.is_some()) {
        let target = line.target.as_ref().map(|t| t.text()).unwrap_or_default();
        let met = line
            .target
            .as_ref()
            .map(|t| t.met(line.value))
            .unwrap_or(false);
        let _ = writeln!(
            out,
            "| `{}` | {} {} | {} | {} |",
            line.name,
            format_value(line.value),
            line.unit,
            target,
            if met { "met" } else { "**not met**" }
        );
    }
    let _ = writeln!(
        out,
        "\n## Every figure and ratio\n\n| line | value | unit |\n|---|---|---|"
    );
    for line in &doc.figures.lines {
        let _ = writeln!(
            out,
            "| {} `{}` | {} | {} |",
            line.kind,
            line.name,
            format_value(line.value),
            line.unit
        );
    }
    let _ = writeln!(
        out,
        "\n## Plot\n\n![throughput and p99 against concurrency]({})\n",
        doc.plot_file
    );
    if !doc.notes.is_empty() {
        let _ = writeln!(out, "## How to read it\n");
        for note in &doc.notes {
            let _ = writeln!(out, "- {note}");
        }
        out.push('\n');
    }
    if let Some(log) = &doc.log {
        out.push_str(log);
        if !log.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
