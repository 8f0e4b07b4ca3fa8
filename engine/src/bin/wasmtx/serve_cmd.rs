//! `wasmtx serve`: the HTTP API until SIGINT or SIGTERM; with the embedded store, its state is
//! saved every second while it changes, and once more after the last request finished. The
//! tokens are reloaded on SIGHUP and when the token file changes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};
use wasmtx::ErrorClass;
use wasmtx::server::{self, Api, Limits, MetricsAccess, NamedToken, Scope, ServerConfig, TokenSet, Tokens};

use crate::args::{Global, ServeArgs};
use crate::failure::Failure;
use crate::workspace::{Purpose, Workspace};
use wasmtx::ErrorKind;

const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How often the token file is checked for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where the tokens come from, to read them again on a reload.
#[derive(Debug, Clone)]
struct TokenSources {
    token: Option<String>,
    file: Option<PathBuf>,
    entries: Option<String>,
}

impl TokenSources {
    fn load(&self) -> Result<TokenSet, Failure> {
        let bad = |e: server::TokenError| Failure::new(ErrorClass::BadInput, ErrorKind::BadInput, e.to_string());
        let mut set = TokenSet::default();
        if let Some(token) = &self.token {
            let token = NamedToken::new("default", Scope::Admin, token)
                .map_err(|e| Failure::new(ErrorClass::BadInput, ErrorKind::InsecureBind, format!("--token: {e}")))?;
            set = set.with(token).map_err(bad)?;
        }
        for text in [self.file.as_ref().map(|f| TokenSet::from_file(f)), self.entries.as_deref().map(TokenSet::parse)]
            .into_iter()
            .flatten()
        {
            for token in text.map_err(bad)?.into_tokens() {
                set = set.with(token).map_err(bad)?;
            }
        }
        Ok(set)
    }
}

pub async fn run(args: ServeArgs, global: &Global) -> Result<(), Failure> {
    let sources =
        TokenSources { token: args.token.clone(), file: args.tokens_file.clone(), entries: args.tokens.clone() };
    let tokens = sources.load()?;
    let metrics = match args.metrics.as_str() {
        "open" => MetricsAccess::Open,
        "token" => MetricsAccess::Token,
        _ if args.addr.ip().is_loopback() => MetricsAccess::Open,
        _ => MetricsAccess::Token,
    };
    let limits = Limits::default()
        .header_timeout(Duration::from_millis(args.header_timeout_ms))
        .header_bytes(args.header_bytes)
        .body_timeout(Duration::from_millis(args.body_timeout_ms))
        .max_in_flight(usize::try_from(args.max_in_flight).unwrap_or(usize::MAX))
        .max_invocations_per_rule(usize::try_from(args.max_invocations_per_rule).unwrap_or(usize::MAX));
    let config = ServerConfig::default()
        .tokens(tokens.clone())
        .public_reads(args.public_reads)
        .metrics(metrics)
        .body_limit(args.body_limit.unwrap_or(global.max_rule_bytes.saturating_add(64 << 10)))
        .drain_timeout(Duration::from_millis(args.drain_timeout_ms))
        .limits(limits.clone());
    config.check_bind(args.addr).map_err(|e| Failure::new(ErrorClass::BadInput, ErrorKind::InsecureBind, e))?;
    if let Some(warning) = ServerConfig::plaintext_warning(args.addr) {
        eprintln!("wasmtx: {warning}");
        warn!("{warning}");
    }
    // The address first: a taken one fails before the store is opened and before the registry
    // starts compiling rules in the background (whose tasks the exit would cut short).
    let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(|e| {
        Failure::new(ErrorClass::BadInput, ErrorKind::CannotListen, format!("cannot listen on {}: {e}", args.addr))
    })?;
    let purpose = Purpose { warm: true, refresh: Duration::from_millis(args.refresh_ms.max(1)) };
    let mut workspace = Workspace::open(global, purpose).await?;
    let audit = workspace.audit_log().await?;
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
    info!(%local, store, tokens = tokens.len(), public_reads = args.public_reads, ?metrics, "serving");

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
    let api = Api::new(workspace.registry.clone(), config.clone()).audit_log(audit);
    let reloader = tokio::spawn(reload_tokens(sources, api.tokens()));
    let served =
        server::serve_with_limits(listener, api.router(), server::shutdown_signal(), config.drain_timeout, &limits)
            .await;
    reloader.abort();
    if let Some(saver) = saver {
        saver.abort();
    }
    if let Some(dir) = data_dir {
        dir.lock().unwrap_or_else(PoisonError::into_inner).save()?;
    }
    info!("stopped");
    served.map_err(|e| Failure::new(ErrorClass::Internal, ErrorKind::Server, e.to_string()))
}

/// Reloads the tokens on SIGHUP, and when the token file's modification time or size changes.
/// A set that cannot be used is logged and the current one kept.
async fn reload_tokens(sources: TokenSources, tokens: Tokens) {
    let stamp = |file: &Option<PathBuf>| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(file.as_ref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = stamp(&sources.file);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let why = tokio::select! {
            () = signalled => "SIGHUP",
            _ = tick.tick() => {
                let now = stamp(&sources.file);
                if now == seen { continue; }
                seen = now;
                "the token file changed"
            }
        };
        match sources.load() {
            Ok(set) => {
                info!(tokens = set.len(), why, "tokens reloaded");
                tokens.replace(set);
            }
            Err(e) => error!(error = %e, why, "cannot reload the tokens; keeping the current ones"),
        }
    }
}
