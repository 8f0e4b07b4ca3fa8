//! Named, scoped bearer tokens: what [`auth`](super) checks requests against.
//!
//! A token has a **name** (it appears in logs and the audit trail, never the secret), a
//! **scope** and a **secret**. Scopes are ordered, each granting what the ones before it do:
//!
//! | scope | grants |
//! |---|---|
//! | `read` | every `GET` under `/v1` but `/v1/audit` (rules, schemas, model state) |
//! | `invoke` | `read`, and `POST /v1/rules/{name}/invoke` |
//! | `admin` | everything: uploads, activations, deletions, schemas, direct model writes, `/v1/audit` |
//!
//! The text form ([`TokenSet::parse`]), used by `--tokens-file` (one token a line) and
//! `WASMTX_TOKENS` (tokens separated by commas or newlines), is `name:scope:secret`; blank
//! lines and lines starting with `#` are skipped. Names are 1 to 64 of `A-Z a-z 0-9 _ . -`;
//! secrets are at least 8 bytes of visible ASCII (the rest of the entry, so they may hold `:`
//! but not `,`). Names and secrets are unique within a set.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

/// What a token may do; each scope grants what the ones before it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// Reads: every `GET` under `/v1` but the audit trail.
    Read,
    /// Reads and invocations.
    Invoke,
    /// Everything.
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Invoke, Scope::Admin];

    /// The scope's name (`read`, `invoke`, `admin`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Invoke => "invoke",
            Self::Admin => "admin",
        }
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn grants(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| TokenError::UnknownScope(s.to_owned()))
    }
}

/// Why a token or a set of tokens cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// An entry that is not `name:scope:secret`.
    #[error("entry {entry}: expected `name:scope:secret`")]
    Malformed {
        /// The entry's number, from 1 (its line in a file).
        entry: usize,
    },
    /// A scope other than `read`, `invoke` and `admin`.
    #[error("unknown scope `{0}` (scopes: read, invoke, admin)")]
    UnknownScope(String),
    /// A name that is empty, too long, or has other characters than `A-Z a-z 0-9 _ . -`.
    #[error("token name `{0}` is not 1 to 64 of A-Z a-z 0-9 _ . -")]
    InvalidName(String),
    /// A secret shorter than 8 bytes, or with whitespace or control characters.
    #[error("the secret of token `{0}` is not at least 8 visible ASCII characters")]
    WeakSecret(String),
    /// Two tokens of one name.
    #[error("two tokens are named `{0}`")]
    DuplicateName(String),
    /// Two tokens with one secret.
    #[error("tokens `{0}` and `{1}` have the same secret")]
    DuplicateSecret(String, String),
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
}

/// One token: its name, scope and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedToken {
    name: Arc<str>,
    scope: Scope,
    secret: Vec<u8>,
}

impl fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedToken").field("name", &self.name).field("scope", &self.scope).finish_non_exhaustive()
    }
}

impl NamedToken {
    /// A token.
    ///
    /// # Errors
    /// [`TokenError::InvalidName`] or [`TokenError::WeakSecret`].
    pub fn new(name: &str, scope: Scope, secret: &str) -> Result<Self, TokenError> {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_name {
            return Err(TokenError::InvalidName(name.to_owned()));
        }
        if secret.len() < 8 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::WeakSecret(name.to_owned()));
        }
        Ok(Self { name: name.into(), scope, secret: secret.as_bytes().to_vec() })
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token's scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

/// Who made a request: the name and scope of its token (in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`anonymous` when the server has no tokens).
    pub name: Arc<str>,
    /// What it may do.
    pub scope: Scope,
}

impl Caller {
    /// The caller of a server without tokens (loopback only): may do everything.
    pub fn anonymous() -> Self {
        Self { name: "anonymous".into(), scope: Scope::Admin }
    }
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSet {
    tokens: Vec<NamedToken>,
}

impl TokenSet {
    /// A set of these tokens.
    ///
    /// # Errors
    /// [`TokenError::DuplicateName`] or [`TokenError::DuplicateSecret`].
    pub fn new(tokens: Vec<NamedToken>) -> Result<Self, TokenError> {
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[..i] {
                if a.name == b.name {
                    return Err(TokenError::DuplicateName(a.name.to_string()));
                }
                if a.secret == b.secret {
                    return Err(TokenError::DuplicateSecret(b.name.to_string(), a.name.to_string()));
                }
            }
        }
        Ok(Self { tokens })
    }

    /// Parses the text form (see the [module documentation](self)): entries separated by
    /// newlines or commas.
    ///
    /// # Errors
    /// A [`TokenError`] naming the entry.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut tokens = Vec::new();
        for (i, entry) in text.split(['\n', ',']).enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(scope), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TokenError::Malformed { entry: i + 1 });
            };
            tokens.push(NamedToken::new(name.trim(), scope.trim().parse()?, secret.trim())?);
        }
        Self::new(tokens)
    }

    /// Reads and parses a token file.
    ///
    /// # Errors
    /// [`TokenError::Unreadable`], or what [`TokenSet::parse`] finds.
    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TokenError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
        Self::parse(&text)
    }

    /// Adds a token.
    ///
    /// # Errors
    /// As [`TokenSet::new`].
    pub fn with(mut self, token: NamedToken) -> Result<Self, TokenError> {
        self.tokens.push(token);
        Self::new(self.tokens)
    }

    /// The tokens.
    pub fn into_tokens(self) -> Vec<NamedToken> {
        self.tokens
    }

    /// Whether the set has no tokens (the server then needs none: loopback only).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// How many tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The token whose secret this is. Every token is compared in full, so the time taken
    /// does not tell which token, or how much of one, a guess matched.
    pub fn find(&self, secret: &[u8]) -> Option<&NamedToken> {
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(&token.secret, secret) {
                found = Some(token);
            }
        }
        found
    }
}

/// The tokens a running server accepts, replaceable while it runs (a reload of the token
/// file): requests already authenticated keep their caller, the next ones see the new set.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<RwLock<Arc<TokenSet>>>);

impl Tokens {
    /// A handle on `set`.
    pub fn new(set: TokenSet) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(set))))
    }

    /// The current set.
    pub fn current(&self) -> Arc<TokenSet> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the set.
    pub fn replace(&self, set: TokenSet) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_files_parse_and_bad_ones_are_refused() {
        let set =
            TokenSet::parse("# ops\nreader:read:r-secret-1\n\n ci : invoke : i:secret:2 \ndeploy:admin:a-secret-3")
                .expect("valid");
        assert_eq!(set.len(), 3);
        let ci = set.find(b"i:secret:2").expect("found");
        assert_eq!((ci.name(), ci.scope()), ("ci", Scope::Invoke));
        assert!(set.find(b"i:secret:").is_none());
        assert_eq!(TokenSet::parse("a:read:12345678,b:admin:87654321").map(|s| s.len()), Ok(2));
        for (text, error) in [
            ("reader:read", TokenError::Malformed { entry: 1 }),
            ("x:root:12345678", TokenError::UnknownScope("root".into())),
            ("bad name:read:12345678", TokenError::InvalidName("bad name".into())),
            (":read:12345678", TokenError::InvalidName(String::new())),
            ("a:read:short", TokenError::WeakSecret("a".into())),
            ("a:read:12345678\na:admin:87654321", TokenError::DuplicateName("a".into())),
            ("a:read:12345678\nb:admin:12345678", TokenError::DuplicateSecret("a".into(), "b".into())),
        ] {
            assert_eq!(TokenSet::parse(text), Err(error), "{text}");
        }
        assert!(TokenSet::parse("").expect("empty").is_empty());
    }

    #[test]
    fn scopes_grant_the_weaker_ones() {
        assert!(Scope::Admin.grants(Scope::Invoke) && Scope::Invoke.grants(Scope::Read));
        assert!(!Scope::Read.grants(Scope::Invoke) && !Scope::Invoke.grants(Scope::Admin));
        assert_eq!("invoke".parse::<Scope>(), Ok(Scope::Invoke));
    }
}
