//! The engine's own cost per invocation, without Redis: a fresh instance, the run and the
//! diff through the runtime alone, and a whole `invoke` on the in-memory store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use wasmtx::invocation::RunContext;
use wasmtx::runtime::{ModelWorkspace, RuleRun, RuleRuntime};
use wasmtx::{
    Engine, FieldValue, Invocation, Mode, ModelId, ModelSchema, ModelSnapshot, ModelTarget, RuntimeConfig, Scalar,
};

use super::run::percentile;

/// One rule's figures.
#[derive(Debug, Clone)]
pub struct Cost {
    /// Which rule, in which language.
    pub label: String,
    /// `Rust` or `AssemblyScript`.
    pub language: &'static str,
    /// Host calls the rule makes per run (reads and writes), for context.
    pub host_calls: &'static str,
    /// Instantiate + run + diff through the runtime: mean, p50, p99.
    pub runtime: [Duration; 3],
    /// A whole `Engine::invoke` on the in-memory store (lock, load, run, diff, commit): mean.
    pub invoke_memory: Duration,
}

/// A model of a case: its schema, its key, and field values to start from.
pub type CaseModel = (ModelSchema, String, Vec<(&'static str, FieldValue)>);

/// A rule to measure: bytes, models with their opening state, an input and an invocation.
#[derive(Debug, Clone)]
pub struct Case {
    /// Label.
    pub label: String,
    /// `Rust` or `AssemblyScript`.
    pub language: &'static str,
    /// Whether the whole-invoke measurement spreads over many keys (for rules whose state
    /// grows, so that the figure does not measure an ever longer list).
    pub rotate_keys: bool,
    /// Host calls per run.
    pub host_calls: &'static str,
    /// Rule bytes.
    pub bytes: Vec<u8>,
    /// Model schemas and keys, in invocation order, with field values to start from.
    pub models: Vec<CaseModel>,
    /// The action.
    pub action: &'static str,
    /// The input.
    pub input: String,
}

/// Measures a case: `iterations` runs through the runtime after a warm-up, then as many
/// invocations of an engine on the in-memory store (the state keeps evolving there).
///
/// # Errors
/// If the rule does not compile or a run fails.
pub async fn measure(case: &Case, iterations: usize) -> Result<Cost> {
    let runtime = RuleRuntime::new(RuntimeConfig::default())?;
    let rule = runtime.compile(&case.bytes).with_context(|| case.label.clone())?;
    let targets: Vec<ModelTarget> = case
        .models
        .iter()
        .map(|(schema, key, _)| ModelTarget {
            id: ModelId::new(schema.name(), key.clone()),
            schema: Arc::new(schema.clone()),
        })
        .collect();
    let snapshots: Vec<ModelSnapshot> = case
        .models
        .iter()
        .map(|(schema, _, values)| {
            let mut snapshot = ModelSnapshot::defaults(schema);
            for (field, value) in values {
                if let Some(i) = schema.field_index(field) {
                    snapshot.values[i] = value.clone();
                }
            }
            snapshot
        })
        .collect();
    let context = RunContext::new("bench-1", case.action, Mode::Lock);
    let mut samples = Vec::with_capacity(iterations);
    let mut changed = 0usize;
    for i in 0..(iterations + iterations / 10) {
        let started = Instant::now();
        let out = runtime
            .run(
                &rule,
                RuleRun {
                    rule_name: &case.label,
                    context: &context,
                    models: &targets,
                    snapshots: &snapshots,
                    input: &case.input,
                },
            )
            .await?;
        let changes: Vec<_> = out.workspaces.iter().map(ModelWorkspace::state_changes).collect();
        let elapsed = started.elapsed();
        changed += changes.iter().map(Vec::len).sum::<usize>();
        if i >= iterations / 10 {
            samples.push(u32::try_from(elapsed.as_nanos()).unwrap_or(u32::MAX));
        }
    }
    ensure!(changed > 0, "{}: the rule changed nothing", case.label);
    let mean = Duration::from_nanos(samples.iter().map(|&s| u64::from(s)).sum::<u64>() / samples.len().max(1) as u64);
    samples.sort_unstable();
    // `percentile` reads microseconds; these samples are nanoseconds.
    let p = |q| Duration::from_nanos(percentile(&samples, q).as_micros() as u64);

    // The builder's default store: the embedded one (no Redis in this measure).
    let mut builder = Engine::builder();
    for (schema, _, _) in &case.models {
        builder = builder.model(schema.clone());
    }
    let engine = builder.build()?;
    let spread = if case.rotate_keys { 1_000 } else { 1 };
    let invocations: Vec<Invocation> = (0..spread)
        .map(|k| {
            let mut invocation = Invocation::new(case.action).input(case.input.clone());
            for (schema, key, _) in &case.models {
                invocation = invocation.model(schema.name(), format!("{key}{k}"));
            }
            invocation
        })
        .collect();
    for k in 0..spread {
        for (schema, key, values) in &case.models {
            for (field, value) in values {
                engine.set_field(schema.name(), &format!("{key}{k}"), field, value.clone()).await?;
            }
        }
    }
    let rule = engine.compile_rule("measured", &case.bytes)?;
    for i in 0..iterations / 10 {
        engine.invoke(&rule, &invocations[i % spread]).await.with_context(|| case.label.clone())?;
    }
    let started = Instant::now();
    for i in 0..iterations {
        engine.invoke(&rule, &invocations[i % spread]).await.with_context(|| case.label.clone())?;
    }
    let invoke_memory = started.elapsed() / u32::try_from(iterations.max(1))?;
    Ok(Cost {
        label: case.label.clone(),
        language: case.language,
        host_calls: case.host_calls,
        runtime: [mean, p(0.50), p(0.99)],
        invoke_memory,
    })
}

/// A balance of `amount`.
pub fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}
