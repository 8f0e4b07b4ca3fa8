//! `wasmtx serve`: the HTTP API until SIGINT or SIGTERM; with the embedded store, its state is
//! saved every second while it changes, and once more after the last request finished.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{info, warn};
use wasmtx::ErrorClass;
use wasmtx::server::{self, ServerConfig};

use crate::args::{Global, ServeArgs};
use crate::failure::Failure;
use crate::workspace::{Purpose, Workspace};
use wasmtx::ErrorKind;

const SAVE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: ServeArgs, global: &Global) -> Result<(), Failure> {
    let mut config = ServerConfig::default();
    config.token = args.token.clone();
    config.protect_reads = args.protect_reads;
    config.body_limit = args.body_limit.unwrap_or(global.max_rule_bytes.saturating_add(64 << 10));
    config.drain_timeout = Duration::from_millis(args.drain_timeout_ms);
    config.check_bind(args.addr).map_err(|e| Failure::new(ErrorClass::BadInput, ErrorKind::InsecureBind, e))?;
    let purpose = Purpose { warm: true, refresh: Duration::from_millis(args.refresh_ms.max(1)) };
    let mut workspace = Workspace::open(global, purpose).await?;
    let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(|e| {
        Failure::new(ErrorClass::BadInput, ErrorKind::CannotListen, format!("cannot listen on {}: {e}", args.addr))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(ErrorClass::Internal, ErrorKind::CannotListen, e.to_string()))?;
    let store = match workspace.kind {
        "memory" => "embedded",
        other => other,
    };
    if global.json {
        println!("{}", serde_json::json!({ "listening": format!("http://{local}"), "store": store }));
    } else {
        println!("wasmtx listening on http://{local} ({store} store)");
    }
    info!(%local, store, auth = config.token.is_some(), "serving");

    let data_dir = workspace.data_dir.take().map(|d| Arc::new(Mutex::new(d)));
    let saver = data_dir.clone().map(|dir| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAVE_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = dir.lock().unwrap_or_else(PoisonError::into_inner).save() {
                    warn!(error = %e, "cannot save the embedded store");
                }
            }
        })
    });
    let router = server::router(workspace.registry.clone(), config.clone());
    let served = server::serve(listener, router, server::shutdown_signal(), config.drain_timeout).await;
    if let Some(saver) = saver {
        saver.abort();
    }
    if let Some(dir) = data_dir {
        dir.lock().unwrap_or_else(PoisonError::into_inner).save()?;
    }
    info!("stopped");
    served.map_err(|e| Failure::new(ErrorClass::Internal, ErrorKind::Server, e.to_string()))
}
