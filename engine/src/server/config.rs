//! [`ServerConfig`]: tokens, who may read, limits, and the address check.

use std::net::SocketAddr;
use std::time::Duration;

use super::limits::Limits;
use super::tokens::TokenSet;

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MetricsAccess {
    /// Anyone (`wasmtx serve`'s default on a loopback address).
    #[default]
    Open,
    /// A token of any scope, when the server has tokens (`wasmtx serve`'s default elsewhere).
    Token,
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The tokens the server accepts (empty: no authentication, loopback only). With any,
    /// every `/v1` route needs one (see [`tokens`](super::tokens) for the scopes).
    pub tokens: TokenSet,
    /// Lets anyone read (`GET` every `/v1` route but `/v1/audit`) without a token: an explicit
    /// opt-in for deployments where model state and rules are public (default `false`).
    pub public_reads: bool,
    /// Who may read `/metrics` (default [`MetricsAccess::Open`]).
    pub metrics: MetricsAccess,
    /// The largest request body accepted, in bytes (default 8 MiB + 64 KiB: the engine's
    /// largest rule and some room). Larger bodies get a 413.
    pub body_limit: usize,
    /// How long a shutdown waits for in-flight requests before giving up on them (default 30 s).
    pub drain_timeout: Duration,
    /// Timeouts and caps.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            tokens: TokenSet::default(),
            public_reads: false,
            metrics: MetricsAccess::default(),
            body_limit: (8 << 20) + (64 << 10),
            drain_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

impl ServerConfig {
    /// Sets the `tokens` field.
    #[must_use]
    pub fn tokens(mut self, tokens: TokenSet) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets the `public_reads` field.
    #[must_use]
    pub fn public_reads(mut self, public: bool) -> Self {
        self.public_reads = public;
        self
    }

    /// Sets the `metrics` field.
    #[must_use]
    pub fn metrics(mut self, access: MetricsAccess) -> Self {
        self.metrics = access;
        self
    }

    /// Sets the `body_limit` field.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the `drain_timeout` field.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets the `limits` field.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks that the server may listen on `addr`: a non-loopback address needs a token.
    ///
    /// # Errors
    /// A message saying why not.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), String> {
        if !addr.ip().is_loopback() && self.tokens.is_empty() {
            return Err(format!(
                "refusing to listen on {addr} without a token: set --token, --tokens-file or WASMTX_TOKENS, or bind to 127.0.0.1"
            ));
        }
        Ok(())
    }

    /// The warning a non-loopback bind gets: the API speaks plain HTTP, so tokens and data
    /// cross the network in clear unless a TLS-terminating proxy is in front (the README's
    /// recipe binds the server to loopback behind one). `None` on loopback.
    pub fn plaintext_warning(addr: SocketAddr) -> Option<String> {
        (!addr.ip().is_loopback()).then(|| {
            format!(
                "WARNING: serving plain HTTP on {addr}: bearer tokens and model data cross the network unencrypted. \
                 Put a TLS-terminating reverse proxy in front and bind wasmtx to 127.0.0.1 (README, \"TLS\")."
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tokens::{NamedToken, Scope};

    #[test]
    fn public_addresses_need_a_token_and_get_a_warning() {
        let public: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let open = ServerConfig::default();
        assert!(open.check_bind(public).is_err());
        assert!(open.check_bind(local).is_ok());
        let token = NamedToken::new("ops", Scope::Admin, "a-long-secret").expect("token");
        let with_token = ServerConfig::default().tokens(TokenSet::new(vec![token]).expect("set"));
        assert!(with_token.check_bind(public).is_ok());
        assert!(ServerConfig::plaintext_warning(public).is_some_and(|w| w.contains("TLS")));
        assert!(ServerConfig::plaintext_warning(local).is_none());
    }
}
