//! The JSON shapes of the HTTP API's answers and of the `wasmtx` command's output (`--json`,
//! and the text for people built from them), and the parsing of model references. A field
//! change renders itself ([`FieldChange`](crate::FieldChange)'s `Display` and `Serialize`).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::invocation::Outcome;
use crate::model::change::ModelSnapshot;
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
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
                "changes": m.changes,
            })
        })
        .collect();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    json!({
        "rule": active.rule.name(),
        "version": active.version.version,
        "digest": active.version.digest,
        "invocation_id": outcome.invocation_id,
        "idempotency_key": outcome.idempotency_key,
        "replayed": outcome.replayed,
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

/// Rows as aligned columns, the first row a header.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A time in milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The first 12 hex digits of a digest.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
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

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn tables_align() {
        let rows = vec![vec!["A".into(), "B".into()], vec!["long".into(), "x".into()]];
        assert_eq!(table(&rows), "A     B\nlong  x\n");
    }

    #[test]
    fn changes_render_once_for_people_and_once_for_programs() {
        use crate::model::change::FieldChange;
        use crate::model::value::Scalar;
        let set = FieldChange::Set { field: "balance".into(), value: Scalar::Int(70) };
        assert_eq!(set.to_string(), "balance = 70");
        assert_eq!(serde_json::to_value(&set).ok(), Some(json!({"op": "set", "field": "balance", "value": 70})));
        let entries =
            FieldChange::DictSet { field: "tags".into(), entries: vec![("k".into(), Scalar::Str("v".into()))] };
        assert_eq!(entries.to_string(), "tags[\"k\"] = \"v\"");
        assert_eq!(
            serde_json::to_value(&entries).ok(),
            Some(json!({"op": "dict_set", "field": "tags", "entries": {"k": "v"}}))
        );
        let pop = FieldChange::ListPop { field: "log".into(), index: None };
        assert_eq!(serde_json::to_value(&pop).ok(), Some(json!({"op": "list_pop", "field": "log", "index": null})));
    }
}
