//! `wasmtx invoke`: run a rule's active version and print its output and what it wrote.

use std::io::Read as _;

use wasmtx::views::{invocation_json, parse_model_ref, short_digest};
use wasmtx::{DEFAULT_ACTION, Invocation};

use crate::args::InvokeArgs;
use crate::failure::Failure;
use crate::output::Output;
use crate::workspace::Workspace;

pub async fn run(args: InvokeArgs, workspace: &Workspace, out: Output) -> Result<(), Failure> {
    let engine = workspace.engine();
    let input = match &args.input_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::input(format!("cannot read stdin: {e}")))?;
            text
        }
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| Failure::input(format!("cannot read {}: {e}", path.display())))?
        }
        None => args.input.clone(),
    };
    let mode = args.mode;
    let mut invocation = Invocation::new(args.action.as_deref().unwrap_or(DEFAULT_ACTION)).mode(mode).input(input);
    for text in &args.models {
        let id = parse_model_ref(text, |t| engine.model_type(t).is_ok()).map_err(Failure::input)?;
        invocation.models.push(id);
    }
    if let Some(max_attempts) = args.max_attempts {
        invocation = invocation.retry(engine.config().retry.attempts(max_attempts));
    }
    invocation.idempotency_key.clone_from(&args.idempotency_key);
    let active = workspace.registry.resolve(&args.rule).await?;
    let outcome = engine.invoke(&active.rule, &invocation).await.map_err(|e| Failure::invocation(&e))?;
    let report = invocation_json(&active, &outcome);
    out.show(&report, || {
        let mut text = format!("{}\n", report["output"]);
        text.push_str(&format!(
            "rule {} v{} (sha256 {}), {} mode, {} attempt{}, {:.2} ms{}\n",
            args.rule,
            active.version.version,
            short_digest(&active.version.digest),
            mode,
            outcome.attempts,
            if outcome.attempts == 1 { "" } else { "s" },
            outcome.timings.total().as_secs_f64() * 1000.0,
            if outcome.replayed { ", replayed: committed before, nothing written now" } else { "" }
        ));
        for (i, model) in outcome.changes.iter().enumerate() {
            let version = outcome.versions.get(i).map(|v| format!(" (version {v})")).unwrap_or_default();
            if model.changes.is_empty() {
                text.push_str(&format!("{}: unchanged{version}\n", model.model));
            } else {
                text.push_str(&format!("{}{version}:\n", model.model));
                for change in &model.changes {
                    text.push_str(&format!("  {change}\n"));
                }
            }
        }
        text
    });
    Ok(())
}
