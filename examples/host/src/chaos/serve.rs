//! The chaos run over HTTP: three `wasmtx serve` processes on the same Redis share the
//! workloads (each call goes to one at random, with its idempotency key in the
//! `Idempotency-Key` header), while one process at a time is killed with SIGKILL mid-run and
//! started again. A request whose server died, or whose reply never came, has an unknown fate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::exec::{Call, Executor};
use super::history::Fate;
use crate::serve::ServeProcess as Process;

/// The bearer token of the fleet's servers.
const TOKEN: &str = "chaos-token";

/// How each server of the fleet is started: its token, and a short registry refresh.
const FLEET_ARGS: [&str; 4] = ["--token", TOKEN, "--refresh-ms", "200"];

/// Three (or more) `wasmtx serve` processes on one store.
#[derive(Debug)]
pub struct Fleet {
    bin: PathBuf,
    store: String,
    prefix: String,
    slots: Mutex<Vec<Option<Process>>>,
    http: reqwest::Client,
}

impl Fleet {
    /// Starts `size` servers of binary `bin` on the store at `store`, under `prefix`.
    ///
    /// # Errors
    /// If one does not start.
    pub fn start(bin: &Path, store: &str, prefix: &str, size: usize) -> Result<Arc<Self>> {
        let slots =
            (0..size).map(|_| Process::start(bin, store, prefix, &FLEET_ARGS).map(Some)).collect::<Result<_>>()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        Ok(Arc::new(Self {
            bin: bin.to_owned(),
            store: store.to_owned(),
            prefix: prefix.to_owned(),
            slots: Mutex::new(slots),
            http,
        }))
    }

    /// The live servers' base URLs.
    pub fn urls(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.iter().flatten().map(|p| p.url().to_owned()).collect()
    }

    /// Each live server's `GET /metrics` text, with its URL.
    ///
    /// # Errors
    /// If a server does not answer it.
    pub async fn metrics(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for url in self.urls() {
            let response = self.request(reqwest::Method::GET, &url, "/metrics").send().await?;
            if !response.status().is_success() {
                bail!("{url}/metrics: {}", response.status());
            }
            out.push((url, response.text().await?));
        }
        Ok(out)
    }

    /// A request with the fleet's token to `path` on server `url`.
    fn request(&self, method: reqwest::Method, url: &str, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{url}{path}")).bearer_auth(TOKEN)
    }

    /// Defines the model types (TOML schemas) and uploads and activates the probe rule through
    /// the first server, then waits (bounded) until every server can run it.
    ///
    /// # Errors
    /// If a request is refused, or a server never sees the rule.
    pub async fn install(&self, schemas: &[(&str, &str)], probe: &[u8], probe_model: (&str, &str)) -> Result<()> {
        let first = self.urls().into_iter().next().context("no server")?;
        for (name, toml) in schemas {
            let response = self
                .request(reqwest::Method::PUT, &first, &format!("/v1/models/{name}"))
                .header("content-type", "application/toml")
                .body((*toml).to_owned())
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("defining {name}: {} {}", response.status(), response.text().await?);
            }
        }
        let response = self
            .request(reqwest::Method::POST, &first, "/v1/rules/probe?activate=true")
            .body(probe.to_vec())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("uploading the probe: {} {}", response.status(), response.text().await?);
        }
        for url in self.urls() {
            let body = json!({"models": [format!("{}:{}", probe_model.0, probe_model.1)], "input": {"ops": []}});
            let mut ready = false;
            for _ in 0..200 {
                let sent = self.request(reqwest::Method::POST, &url, "/v1/rules/probe/invoke").json(&body).send().await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !ready {
                bail!("{url} never ran the probe rule");
            }
        }
        Ok(())
    }

    /// Until `stop` turns true: every 1-3 s, kills one server with SIGKILL (whatever it is
    /// doing) and starts a new one in its place; returns how many it killed.
    ///
    /// # Errors
    /// If a server does not start again.
    pub async fn crash_servers(self: Arc<Self>, seed: u64, mut stop: watch::Receiver<bool>) -> Result<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut killed = 0;
        loop {
            let pause = Duration::from_millis(rng.random_range(1_000..=3_000));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(killed),
                () = tokio::time::sleep(pause) => {}
            }
            let victim = {
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                let at = rng.random_range(0..slots.len());
                slots[at].take().map(|p| (at, p))
            };
            let Some((at, process)) = victim else { continue };
            drop(process);
            killed += 1;
            let restarted = self.restart().await?;
            self.slots.lock().unwrap_or_else(PoisonError::into_inner)[at] = Some(restarted);
        }
    }
}

impl Fleet {
    /// Starts a server again; a few tries, since one that starts while Redis itself is being
    /// restarted cannot connect and exits.
    async fn restart(&self) -> Result<Process> {
        let mut last = None;
        for _ in 0..10 {
            let (bin, store, prefix) = (self.bin.clone(), self.store.clone(), self.prefix.clone());
            match tokio::task::spawn_blocking(move || Process::start(&bin, &store, &prefix, &FLEET_ARGS)).await? {
                Ok(process) => return Ok(process),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no try")).context("restarting a wasmtx serve process"))
    }
}

/// Runs calls on a random live server of a [`Fleet`].
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    fleet: Arc<Fleet>,
}

impl HttpExecutor {
    /// Calls go to `fleet`'s servers.
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }
}

/// The fate an HTTP answer promises: 200 a commit, an error body's kind a failure (nothing
/// written) unless it is `outcome_unknown`; anything else (no answer, a body that is not the
/// API's) is unknown.
async fn fate_of(sent: reqwest::Result<reqwest::Response>) -> Fate {
    let response = match sent {
        Ok(response) => response,
        Err(e) => return Fate::Unknown { why: format!("no answer: {e}") },
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => return Fate::Unknown { why: format!("{status}: the body was cut off: {e}") },
    };
    let body: Value = match serde_json::from_str(&text) {
        Ok(body) => body,
        Err(e) => return Fate::Unknown { why: format!("{status}: a body that is not JSON ({e}): {text}") },
    };
    if status.is_success() {
        return Fate::Acked { output: body["output"].to_string(), replayed: body["replayed"] == true };
    }
    match body["error"]["kind"].as_str() {
        Some("outcome_unknown") | None => Fate::Unknown { why: format!("{status}: {body}") },
        Some(kind) => {
            Fate::Failed { kind: kind.to_owned(), internal: status.is_server_error() && status.as_u16() != 503 }
        }
    }
}

impl Executor for HttpExecutor {
    async fn invoke(&self, call: &Call, cancel_after: Option<Duration>, rng: &mut StdRng) -> Fate {
        let urls = self.fleet.urls();
        if urls.is_empty() {
            return Fate::Failed { kind: "no server up".to_owned(), internal: false };
        }
        let url = &urls[rng.random_range(0..urls.len())];
        let models: Vec<String> = call.models.iter().map(|(t, k)| format!("{t}:{k}")).collect();
        let body = json!({"models": models, "action": call.action, "mode": call.mode.to_string(), "input": call.input});
        let send = self
            .fleet
            .request(reqwest::Method::POST, url, "/v1/rules/probe/invoke")
            .header("Idempotency-Key", &call.key)
            .json(&body)
            .send();
        match cancel_after {
            None => fate_of(send.await).await,
            Some(after) => match tokio::time::timeout(after, async { fate_of(send.await).await }).await {
                Ok(fate) => fate,
                Err(_) => Fate::Unknown { why: format!("request dropped after {after:?}") },
            },
        }
    }
}
