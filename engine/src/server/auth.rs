//! Bearer-token authentication: writes (every method but `GET` and `HEAD`) need
//! `Authorization: Bearer <token>` when the server has a token; reads too if configured so.
//! `/healthz` and `/metrics` are always open.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::error::kind::ErrorKind;

/// Refuses requests that need the token and do not carry it.
pub(super) async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.config.token.as_deref() else { return next.run(request).await };
    let path = request.uri().path();
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if path == "/healthz" || path == "/metrics" || (is_read && !state.config.protect_reads) {
        return next.run(request).await;
    }
    let refusal = match request.headers().get(header::AUTHORIZATION).map(|v| bearer_token(v.as_bytes())) {
        Some(Some(token)) if constant_time_eq(token, expected.as_bytes()) => return next.run(request).await,
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "this request needs `Authorization: Bearer <token>`",
        ),
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, ErrorKind::InvalidToken, "the bearer token is not valid"),
    };
    // Read (and drop) the body first, within the body limit: a client still sending it would
    // otherwise see its connection reset instead of this answer.
    let _ = axum::body::to_bytes(request.into_body(), state.config.body_limit).await;
    refusal.into_response()
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    let token = value[7..].trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        use super::bearer_token;
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
    }
}
