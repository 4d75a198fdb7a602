//! Line charts as plain SVG text: a few dozen points per chart do not need a
//! plotting library, and the output stays small and diff-able in git.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A chart with optional log axes.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const W: f64 = 760.0;
const H: f64 = 440.0;
const L: f64 = 70.0; // left margin (y tick labels)
const R: f64 = 230.0; // right margin (legend)
const T: f64 = 40.0;
const B: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Axis range and ticks: decades on a log axis, ~6 round steps on a linear one.
fn axis(values: &[f64], log: bool) -> (f64, f64, Vec<f64>) {
    let pos: Vec<f64> = values.iter().copied().filter(|v| v.is_finite() && (!log || *v > 0.0)).collect();
    if pos.is_empty() {
        return (0.0, 1.0, vec![0.0, 1.0]);
    }
    let (mn, mx) = pos.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    if log {
        let (lo, hi) = (mn.log10().floor(), mx.log10().ceil().max(mn.log10().floor() + 1.0));
        let ticks = (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect();
        (10f64.powf(lo), 10f64.powf(hi), ticks)
    } else {
        let span = if mx > mn { mx - mn } else { mx.abs().max(1.0) };
        let raw = span / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(mag * 10.0);
        let lo = (mn.min(0.0) / step).floor() * step;
        let hi = (mx / step).ceil() * step;
        let n = ((hi - lo) / step).round() as usize;
        (lo, hi, (0..=n).map(|i| lo + step * i as f64).collect())
    }
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let xs: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
        let ys: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
        let (x0, x1, xt) = axis(&xs, self.log_x);
        let (y0, y1, yt) = axis(&ys, self.log_y);
        let f = |v: f64, lo: f64, hi: f64, log: bool| {
            if log {
                (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
            } else {
                (v - lo) / (hi - lo)
            }
        };
        let px = |x: f64| L + f(x, x0, x1, self.log_x) * (W - L - R);
        let py = |y: f64| H - B - f(y, y0, y1, self.log_y) * (H - T - B);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#, (L + W - R) / 2.0, esc(&self.title));
        for t in &yt {
            let y = py(*t);
            let _ = writeln!(
                s,
                r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - R,
                L - 6.0,
                y + 4.0,
                fmt_tick(*t)
            );
        }
        let mut xticks = xt.clone();
        if self.log_x {
            // Label the measured x values themselves (1, 4, 16, 64 ...).
            xticks = xs.clone();
            xticks.sort_by(f64::total_cmp);
            xticks.dedup();
        }
        for t in &xticks {
            let x = px(*t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                H - B,
                H - B + 16.0,
                fmt_tick(*t)
            );
        }
        let _ = writeln!(s, r##"<rect x="{L}" y="{T}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##, W - L - R, H - T - B);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, (L + W - R) / 2.0, H - 12.0, esc(&self.x_label));
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            (T + H - B) / 2.0,
            (T + H - B) / 2.0,
            esc(&self.y_label)
        );
        for (i, se) in self.series.iter().enumerate() {
            let pts: Vec<String> = se
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0) && (!self.log_x || *x > 0.0))
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let dash = if se.dashed { r#" stroke-dasharray="6 4""# } else { "" };
            if !pts.is_empty() {
                let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#, pts.join(" "), se.color);
                for p in &pts {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#, se.color);
                }
            }
            let ly = T + 10.0 + 18.0 * i as f64;
            let lx = W - R + 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 24.0,
                se.color,
                lx + 30.0,
                ly + 4.0,
                esc(&se.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_document() {
        let c = Chart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            log_y: true,
            series: vec![Series { label: "s".into(), color: "red", dashed: true, points: vec![(1.0, 0.5), (4.0, 300.0)] }],
        };
        let svg = c.render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b") && svg.contains("<polyline"));
    }
}
