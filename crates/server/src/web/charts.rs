//! Small charts as inline SVG, drawn on the server: no chart library, no
//! script. Pure functions of their input, so they are tested here alone.
//!
//! Colours and strokes come from classes (`app.css`): the page's CSP
//! allows no inline style. Every label goes through maud, which escapes it.
//! Each drawn series carries `data-series` (and marks `data-count`) so the
//! browser tests can read what a chart shows.

use maud::{Markup, html};

/// Drawing area of a line chart, in SVG user units (it scales to its box).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the y labels on the left and the x labels below.
const LEFT: f64 = 40.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;
/// Marks (claims) sit in a band just above the x axis.
const MARK_RADIUS: f64 = 3.5;

/// A linear map from a domain of values to a range of coordinates. An empty
/// domain (one value) maps everything to the middle of the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    domain: (f64, f64),
    range: (f64, f64),
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale { domain, range }
    }

    pub fn at(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        if (d1 - d0).abs() < f64::EPSILON || !value.is_finite() {
            return (r0 + r1) / 2.0;
        }
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// The top of a y axis that shows `max`: the smallest 1, 2 or 5 × 10ⁿ at
/// least as large (1 for an empty or zero series, so a flat line sits at the bottom).
pub fn nice_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|f| f * magnitude).find(|top| *top >= max).unwrap_or(10.0 * magnitude)
}

/// A number as an SVG coordinate: one decimal, no trailing `.0`.
fn coordinate(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 { format!("{rounded:.0}") } else { format!("{rounded:.1}") }
}

/// A line: `(x, y)` points in data units, drawn in order.
pub struct Series {
    /// Named in the legend and in `data-series`.
    pub name: String,
    /// A class from app.css (its colour).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// Events along the x axis (claims): at `x`, `count` of them, described by `title`.
pub struct Marks {
    pub name: String,
    pub class: &'static str,
    pub points: Vec<(f64, u32, String)>,
}

/// Lines over a shared x range, with marks along the bottom.
pub struct LineChart {
    /// Read by screen readers and shown as the tooltip of the whole chart.
    pub title: String,
    pub x: (f64, f64),
    /// Where to label the x axis, and with what.
    pub x_labels: Vec<(f64, String)>,
    pub series: Vec<Series>,
    pub marks: Vec<Marks>,
}

pub fn line_chart(chart: &LineChart) -> Markup {
    let max = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let top = nice_max(max);
    let x = Scale::new(chart.x, (LEFT, WIDTH - RIGHT));
    let y = Scale::new((0.0, top), (HEIGHT - BOTTOM, TOP));
    let baseline = HEIGHT - BOTTOM;
    let empty = chart.series.iter().all(|s| s.points.is_empty()) && chart.marks.iter().all(|m| m.points.is_empty());
    html! {
        figure.chart {
            svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(chart.title) {
                title { (chart.title) }
                // Grid: the bottom, the middle and the top of the y axis, labelled.
                @for value in [0.0, top / 2.0, top] {
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(coordinate(y.at(value))) y2=(coordinate(y.at(value))) {}
                    text.axis x=(LEFT - 4.0) y=(coordinate(y.at(value) + 4.5)) text-anchor="end" { (label_number(value)) }
                }
                @for (at, label) in &chart.x_labels {
                    // Labels at the ends lean inwards, so they are not cut off.
                    @let anchor = if *at <= chart.x.0 { "start" } else if *at >= chart.x.1 { "end" } else { "middle" };
                    text.axis x=(coordinate(x.at(*at))) y=(coordinate(HEIGHT - 6.0)) text-anchor=(anchor) { (label) }
                }
                @for s in &chart.series {
                    @match s.points.as_slice() {
                        [] => {}
                        // One point is no line: a dot shows it.
                        [(px, py)] => {
                            circle class={ "series " (s.class) } data-series=(s.name) data-points="1"
                                cx=(coordinate(x.at(*px))) cy=(coordinate(y.at(*py))) r="3" {}
                        }
                        points => {
                            polyline class={ "series " (s.class) } data-series=(s.name) data-points=(points.len())
                                points=(polyline(points, &x, &y)) {}
                        }
                    }
                }
                @for m in &chart.marks {
                    g class={ "marks " (m.class) } data-series=(m.name)
                        data-count=(m.points.iter().map(|p| u64::from(p.1)).sum::<u64>()) {
                        @for (at, count, title) in m.points.iter().filter(|p| p.1 > 0) {
                            circle cx=(coordinate(x.at(*at))) cy=(coordinate(baseline - MARK_RADIUS - 1.0))
                                r=(coordinate(mark_radius(*count))) {
                                title { (title) }
                            }
                        }
                    }
                }
                @if empty {
                    text.empty x=(coordinate(WIDTH / 2.0)) y=(coordinate(HEIGHT / 2.0)) text-anchor="middle" { "No data yet" }
                }
            }
            figcaption.legend {
                @for s in &chart.series { span class={ "key " (s.class) } { (s.name) } }
                @for m in &chart.marks { span class={ "key dot " (m.class) } { (m.name) } }
            }
        }
    }
}

/// A mark grows (a little) with the number of events it stands for.
fn mark_radius(count: u32) -> f64 {
    MARK_RADIUS + f64::from(count.min(20)).sqrt() - 1.0
}

fn polyline(points: &[(f64, f64)], x: &Scale, y: &Scale) -> String {
    points
        .iter()
        .map(|(px, py)| format!("{},{}", coordinate(x.at(*px)), coordinate(y.at(*py))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An axis label: whole numbers as such, fractions with one decimal.
fn label_number(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// One value of a bar: its class (colour), its value (`None`: no sample)
/// and the words printed beside it.
pub struct BarValue {
    pub name: &'static str,
    pub class: &'static str,
    pub value: Option<f64>,
    pub text: String,
}

/// A labelled group of bars, one per value.
pub struct Bar {
    pub label: String,
    pub values: Vec<BarValue>,
}

/// Horizontal bars (labels above them, so they fit a phone's width).
pub struct BarChart {
    pub title: String,
    /// The value a full-width bar stands for; `None`: the largest value, rounded up.
    pub max: Option<f64>,
    pub bars: Vec<Bar>,
}

const BAR: f64 = 16.0;
const BAR_GAP: f64 = 4.0;
const LABEL: f64 = 20.0;
const GROUP_GAP: f64 = 10.0;
/// Room kept right of the longest bar for its text.
const BAR_TEXT: f64 = 200.0;

pub fn bar_chart(chart: &BarChart) -> Markup {
    let largest = chart.bars.iter().flat_map(|b| b.values.iter().filter_map(|v| v.value)).fold(0.0, f64::max);
    let max = chart.max.unwrap_or_else(|| nice_max(largest));
    let x = Scale::new((0.0, max), (0.0, WIDTH - BAR_TEXT));
    let group = |b: &Bar| LABEL + b.values.len() as f64 * (BAR + BAR_GAP) + GROUP_GAP;
    let height = chart.bars.iter().map(group).sum::<f64>().max(LABEL + BAR + GROUP_GAP);
    let mut top = 0.0;
    let groups: Vec<(f64, &Bar)> = chart
        .bars
        .iter()
        .map(|b| {
            let at = top;
            top += group(b);
            (at, b)
        })
        .collect();
    html! {
        figure.chart {
            svg.chart.bars viewBox={ "0 0 " (WIDTH) " " (coordinate(height)) } role="img" aria-label=(chart.title) {
                title { (chart.title) }
                @for (at, bar) in &groups {
                    g.bar data-label=(bar.label) {
                        text.label x="0" y=(coordinate(at + LABEL - 4.0)) { (bar.label) }
                        @for (i, v) in bar.values.iter().enumerate() {
                            @let y = at + LABEL + i as f64 * (BAR + BAR_GAP);
                            @let width = v.value.map(|value| x.at(value.clamp(0.0, max)).max(1.0)).unwrap_or(0.0);
                            rect class={ "value " (v.class) } data-series=(v.name)
                                data-value=(v.value.map(|value| value.to_string()).unwrap_or_default())
                                x="0" y=(coordinate(y)) width=(coordinate(width)) height=(BAR) {}
                            text.value x=(coordinate(width + 4.0)) y=(coordinate(y + BAR - 3.0)) { (v.text) }
                        }
                    }
                }
                @if chart.bars.is_empty() {
                    text.empty x=(coordinate(WIDTH / 2.0)) y=(coordinate(height / 2.0 + 4.0)) text-anchor="middle" { "No data yet" }
                }
            }
            @if let Some(first) = chart.bars.first() {
                figcaption.legend {
                    @for v in &first.values { span class={ "key " (v.class) } { (v.name) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_linearly_and_survive_an_empty_domain() {
        let s = Scale::new((0.0, 10.0), (100.0, 0.0));
        assert_eq!(s.at(0.0), 100.0);
        assert_eq!(s.at(10.0), 0.0);
        assert_eq!(s.at(2.5), 75.0);
        // One value, or nonsense: the middle, never NaN.
        let flat = Scale::new((3.0, 3.0), (0.0, 50.0));
        assert_eq!(flat.at(3.0), 25.0);
        assert_eq!(Scale::new((0.0, 1.0), (0.0, 50.0)).at(f64::NAN), 25.0);
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
        assert_eq!(nice_max(1.0), 1.0);
        assert_eq!(nice_max(1.5), 2.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(480.0), 500.0);
    }

    fn chart(series: Vec<Series>, marks: Vec<Marks>) -> String {
        line_chart(&LineChart { title: "pool".into(), x: (0.0, 100.0), x_labels: vec![], series, marks }).into_string()
    }

    #[test]
    fn an_empty_chart_says_so_and_draws_no_line() {
        let svg = chart(vec![Series { name: "eligible".into(), class: "eligible", points: vec![] }], vec![]);
        assert!(svg.contains("No data yet"), "{svg}");
        assert!(!svg.contains("<polyline"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn one_point_is_a_dot_and_many_are_a_line() {
        let one = chart(vec![Series { name: "eligible".into(), class: "eligible", points: vec![(50.0, 2.0)] }], vec![]);
        assert!(one.contains(r#"<circle class="series eligible" data-series="eligible" data-points="1""#), "{one}");
        assert!(!one.contains("No data yet"));
        let two = chart(
            vec![Series { name: "desired".into(), class: "desired", points: vec![(0.0, 0.0), (100.0, 2.0)] }],
            vec![],
        );
        // x spans the plot (40 … 632); y 0 is the baseline (154), the top (2) is TOP (10).
        assert!(two.contains(r#"data-points="2" points="40,154 632,10""#), "{two}");
    }

    #[test]
    fn marks_count_their_events_and_skip_empty_steps() {
        let svg = chart(
            vec![],
            vec![Marks {
                name: "claims".into(),
                class: "hit",
                points: vec![(10.0, 2, "2 claims".into()), (20.0, 0, "none".into()), (30.0, 1, "1 claim".into())],
            }],
        );
        assert!(svg.contains(r#"data-series="claims" data-count="3""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains("<title>2 claims</title>"), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let hostile = r#"<script>alert("x")</script> & co"#;
        let svg = line_chart(&LineChart {
            title: hostile.into(),
            x: (0.0, 1.0),
            x_labels: vec![(0.5, hostile.into())],
            series: vec![Series { name: hostile.into(), class: "desired", points: vec![(0.0, 1.0), (1.0, 1.0)] }],
            marks: vec![],
        })
        .into_string();
        let bars = bar_chart(&BarChart {
            title: hostile.into(),
            max: Some(1.0),
            bars: vec![Bar {
                label: hostile.into(),
                values: vec![BarValue { name: "hit rate", class: "hit", value: Some(0.5), text: hostile.into() }],
            }],
        })
        .into_string();
        for out in [svg, bars] {
            assert!(!out.contains("<script>"), "{out}");
            assert!(out.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"), "{out}");
        }
    }

    #[test]
    fn bars_scale_to_their_maximum_and_show_missing_values_as_none() {
        let svg = bar_chart(&BarChart {
            title: "ready times".into(),
            max: None,
            bars: vec![Bar {
                label: "pool / us".into(),
                values: vec![
                    BarValue { name: "claim", class: "claim", value: Some(2.0), text: "2 s".into() },
                    BarValue { name: "cold", class: "cold", value: Some(8.0), text: "8 s".into() },
                    BarValue { name: "other", class: "other", value: None, text: "no sample".into() },
                ],
            }],
        })
        .into_string();
        // Largest 8 → axis 10; the bar area is 640 − 200 = 440 wide; bars 20 apart below a 20-high label.
        assert!(svg.contains(r#"data-series="claim" data-value="2" x="0" y="20" width="88""#), "{svg}");
        assert!(svg.contains(r#"data-series="cold" data-value="8" x="0" y="40" width="352""#), "{svg}");
        assert!(svg.contains(r#"data-series="other" data-value="" x="0" y="60" width="0""#), "{svg}");
        assert!(svg.contains("no sample"));
        let empty = bar_chart(&BarChart { title: "none".into(), max: Some(1.0), bars: vec![] }).into_string();
        assert!(empty.contains("No data yet"), "{empty}");
    }
}
