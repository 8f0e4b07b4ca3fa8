//! Compiling rules and running them in the sandbox: the WIT host.
//!
//! A [`RuleRuntime`] owns one wasmtime engine with a pooling allocator, epoch interruption and
//! a background epoch ticker. [`RuleRuntime::compile`] turns rule bytes into a pre-linked
//! [`CompiledRule`] once; [`RuleRuntime::run`] instantiates it in a fresh store per run over
//! in-memory copies of the models' snapshots and returns one [`ModelWorkspace`] per model,
//! from which the engine takes the changes to commit.
//!
//! Files, one job each: `config` (settings), `loader` (compile), `run` (one run),
//! `bindings` (generated from `wit/`), `convert` (WIT ↔ model types), `host` (the WIT traits),
//! `workspace` (field semantics), `journal` and `changes` (what gets committed), `limits`,
//! `log` and `ticker` (the sandbox's limits).

mod bindings;
pub(crate) mod changes;
mod config;
mod convert;
mod executor;
mod host;
mod journal;
mod limits;
mod loader;
mod log;
mod run;
#[cfg(test)]
mod tests;
mod ticker;
mod workspace;

use std::fmt;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use self::config::{RuleLimits, RuntimeConfig};
use self::executor::RuleExecutor;
use self::host::HostState;
use self::limits::InstanceGate;
pub use self::loader::CompiledRule;
pub use self::run::{RuleRun, RunOutput};
use self::ticker::EpochTicker;
pub use self::workspace::ModelWorkspace;
use crate::error::{Error, RuleLoadError};

/// Core instances, tables and memories one rule instance may use. A component made by
/// wit-component instantiates 3 core modules (the rule, a shim and a fixup) with 2 tables and
/// 1 memory; the margin leaves room for hand-built components without letting one take over
/// the pool.
const CORE_INSTANCES_PER_RULE: u32 = 4;
const TABLES_PER_RULE: u32 = 4;
const MEMORIES_PER_RULE: u32 = 2;
/// Linear memory kept mapped (and zeroed with `memset`) when a pool slot is reused: covers a
/// Rust guest's default 1 MiB shadow stack plus its data and first heap pages, which is where a
/// fresh instance's page faults go (the notes measured 36 → 21 µs per run).
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
/// Tables are small (a pointer per element); this covers any rule's function table.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Compiles and runs rules. `Send + Sync`: share one per engine.
pub struct RuleRuntime {
    config: RuntimeConfig,
    engine: Engine,
    linker: Linker<HostState>,
    gate: InstanceGate,
    executor: RuleExecutor,
    ticker: EpochTicker,
}

impl RuleRuntime {
    /// Creates a runtime: its wasmtime engine, instance pool and epoch ticker thread (which
    /// stops when the runtime drops).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unusable configuration (see [`RuntimeConfig::validate`]),
    /// or when the engine or its ticker thread cannot be created (for instance when the pool
    /// cannot reserve its address space).
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        config.validate()?;
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| Error::InvalidInput { reason: format!("cannot create the wasm engine: {e:#}") })?;
        let mut linker = Linker::new(&engine);
        bindings::Rule::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| Error::InvalidInput { reason: format!("cannot link the rule host: {e:#}") })?;
        let ticker = EpochTicker::start(engine.clone(), config.yield_interval)
            .map_err(|e| Error::InvalidInput { reason: format!("cannot start the epoch ticker thread: {e}") })?;
        Ok(Self {
            gate: InstanceGate::new(config.max_instances),
            executor: RuleExecutor::start(config.rule_threads)
                .map_err(|e| Error::InvalidInput { reason: format!("cannot start the rule threads: {e}") })?,
            config,
            engine,
            linker,
            ticker,
        })
    }

    /// Compiles rule bytes: a component of the `wasmtx:rule` world, or a core module built
    /// with wit-bindgen for it (`wasm32-unknown-unknown`), which is wrapped into a component.
    /// Compile each rule once and keep the [`CompiledRule`]: this takes milliseconds.
    ///
    /// # Errors
    /// - [`RuleLoadError::TooLarge`] over `max_rule_bytes`;
    /// - [`RuleLoadError::NotWasm`] without the WebAssembly magic number;
    /// - [`RuleLoadError::Malformed`] for invalid WebAssembly;
    /// - [`RuleLoadError::NotARule`] for a core module that cannot be made a rule component;
    /// - [`RuleLoadError::Compile`] when wasmtime cannot compile it;
    /// - [`RuleLoadError::ForbiddenImport`] for any import besides
    ///   `wasmtx:rule/{types,models,log}@0.1.x` (WASI included);
    /// - [`RuleLoadError::WrongWorld`] when it does not export `run` with the contract's
    ///   signature, or its imports do not match the contract's.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledRule, RuleLoadError> {
        let _span = tracing::debug_span!("wasmtx.compile", size = bytes.len()).entered();
        loader::compile(&self.engine, &self.linker, self.config.max_rule_bytes, bytes)
    }

    /// The configuration this runtime was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The wasmtime engine rules are compiled for (the registry's precompiled cache keys its
    /// files on the engine's compatibility hash).
    pub(crate) fn wasm_engine(&self) -> &Engine {
        &self.engine
    }

    /// Makes a [`CompiledRule`] of a component this runtime's engine compiled earlier (for
    /// instance one loaded from a precompiled cache): checks its imports and pre-links it.
    /// `digest`, `size` and `from_core_module` describe the bytes it was compiled from.
    pub(crate) fn link(
        &self,
        component: &wasmtime::component::Component,
        digest: String,
        size: usize,
        from_core_module: bool,
    ) -> Result<CompiledRule, RuleLoadError> {
        loader::link(&self.engine, &self.linker, component, digest, size, from_core_module)
    }
}

impl fmt::Debug for RuleRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleRuntime")
            .field("config", &self.config)
            .field("epoch_tick", &self.ticker.period())
            .finish_non_exhaustive()
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let n = config.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_RULE))
        .max_core_instances_per_component(CORE_INSTANCES_PER_RULE)
        .total_tables(n.saturating_mul(TABLES_PER_RULE))
        .max_tables_per_component(TABLES_PER_RULE)
        .total_memories(n.saturating_mul(MEMORIES_PER_RULE))
        .max_memories_per_component(MEMORIES_PER_RULE)
        .max_memory_size(config.pool_memory_size())
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY.min(config.pool_memory_size()))
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        // Where the kernel has `PAGEMAP_SCAN` (Linux 6.7+), reset only the pages the last
        // instance touched instead of `memset`ting the whole resident part: a Rust guest
        // touches a few pages of its 1 MiB shadow stack, and the reset was the largest single
        // cost of a run's store drop. Elsewhere this falls back to the `memset`.
        .pagemap_scan(Enabled::Auto)
        // One async stack per instance: every run is a future on its own fiber.
        .total_stacks(n);
    let mut cfg = Config::new();
    // Reserve only what a rule may use per pool slot, instead of the default 4 GiB + 2 GiB
    // guard: bounds checks become explicit (cheap for rules this small), but a pool of hundreds
    // of slots, and several engines per process, stay within the address space.
    //
    // No guard pages and no signal-based traps: every access is bounds-checked in code, so a
    // reused pool slot can stay read/write as it is. With guard pages (or signal-based traps)
    // wasmtime must `mprotect` a reused slot back to its initial size on every instantiation
    // and again on the guest's first `memory.grow`; in a multi-threaded host each of those is
    // a TLB shoot-down on every other core, which the benchmark profiled at a quarter of the
    // engine's CPU on a hot key. Contents are still reset between instances (`memset` of the
    // resident part, `madvise` beyond it).
    let reservation = u64::try_from(config.pool_memory_size()).unwrap_or(u64::MAX);
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .signals_based_traps(false)
        .memory_reservation(reservation)
        .memory_reservation_for_growth(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}
