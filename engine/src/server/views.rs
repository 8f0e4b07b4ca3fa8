//! The JSON shapes of the API's answers, shared with the `wasmtx` command's `--json` output,
//! and the parsing of model references.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::invocation::Outcome;
use crate::model::change::{FieldChange, ModelSnapshot};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::Scalar;
use crate::registry::ActiveRule;

/// A model named in a request: `"Type:key"`, or `{"model_type": "Type", "key": "key"}` (also
/// `{"type": ..., "key": ...}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModelRef {
    /// `Type:key`.
    Text(String),
    /// The object form.
    Object {
        /// The model type.
        #[serde(alias = "type")]
        model_type: String,
        /// The key.
        key: String,
    },
}

impl ModelRef {
    /// The model id; `Type:key` is split at the first `:` whose left side is a known model
    /// type (model type names may contain `:`), else at the first `:`.
    ///
    /// # Errors
    /// A message if the text has no `:`.
    pub fn resolve(&self, is_known: impl Fn(&str) -> bool) -> Result<ModelId, String> {
        match self {
            Self::Object { model_type, key } => Ok(ModelId::new(model_type.clone(), key.clone())),
            Self::Text(text) => parse_model_ref(text, is_known),
        }
    }
}

/// Parses `Type:key` (see [`ModelRef::resolve`]).
///
/// # Errors
/// A message if the text has no `:`.
pub fn parse_model_ref(text: &str, is_known: impl Fn(&str) -> bool) -> Result<ModelId, String> {
    let splits: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
    let at = splits
        .iter()
        .copied()
        .find(|&i| is_known(&text[..i]))
        .or_else(|| splits.first().copied())
        .ok_or_else(|| format!("model {text:?} is not of the form Type:key"))?;
    Ok(ModelId::new(&text[..at], &text[at + 1..]))
}

/// The answer to an invocation: the rule version that ran, its output (parsed JSON when it is
/// JSON), what it wrote and where the time went.
pub fn invocation_json(active: &ActiveRule, outcome: &Outcome) -> Value {
    let output = serde_json::from_str(&outcome.output).unwrap_or_else(|_| Value::String(outcome.output.clone()));
    let changes: Vec<Value> = outcome
        .changes
        .iter()
        .map(|m| {
            json!({
                "model_type": m.model.model_type,
                "key": m.model.key,
                "changes": m.changes.iter().map(change_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    json!({
        "rule": active.rule.name(),
        "version": active.version.version,
        "digest": active.version.digest,
        "invocation_id": outcome.invocation_id,
        "output": output,
        "changes": changes,
        "fencing_tokens": outcome.fencing_tokens,
        "versions": outcome.versions,
        "attempts": outcome.attempts,
        "timings_ms": {
            "wait": ms(outcome.timings.wait),
            "load": ms(outcome.timings.load),
            "run": ms(outcome.timings.run),
            "commit": ms(outcome.timings.commit),
            "total": ms(outcome.timings.total()),
        },
    })
}

/// A model's state: `{"model_type", "key", "version", "fields": {...}}`.
pub fn model_json(schema: &ModelSchema, id: &ModelId, snapshot: &ModelSnapshot) -> Value {
    json!({
        "model_type": id.model_type,
        "key": id.key,
        "version": snapshot.version,
        "fields": snapshot.to_json(schema),
    })
}

fn scalars(items: &[Scalar]) -> Value {
    items.iter().map(Scalar::to_json).collect()
}

/// One field change as plain JSON: `{"op": "set", "field": "balance", "value": 70}`.
pub fn change_json(change: &FieldChange) -> Value {
    match change {
        FieldChange::Set { field, value } => json!({ "op": "set", "field": field, "value": value.to_json() }),
        FieldChange::Increment { field, delta } => json!({ "op": "increment", "field": field, "delta": delta }),
        FieldChange::ListAppend { field, items } => {
            json!({ "op": "list_append", "field": field, "items": scalars(items) })
        }
        FieldChange::ListTruncate { field, len } => json!({ "op": "list_truncate", "field": field, "len": len }),
        FieldChange::ListReplace { field, items } => {
            json!({ "op": "list_replace", "field": field, "items": scalars(items) })
        }
        FieldChange::ListInsert { field, index, item } => {
            json!({ "op": "list_insert", "field": field, "index": index, "item": item.to_json() })
        }
        FieldChange::ListPop { field, index } => json!({ "op": "list_pop", "field": field, "index": index }),
        FieldChange::ListRemove { field, item } => {
            json!({ "op": "list_remove", "field": field, "item": item.to_json() })
        }
        FieldChange::DictSet { field, entries } => {
            let entries: serde_json::Map<_, _> = entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            json!({ "op": "dict_set", "field": field, "entries": entries })
        }
        FieldChange::DictRemove { field, keys } => json!({ "op": "dict_remove", "field": field, "keys": keys }),
        FieldChange::Clear { field } => json!({ "op": "clear", "field": field }),
    }
}

/// One field change in words, for people: `balance = 70`, `log append ["a"]`, ...
pub fn change_text(change: &FieldChange) -> String {
    let join = |items: &[Scalar]| scalars(items).to_string();
    match change {
        FieldChange::Set { field, value } => format!("{field} = {}", value.to_json()),
        FieldChange::Increment { field, delta } => format!("{field} += {delta}"),
        FieldChange::ListAppend { field, items } => format!("{field} append {}", join(items)),
        FieldChange::ListTruncate { field, len } => format!("{field} truncate to {len} items"),
        FieldChange::ListReplace { field, items } => format!("{field} = {}", join(items)),
        FieldChange::ListInsert { field, index, item } => format!("{field} insert {} at {index}", item.to_json()),
        FieldChange::ListPop { field, index: Some(index) } => format!("{field} pop at {index}"),
        FieldChange::ListPop { field, index: None } => format!("{field} pop"),
        FieldChange::ListRemove { field, item } => format!("{field} remove {}", item.to_json()),
        FieldChange::DictSet { field, entries } => {
            let entries: serde_json::Map<_, _> = entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            format!("{field} update {}", Value::Object(entries))
        }
        FieldChange::DictRemove { field, keys } => format!("{field} remove keys {keys:?}"),
        FieldChange::Clear { field } => format!("{field} clear"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_split_at_a_known_type() {
        let known = |t: &str| t == "ns:User";
        assert_eq!(parse_model_ref("Account:alice", known), Ok(ModelId::new("Account", "alice")));
        assert_eq!(parse_model_ref("Account:user:1", known), Ok(ModelId::new("Account", "user:1")));
        assert_eq!(parse_model_ref("ns:User:42", known), Ok(ModelId::new("ns:User", "42")));
        assert!(parse_model_ref("nocolon", known).is_err());
    }
}
