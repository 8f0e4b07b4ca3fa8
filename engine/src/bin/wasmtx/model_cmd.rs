//! `wasmtx model define|list|show|undefine|get|set|delete`; the schema changes are recorded in
//! the audit trail.

use serde_json::{Value, json};
use wasmtx::registry::SchemaRecord;
use wasmtx::views::model_json;
use wasmtx::{FieldType, FieldValue, ModelId, ModelSchema, ScalarKind};

use crate::args::ModelCommand;
use crate::failure::Failure;
use crate::workspace::Workspace;
use wasmtx::views::{table, utc};

use crate::output::Output;

pub async fn run(command: ModelCommand, workspace: &Workspace, out: Output) -> Result<(), Failure> {
    let registry = &workspace.registry;
    let engine = workspace.engine();
    match command {
        ModelCommand::Define { file } => {
            let schema = ModelSchema::from_path(&file).map_err(|e| Failure::input(e.to_string()))?;
            let before = registry.snapshot().schemas.get(schema.name()).map(|r| r.revision);
            let log = workspace.audit_log().await?;
            let record = workspace.audited(&*log).define_model(schema).await?;
            out.show(&record, || {
                let what = if before == Some(record.revision) { "unchanged:" } else { "defined" };
                format!(
                    "{what} {} (revision {}, {} fields)",
                    record.schema.name(),
                    record.revision,
                    record.schema.len()
                )
            });
        }
        ModelCommand::List => {
            let models = registry.models().await?;
            out.show(&models, || list_text(&models));
        }
        ModelCommand::Show { model_type } => {
            let record = registry.model(&model_type).await?;
            out.show(&record, || show_text(&record));
        }
        ModelCommand::Undefine { model_type } => {
            let log = workspace.audit_log().await?;
            let record = workspace.audited(&*log).delete_model(&model_type).await?;
            out.show(&record, || {
                format!("undefined {model_type} (was revision {}; its models' data is kept)", record.revision)
            });
        }
        ModelCommand::Get { model_type, key } => {
            let snapshot = engine.read_model(&model_type, &key).await.map_err(|e| Failure::engine(&e))?;
            let schema = engine.model_type(&model_type).map_err(|e| Failure::engine(&e))?;
            let view = model_json(&schema, &ModelId::new(&model_type, &key), &snapshot);
            out.show(&view, || {
                let mut text = format!("{model_type}:{key} (version {})\n", snapshot.version);
                for ((name, _), value) in schema.fields().zip(&snapshot.values) {
                    text.push_str(&format!("  {name}: {}\n", value.to_json()));
                }
                text
            });
        }
        ModelCommand::Set { model_type, key, field, value } => {
            let schema = engine.model_type(&model_type).map_err(|e| Failure::engine(&e))?;
            let ty = schema
                .field(&field)
                .map(|f| f.ty)
                .ok_or_else(|| Failure::input(format!("model type {model_type} has no field `{field}`")))?;
            let value = parse_value(ty, &value)
                .map_err(|reason| Failure::input(format!("bad value for `{field}`: {reason}")))?;
            let shown = value.to_json();
            let version = engine.set_field(&model_type, &key, &field, value).await.map_err(|e| Failure::engine(&e))?;
            out.show(
                &json!({ "model_type": model_type, "key": key, "field": field, "value": shown, "version": version }),
                || format!("{model_type}:{key}.{field} = {shown} (version {version})"),
            );
        }
        ModelCommand::Delete { model_type, key } => {
            let version = engine.delete_model(&model_type, &key).await.map_err(|e| Failure::engine(&e))?;
            out.show(&json!({ "model_type": model_type, "key": key, "version": version }), || {
                format!("deleted {model_type}:{key} (version {version})")
            });
        }
    }
    Ok(())
}

/// A field value from the command line: JSON, or plain text for a str field.
fn parse_value(ty: FieldType, text: &str) -> Result<FieldValue, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(json) => FieldValue::from_json(ty, &json).or_else(|e| match ty {
            FieldType::Scalar(ScalarKind::Str) => Ok(FieldValue::Scalar(text.into())),
            _ => Err(e),
        }),
        Err(_) if ty == FieldType::Scalar(ScalarKind::Str) => Ok(FieldValue::Scalar(text.into())),
        Err(e) => Err(format!("`{text}` is not JSON ({e}); a {ty} field takes JSON")),
    }
}

fn list_text(models: &[SchemaRecord]) -> String {
    if models.is_empty() {
        return "no model types; define one with `wasmtx model define FILE`".into();
    }
    let mut rows = vec![["NAME", "REVISION", "FIELDS", "DEFINED"].map(String::from).to_vec()];
    for m in models {
        rows.push(vec![
            m.schema.name().to_owned(),
            m.revision.to_string(),
            m.schema.fields().map(|(name, _)| name).collect::<Vec<_>>().join(","),
            utc(m.defined_at_ms),
        ]);
    }
    table(&rows)
}

fn show_text(record: &SchemaRecord) -> String {
    let mut rows = vec![["FIELD", "TYPE", "DEFAULT"].map(String::from).to_vec()];
    for (name, def) in record.schema.fields() {
        rows.push(vec![name.to_owned(), def.ty.to_string(), def.default.to_json().to_string()]);
    }
    format!(
        "model {} (revision {}, defined {})\n{}",
        record.schema.name(),
        record.revision,
        utc(record.defined_at_ms),
        table(&rows)
    )
}
