//! The report's charts, drawn by `plotters` into SVG strings that the page inlines.
//!
//! The SVG backend writes text as `<text>` elements, so no font is embedded: the browser draws
//! the labels with its own sans-serif font.

use plotters::coord::Shift;
use plotters::prelude::*;

/// Colours of the lines of a chart with several series (not class colours).
const SERIES: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn svg<F>(w: u32, h: u32, draw: F) -> Result<String, String>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Horizontal bars of per-class IoU (in %), one per class, in the class's palette colour;
/// classes without a score (`None`: not in ground truth or prediction) get a label and no bar.
pub fn class_bars(
    title: &str,
    names: &[String],
    iou: &[Option<f64>],
    colours: &[[u8; 3]],
) -> Result<String, String> {
    let n = names.len().max(1);
    let h = 60 + 17 * n as u32;
    svg(460, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .margin_right(18)
            .x_label_area_size(28)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..100f64, (0..n).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .light_line_style(WHITE)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_desc("IoU %")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(iou.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)? * 100.0;
                let [r, g, b] = colours.get(i).copied().unwrap_or([128, 128, 128]);
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (v, SegmentValue::Exact(i + 1)),
                    ],
                    RGBColor(r, g, b).filled(),
                );
                bar.set_margin(2, 2, 0, 0);
                Some(bar)
            }))
            .map_err(err)?;
        chart
            .draw_series(iou.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)? * 100.0;
                Some(Text::new(
                    format!("{v:.1}"),
                    ((v + 1.5).min(88.0), SegmentValue::CenterOf(i)),
                    ("sans-serif", 10).into_font().color(&BLACK),
                ))
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// One named series of `(x, y)` points.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at each point (sparse series such as epoch means).
    pub markers: bool,
    /// Draw with a light, thin line (dense raw series under their means).
    pub faint: bool,
}

fn range(points: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in points.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-9);
    Some((lo - pad, hi + pad))
}

/// A line chart of `series` (each in its own colour, with a legend when there are several).
pub fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    size: (u32, u32),
) -> Result<String, String> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y0, y1) = range(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    svg(size.0, size.1, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(6)
            .y_labels(6)
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 10))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = SERIES[i % SERIES.len()];
            let style = if s.faint {
                colour.mix(0.35).stroke_width(1)
            } else {
                colour.stroke_width(2)
            };
            let drawn = chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(err)?;
            if series.len() > 1 {
                drawn.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2))
                });
            }
            if s.markers {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(err)?;
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 10))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}
