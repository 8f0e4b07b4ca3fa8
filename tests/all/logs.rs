//! The command's logs: plain text without colour codes when stderr is not a terminal (a file,
//! a pipe, a log collector), one JSON object per line with `WASMTX_LOG_FORMAT=json`, and a
//! typed refusal of any other format.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

use crate::process::{TempDir, wasmtx};

/// How long `wasmtx serve` may take to log that it serves.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `wasmtx serve` with stderr piped and the environment `env`, and returns its stderr
/// lines up to and including the one that says it serves; the server is killed.
fn serve_log(env: &[(&str, &str)]) -> Result<Vec<String>> {
    let dir = TempDir::new("logs")?;
    let mut child: Child = wasmtx()?
        .current_dir(dir.path())
        .env_remove("WASMTX_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wasmtx serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let outcome = loop {
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let serving = line.contains("serving");
                lines.push(line);
                if serving {
                    break Ok(lines);
                }
            }
            Err(_) => break Err(anyhow::anyhow!("wasmtx serve logged no `serving` line; it logged {lines:?}")),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// Piped to a file, the text logs carry no ANSI escape codes (they did: colours were on
/// whatever stderr was).
#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() -> Result<()> {
    let lines = serve_log(&[])?;
    for line in &lines {
        ensure!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
    ensure!(lines.iter().any(|l| l.contains("INFO") && l.contains("serving")), "{lines:?}");
    Ok(())
}

/// `WASMTX_LOG_FORMAT=json`: every line is one JSON object with a level and a message, and the
/// event's fields as JSON values.
#[test]
fn json_logs_are_one_object_per_line() -> Result<()> {
    let lines = serve_log(&[("WASMTX_LOG_FORMAT", "json")])?;
    for line in &lines {
        let record: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not one JSON object: {line:?}"))?;
        ensure!(record["level"].is_string() && record["timestamp"].is_string(), "{record}");
        ensure!(record["fields"]["message"].is_string(), "{record}");
    }
    let serving = lines.last().context("no line")?;
    let record: serde_json::Value = serde_json::from_str(serving)?;
    ensure!(record["fields"]["message"] == "serving" && record["fields"]["tokens"] == 0, "{record}");
    Ok(())
}

/// Any other format is bad input (exit code 3), said in one line, before anything runs.
#[test]
fn an_unknown_log_format_is_refused() -> Result<()> {
    let dir = TempDir::new("logs-bad")?;
    let out = wasmtx()?.current_dir(dir.path()).env("WASMTX_LOG_FORMAT", "xml").args(["rule", "list"]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(3), "exit {:?}: {stderr}", out.status.code());
    ensure!(stderr.trim() == "wasmtx: error: WASMTX_LOG_FORMAT is \"xml\": use `text` or `json`", "{stderr}");
    ensure!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
