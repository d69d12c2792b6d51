//! A small line chart in SVG: a few series over a fixed time window, with a rounded
//! y scale, clock labels on the x axis and a readout that follows the pointer (or the
//! arrow keys once the chart has the focus).
//!
//! The plot is an SVG stretched to its box (`preserveAspectRatio="none"`, strokes that do
//! not scale), and the axis labels are HTML placed by percentage, so text stays crisp and
//! readable at any width. Coordinates are integers in a 1000×300 view box.

use std::rc::Rc;

use yew::prelude::*;

use super::format::{date_time, decimal1, hour_minute, rate, time_of_day};

/// The view box: wide enough that integer coordinates are smooth.
const W: i64 = 1000;
const H: i64 = 300;
/// Horizontal grid lines (intervals).
const INTERVALS: u32 = 4;

/// A rounded step for about `raw` per interval: 1, 2 or 5 times a power of ten, at
/// least 0.5 (so every label is written with one decimal at most).
pub fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.5 {
        return 0.5;
    }
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= raw {
        magnitude *= 10.0;
    }
    while magnitude > raw {
        magnitude /= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|v| *v >= raw)
        .unwrap_or(magnitude * 10.0)
}

/// The y axis for values up to `max`: the step between grid lines and the top value.
pub fn y_scale(max: f64) -> (f64, f64) {
    let step = nice_step(max / f64::from(INTERVALS));
    (step, step * f64::from(INTERVALS))
}

/// The x of time `t` in the view box, for a window of `window` ms ending at `end`.
fn x_of(t: i64, end: i64, window: i64) -> i64 {
    let start = end - window;
    ((t - start) * W / window.max(1)).clamp(0, W)
}

/// The y of `value` in the view box, for a scale topping at `top`.
fn y_of(value: f64, top: f64) -> i64 {
    let v = if value.is_finite() {
        value.max(0.0)
    } else {
        0.0
    };
    H - ((v / top * H as f64).round() as i64).clamp(0, H)
}

/// The SVG path of one series: `M x,y L x,y …` (empty without points). Points before the
/// window are left out, except the last of them, so the line starts at the left edge.
pub fn line_path(times: &[i64], values: &[f64], end: i64, window: i64, top: f64) -> String {
    let start = end - window;
    let first = times.iter().rposition(|&t| t <= start).unwrap_or(0);
    let mut out = String::new();
    for (i, (&t, &v)) in times.iter().zip(values).enumerate().skip(first) {
        out.push(if i == first { 'M' } else { 'L' });
        out.push_str(&format!("{},{} ", x_of(t, end, window), y_of(v, top)));
    }
    out.truncate(out.trim_end().len());
    out
}

/// The area under a series' line, closed along the bottom.
pub fn area_path(line: &str) -> String {
    let first_x = line
        .strip_prefix('M')
        .and_then(|s| s.split(',').next())
        .unwrap_or("0");
    let last_x = line
        .rsplit(['L', 'M'])
        .next()
        .and_then(|s| s.split(',').next())
        .unwrap_or("0")
        .trim();
    if line.is_empty() {
        String::new()
    } else {
        format!("{line} L{last_x},{H} L{first_x},{H} Z")
    }
}

/// A position in hundredths of a percent, as CSS: `12.34%`.
fn percent(basis_points: i64) -> String {
    let b = basis_points.clamp(0, 10_000);
    format!("{}.{:02}%", b / 100, b % 100)
}

/// The spacing of the x axis labels for a window of `window` ms: five or so labels.
pub fn label_step(window: i64) -> i64 {
    const STEPS: [i64; 8] = [5, 10, 15, 30, 60, 120, 300, 600];
    STEPS
        .into_iter()
        .map(|s| s * 1000)
        .find(|&step| window / step <= 6)
        .unwrap_or(600_000)
}

/// The x axis labels: every `step` ms on the clock, as `(left in basis points, label)` in
/// local time (`offset_minutes` from UTC): `HH:MM`, or `HH:MM:SS` below a minute.
pub fn x_labels(end: i64, window: i64, step: i64, offset_minutes: i64) -> Vec<(i64, String)> {
    let start = end - window;
    let step = step.max(1000);
    let offset = offset_minutes * 60_000;
    // The first mark at or after the start, on the local clock.
    let mut mark = (start + offset).div_euclid(step) * step - offset;
    if mark < start {
        mark += step;
    }
    let mut out = Vec::new();
    while mark <= end {
        let label = if step < 60_000 {
            time_of_day(mark, offset_minutes)
        } else {
            hour_minute(mark, offset_minutes)
        };
        out.push(((mark - start) * 10_000 / window.max(1), label));
        mark += step;
    }
    out
}

/// The window a chart of points from `first` to `last` shows: half a minute, then whole
/// minutes up to `max`, so that a young broker's first points fill the chart.
pub fn window_for(first: i64, last: i64, max: i64) -> i64 {
    let span = (last - first).max(0);
    if span < 30_000 {
        30_000
    } else {
        (span.div_euclid(60_000) + 1)
            .saturating_mul(60_000)
            .clamp(60_000, max.max(60_000))
    }
}

/// The index of the time nearest to `t` in sorted `times`.
pub fn nearest(times: &[i64], t: i64) -> Option<usize> {
    let i = times.partition_point(|&x| x < t);
    match (i.checked_sub(1), times.get(i)) {
        (Some(before), Some(&after)) => Some(if t - times[before] <= after - t {
            before
        } else {
            i
        }),
        (Some(before), None) => Some(before),
        (None, Some(_)) => Some(0),
        (None, None) => None,
    }
}

/// One line of the chart.
#[derive(Clone, PartialEq)]
pub struct Series {
    pub label: AttrValue,
    /// A CSS class giving its colour (`series-in`, `series-out`).
    pub class: AttrValue,
    pub values: Rc<Vec<f64>>,
}

#[derive(Properties, PartialEq)]
pub struct ChartProps {
    /// Milliseconds since the epoch, oldest first, one per value of each series.
    pub times: Rc<Vec<i64>>,
    pub series: Vec<Series>,
    /// How much time the x axis spans, ending at the newest point.
    pub window_ms: i64,
    /// Local time's offset from UTC, for the clock labels.
    pub offset_minutes: i64,
    /// After each value: `/s`.
    pub unit: AttrValue,
    /// The chart's name for screen readers.
    pub label: AttrValue,
}

/// The line chart.
#[function_component(LineChart)]
pub fn line_chart(props: &ChartProps) -> Html {
    let hover = use_state(|| None::<usize>);
    let plot = use_node_ref();
    let times = &props.times;
    let end = times.last().copied().unwrap_or(0);
    let window = props.window_ms.max(1);
    let max = props
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let (step, top) = y_scale(max);
    // A stale index (the history moved on) points at nothing.
    let hovered = hover.filter(|&i| i < times.len());

    let onmousemove = {
        let hover = hover.clone();
        let plot = plot.clone();
        let times = times.clone();
        Callback::from(move |e: MouseEvent| {
            let Some(element) = plot.cast::<web_sys::Element>() else {
                return;
            };
            let rect = element.get_bounding_client_rect();
            if rect.width() <= 0.0 {
                return;
            }
            let fraction = (f64::from(e.client_x()) - rect.left()) / rect.width();
            let t = end - window + (fraction.clamp(0.0, 1.0) * window as f64) as i64;
            hover.set(nearest(&times, t));
        })
    };
    let onmouseleave = {
        let hover = hover.clone();
        Callback::from(move |_: MouseEvent| hover.set(None))
    };
    let onkeydown = {
        let hover = hover.clone();
        let n = times.len();
        Callback::from(move |e: KeyboardEvent| {
            if n == 0 {
                return;
            }
            let current = hovered.unwrap_or(n - 1);
            let to = match e.key().as_str() {
                "ArrowLeft" => Some(current.saturating_sub(1)),
                "ArrowRight" => Some((current + 1).min(n - 1)),
                "Home" => Some(0),
                "End" => Some(n - 1),
                "Escape" => {
                    hover.set(None);
                    return;
                }
                _ => return,
            };
            e.prevent_default();
            hover.set(to);
        })
    };

    let lines: Vec<(Series, String)> = props
        .series
        .iter()
        .map(|s| (s.clone(), line_path(times, &s.values, end, window, top)))
        .collect();
    let readout = hovered.map(|i| {
        let left = x_of(times[i], end, window) * 10;
        let flip = left > 7_000;
        html! {
            <>
                <div class="chart-cursor" style={format!("left: {}", percent(left))} />
                <div class={classes!("chart-tip", flip.then_some("flip"))}
                    style={format!("left: {}", percent(left))}>
                    <time>{ date_time(times[i], props.offset_minutes) }</time>
                    { for props.series.iter().map(|s| html! {
                        <span class={classes!("chart-key", s.class.clone())}>
                            <i class="swatch" />{ &s.label }{ ": " }
                            <b>{ format!("{}{}", rate(s.values.get(i).copied().unwrap_or(0.0)), props.unit) }</b>
                        </span>
                    }) }
                </div>
            </>
        }
    });

    html! {
        <div class="chart">
            <div class="chart-y" aria-hidden="true">
                { for (0..=INTERVALS).map(|k| html! {
                    <span style={format!("top: {}", percent(10_000 - i64::from(k) * 10_000 / i64::from(INTERVALS)))}>
                        { decimal1(step * f64::from(k)) }
                    </span>
                }) }
            </div>
            <div class="chart-plot" ref={plot} tabindex="0" role="img" aria-label={props.label.clone()}
                {onmousemove} {onmouseleave} {onkeydown}>
                <svg viewBox={format!("0 0 {W} {H}")} preserveAspectRatio="none" aria-hidden="true">
                    { for (1..INTERVALS).map(|k| {
                        let y = H - i64::from(k) * H / i64::from(INTERVALS);
                        html! { <line class="grid" x1="0" x2={W.to_string()} y1={y.to_string()} y2={y.to_string()} /> }
                    }) }
                    { for lines.iter().map(|(s, d)| html! {
                        <g class={s.class.clone()}>
                            <path class="area" d={area_path(d)} />
                            <path class="line" d={d.clone()} />
                        </g>
                    }) }
                </svg>
                if times.is_empty() {
                    <p class="chart-empty">{ "Collecting data: a point every 2 seconds" }</p>
                }
                { readout.unwrap_or_default() }
            </div>
            <div class="chart-x" aria-hidden="true">
                { for x_labels(end, window, label_step(window), props.offset_minutes).into_iter().map(|(left, label)| html! {
                    <span style={format!("left: {}", percent(left))}>{ label }</span>
                }) }
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.0), 0.5);
        assert_eq!(nice_step(f64::NAN), 0.5);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.5), 10.0);
        assert_eq!(nice_step(10.0), 10.0);
        assert_eq!(nice_step(26.0), 50.0);
        assert_eq!(nice_step(1234.0), 2000.0);
        assert_eq!(y_scale(0.0), (0.5, 2.0));
        assert_eq!(y_scale(10.0), (5.0, 20.0));
        assert_eq!(y_scale(4000.0), (1000.0, 4000.0));
    }

    #[test]
    fn lines_fit_the_box() {
        let times = [0, 2000, 4000, 6000];
        let values = [0.0, 5.0, 10.0, 20.0];
        // A window of 4 s ending at 6 s: the point at 0 is before it and dropped; the one
        // at 2 s (the window's start) is at the left edge.
        assert_eq!(
            line_path(&times, &values, 6000, 4000, 20.0),
            "M0,225 L500,150 L1000,0"
        );
        // Values over the top and below zero are kept inside.
        assert_eq!(
            line_path(&[0, 1000], &[-1.0, 99.0], 1000, 1000, 10.0),
            "M0,300 L1000,0"
        );
        assert_eq!(line_path(&[], &[], 0, 1000, 1.0), "");
        assert_eq!(
            area_path("M0,225 L500,150 L1000,0"),
            "M0,225 L500,150 L1000,0 L1000,300 L0,300 Z"
        );
        assert_eq!(area_path(""), "");
    }

    #[test]
    fn clock_labels() {
        // 2024-01-01T13:45:07Z, a 10-minute window: marks at 13:36, 13:38, … 13:44.
        let end = 1_704_116_707_000;
        assert_eq!(label_step(600_000), 120_000);
        let labels = x_labels(end, 600_000, 120_000, 0);
        let names: Vec<&str> = labels.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(names, ["13:36", "13:38", "13:40", "13:42", "13:44"]);
        assert!(labels.iter().all(|(left, _)| (0..=10_000).contains(left)));
        assert!(labels.windows(2).all(|w| w[0].0 < w[1].0));
        // Local time half an hour off: marks fall on local even minutes.
        let names: Vec<String> = x_labels(end, 600_000, 120_000, 30)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(names[0], "14:06");
        // A one-minute window: every 10 s, with seconds.
        assert_eq!(label_step(60_000), 10_000);
        let names: Vec<String> = x_labels(end, 60_000, 10_000, 0)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            names,
            ["13:44:10", "13:44:20", "13:44:30", "13:44:40", "13:44:50", "13:45:00"]
        );
        assert_eq!(label_step(180_000), 30_000);
        assert_eq!(label_step(24 * 3_600_000), 600_000);
        assert_eq!(percent(1234), "12.34%");
        assert_eq!(percent(20_000), "100.00%");
    }

    #[test]
    fn windows_grow_by_the_minute() {
        assert_eq!(window_for(0, 0, 600_000), 30_000);
        assert_eq!(window_for(0, 9_000, 600_000), 30_000);
        assert_eq!(window_for(0, 30_000, 600_000), 60_000);
        assert_eq!(window_for(0, 60_000, 600_000), 120_000);
        assert_eq!(window_for(0, 150_000, 600_000), 180_000);
        assert_eq!(window_for(0, 598_000, 600_000), 600_000);
        assert_eq!(window_for(0, 3_600_000, 600_000), 600_000);
        assert_eq!(window_for(5, 0, 600_000), 30_000);
        assert_eq!(label_step(30_000), 5_000);
    }

    #[test]
    fn nearest_points() {
        let times = [0, 2000, 4000];
        assert_eq!(nearest(&times, -5), Some(0));
        assert_eq!(nearest(&times, 999), Some(0));
        assert_eq!(nearest(&times, 1001), Some(1));
        assert_eq!(nearest(&times, 9999), Some(2));
        assert_eq!(nearest(&[], 1), None);
    }
}
