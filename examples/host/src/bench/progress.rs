//! Progress while the rows run: `[3/42] bank, engine, lock, 64 callers … ETA 1m 52s` before
//! each row. On a terminal the line is redrawn in place (`\r`, clear to end of line) and
//! cleared before the row's result is printed; otherwise (a log, CI) it is a plain line per
//! row, without escape codes.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Carriage return and ANSI "erase to end of line": redraws the current line.
const REDRAW: &str = "\r\x1b[K";

/// The rows of a run, counted as they start.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    started_rows: usize,
    /// What a row takes by its settings (warm-up + window), before any row has finished.
    nominal: Duration,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// Progress over `total` rows of `nominal` each, drawn in place when stderr is a terminal.
    pub fn new(total: usize, nominal: Duration) -> Self {
        Self { total, started_rows: 0, nominal, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    /// Announces the next row, described by `what`.
    pub fn row(&mut self, what: &str) {
        self.started_rows += 1;
        let finished = self.started_rows - 1;
        let left = self.total.saturating_sub(finished);
        let line = line(self.started_rows, self.total, what, eta(left, finished, self.started.elapsed(), self.nominal));
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(render(&line, self.terminal).as_bytes());
        let _ = err.flush();
    }

    /// Clears the in-place line (on a terminal) so that the row's result prints on a clean line.
    pub fn clear(&self) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(REDRAW.as_bytes());
            let _ = err.flush();
        }
    }
}

/// The time left for `left` rows: the mean of the `finished` rows so far (which includes
/// seeding and the invariant check), or `nominal` per row before one has finished.
pub fn eta(left: usize, finished: usize, elapsed: Duration, nominal: Duration) -> Duration {
    let per_row = if finished == 0 { nominal } else { elapsed / u32::try_from(finished).unwrap_or(u32::MAX) };
    per_row.saturating_mul(u32::try_from(left).unwrap_or(u32::MAX))
}

/// A duration as `45s`, `1m 52s` or `1h 05m`, rounded to the second.
pub fn format_eta(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `[3/42] bank, engine, lock, 64 callers … ETA 1m 52s`.
pub fn line(n: usize, total: usize, what: &str, eta: Duration) -> String {
    format!("[{n}/{total}] {what} … ETA {}", format_eta(eta))
}

/// What goes to stderr: redrawn in place on a terminal, a plain line otherwise.
pub fn render(line: &str, terminal: bool) -> String {
    if terminal { format!("{REDRAW}bench: {line}") } else { format!("bench: {line}\n") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_formats() {
        assert_eq!(format_eta(Duration::ZERO), "0s");
        assert_eq!(format_eta(Duration::from_millis(44_600)), "45s");
        assert_eq!(format_eta(Duration::from_secs(112)), "1m 52s");
        assert_eq!(format_eta(Duration::from_secs(3600 + 5 * 60 + 59)), "1h 05m");
    }

    #[test]
    fn eta_uses_settings_then_the_rate_so_far() {
        let nominal = Duration::from_millis(2_500);
        assert_eq!(eta(42, 0, Duration::ZERO, nominal), Duration::from_secs(105));
        // Two rows took 6 s: 3 s each for the 40 left (the current one included).
        assert_eq!(eta(40, 2, Duration::from_secs(6), nominal), Duration::from_secs(120));
        assert_eq!(eta(0, 42, Duration::from_secs(126), nominal), Duration::ZERO);
    }

    #[test]
    fn line_reads() {
        let l = line(3, 42, "bank, engine, lock, 64 callers", Duration::from_secs(112));
        assert_eq!(l, "[3/42] bank, engine, lock, 64 callers … ETA 1m 52s");
    }

    #[test]
    fn plain_lines_off_a_terminal_redrawn_on_one() {
        let plain = render("[1/2] x", false);
        assert_eq!(plain, "bench: [1/2] x\n");
        assert!(!plain.contains('\x1b') && !plain.contains('\r'));
        let drawn = render("[1/2] x", true);
        assert_eq!(drawn, "\r\x1b[Kbench: [1/2] x");
        assert!(!drawn.contains('\n'));
    }
}
