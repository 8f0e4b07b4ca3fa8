//! The Redis the chaos run breaks: a private `redis-server` on a free loopback port that keeps
//! every acknowledged write on disk (`appendfsync always`), so that it can be killed with
//! SIGKILL and started again on the same port and data while the engines run: a restart loses
//! connections, never an acknowledged commit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use redis::aio::MultiplexedConnection;

/// A private, restartable Redis server, stopped by PID when dropped.
#[derive(Debug)]
pub struct ChaosRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl ChaosRedis {
    /// Starts one with its data in a fresh directory under the system's temporary directory,
    /// and waits (bounded) until it answers.
    ///
    /// # Errors
    /// If `redis-server` is not installed or does not answer within 10 s.
    pub async fn start() -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("wasmtx-chaos-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        // A port the OS just gave out and took back is free for the server to bind.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { dir, port, child: None };
        server.spawn()?;
        server.wait_until_ready().await?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            // Clients get `LOADING` replies while the data is read back, as from a large dataset.
            .args(["--loading-process-events-interval-bytes", "1024"])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? see the README)")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_until_ready(&self) -> Result<()> {
        let client = redis::Client::open(self.url())?;
        let mut last = None;
        for _ in 0..200 {
            match client.get_multiplexed_async_connection().await {
                // `PING` fails with LOADING while the append-only file is read back.
                Ok(mut conn) => match redis::cmd("PING").query_async::<String>(&mut conn).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the chaos redis-server on port {} did not answer within 10 s: {last:?}", self.port)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its append-only file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A plain connection that waits as long as a reply takes (an injected delay runs on one).
    ///
    /// # Errors
    /// If the server does not answer.
    pub async fn patient_connection(&self) -> Result<MultiplexedConnection> {
        let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(redis::Client::open(self.url())?.get_multiplexed_async_connection_with_config(&patient).await?)
    }

    /// Kills the server with SIGKILL (as a crash would) and starts it again on the same port
    /// and data; returns once it answers.
    ///
    /// # Errors
    /// If it cannot be started again.
    pub async fn crash_and_restart(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing redis-server")?;
            child.wait()?;
        }
        self.spawn()?;
        self.wait_until_ready().await
    }
}

impl Drop for ChaosRedis {
    fn drop(&mut self) {
        // Stopped by PID; a server that already exited is fine.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
