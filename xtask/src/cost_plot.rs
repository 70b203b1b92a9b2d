//! The appendix on cost's plot: start-to-exit per step and per peer, drawn
//! from what the benches last measured.
//!
//! `bench-peers` and `bench-engine` each record their medians (and min and
//! max) in a small JSON file beside the plot, `book/src/images/cost-*.json`,
//! and then redraw `book/src/images/cost.svg` from both files. So the plot
//! in the book is always the last measure, and says when it was made; no
//! number in it is typed by hand. `cargo xtask plot-cost` redraws it from
//! the recorded files alone.
//!
//! Two panels, because the scales differ by two orders of magnitude: the
//! runtimes (milliseconds) and the engines (tens to hundreds). Each row is a
//! bar to the median with a line from the fastest to the slowest run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::peers::Spread;

/// Where the plot and its data live, from the repository root.
const DIR: &str = "book/src/images";
/// The font the labels are measured and drawn with (Debian's
/// fonts-dejavu-core; chromium, which the book's check installs, pulls it).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One bench's last measure, as recorded.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measure {
    /// What was timed, for the panel's title.
    pub title: String,
    /// The day it was measured (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// How many runs each row's figures come from.
    pub runs: usize,
    /// The rows, in the bench's order.
    pub rows: Vec<Row>,
}

/// One runner's figures, in milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    /// The runner, as the bench prints it.
    pub name: String,
    /// The fastest run.
    pub min: f64,
    /// The median run.
    pub median: f64,
    /// The slowest run.
    pub max: f64,
}

impl Row {
    /// A row from a bench's spread.
    pub fn new(name: &str, s: &Spread) -> Row {
        Row {
            name: name.trim().to_string(),
            min: s.min,
            median: s.median,
            max: s.max,
        }
    }
}

/// The recorded file of bench `name` (`runtime` or `engine`).
fn data_file(root: &Path, name: &str) -> PathBuf {
    root.join(DIR).join(format!("cost-{name}.json"))
}

/// Records `measure` as bench `name`'s last, then redraws the plot.
pub fn record(root: &Path, name: &str, measure: &Measure) -> Result<()> {
    let path = data_file(root, name);
    std::fs::write(&path, serde_json::to_string_pretty(measure)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("recorded in {}", path.display());
    plot(root)
}

/// Today, UTC, as `YYYY-MM-DD` (from `date`, which every host has).
pub fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Draws `book/src/images/cost.svg` from the recorded measures: one panel
/// per recorded bench, the runtimes first.
pub fn plot(root: &Path) -> Result<()> {
    let mut measures = Vec::new();
    for name in ["runtime", "engine"] {
        let path = data_file(root, name);
        match std::fs::read_to_string(&path) {
            Ok(text) => measures.push(
                serde_json::from_str::<Measure>(&text)
                    .with_context(|| format!("{} is not a recorded measure", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    if measures.is_empty() {
        return Err(anyhow!(
            "no measure recorded in {DIR}: run `cargo xtask bench-peers` or `cargo xtask bench-engine` first"
        ));
    }
    let font = std::fs::read(FONT)
        .with_context(|| format!("cannot read {FONT}: sudo apt-get install fonts-dejavu-core"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("{FONT} is not a font plotters can read"))?;

    let out = root.join(DIR).join("cost.svg");
    let heights: Vec<u32> = measures
        .iter()
        .map(|m| 70 + 26 * m.rows.len() as u32)
        .collect();
    let area = SVGBackend::new(&out, (860, heights.iter().sum())).into_drawing_area();
    area.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut rest = area;
    for (measure, height) in measures.iter().zip(&heights) {
        let (panel, below) = rest.split_vertically(*height);
        draw_panel(&panel, measure).map_err(|e| anyhow!("drawing {}: {e}", out.display()))?;
        rest = below;
    }
    rest.present().map_err(|e| anyhow!("{e}"))?;
    println!("drew {}", out.display());
    Ok(())
}

/// One panel: a bar to each row's median, a line from its min to its max,
/// the median written after the line.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    m: &Measure,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = m.rows.len().max(1);
    let widest = m.rows.iter().map(|r| r.max).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} (ms; {}, {} runs each)", m.title, m.date, m.runs),
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(250)
        // Segments 0 to n - 1, one per row; the first row at the top.
        .build_cartesian_2d(
            0.0..widest * 1.12,
            (0..n.saturating_sub(1)).into_segmented(),
        )?;
    let slot = |i: usize| n - 1 - i;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => m.rows[slot(*i)].name.clone(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()?;
    let caixa = RGBColor(0x2b, 0x6c, 0xb0);
    let peer = RGBColor(0x9a, 0x9a, 0x9a);
    for (k, row) in m.rows.iter().enumerate() {
        let i = slot(k);
        // caixa's own (its steps, its daemon through either client) in blue.
        let color = if row.name.contains("caixa") {
            caixa
        } else {
            peer
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (row.median, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (row.min, SegmentValue::CenterOf(i)),
                (row.max, SegmentValue::CenterOf(i)),
            ],
            BLACK.stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.1}", row.median),
            (row.max + widest * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 12),
        )))?;
    }
    Ok(())
}
