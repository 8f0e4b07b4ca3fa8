//! Authentication and authorisation: which [`Scope`] each route needs ([`needed`]), and the
//! middleware that checks a request's bearer token against the server's [`Tokens`].
//!
//! With no token configured every route is open (the server then listens on loopback only).
//! With tokens, every `/v1` route needs one, reads included: a request without a token, or with
//! one the server does not know, is refused with 401 (`missing_token`, `invalid_token`); a
//! token whose scope is too weak with 403 (`insufficient_scope`). `/healthz` and
//! `/openapi.json` (it holds no data) are always open, `/metrics` as configured
//! ([`MetricsAccess`](super::MetricsAccess)), `GET` routes but the audit trail too with
//! `ServerConfig::public_reads`.
//! The caller (its token's name and scope) goes into the request's extensions for the
//! handlers, and into the request's `tracing` span.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::tokens::{Caller, Scope};
use crate::error::kind::ErrorKind;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    /// Nothing: open to anyone.
    Nothing,
    /// A token of at least this scope.
    Scope(Scope),
}

/// What a request with this method on this route (its pattern, as `MatchedPath` has it, or
/// `None` when no route matched) needs. Open reads and metrics are decided by the caller.
pub(super) fn needed(method: &Method, route: Option<&str>) -> Needs {
    let is_read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        // The document holds no data: open like the health check.
        Some("/healthz" | "/openapi.json") => Needs::Nothing,
        Some("/metrics") => Needs::Scope(Scope::Read),
        Some("/v1/audit") => Needs::Scope(Scope::Admin),
        Some("/v1/rules/{name}/invoke") if *method == Method::POST => Needs::Scope(Scope::Invoke),
        // An unknown route: any token, so that only callers with one learn what is there.
        None => Needs::Scope(Scope::Read),
        Some(_) if is_read => Needs::Scope(Scope::Read),
        Some(_) => Needs::Scope(Scope::Admin),
    }
}

/// Refuses requests whose token is missing, unknown or too weak for the route; hands the
/// others on with their [`Caller`].
pub(super) async fn require_token(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let tokens = state.tokens.current();
    if tokens.is_empty() {
        request.extensions_mut().insert(Caller::anonymous());
        return next.run(request).await;
    }
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let needs = match (needed(request.method(), route.as_deref()), route.as_deref()) {
        (Needs::Scope(_), Some("/metrics")) if state.config.metrics == super::MetricsAccess::Open => Needs::Nothing,
        (Needs::Scope(Scope::Read), Some(r)) if state.config.public_reads && r.starts_with("/v1/") => Needs::Nothing,
        (needs, _) => needs,
    };
    let presented = request.headers().get(header::AUTHORIZATION).map(|v| bearer_token(v.as_bytes()));
    let caller = match presented {
        Some(Some(secret)) => tokens.find(secret).map(|t| Caller { name: t.name().into(), scope: t.scope() }),
        _ => None,
    };
    if let Some(caller) = &caller {
        tracing::Span::current().record("token", &*caller.name);
    }
    let refusal = match (needs, &caller, presented) {
        (Needs::Nothing, _, _) => None,
        (Needs::Scope(scope), Some(caller), _) if caller.scope.grants(scope) => None,
        (Needs::Scope(scope), Some(caller), _) => Some(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorKind::InsufficientScope,
            format!("the token `{}` has scope `{}`; this request needs `{scope}`", caller.name, caller.scope),
        )),
        (Needs::Scope(_), None, None) => Some(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "this request needs `Authorization: Bearer <token>`",
        )),
        (Needs::Scope(_), None, Some(_)) => {
            Some(ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::InvalidToken, "the bearer token is not valid"))
        }
    };
    let Some(refusal) = refusal else {
        request.extensions_mut().insert(caller.unwrap_or_else(|| Caller { name: "public".into(), scope: Scope::Read }));
        return next.run(request).await;
    };
    tracing::info!(kind = %refusal.body.kind, "refused");
    // Read (and drop) the body first, within the body limit and the body timeout: a client
    // still sending it would otherwise see its connection reset instead of this answer.
    let drain = axum::body::to_bytes(request.into_body(), state.config.body_limit);
    let _ = tokio::time::timeout(state.config.limits.body_timeout, drain).await;
    refusal.into_response()
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    let token = value[7..].trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
    }

    #[test]
    fn routes_need_their_scope() {
        let scope = |method: Method, route: &str| needed(&method, Some(route));
        assert_eq!(scope(Method::GET, "/healthz"), Needs::Nothing);
        assert_eq!(scope(Method::GET, "/openapi.json"), Needs::Nothing);
        assert_eq!(scope(Method::GET, "/v1/models/{model_type}/{key}"), Needs::Scope(Scope::Read));
        assert_eq!(scope(Method::POST, "/v1/rules/{name}/invoke"), Needs::Scope(Scope::Invoke));
        assert_eq!(scope(Method::GET, "/v1/rules/{name}/invoke"), Needs::Scope(Scope::Read));
        assert_eq!(scope(Method::POST, "/v1/rules/{name}"), Needs::Scope(Scope::Admin));
        assert_eq!(scope(Method::GET, "/v1/audit"), Needs::Scope(Scope::Admin));
        assert_eq!(needed(&Method::DELETE, None), Needs::Scope(Scope::Read));
    }
}
