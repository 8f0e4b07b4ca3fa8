//! The integration tests of wasmtx, in one binary with a module per area: they talk to a real
//! Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`) and to the embedded store, and build
//! the example rules from source. Run them all with `cargo test --release`; one area with
//! `cargo test --release --test all -- lock_mode::` (see `HACKING.md`).

mod support;

pub use support::*;

mod adaptive;
mod api_audit;
mod api_auth;
mod api_limits;
mod assemblyscript;
mod bad_input;
mod build_command;
mod catalog;
mod chaos;
mod cli;
mod client_tracking;
mod cluster;
mod cluster_faults;
mod dashboard;
mod error_kinds;
mod exactly_once;
mod examples;
mod failures;
mod fairness;
mod fixture_files;
mod group_commit;
mod guides;
mod harness;
mod isolation;
mod lock_mode;
mod logs;
mod modes;
mod new_command;
mod openapi;
mod packaging;
mod prompt_release;
mod redis_library;
mod registry;
mod serve_fleet;
mod server;
mod snapshot_cache;
mod stalls;
mod store_conformance;
