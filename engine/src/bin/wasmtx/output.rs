//! Printing results: JSON for scripts (`--json`), short aligned text for people (built with
//! `wasmtx::views`).

use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON in `--json` mode, else the text `human` makes.
    pub fn show<T: Serialize>(self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(text) => print_line(&text),
                Err(e) => eprintln!("wasmtx: cannot encode the result: {e}"),
            }
        } else {
            print_line(human().trim_end());
        }
    }
}

/// Writes one line to stdout. A closed pipe (`wasmtx ... | head -1`) is not an error worth a
/// panic: the reader has what it wanted, so the process just stops writing.
fn print_line(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("wasmtx: cannot write the result: {e}");
    }
}
