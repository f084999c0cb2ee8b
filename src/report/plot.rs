//! Line and bar charts with plotters, written as PNG and SVG. The font (DejaVu Sans, see
//! assets/fonts/LICENSE-DejaVu.txt) is compiled into the binary, so drawing needs no system
//! font libraries.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (900, 560);

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the embedded font does not parse"));
    });
    result
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Index into the palette (lines sharing a colour belong together).
    pub colour: usize,
}

/// Bars: `values[group][series] = (mean, std)`.
#[derive(Debug, Clone)]
pub struct Bars {
    pub groups: Vec<String>,
    pub series: Vec<String>,
    pub values: Vec<Vec<Option<(f64, f64)>>>,
}

fn colour(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    RGBColor(r, g, b)
}

/// Writes `<stem>.png` and `<stem>.svg`.
pub fn lines(stem: &Path, title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> Result<()> {
    register_font()?;
    let png = stem.with_extension("png");
    draw_lines(BitMapBackend::new(&png, SIZE).into_drawing_area(), title, x_desc, y_desc, lines)?;
    let svg = stem.with_extension("svg");
    draw_lines(SVGBackend::new(&svg, SIZE).into_drawing_area(), title, x_desc, y_desc, lines)
}

/// Writes `<stem>.png` and `<stem>.svg`.
pub fn bars(stem: &Path, title: &str, y_desc: &str, bars: &Bars) -> Result<()> {
    register_font()?;
    let png = stem.with_extension("png");
    draw_bars(BitMapBackend::new(&png, SIZE).into_drawing_area(), title, y_desc, bars)?;
    let svg = stem.with_extension("svg");
    draw_bars(SVGBackend::new(&svg, SIZE).into_drawing_area(), title, y_desc, bars)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-6);
    (lo - pad * span, hi + pad * span)
}

/// The series legend, upper right on a translucent white box.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = range(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)), 0.02);
    let (y0, y1) = range(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)), 0.08);
    // Head room for the legend (about one line of text per series).
    let y1 = y1 + (y1 - y0) * (0.06 * lines.len() as f64).min(1.0);
    let integer_x = lines.iter().flat_map(|l| &l.points).all(|p| p.0.fract() == 0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let x_fmt = move |x: &f64| if integer_x { format!("{x:.0}") } else { format!("{x}") };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(if integer_x { ((x1 - x0).round() as usize + 1).clamp(2, 12) } else { 10 })
        .x_label_formatter(&x_fmt)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for l in lines {
        let c = colour(l.colour);
        let pts: Vec<(f64, f64)> = l.points.iter().copied().filter(|p| p.1.is_finite()).collect();
        if l.dashed {
            // The legend's sample is dashed like the line: two 6-pixel dashes, a 4-pixel gap.
            let legend = move |(x, y): (i32, i32)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (6, 0)], c.stroke_width(2))
                    + PathElement::new(vec![(10, 0), (16, 0)], c.stroke_width(2))
            };
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2)))
                .map_err(err)?
                .label(&l.name)
                .legend(legend);
        } else {
            let legend = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2));
            chart.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(err)?.label(&l.name).legend(legend);
        }
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}

fn draw_bars<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, title: &str, y_desc: &str, bars: &Bars) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let ns = bars.series.len().max(1);
    // One segment per (group, series) and an empty one between groups.
    let per = ns + 1;
    let n = bars.groups.len() * per;
    let tops = bars.values.iter().flatten().flatten().map(|(m, s)| m + if s.is_finite() { *s } else { 0.0 });
    let (_, y1) = range(tops.chain([0.0]), 0.1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..y1)
        .map_err(err)?;
    let groups = bars.groups.clone();
    let label = move |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if i % per == ns / 2 => groups.get(i / per).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (s, name) in bars.series.iter().enumerate() {
        let c = colour(s);
        let rects: Vec<Rectangle<(SegmentValue<usize>, f64)>> = bars
            .values
            .iter()
            .enumerate()
            .filter_map(|(g, row)| {
                let (m, _) = row.get(s).copied().flatten()?;
                let i = g * per + s;
                Some(Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), m)], c.filled()))
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        let whiskers: Vec<_> = bars
            .values
            .iter()
            .enumerate()
            .filter_map(|(g, row)| {
                let (m, sd) = row.get(s).copied().flatten()?;
                sd.is_finite().then(|| {
                    ErrorBar::new_vertical(
                        SegmentValue::CenterOf(g * per + s),
                        m - sd,
                        m,
                        m + sd,
                        BLACK.stroke_width(1),
                        8,
                    )
                })
            })
            .collect();
        chart.draw_series(whiskers).map_err(err)?;
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}
