//! The web view's pictures, as SVG written here on the server: a container's memory over time
//! (series, the limit as a line, warnings and kills as markers that link to their stories),
//! the node view's sparklines, and a kill's composition. (Bars against a limit are HTML's own
//! `<meter>`.)
//!
//! Why not a charting library: in the browser (uPlot is the usual pick) it would be the only
//! JavaScript of any size the daemon serves, and its markers would need a plugin of our own to
//! be links; on the server, `plotters` cannot put a link or a tooltip on a mark. These
//! charts are lines and rectangles on two linear axes: written out, they stay a few KiB per
//! page, need no script to show (a page opened from a ticket draws at once), and are
//! checked as golden output. Values are attributes, never inline styles, so the page's
//! Content-Security-Policy can forbid inline styles; text goes through maud, escaped.

use maud::{Markup, html};

use crate::units::human;

/// One line on a chart: (Unix seconds, bytes) points, drawn with the CSS class `class`.
pub struct Line<'a> {
    pub label: &'a str,
    pub class: &'a str,
    pub points: Vec<(f64, f64)>,
    /// A step line (a limit holds until it changes), not a slope between samples.
    pub step: bool,
}

/// A warning or a kill on the time axis.
pub struct Marker {
    pub t: f64,
    /// Relative link to its story.
    pub href: String,
    pub title: String,
    /// `kill`, `warning` or `cleared`.
    pub class: &'static str,
}

const W: f64 = 960.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// A step of 1, 2 or 5 times a power of ten that cuts `span` in about `parts`.
fn nice_step(span: f64, parts: f64) -> f64 {
    let raw = (span / parts).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

/// A round number of seconds between time ticks: about six over `span`.
fn time_step(span: f64) -> f64 {
    [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0].into_iter().find(|s| span / s <= 7.0).unwrap_or(43200.0)
}

fn ago(s: f64) -> String {
    let s = s.round() as i64;
    match s {
        0 => "now".into(),
        _ if s % 3600 == 0 => format!("-{}h", s / 3600),
        _ if s % 60 == 0 => format!("-{}m", s / 60),
        _ => format!("-{s}s"),
    }
}

fn path(points: &[(f64, f64)], step: bool, x: impl Fn(f64) -> f64, y: impl Fn(f64) -> f64) -> String {
    let mut d = String::with_capacity(points.len() * 14);
    let mut last_y = None;
    for (k, (t, v)) in points.iter().enumerate() {
        let (px, py) = (x(*t), y(*v));
        if k == 0 {
            d += &format!("M{px:.1},{py:.1}");
        } else if step {
            d += &format!("H{px:.1}");
            if last_y != Some(py) {
                d += &format!("V{py:.1}");
            }
        } else {
            d += &format!("L{px:.1},{py:.1}");
        }
        last_y = Some(py);
    }
    d
}

/// Bytes over time from `t0` to `t1` (Unix seconds), the axes labelled in binary units and
/// in time before `t1`.
pub fn chart(lines: &[Line], markers: &[Marker], t0: f64, t1: f64) -> Markup {
    let span = (t1 - t0).max(1.0);
    let top = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(1.0) * 1.05;
    let x = |t: f64| LEFT + (t - t0) / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    // Ticks at round MiB counts (or bytes, for a tiny chart).
    let unit = if top >= 4.0 * 1048576.0 { 1048576.0 } else { 1.0 };
    let ystep = nice_step(top / unit, 4.0) * unit;
    let yticks: Vec<f64> = (0..).map(|k| k as f64 * ystep).take_while(|v| *v <= top).collect();
    let tstep = time_step(span);
    let tticks: Vec<f64> = (0..).map(|k| k as f64 * tstep).take_while(|a| *a <= span).collect();
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-label="memory over time" {
            @for v in &yticks {
                line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(*v))) y2=(format!("{:.1}", y(*v))) {}
                text.axis x=(LEFT - 6.0) y=(format!("{:.1}", y(*v) + 4.0)) text-anchor="end" { (human(*v)) }
            }
            @for a in &tticks {
                text.axis x=(format!("{:.1}", x(t1 - a))) y=(H - 6.0) text-anchor="middle" { (ago(*a)) }
            }
            @for l in lines {
                @if !l.points.is_empty() {
                    path class=(format!("series {}", l.class)) d=(path(&l.points, l.step, x, y)) fill="none" {
                        title { (l.label) }
                    }
                }
            }
            @for m in markers.iter().filter(|m| m.t >= t0 && m.t <= t1 + 1.0) {
                a.marker href=(m.href) {
                    title { (m.title) }
                    line class=(format!("mark {}", m.class)) x1=(format!("{:.1}", x(m.t))) x2=(format!("{:.1}", x(m.t))) y1=(TOP) y2=(H - BOTTOM) {}
                    // A wide invisible band to click, and a head to see.
                    rect.hit x=(format!("{:.1}", x(m.t) - 6.0)) y=(TOP) width="12" height=(H - TOP - BOTTOM) fill="transparent" {}
                    circle class=(format!("head {}", m.class)) cx=(format!("{:.1}", x(m.t))) cy=(TOP + 6.0) r="6" {}
                }
            }
        }
    }
}

/// A sparkline's path in whole pixels, a flat run as one horizontal segment.
fn spark_path(points: &[(f64, f64)], x: impl Fn(f64) -> f64, y: impl Fn(f64) -> f64) -> String {
    let px: Vec<(i64, i64)> = points.iter().map(|(a, b)| (x(*a).round() as i64, y(*b).round() as i64)).collect();
    let mut d = String::with_capacity(16);
    for (k, (a, b)) in px.iter().enumerate() {
        let prev = k.checked_sub(1).map(|j| px[j]);
        match prev {
            None => d += &format!("M{a},{b}"),
            Some((_, pb)) if pb == *b => {
                // Still flat: drawn when it ends (the next change, or the last point).
                if px.get(k + 1).is_none_or(|n| n.1 != *b) {
                    d += &format!("H{a}");
                }
            }
            Some(_) => d += &format!("L{a},{b}"),
        }
    }
    d
}

/// A small line of `values` (oldest first) on a scale of `top`.
pub fn sparkline(values: &[u64], top: u64) -> Markup {
    let (w, h) = (120.0, 24.0);
    let top = values.iter().copied().fold(top, u64::max).max(1) as f64;
    let n = values.len().max(2) as f64 - 1.0;
    let pts: Vec<(f64, f64)> = values.iter().enumerate().map(|(k, v)| (k as f64, *v as f64)).collect();
    // Whole pixels: a thousand rows of sparklines stay small.
    let d = spark_path(&pts, |k| k / n * w, |v| h - 1.0 - v / top * (h - 2.0));
    html! {
        svg.spark viewBox="0 0 120 24" {
            @if pts.len() > 1 { path d=(d) {} }
        }
    }
}

/// What a container's memory was made of (anon, file, shmem, kernel: those known) against
/// its limit, as one stacked bar with a legend.
pub fn composition(parts: &[(&str, &str, u64)], limit: Option<u64>) -> Markup {
    let total: u64 = parts.iter().map(|p| p.2).sum();
    let scale = limit.unwrap_or(total).max(total).max(1) as f64;
    let w = 600.0;
    let mut at = 0.0;
    let rects: Vec<(&str, &str, u64, f64, f64)> = parts
        .iter()
        .map(|(label, class, b)| {
            let width = *b as f64 / scale * w;
            let r = (*label, *class, *b, at, width);
            at += width;
            r
        })
        .collect();
    html! {
        svg.composition viewBox=(format!("0 0 {} 28", w + 2.0)) role="img" aria-label="memory at the kill by kind" {
            rect.track x="1" y="4" width=(w) height="20" {}
            @for (label, class, b, x, width) in &rects {
                rect class=(format!("part {class}")) x=(format!("{:.1}", 1.0 + x)) y="4" width=(format!("{width:.1}")) height="20" {
                    title { (label) " " (human(*b as f64)) }
                }
            }
            @if limit.is_some() {
                line.limit x1=(w + 1.0) x2=(w + 1.0) y1="0" y2="28" {}
            }
        }
        ul.legend {
            @for (label, class, b, _, _) in &rects {
                li { span class=(format!("swatch {class}")) {} (label) " " (human(*b as f64)) }
            }
            @if let Some(l) = limit { li { span class="swatch limit" {} "limit " (human(l as f64)) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(time_step(900.0), 300.0);
        assert_eq!(time_step(60.0), 10.0);
        assert_eq!(ago(600.0), "-10m");
        assert_eq!(ago(0.0), "now");
    }

    #[test]
    fn a_limit_is_a_step_line_and_a_marker_a_link_with_its_title_escaped() {
        let lines = [
            Line { label: "working set", class: "ws", points: vec![(0.0, 1.0), (10.0, 2.0)], step: false },
            Line { label: "limit", class: "limit", points: vec![(0.0, 4.0), (5.0, 4.0), (10.0, 8.0)], step: true },
        ];
        let markers = [Marker { t: 5.0, href: "../events/3".into(), title: "kill <b>".into(), class: "kill" }];
        let svg = chart(&lines, &markers, 0.0, 10.0).into_string();
        assert!(svg.contains("M70.0,149.3H510.0H950.0V22.7"), "{svg}");
        assert!(svg.contains(r#"<a class="marker" href="../events/3"><title>kill &lt;b&gt;</title>"#), "{svg}");
        // A marker outside the window is left out.
        let svg = chart(&lines, &[Marker { t: 50.0, href: "x".into(), title: "t".into(), class: "kill" }], 0.0, 10.0).into_string();
        assert!(!svg.contains("marker"), "{svg}");
    }

    #[test]
    fn a_sparkline_is_scaled_to_the_limit_in_whole_pixels() {
        let s = sparkline(&[0, 50, 100], 100).into_string();
        assert!(s.contains(r#"d="M0,23L60,12L120,1""#), "{s}");
        // A flat run is one segment.
        let s = sparkline(&[0, 0, 0, 0, 100, 100, 100], 100).into_string();
        assert!(s.contains(r#"d="M0,23H60L80,1H120""#), "{s}");
        // Above the limit (a machine's), scaled to its own top.
        let s = sparkline(&[0, 200], 100).into_string();
        assert!(s.contains(r#"d="M0,23L120,1""#), "{s}");
        assert!(!sparkline(&[5], 100).into_string().contains("<path"), "one point draws nothing");
    }

    #[test]
    fn a_composition_scales_to_the_limit_or_the_total_above_it() {
        let s = composition(&[("anon", "anon", 50), ("file", "file", 25)], Some(100)).into_string();
        assert!(s.contains(r#"width="300.0""#) && s.contains(r#"x="301.0""#), "{s}");
        assert!(s.contains("limit 100 B"), "{s}");
        let s = composition(&[("anon", "anon", 150)], Some(100)).into_string();
        assert!(s.contains(r#"width="600.0""#), "{s}");
    }
}
