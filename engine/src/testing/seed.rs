//! Seeding: the changes that give a model exactly the state a test names.

use serde_json::Value;

use super::compare::short;
use crate::model::change::{FieldChange, ModelTarget};
use crate::model::value::FieldValue;

/// The changes that make a model's state exactly `state` (unnamed fields at their defaults).
pub(super) fn seed_changes(target: &ModelTarget, state: &Value) -> Result<Vec<FieldChange>, String> {
    let schema = &target.schema;
    let Value::Object(given) = state else {
        return Err(format!("the state must be a JSON object of fields, not {}", short(state)));
    };
    if let Some(unknown) = given.keys().find(|k| schema.field(k).is_none()) {
        let fields: Vec<&str> = schema.fields().map(|(n, _)| n).collect();
        return Err(format!("unknown field `{unknown}` (model type `{}` has: {})", schema.name(), fields.join(", ")));
    }
    let mut changes = Vec::new();
    for (name, def) in schema.fields() {
        let value = match given.get(name) {
            Some(json) => FieldValue::from_json(def.ty, json)
                .map_err(|reason| format!("field `{name}` ({}): {reason}", def.ty))?,
            None => def.default.clone(),
        };
        let field = name.to_owned();
        match value {
            FieldValue::Scalar(value) => changes.push(FieldChange::Set { field, value }),
            FieldValue::List(items) if items.is_empty() => changes.push(FieldChange::Clear { field }),
            FieldValue::List(items) => changes.push(FieldChange::ListReplace { field, items }),
            FieldValue::Dict(map) => {
                changes.push(FieldChange::Clear { field: field.clone() });
                if !map.is_empty() {
                    changes.push(FieldChange::DictSet { field, entries: map.into_iter().collect() });
                }
            }
        }
    }
    Ok(changes)
}
