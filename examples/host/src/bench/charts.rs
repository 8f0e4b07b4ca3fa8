//! SVG charts of a run's rows, written beside the results file: per workload, throughput
//! against callers and latency (p50, p99) against callers, one line per implementation.
//!
//! Hand-written SVG (no plotting dependency): a title, axes with ticks and gridlines, one
//! polyline with markers per series, a legend. Both y axes are logarithmic: the
//! implementations differ by up to two orders of magnitude in throughput and the p99s by three
//! in latency, which a linear axis would flatten into the floor. The x axis places the
//! measured caller counts evenly (1, 16, 64 are the usual ones), so any `--concurrency` list
//! reads. Output depends only on the rows, and numbers are printed with fixed precision, so
//! the same rows give the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::impls::Impl;
use super::run::Row;
use super::workloads::Workload;

/// The folder beside the results file the charts go into.
pub const DIR: &str = "bench-charts";

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
/// The plot area: left, right, top, bottom edges. Right of it, the legend: room for about 30
/// characters ("engine, lock (no grouping) p99").
const PLOT: (f64, f64, f64, f64) = (72.0, 480.0, 44.0, 364.0);

/// Which chart of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Operations per second against callers.
    Throughput,
    /// p50 and p99 latency against callers.
    Latency,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::Latency => "latency",
        }
    }
}

/// The chart's path relative to the results file, as the Markdown links it.
pub fn link(workload: Workload, kind: Kind) -> String {
    format!("{DIR}/{}-{}.svg", workload.name(), kind.name())
}

/// Writes both charts of every workload with rows into `DIR` beside `results_file`, returning
/// the paths written.
///
/// # Errors
/// If the folder cannot be created or a file cannot be written.
pub fn write_all(results_file: &Path, rows: &[Row]) -> Result<Vec<PathBuf>> {
    let base = results_file.parent().unwrap_or_else(|| Path::new(""));
    let mut written = Vec::new();
    for workload in Workload::ALL {
        if !rows.iter().any(|r| r.workload == workload) {
            continue;
        }
        std::fs::create_dir_all(base.join(DIR)).with_context(|| base.join(DIR).display().to_string())?;
        for kind in [Kind::Throughput, Kind::Latency] {
            let path = base.join(link(workload, kind));
            std::fs::write(&path, svg(workload, kind, rows)).with_context(|| path.display().to_string())?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One line of a chart: its label, colour, dash pattern and (callers, value) points.
struct Series {
    label: String,
    key: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(usize, f64)>,
}

/// A stable colour per implementation, so a line keeps its colour across charts.
fn colour(imp: Impl) -> &'static str {
    match imp.key() {
        "lock" => "#1f77b4",
        "lock1" => "#17becf",
        "optimistic" => "#ff7f0e",
        "optimistic-cold" => "#bcbd22",
        "optimistic-2e" => "#8c564b",
        "adaptive" => "#e377c2",
        "adaptive-2e" => "#aec7e8",
        "pipeline" => "#2ca02c",
        "lua" => "#9467bd",
        "hand" => "#d62728",
        _ => "#7f7f7f",
    }
}

/// The chart `kind` of `workload` from the rows of that workload in `rows`.
pub fn svg(workload: Workload, kind: Kind, rows: &[Row]) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == workload).collect();
    let mut callers: Vec<usize> = mine.iter().map(|r| r.concurrency).collect();
    callers.sort_unstable();
    callers.dedup();
    let mut series = Vec::new();
    for imp in workload.impls() {
        let mut these: Vec<&Row> = mine.iter().copied().filter(|r| r.imp == imp).collect();
        if these.is_empty() {
            continue;
        }
        these.sort_by_key(|r| r.concurrency);
        let line = |label: String, dashed, value: &dyn Fn(&Row) -> f64| Series {
            label,
            key: imp.key().to_owned(),
            colour: colour(imp),
            dashed,
            points: these.iter().map(|r| (r.concurrency, value(r))).collect(),
        };
        match kind {
            Kind::Throughput => series.push(line(imp.label(), false, &|r| r.ops_per_sec())),
            Kind::Latency => {
                series.push(line(format!("{} p50", imp.label()), true, &|r| r.p50.as_secs_f64() * 1e3));
                series.push(line(format!("{} p99", imp.label()), false, &|r| r.p99.as_secs_f64() * 1e3));
            }
        }
    }
    let short = workload.title().split(':').next().unwrap_or_default();
    let (title, y_label, unit) = match kind {
        Kind::Throughput => (format!("{short}: throughput vs callers"), "ops/s (log scale)", "ops/s"),
        Kind::Latency => (format!("{short}: latency p50 (dashed) and p99 vs callers"), "ms (log scale)", "ms"),
    };
    render(&title, y_label, unit, &callers, &series)
}

/// A logarithmic axis over whole decades: `10^lo ..= 10^hi`.
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> Self {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            return Self { lo: 0, hi: 1 };
        }
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        Self { lo, hi }
    }

    /// The y coordinate of `v` in the plot area.
    fn y(&self, v: f64) -> f64 {
        let (_, _, top, bottom) = PLOT;
        let t = (v.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo);
        bottom - t * (bottom - top)
    }

    /// Ticks as (mantissa, exponent): every decade, and 2 and 5 within it when the axis spans
    /// few decades (otherwise the labels crowd).
    fn ticks(&self) -> Vec<(u32, i32)> {
        let mantissas: &[u32] = if self.hi - self.lo <= 2 { &[1, 2, 5] } else { &[1] };
        let mut out = Vec::new();
        for e in self.lo..=self.hi {
            for &m in mantissas {
                if e < self.hi || m == 1 {
                    out.push((m, e));
                }
            }
        }
        out
    }
}

/// `m × 10^e` as a short label: 500, 2k, 10k, 1M, 0.05.
fn tick_label(m: u32, e: i32) -> String {
    match e {
        6.. => format!("{}M", u64::from(m) * 10u64.pow((e - 6) as u32)),
        3.. => format!("{}k", u64::from(m) * 10u64.pow((e - 3) as u32)),
        0.. => format!("{}", u64::from(m) * 10u64.pow(e as u32)),
        _ => format!("{:.*}", (-e) as usize, f64::from(m) * 10f64.powi(e)),
    }
}

/// A value for a marker's tooltip.
fn value_label(v: f64, unit: &str) -> String {
    if unit == "ms" { format!("{v:.2} ms") } else { format!("{v:.0} {unit}") }
}

/// Text escaped for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn render(title: &str, y_label: &str, unit: &str, callers: &[usize], series: &[Series]) -> String {
    let (left, right, top, bottom) = PLOT;
    let axis = LogAxis::covering(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    // Evenly spaced caller counts, half a step in from each edge.
    let step = (right - left) / callers.len().max(1) as f64;
    let x = |c: usize| left + step * (callers.iter().position(|&k| k == c).unwrap_or(0) as f64 + 0.5);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Gridlines and y ticks.
    for (m, e) in axis.ticks() {
        let y = axis.y(f64::from(m) * 10f64.powi(e));
        // Decades stand out; the 2 and 5 lines between them stay faint.
        let stroke = if m == 1 { "#cccccc" } else { "#eeeeee" };
        let _ = writeln!(
            s,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="1.0"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            // Milliseconds from a second up read as seconds, not as "1k" ms.
            if unit == "ms" && e >= 3 { format!("{} s", tick_label(m, e - 3)) } else { tick_label(m, e) }
        );
    }
    for &c in callers {
        let cx = x(c);
        let _ = writeln!(
            s,
            r##"<line x1="{cx:.1}" y1="{top:.1}" x2="{cx:.1}" y2="{bottom:.1}" stroke="#eeeeee" stroke-width="1.0"/>"##
        );
        let _ = writeln!(s, r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#, bottom + 16.0);
    }

    // Axes and their labels.
    let _ = writeln!(
        s,
        r##"<path d="M{left:.1},{top:.1} V{bottom:.1} H{right:.1}" fill="none" stroke="#333333" stroke-width="1.0"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">callers</text>"#,
        (left + right) / 2.0,
        bottom + 36.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        escape(y_label)
    );

    // The series: a polyline (non-positive values, which a log axis cannot place, left out)
    // and a marker per point with its figure as a tooltip.
    for line in series {
        let points: Vec<(usize, f64)> =
            line.points.iter().copied().filter(|(_, v)| *v > 0.0 && v.is_finite()).collect();
        let dash = if line.dashed { r#" stroke-dasharray="5 4""# } else { "" };
        let coords: Vec<String> = points.iter().map(|&(c, v)| format!("{:.1},{:.1}", x(c), axis.y(v))).collect();
        let _ = writeln!(
            s,
            r#"<polyline data-series="{}" points="{}" fill="none" stroke="{}" stroke-width="2.0"{dash}/>"#,
            escape(&line.key),
            coords.join(" "),
            line.colour
        );
        for &(c, v) in &points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}, {c} caller{}: {}</title></circle>"#,
                x(c),
                axis.y(v),
                line.colour,
                escape(&line.label),
                if c == 1 { "" } else { "s" },
                value_label(v, unit)
            );
        }
    }

    // The legend, right of the plot.
    for (i, line) in series.iter().enumerate() {
        let y = top + 8.0 + 20.0 * i as f64;
        let dash = if line.dashed { r#" stroke-dasharray="5 4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2.0"{dash}/>"#,
            right + 16.0,
            right + 40.0,
            line.colour
        );
        let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#, right + 28.0, line.colour);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            right + 46.0,
            y + 4.0,
            escape(&line.label)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(workload: Workload, imp: Impl, concurrency: usize, ops: u64, p50_us: u64, p99_us: u64) -> Row {
        Row {
            workload,
            imp,
            concurrency,
            ops,
            rejected: 0,
            errors: 0,
            first_error: None,
            window: Duration::from_secs(2),
            p50: Duration::from_micros(p50_us),
            p99: Duration::from_micros(p99_us),
            commands_per_op: 2.0,
            round_trips_per_op: 2.0,
            client_round_trips_per_op: None,
            client_cpu_us: 10.0,
            redis_cpu_us: 10.0,
            invariant: Ok("fine".into()),
            phases: None,
            cache: None,
            on: "single server",
            stats: crate::bench::server::ServerStats::default(),
        }
    }

    fn rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for (i, imp) in [Impl::LOCK, Impl::Lua, Impl::Hand].into_iter().enumerate() {
            for (j, c) in [1, 16, 64].into_iter().enumerate() {
                let k = (i + 1) as u64 * (j + 1) as u64;
                rows.push(row(Workload::Bank, imp, c, 10_000 * k, 100 * k, 1_000 * k));
            }
        }
        // Another workload's row, which the bank charts leave out.
        rows.push(row(Workload::HotCounter, Impl::LOCK, 1, 5, 5, 5));
        rows
    }

    /// Checks that `text` is well-formed XML as far as these charts use it: one root, every
    /// element closed in order, attributes quoted, `&` only in entities, no `<` in text.
    fn well_formed(text: &str) -> std::result::Result<(), String> {
        let mut open: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            check_text(&rest[..start])?;
            let end = rest[start..].find('>').ok_or("unterminated tag")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let top = open.pop().ok_or(format!("</{name}> closes nothing"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().ok_or("empty tag")?;
            let attrs = &body[name.len()..];
            if !attrs.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            check_text(&attrs.replace('"', ""))?;
            if open.is_empty() {
                roots += 1;
            }
            if !self_closing {
                open.push(name);
            }
        }
        check_text(rest)?;
        if !open.is_empty() {
            return Err(format!("unclosed {open:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    fn check_text(text: &str) -> std::result::Result<(), String> {
        if text.contains('>') {
            return Err(format!("stray > in {text:?}"));
        }
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity) {
                return Err(format!("bare & in {text:?}"));
            }
        }
        Ok(())
    }

    #[test]
    fn same_rows_give_the_same_bytes() {
        for kind in [Kind::Throughput, Kind::Latency] {
            let mut reversed = rows();
            reversed.reverse();
            assert_eq!(svg(Workload::Bank, kind, &rows()), svg(Workload::Bank, kind, &rows()));
            assert_eq!(svg(Workload::Bank, kind, &rows()), svg(Workload::Bank, kind, &reversed));
        }
    }

    #[test]
    fn one_line_per_implementation_and_two_for_latency() {
        let throughput = svg(Workload::Bank, Kind::Throughput, &rows());
        assert_eq!(throughput.matches("<polyline").count(), 3);
        for key in ["lock", "lua", "hand"] {
            assert_eq!(throughput.matches(&format!(r#"data-series="{key}""#)).count(), 1, "{key}");
        }
        assert!(throughput.contains("engine, lock"));
        assert!(!throughput.contains("optimistic"), "no rows, no line");
        let latency = svg(Workload::Bank, Kind::Latency, &rows());
        assert_eq!(latency.matches("<polyline").count(), 6);
        assert!(latency.contains("Lua script p99"));
        // Three points per line, a marker each.
        assert_eq!(throughput.matches("<circle").count(), 3 * 3 + 3, "markers plus legend");
    }

    #[test]
    fn charts_are_well_formed() {
        for kind in [Kind::Throughput, Kind::Latency] {
            let text = svg(Workload::Bank, kind, &rows());
            well_formed(&text).unwrap_or_else(|e| panic!("{kind:?}: {e}\n{text}"));
            assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"420\""));
        }
        // Degenerate input: no rows, or one caller count with a zero.
        well_formed(&svg(Workload::Append, Kind::Throughput, &[])).unwrap_or_else(|e| panic!("{e}"));
        let zero = vec![row(Workload::Bank, Impl::Hand, 8, 0, 0, 0)];
        well_formed(&svg(Workload::Bank, Kind::Latency, &zero)).unwrap_or_else(|e| panic!("{e}"));
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b & "c">'d'"#), "a&lt;b &amp; &quot;c&quot;&gt;&apos;d&apos;");
    }

    #[test]
    fn log_axis_ticks_and_labels() {
        let axis = LogAxis::covering([2_867.0, 336_548.0].into_iter());
        assert_eq!((axis.lo, axis.hi), (3, 6));
        assert_eq!(axis.ticks(), vec![(1, 3), (1, 4), (1, 5), (1, 6)]);
        let labels: Vec<String> = axis.ticks().into_iter().map(|(m, e)| tick_label(m, e)).collect();
        assert_eq!(labels, ["1k", "10k", "100k", "1M"]);
        let narrow = LogAxis::covering([0.06, 0.9].into_iter());
        let labels: Vec<String> = narrow.ticks().into_iter().map(|(m, e)| tick_label(m, e)).collect();
        assert_eq!(labels, ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]);
        assert!(axis.y(1_000.0) > axis.y(1_000_000.0), "larger values higher up");
    }

    #[test]
    fn links_are_relative() {
        assert_eq!(link(Workload::Bank, Kind::Throughput), "bench-charts/bank-throughput.svg");
        assert_eq!(link(Workload::HotCounter, Kind::Latency), "bench-charts/hot-latency.svg");
    }
}
