//! What the application felt over time during a migration, and its picture: every 50 ms, how
//! long its slowest statement in flight had been waiting, drawn for ruleiq-db, the naive
//! migration and the control on one time axis (an SVG, through plotters' pure-Rust SVG
//! backend).

use crate::workload::Recorded;
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How finely time is cut: short enough that one stall is one spike, long enough that a run
/// of a few seconds is a few hundred points.
const SLICE: Duration = Duration::from_millis(50);

/// What the application felt at each moment, from `from - before` to `to`: at the end of
/// each slice of time, how long its slowest statement running in that slice had been waiting
/// (a statement that finished inside the slice counts with its whole latency). A stall rises
/// as a ramp while it lasts and drops when it ends, instead of showing only where it began.
/// Points are seconds since the migration started, and milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub points: Vec<(f64, f64)>,
    /// When the migration ended, in seconds since it started.
    pub migration_s: f64,
}

impl Timeline {
    /// From `before` ahead of the migration's start (`from`) to `until`, past its end (`to`):
    /// a stall that ends with the migration shows its drop too.
    pub fn of(
        recorded: &Recorded,
        from: Duration,
        to: Duration,
        until: Duration,
        before: Duration,
    ) -> Timeline {
        let start = from.saturating_sub(before);
        let slices = (until.saturating_sub(start)).as_millis() / SLICE.as_millis() + 1;
        let mut events: Vec<_> = recorded
            .events
            .iter()
            .filter(|e| e.end >= start && e.start <= until)
            .collect();
        events.sort_by_key(|e| e.start);
        let offset = (from - start).as_secs_f64();
        let mut points = Vec::new();
        for i in 0..slices as u32 {
            let slice_start = start + SLICE * i;
            let slice_end = slice_start + SLICE;
            let waited = events
                .iter()
                .take_while(|e| e.start <= slice_end)
                .filter(|e| e.end >= slice_start)
                .map(|e| e.end.min(slice_end) - e.start)
                .max();
            if let Some(waited) = waited {
                points.push((
                    (i + 1) as f64 * SLICE.as_secs_f64() - offset,
                    waited.as_secs_f64() * 1000.0,
                ));
            }
        }
        Timeline {
            points,
            migration_s: (to - from).as_secs_f64(),
        }
    }
}

/// One line of the picture.
pub struct Series<'a> {
    pub label: String,
    pub timeline: &'a Timeline,
}

/// Draws the series on one time axis, latency on a log scale, each migration's end marked.
pub fn draw(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let all = || series.iter().flat_map(|s| s.timeline.points.iter());
    let first = all().map(|p| p.0).fold(0.0, f64::min);
    let last = all().map(|p| p.0).fold(1.0, f64::max);
    // A decade above the slowest statement: room for the legend above the lines.
    let top = all().map(|p| p.1).fold(10.0, f64::max) * 10.0;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(first..last, (0.05_f64..top).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the migration started")
        .y_desc("longest wait of a statement in flight (ms, log scale)")
        .draw()
        .map_err(plot_error)?;
    let colours = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(110, 110, 110),
    ];
    for (s, colour) in series.iter().zip(colours.iter().cycle()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(
                s.timeline.points.iter().copied(),
                colour.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(format!(
                "{} (ended at {:.1} s)",
                s.label, s.timeline.migration_s
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        let end = s.timeline.migration_s;
        chart
            .draw_series(DashedLineSeries::new(
                [(end, 0.05), (end, top)],
                6,
                4,
                colour.stroke_width(1),
            ))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))
}

fn plot_error<E: std::error::Error + Send + Sync>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the latency picture: {error}")
}
