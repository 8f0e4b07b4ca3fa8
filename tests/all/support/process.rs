//! Running the `wasmtx` command as a user does: the binary cargo built for the tests, commands
//! run to completion, and `wasmtx serve` started on a free loopback port and stopped
//! by its PID.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `wasmtx` binary cargo built for this test run (with the same features as the library
/// under test).
///
/// # Errors
/// Never: the `Result` keeps the callers' shape.
pub fn wasmtx_bin() -> Result<&'static Path> {
    Ok(Path::new(env!("CARGO_BIN_EXE_wasmtx")))
}

/// The user the commands run as, as the audit trail names them (`cli:<user>`).
pub const TEST_USER: &str = "wasmtx-tester";

/// A command line of `wasmtx`, with no `REDIS_URL` or `WASMTX_*` from the environment, run as
/// [`TEST_USER`].
///
/// # Errors
/// If the binary cannot be built.
pub fn wasmtx() -> Result<Command> {
    let mut command = Command::new(wasmtx_bin()?);
    command.env_remove("REDIS_URL").env_remove("WASMTX_TOKEN").env_remove("WASMTX_DATA_DIR");
    command.env_remove("WASMTX_PREFIX").env_remove("WASMTX_CACHE_DIR").env_remove("WASMTX_LOG");
    command.env_remove("WASMTX_TOKENS").env_remove("WASMTX_AUDIT_RETENTION");
    command.env("USER", TEST_USER);
    Ok(command)
}

/// What a finished command printed and its exit code.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    ///
    /// # Errors
    /// If it is not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("stdout is not JSON: {}", self.stdout))
    }

    /// Fails unless the command exited with `code`.
    ///
    /// # Errors
    /// With the command's output when the code differs.
    pub fn expect(self, code: i32) -> Result<Self> {
        if self.code != Some(code) {
            bail!("expected exit code {code}, got {:?}\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr);
        }
        Ok(self)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `wasmtx` with `args` in `dir`, to completion.
///
/// # Errors
/// If it cannot be started.
pub fn run_in(dir: &Path, args: &[&str]) -> Result<Run> {
    let output = wasmtx()?.current_dir(dir).args(args).stdin(Stdio::null()).output().context("running wasmtx")?;
    Ok(output.into())
}

/// A `wasmtx serve` process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The last lines the server wrote to stderr, for a failing test to show.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// How many of the server's stderr lines [`Server::stderr_tail`] keeps.
const STDERR_TAIL_LINES: usize = 40;

impl Server {
    /// Starts `wasmtx <args> serve --addr 127.0.0.1:0 <serve_args>` in `dir` and waits (at
    /// most 30 s) for it to print the address it listens on.
    ///
    /// # Errors
    /// If it cannot start, exits, or prints no address in time (its stderr is in the error).
    pub fn start(dir: &Path, global: &[&str], serve_args: &[&str]) -> Result<Self> {
        let mut child = wasmtx()?
            .current_dir(dir)
            .args(global)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(serve_args)
            // A panic's message and site fit in the stderr tail; a backtrace would push them out.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wasmtx serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining, so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output()?;
                bail!("wasmtx serve did not start: {}", String::from_utf8_lossy(&output.stderr));
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}"))?
            .to_owned();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            // Keep draining (a full pipe would block the server) and keep the last lines.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut tail = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        Ok(Self { child, url, stderr_tail })
    }

    /// The last lines (at most 40) the server wrote to stderr so far, one per line, for the
    /// error of a failing test.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// The URL of `path` on this server.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (with the `kill` command).
    ///
    /// # Errors
    /// If `kill` fails.
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits (polling, at most `timeout`) for the process to exit, and returns its exit code.
    ///
    /// # Errors
    /// If it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if started.elapsed() > timeout {
                bail!("wasmtx serve (pid {}) still running after {timeout:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates one; `name` makes it easy to spot.
    ///
    /// # Errors
    /// If it cannot be created.
    pub fn new(name: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("wasmtx-{name}-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `check` until it returns `Some`, at most `timeout` (for state another process
/// changes; every poll is a real check, not a guess at how long something takes).
///
/// # Errors
/// If `check` fails or nothing came in time.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
