//! Inline SVG line plots of a value over time (a schedule's run durations
//! and bytes added): axes with "nice" ticks in a readable unit, time labels
//! in UTC, one `circle.pt` per point with a `<title>` tooltip. Pure string
//! building; every label goes through [`esc`].

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::esc;

const W: f64 = 560.0;
const H: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;

/// Units of durations in milliseconds.
pub const DURATION_UNITS: &[(f64, &str)] = &[
    (1.0, "ms"),
    (1000.0, "s"),
    (60_000.0, "min"),
    (3_600_000.0, "h"),
];

/// Units of sizes in bytes.
pub const BYTE_UNITS: &[(f64, &str)] = &[
    (1.0, "B"),
    (1024.0, "KiB"),
    (1_048_576.0, "MiB"),
    (1_073_741_824.0, "GiB"),
    (1_099_511_627_776.0, "TiB"),
];

/// A y axis: ticks from 0 to `max` every `step`, shown in `unit`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    max: f64,
    step: f64,
    unit: (f64, &'static str),
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= raw * 0.999_999)
        .unwrap_or(10.0 * mag)
}

fn axis(max: f64, units: &'static [(f64, &'static str)]) -> Axis {
    let unit = units
        .iter()
        .rev()
        .find(|(u, _)| max >= *u)
        .or(units.first())
        .copied()
        .unwrap_or((1.0, ""));
    let scaled = (max / unit.0).max(0.0);
    let step = if scaled == 0.0 {
        1.0
    } else {
        nice(scaled / 4.0)
    };
    let top = ((scaled / step).ceil().max(1.0)) * step;
    Axis {
        max: top * unit.0,
        step: step * unit.0,
        unit,
    }
}

/// `value` in the axis unit, with as many decimals as the step needs.
fn label(value: f64, a: &Axis) -> String {
    let v = value / a.unit.0;
    let step = a.step / a.unit.0;
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$} {}", a.unit.1)
}

fn time_format(span_ms: i64) -> &'static str {
    if span_ms <= 86_400_000 {
        "%H:%M:%S"
    } else if span_ms <= 2_592_000_000 {
        "%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    }
}

/// A plot of `points` (time, value ≥ 0), oldest first or in any order;
/// `units` picks how values are labelled. Fewer than one point gives a
/// short note instead.
pub fn plot(
    title: &str,
    points: &[(DateTime<Utc>, f64)],
    units: &'static [(f64, &'static str)],
    color: &str,
) -> String {
    let mut out = String::new();
    if points.is_empty() {
        let _ = write!(
            out,
            "<p class=\"muted\">{}: no succeeded runs yet.</p>",
            esc(title)
        );
        return out;
    }
    let mut pts: Vec<(i64, f64)> = points
        .iter()
        .map(|(t, v)| (t.timestamp_millis(), v.max(0.0)))
        .collect();
    pts.sort_by_key(|p| p.0);
    let (mut t0, mut t1) = (pts[0].0, pts[pts.len() - 1].0);
    if t1 - t0 < 1000 {
        t0 -= 30_000;
        t1 += 30_000;
    }
    let vmax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let a = axis(vmax, units);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| TOP + ph - v / a.max * ph;
    let _ = write!(
        out,
        "<svg class=\"plot-svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" \
         data-points=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui,sans-serif\" \
         font-size=\"12\">",
        esc(title),
        pts.len()
    );
    // Horizontal grid and y labels.
    let ticks = (a.max / a.step).round() as usize;
    for i in 0..=ticks {
        let v = a.step * i as f64;
        let yy = y(v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#586174\">{}</text>",
            W - RIGHT,
            if i == 0 { "#8c95a6" } else { "#e6e9ef" },
            LEFT - 6.0,
            yy + 4.0,
            esc(&label(v, &a))
        );
    }
    // Time ticks.
    let fmt = time_format(t1 - t0);
    let xticks = 4;
    for i in 0..=xticks {
        let t = t0 + (t1 - t0) * i / xticks;
        let xx = x(t);
        let text = DateTime::from_timestamp_millis(t)
            .map(|d| d.format(fmt).to_string())
            .unwrap_or_default();
        let anchor = match i {
            0 => "start",
            i if i == xticks => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#8c95a6\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#586174\">{}</text>",
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 17.0,
            esc(&text)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#8c95a6\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#7b8496\">time (UTC)</text>",
        TOP + ph,
        LEFT + pw / 2.0,
        H - 6.0
    );
    let line: Vec<String> = pts
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"/>",
        esc(color),
        line.join(" ")
    );
    for (t, v) in &pts {
        let when = DateTime::from_timestamp_millis(*t)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"><title>{}: {}</title></circle>",
            x(*t),
            y(*v),
            esc(color),
            esc(&when),
            esc(&label(*v, &a))
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice(0.3), 0.5);
        assert_eq!(nice(1.0), 1.0);
        assert_eq!(nice(1.2), 2.0);
        assert_eq!(nice(37.0), 50.0);
        assert_eq!(nice(0.0), 1.0);
    }

    #[test]
    fn axes_pick_a_unit() {
        let a = axis(3_500.0, DURATION_UNITS);
        assert_eq!(a.unit.1, "s");
        assert_eq!(a.max, 4_000.0);
        assert_eq!(label(2_000.0, &a), "2 s");
        let b = axis(0.0, BYTE_UNITS);
        assert_eq!((b.unit.1, b.max), ("B", 1.0));
        let c = axis(1.5 * 1_048_576.0, BYTE_UNITS);
        assert_eq!(c.unit.1, "MiB");
        assert_eq!(label(c.step, &c), "0.5 MiB");
    }

    #[test]
    fn plots_have_a_point_per_run_and_escape_titles() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let pts = [(t, 10.0), (t + chrono::Duration::seconds(2), 30.0)];
        let svg = plot("a<b", &pts, DURATION_UNITS, "#123456");
        assert_eq!(svg.matches("<circle class=\"pt\"").count(), 2);
        assert!(svg.contains("aria-label=\"a&lt;b\""));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(plot("x", &[], DURATION_UNITS, "#000").contains("no succeeded runs"));
        // One point: the time axis is padded, nothing divides by zero.
        assert!(!plot("x", &pts[..1], BYTE_UNITS, "#000").contains("NaN"));
    }
}
