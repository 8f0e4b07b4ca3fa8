//! The store conformance suite: what every [`Store`] must do, checked through
//! the trait only, so that the Redis store, the memory store and any new backend are held to
//! one contract (feature `conformance`).
//!
//! Each check is an `async fn(Arc<dyn Store>, &str) -> Result<(), CheckError>`; the `&str` is a
//! namespace unique to the run, put in every model key, so checks can share one store (or one
//! Redis). [`store_conformance_tests!`](crate::store_conformance_tests) generates one
//! `#[tokio::test]` per check for a store, which is the one line a new backend needs:
//!
//! ```text
//! mod my_store {
//!     wasmtx::store_conformance_tests!(std::sync::Arc::new(my_crate::MyStore::new()));
//! }
//! ```
//!
//! (the test crate needs `wasmtx` with the `conformance` feature and `tokio` with the `macros`
//! and `rt-multi-thread` features). [`CHECKS`] and [`run_all`] run the same checks from code.
//!
//! Files: this one (the runner and its error), `checks` (the contract, one function per
//! clause), `records` (the idempotency records' clauses), `fixture` (the test schema and store
//! helpers the checks share).

mod checks;
mod fixture;
mod ownership;
mod records;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use self::checks::*;
pub use self::ownership::*;
pub use self::records::*;
use crate::store::{Store, StoreError};

/// The future of one check.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send + 'a>>;

/// One check: the store under test and a namespace unique to this run.
pub type Check = for<'a> fn(Arc<dyn Store>, &'a str) -> CheckFuture<'a>;

/// Why a check failed: the store broke the contract, or failed where it must not.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The store did something the contract forbids (or did not do what it requires).
    #[error("{0}")]
    Violated(String),
    /// A store call failed where the contract says it succeeds.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The check did not finish in time (a lost wake-up, a lock never released, ...).
    #[error("did not finish within {0:?}")]
    TimedOut(Duration),
    /// What the check was doing when it failed.
    #[error("{context}: {source}")]
    Context {
        /// What the check was doing.
        context: String,
        /// The failure.
        source: Box<CheckError>,
    },
}

impl fmt::Debug for CheckError {
    /// As `Display`: a test that returns a `CheckError` prints the whole story.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<crate::error::SchemaError> for CheckError {
    fn from(error: crate::error::SchemaError) -> Self {
        Self::Violated(format!("the suite's test schema is refused: {error}"))
    }
}

impl From<tokio::time::error::Elapsed> for CheckError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::Violated("a bounded wait ran out".into())
    }
}

impl From<tokio::task::JoinError> for CheckError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Violated(format!("a task of the check failed: {error}"))
    }
}

impl From<std::num::TryFromIntError> for CheckError {
    fn from(error: std::num::TryFromIntError) -> Self {
        Self::Violated(error.to_string())
    }
}

/// Adds what a check was doing to its failure.
trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T, CheckError>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, CheckError>;
}

impl<T, E: Into<CheckError>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, CheckError> {
        self.with_context(|| context)
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, CheckError> {
        self.map_err(|e| CheckError::Context { context: context().to_string(), source: Box::new(e.into()) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T, CheckError> {
        self.ok_or_else(|| CheckError::Violated(context.to_string()))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T, CheckError> {
        self.ok_or_else(|| CheckError::Violated(context().to_string()))
    }
}

/// Fails the check with a message unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::store::conformance::CheckError::Violated(format!($($message)+)));
        }
    };
}

/// Fails the check with a message.
macro_rules! bail {
    ($($message:tt)+) => {
        return Err($crate::store::conformance::CheckError::Violated(format!($($message)+)))
    };
}

use {bail, ensure};

/// Calls `$callback! { { args } check_1, check_2, ... }` with the name of every check: the one
/// list both [`CHECKS`] and [`store_conformance_tests!`](crate::store_conformance_tests) are
/// built from.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_check_names {
    ($($callback:tt)::+ ! { $($args:tt)* }) => {
        $($callback)::+! { { $($args)* }
            unwritten_model_loads_defaults_at_version_zero,
            locked_commit_writes_bumps_the_version_and_releases,
            commit_bumps_only_changed_models_and_releases_every_lock,
            scalar_changes_apply_as_documented,
            list_changes_apply_as_documented,
            dict_changes_apply_as_documented,
            changes_in_one_batch_apply_in_order,
            models_whose_names_split_differently_are_kept_apart,
            same_model_and_action_is_exclusive_other_pairs_are_not,
            a_lock_whose_reply_was_lost_is_taken_again_by_its_owner_and_fences_the_lost_lease,
            multi_model_lock_is_all_or_nothing,
            fencing_tokens_increase_per_model_across_actions_release_expiry_and_delete,
            expired_lease_is_taken_over_and_its_late_commit_writes_nothing,
            expired_lease_cannot_commit_even_if_nobody_took_the_lock,
            release_wakes_a_watch_registered_before_the_attempt,
            commit_wakes_a_watch_registered_before_the_attempt,
            release_with_a_stale_token_keeps_the_new_holders_lock,
            a_free_lock_goes_to_its_oldest_waiter_and_a_withdrawn_one_passes_its_turn,
            versions_guard_refuses_a_stale_version_and_applies_the_current_one,
            versions_guard_refuses_while_a_lock_of_its_action_is_held,
            versions_guard_with_a_refresh_brings_back_the_moved_models_state,
            lock_mode_commits_are_refused_after_another_writer_and_keep_their_locks,
            read_only_lock_mode_commits_release_whatever_changed_since,
            lease_commits_that_always_check_versions_refuse_a_moved_read,
            guard_is_checked_before_the_changes,
            unguarded_increments_and_appends_all_count,
            batch_with_a_change_that_cannot_apply_writes_nothing,
            increment_of_a_stored_non_int_writes_nothing,
            stored_data_that_does_not_fit_a_changed_schema_is_corrupt,
            changes_that_do_not_fit_the_schema_are_refused,
            delete_resets_to_defaults_bumps_the_version_and_keeps_locks,
            concurrent_lock_commit_cycles_lose_no_update,
            a_committed_key_is_found_by_every_step_and_never_applies_again,
            records_are_per_first_model_and_key_and_checked_entries_are_not_written,
            a_resolved_attempt_never_applies_and_the_next_attempt_does,
            a_refused_commit_records_nothing,
            records_expire_after_their_retention,
        }
    };
}

/// Generates one `#[tokio::test]` per conformance check, each on the store the expression
/// gives (evaluated afresh in every test, inside an `async fn` returning
/// `Result<(), Box<dyn std::error::Error + Send + Sync>>`, so it may `.await` and use `?`).
/// Put it in a module per store:
///
/// ```text
/// mod memory {
///     wasmtx::store_conformance_tests!(std::sync::Arc::new(wasmtx::MemoryStore::new()));
/// }
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($store:expr) => {
        $crate::__conformance_check_names!($crate::__conformance_tests! { $store });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ({ $store:expr } $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() -> ::std::result::Result<(), ::std::boxed::Box<dyn ::std::error::Error + Send + Sync>> {
                let store: ::std::sync::Arc<dyn $crate::Store> = $store;
                $crate::store::conformance::run(stringify!($check), store, |store, ns| {
                    ::std::boxed::Box::pin($crate::store::conformance::$check(store, ns))
                })
                .await?;
                Ok(())
            }
        )*
    };
}

macro_rules! check_table {
    ({} $($check:ident),* $(,)?) => {
        /// Every check, by name.
        pub const CHECKS: &[(&str, Check)] = &[$((stringify!($check), |store, ns| Box::pin($check(store, ns)))),*];
    };
}

crate::__conformance_check_names!(check_table! {});

/// How long one check may take before it counts as hung.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one check under a fresh namespace and a timeout.
///
/// # Errors
/// The check's failure, with its name and namespace.
pub async fn run(name: &str, store: Arc<dyn Store>, check: Check) -> Result<(), CheckError> {
    let ns = format!("{name}:{:08x}", rand::random::<u32>());
    tokio::time::timeout(CHECK_TIMEOUT, check(store, &ns))
        .await
        .map_err(|_| CheckError::TimedOut(CHECK_TIMEOUT))
        .context(name)?
        .with_context(|| format!("{name} (namespace {ns})"))
}

/// Runs every check on one store, one after the other.
///
/// # Errors
/// The first failure.
pub async fn run_all(store: Arc<dyn Store>) -> Result<(), CheckError> {
    for (name, check) in CHECKS {
        run(name, Arc::clone(&store), *check).await?;
    }
    Ok(())
}
