//! A private `redis-server` for tests that must change the server itself (its Functions, its
//! configuration, its life): started on a free loopback port with nothing kept on disk, and
//! stopped by PID when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// A running private Redis server.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts one and waits (bounded) until it answers `PING`.
    ///
    /// # Errors
    /// If `redis-server` is not installed, or does not answer within 10 s.
    pub async fn start() -> Result<Self> {
        // A port the OS just gave out and took back is free for the server to bind.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? see the README)")?;
        let server = Self { child, port };
        let client = redis::Client::open(server.url())?;
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the private redis-server on port {port} did not answer within 10 s")
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection to it.
    ///
    /// # Errors
    /// If it does not answer.
    pub async fn client(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.url())?.get_multiplexed_async_connection().await?)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // Stopped by PID; a server that already exited is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
