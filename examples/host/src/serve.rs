//! One `wasmtx serve` process on a store, started on a free loopback port and killed (SIGKILL:
//! a crash, not a shutdown) when dropped. Shared by the chaos suite's fleet and the benchmark's
//! HTTP row.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `wasmtx serve`.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    url: String,
}

impl ServeProcess {
    /// Starts `bin serve` on `store` under `prefix` (no rule cache, errors-only logs, no
    /// `REDIS_URL` or `WASMTX_TOKEN` from the environment), with `serve_args` after
    /// `serve --addr 127.0.0.1:0`, and waits for the address it prints.
    ///
    /// # Errors
    /// If it cannot be started or prints no address within 30 s (it is killed then).
    pub fn start(bin: &Path, store: &str, prefix: &str, serve_args: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["--store", store, "--prefix", prefix, "--no-cache", "serve", "--addr", "127.0.0.1:0"])
            .args(serve_args)
            .env_remove("REDIS_URL")
            .env_remove("WASMTX_TOKEN")
            .env("WASMTX_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {} serve (build it: cargo build --release --bin wasmtx)", bin.display())
            })?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining, so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(Some(Ok(line))) = rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wasmtx serve printed no address within {START_TIMEOUT:?}");
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // SIGKILL by PID; one that already exited is fine. Waiting reaps it (no async work).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
