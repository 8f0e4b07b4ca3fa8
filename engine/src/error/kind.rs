//! Every error kind, once: the stable name (`invalid_input`, `lock_timeout`, ...) that error
//! bodies of the HTTP API and the `wasmtx` command carry, that metrics and logs use and that
//! fixture files expect. [`ErrorBody`](super::class::ErrorBody) takes an [`ErrorKind`], so a
//! kind that is not listed here does not compile; `ERRORS.md` is this table rendered (a test
//! keeps it so).
//!
//! Kinds are snake_case everywhere. The WIT's `rule-error` cases (`rejected`, `invalid-input`,
//! `access`) are WIT identifiers, kebab-case by the WIT's own rules; the engine error a rule's
//! `rule-error` becomes has the snake_case kind (`invalid-input` → `invalid_input`).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Which part of wasmtx reports an error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KindSource {
    /// [`Error`](crate::Error): an invocation or an engine call (what a rule's test can expect).
    Engine,
    /// [`RegistryError`](crate::RegistryError): uploads, activations, schemas.
    Registry,
    /// [`FixtureError`](crate::testing::fixtures::FixtureError): a fixture file or what it names.
    Fixtures,
    /// The `wasmtx` command's own failures.
    Command,
    /// The HTTP API's own failures (`wasmtx serve`).
    Http,
}

impl KindSource {
    /// The source's name in `ERRORS.md`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Engine => "engine",
            Self::Registry => "registry",
            Self::Fixtures => "fixtures",
            Self::Command => "command",
            Self::Http => "HTTP",
        }
    }
}

macro_rules! error_kinds {
    ($( #[doc = $doc:literal] $variant:ident = $name:literal from [$($source:ident),+]; )*) => {
        /// The stable name of a failure: see the [module documentation](self).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( #[doc = $doc] $variant, )*
        }

        impl ErrorKind {
            /// Every kind, in the order `ERRORS.md` lists them.
            pub const ALL: &'static [ErrorKind] = &[$(Self::$variant),*];

            /// The kind's name, as error bodies, metrics and fixture files spell it.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Which parts of wasmtx report it.
            pub const fn sources(self) -> &'static [KindSource] {
                match self { $(Self::$variant => &[$(KindSource::$source),+],)* }
            }

            /// What it means, in one sentence (the variant's documentation).
            pub const fn summary(self) -> &'static str {
                match self { $(Self::$variant => $doc.trim_ascii(),)* }
            }
        }
    };
}

error_kinds! {
    /// The invocation named a model type the engine (or registry) does not know.
    UnknownModelType = "unknown_model_type" from [Engine, Registry];
    /// A model key that cannot be used (empty, too long, a control character).
    InvalidKey = "invalid_key" from [Engine];
    /// An action name that cannot be used.
    InvalidAction = "invalid_action" from [Engine];
    /// A rule name that cannot be used.
    InvalidRuleName = "invalid_rule_name" from [Engine, Registry];
    /// The same model is declared twice in one invocation.
    DuplicateModel = "duplicate_model" from [Engine];
    /// The input is not JSON, or the rule returned the WIT's `rule-error::invalid-input` (Rust `invalid_input(..)`, AssemblyScript `invalidInput(..)` or an input read of the wrong shape).
    InvalidInput = "invalid_input" from [Engine];
    /// A model operation failed (the WIT's `access-error`: `unknown-field`, `type-mismatch`, `index-out-of-range`, `not-found`, `denied`, `limit-exceeded`) and the rule propagated it (`rule-error::access`).
    Access = "access" from [Engine];
    /// Bytes given to `Engine::compile_rule` are not a usable rule (the registry names the reason: `not_wasm`, ...).
    InvalidRule = "invalid_rule" from [Engine];
    /// A model schema is invalid.
    InvalidSchema = "invalid_schema" from [Engine, Registry];
    /// The rule refused the invocation (the WIT's `rule-error::rejected`: Rust `reject(..)`, AssemblyScript `reject(..)`), with its message.
    Rejected = "rejected" from [Engine];
    /// The rule trapped (a panic, `abort`, an out-of-bounds access, `unreachable`).
    Trapped = "trapped" from [Engine];
    /// The rule ran past its deadline.
    DeadlineExceeded = "deadline_exceeded" from [Engine];
    /// The rule needed more memory than its cap.
    MemoryLimitExceeded = "memory_limit_exceeded" from [Engine];
    /// The rule's output is not JSON.
    InvalidOutput = "invalid_output" from [Engine];
    /// A lock stayed held by others for the whole acquire timeout (retryable).
    LockTimeout = "lock_timeout" from [Engine];
    /// A lock's lease ran out before the commit (retryable).
    LockLost = "lock_lost" from [Engine];
    /// The models kept changing under the invocation (optimistic mode, or lock-mode re-runs) (retryable).
    Conflict = "conflict" from [Engine];
    /// A pipeline's change cannot apply to the stored state (a pop from an empty list, ...): none applied.
    CannotApply = "cannot_apply" from [Engine];
    /// Every sandbox slot stayed busy (retryable).
    Overloaded = "overloaded" from [Engine];
    /// An idempotency key that cannot be used (empty, over 256 bytes, whitespace).
    InvalidIdempotencyKey = "invalid_idempotency_key" from [Engine];
    /// The idempotency key was used before for a different invocation.
    IdempotencyKeyReused = "idempotency_key_reused" from [Engine];
    /// An invocation with the same idempotency key is still running (retryable).
    InProgress = "in_progress" from [Engine];
    /// A commit's reply was lost and the store cannot be asked whether it landed: invoke again with the key.
    OutcomeUnknown = "outcome_unknown" from [Engine];
    /// The invocation's models live in different Redis Cluster hash slots: refused before anything was locked; co-locate them with a placement.
    CrossSlot = "cross_slot" from [Engine];
    /// The store failed (unreachable, corrupt data, a backend error).
    Store = "store" from [Engine, Registry];
    /// An upload that is not WebAssembly.
    NotWasm = "not_wasm" from [Registry];
    /// An upload over the rule size limit.
    RuleTooLarge = "rule_too_large" from [Registry];
    /// An upload that is malformed WebAssembly.
    MalformedWasm = "malformed_wasm" from [Registry];
    /// An upload that is WebAssembly but not a rule (no component type).
    NotARule = "not_a_rule" from [Registry];
    /// An upload that imports something outside `wasmtx:rule/*@0.1.x` (WASI, say), named in the message.
    ForbiddenImport = "forbidden_import" from [Registry];
    /// An upload that is a component of another world.
    WrongWorld = "wrong_world" from [Registry];
    /// An upload that does not compile.
    CompileFailed = "compile_failed" from [Registry];
    /// No rule of that name.
    UnknownRule = "unknown_rule" from [Registry];
    /// The rule has no version of that number.
    UnknownVersion = "unknown_version" from [Registry];
    /// The version is active and cannot be deleted.
    VersionActive = "version_active" from [Registry];
    /// The registry kept changing during the operation (retryable).
    Busy = "busy" from [Registry];
    /// The registry's stored data is corrupt.
    RegistryCorrupt = "registry_corrupt" from [Registry];
    /// The registry's store is unreachable (retryable).
    StoreUnavailable = "store_unavailable" from [Registry];
    /// A fault of the registry or the server.
    Internal = "internal" from [Registry, Http];
    /// A file or argument given to the command, or a fixture file, cannot be read or parsed (an unknown error kind in `then.error` included).
    BadInput = "bad_input" from [Fixtures, Command];
    /// A rule or schema a fixture file names cannot be loaded or built.
    FixtureSetup = "fixture_setup" from [Fixtures];
    /// The rule a fixture file is run on is a `.wasm` older than its project's sources: build it again, or give the project directory.
    StaleRule = "stale_rule" from [Fixtures];
    /// A rule project could not be built (`wasmtx build`: a missing toolchain or wasm target, a compile error); the tool's output is in the message.
    BuildFailed = "build_failed" from [Command];
    /// A fixture case failed (`wasmtx test`).
    TestFailed = "test_failed" from [Command];
    /// The command could not start its async runtime.
    Runtime = "runtime" from [Command];
    /// The data directory cannot be read or written.
    DataDir = "data_dir" from [Command];
    /// Another wasmtx process uses the data directory.
    DataDirBusy = "data_dir_busy" from [Command];
    /// A store this build of the command does not support.
    UnsupportedStore = "unsupported_store" from [Command];
    /// `wasmtx serve` would listen on a non-loopback address without a token.
    InsecureBind = "insecure_bind" from [Command];
    /// `wasmtx serve` cannot listen on its address.
    CannotListen = "cannot_listen" from [Command];
    /// The server stopped with an error.
    Server = "server" from [Command];
    /// A request whose shape is wrong (JSON, a query, a header).
    BadRequest = "bad_request" from [Http];
    /// A request body that cannot be read.
    BadBody = "bad_body" from [Http];
    /// A request body over the server's limit.
    BodyTooLarge = "body_too_large" from [Http];
    /// A request without `Authorization: Bearer <token>` to a server with tokens (every `/v1` route needs one unless reads are public).
    MissingToken = "missing_token" from [Http];
    /// A bearer token that is none of the server's.
    InvalidToken = "invalid_token" from [Http];
    /// A valid token whose scope does not cover the request (`read` < `invoke` < `admin`).
    InsufficientScope = "insufficient_scope" from [Http];
    /// The server (or the rule) has as many requests (invocations) in flight as it takes: retry after `Retry-After` seconds (retryable).
    ServerBusy = "server_busy" from [Http];
    /// The request's body did not arrive within the server's body timeout.
    RequestTimeout = "request_timeout" from [Http];
    /// No such route.
    NoRoute = "no_route" from [Http];
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed" from [Http];
    /// A body of a content type the route does not take.
    UnsupportedMediaType = "unsupported_media_type" from [Http];
}

impl ErrorKind {
    /// The kinds an invocation can fail with ([`Error::kind`](crate::Error::kind)): what a
    /// fixture file's `then.error` may name.
    pub fn of_invocations() -> impl Iterator<Item = ErrorKind> {
        Self::ALL.iter().copied().filter(|k| k.sources().contains(&KindSource::Engine))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An error kind's name that is not one of [`ErrorKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error kind `{name}`{}", suggestion(name))]
pub struct UnknownErrorKind {
    /// The name given.
    pub name: String,
}

fn suggestion(name: &str) -> String {
    let snake = name.replace('-', "_");
    match ErrorKind::from_str(&snake) {
        Ok(kind) => format!(" (kinds are snake_case: `{kind}`)"),
        Err(_) => String::from(" (ERRORS.md lists every kind)"),
    }
}

impl FromStr for ErrorKind {
    type Err = UnknownErrorKind;

    /// Parses a kind's name ([`ErrorKind::as_str`]), exactly.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name).ok_or_else(|| UnknownErrorKind { name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn kinds_are_unique_snake_case_and_parse_back() {
        let names: BTreeSet<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len(), "a name is used twice");
        for kind in ErrorKind::ALL {
            let name = kind.as_str();
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert_eq!(name.parse::<ErrorKind>(), Ok(*kind));
            assert!(kind.summary().ends_with('.'), "{name}: {}", kind.summary());
        }
        let err = "invalid-input".parse::<ErrorKind>().expect_err("kebab-case is not a kind");
        assert_eq!(err.to_string(), "unknown error kind `invalid-input` (kinds are snake_case: `invalid_input`)");
        let err = "nope".parse::<ErrorKind>().expect_err("unknown");
        assert_eq!(err.to_string(), "unknown error kind `nope` (ERRORS.md lists every kind)");
    }
}
