//! Line charts (PNG) for training curves and benchmark figures.

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points `(x, y)`. A point with a non-finite coordinate breaks the line: the points
    /// on either side are drawn as separate pieces (gaps in the data, or marks such as
    /// vertical segments).
    pub points: Vec<(f64, f64)>,
}

/// Vertical segments from `y0` to `y1` at each of `xs`, as one series (the pieces are
/// separated by breaks): events on a time axis.
pub fn vertical_marks(label: String, xs: &[f64], y0: f64, y1: f64) -> Series {
    let mut points = Vec::with_capacity(3 * xs.len());
    for &x in xs {
        points.extend([(x, y0), (x, y1), (f64::NAN, f64::NAN)]);
    }
    Series { label, points }
}

/// One panel: a title, axis labels and its lines.
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Draws `panels` stacked vertically into a PNG at `path` (written to a temporary file and
/// renamed, so a failed plot never leaves a truncated image).
pub fn line_chart(path: &Path, panels: &[Panel]) -> anyhow::Result<()> {
    line_chart_grid(path, panels, 1)
}

/// Draws `panels` row by row in a grid of `columns` columns (e.g. two methods side by
/// side), into a PNG at `path` (temporary file, then rename).
pub fn line_chart_grid(path: &Path, panels: &[Panel], columns: usize) -> anyhow::Result<()> {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp.png");
    {
        let size = (960 * columns as u32, 360 * rows as u32);
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((rows, columns));
        for (panel, area) in panels.iter().zip(areas) {
            draw_panel(&area, panel)?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    p: &Panel,
) -> anyhow::Result<()> {
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = bounds(pts().map(|q| q.0));
    let (y0, y1) = bounds(pts().map(|q| q.1));
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .draw()?;
    for (i, s) in p.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pieces = s
            .points
            .split(|(x, y)| !(x.is_finite() && y.is_finite()))
            .filter(|piece| !piece.is_empty());
        let mut labelled = false;
        for piece in pieces {
            let drawn = chart.draw_series(LineSeries::new(
                piece.iter().copied(),
                color.stroke_width(2),
            ))?;
            if !labelled {
                drawn.label(s.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
                labelled = true;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// One set of points of a scatter panel.
#[derive(Clone, Debug)]
pub struct PointSet {
    /// Legend label (empty: no legend entry).
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Palette colour index; `None` draws light grey (e.g. the data behind samples).
    pub color: Option<usize>,
}

/// One square scatter panel.
pub struct ScatterPanel {
    /// Title above the panel.
    pub title: String,
    /// Both axes span `[-extent, extent]`.
    pub extent: f64,
    /// Point sets, drawn in order (later on top).
    pub sets: Vec<PointSet>,
}

/// Draws scatter `panels` in a grid of `columns` columns into a PNG at `path` (temporary
/// file, then rename).
pub fn scatter_grid(path: &Path, panels: &[ScatterPanel], columns: usize) -> anyhow::Result<()> {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp.png");
    {
        let size = (420 * columns as u32, 440 * rows as u32);
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        for (panel, area) in panels.iter().zip(root.split_evenly((rows, columns))) {
            let e = panel.extent;
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(28)
                .y_label_area_size(36)
                .build_cartesian_2d(-e..e, -e..e)?;
            chart.configure_mesh().disable_mesh().draw()?;
            for set in &panel.sets {
                let color = match set.color {
                    Some(i) => Palette99::pick(i).to_rgba(),
                    None => RGBColor(190, 190, 190).to_rgba(),
                };
                let drawn = chart.draw_series(
                    set.points
                        .iter()
                        .filter(|(x, y)| x.abs() <= e && y.abs() <= e)
                        .map(|&p| Circle::new(p, 1, color.filled())),
                )?;
                if !set.label.is_empty() {
                    drawn
                        .label(set.label.as_str())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
                }
            }
            if panel.sets.iter().any(|s| !s.label.is_empty()) {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Breaks split a line into pieces; marks and gaps draw, and the picture is a PNG of
    /// the panel's size whose pixels are not all white.
    #[test]
    fn lines_with_breaks_and_vertical_marks_draw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marks.png");
        let gappy = Series {
            label: "with a gap".into(),
            points: vec![(0.0, 1.0), (1.0, 2.0), (f64::NAN, f64::NAN), (3.0, 1.0)],
        };
        let marks = vertical_marks("events".into(), &[0.5, 2.5], 0.0, 2.0);
        assert_eq!(marks.points.len(), 6);
        line_chart(
            &path,
            &[Panel {
                title: "t".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![gappy, marks],
            }],
        )
        .unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (960, 360));
        assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
    }
}
