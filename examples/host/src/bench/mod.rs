//! The benchmark behind `cargo run --release --bin bench`: the engine against a Lua script and
//! a hand-written lock protocol on the same Redis, four workloads, three concurrencies.

pub mod charts;
pub mod cluster;
pub mod cluster_report;
pub mod deploy;
pub mod fair;
pub mod hand;
pub mod http;
pub mod impls;
pub mod keyspace;
pub mod lua;
pub mod overhead;
pub mod progress;
pub mod pubsub;
pub mod report;
pub mod run;
pub mod server;
pub mod soak;
pub mod stall;
pub mod state;
pub mod sys;
pub mod tracking;
pub mod workloads;
