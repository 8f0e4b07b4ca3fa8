//! Comparing expected JSON with what a run gave, as a list of readable differences.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// One place where the actual JSON differs from the expected JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Where, as a path from the compared value (`level`, `skills.sword`, `inventory[2]`);
    /// empty for the value itself.
    pub path: String,
    /// What was expected there.
    pub expected: Value,
    /// What was there, `None` if nothing was.
    pub actual: Option<Value>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() { String::new() } else { format!("{}: ", self.path) };
        match &self.actual {
            Some(actual) => write!(f, "{at}expected {}, got {}", short(&self.expected), short(actual)),
            None => write!(f, "{at}expected {}, but there is no such field", short(&self.expected)),
        }
    }
}

/// Compact JSON for messages, cut at 300 characters.
pub(crate) fn short(value: &Value) -> String {
    shorten(&value.to_string())
}

/// A message part cut at 300 characters.
pub(crate) fn shorten(text: &str) -> String {
    let mut text = text.to_owned();
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Whether two JSON values are equal, numbers by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Compares `actual` with `expected` exactly (numbers by value): one difference for the whole
/// value if they differ.
pub fn exact(expected: &Value, actual: &Value) -> Vec<Difference> {
    if json_eq(expected, actual) {
        Vec::new()
    } else {
        vec![Difference { path: String::new(), expected: expected.clone(), actual: Some(actual.clone()) }]
    }
}

/// Compares the fields `expected` names (a JSON object) with the same fields of `actual`: each
/// named field must be there and equal (whole values: a list or dict field is compared
/// entirely); fields `expected` does not name are not checked. One difference per field.
pub fn fields_subset(expected: &Value, actual: &Value) -> Vec<Difference> {
    let (Value::Object(expected), Value::Object(actual_fields)) = (expected, actual) else {
        return exact(expected, actual);
    };
    expected
        .iter()
        .filter_map(|(field, want)| match actual_fields.get(field) {
            Some(got) if json_eq(want, got) => None,
            got => Some(Difference { path: field.clone(), expected: want.clone(), actual: got.cloned() }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!({"a": [1, 2.5]}), &json!({"a": [1.0, 2.5]})));
        assert!(!json_eq(&json!(1), &json!(2)));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!(9_007_199_254_740_993_i64), &json!(9_007_199_254_740_992_i64)));
    }

    #[test]
    fn subsets_name_each_differing_field() {
        let actual = json!({"level": 5, "skills": {"sword": 2, "magic": 3}, "name": "x"});
        assert_eq!(fields_subset(&json!({"level": 5}), &actual), []);
        let diffs = fields_subset(&json!({"level": 6, "skills": {"sword": 2}, "mana": 1}), &actual);
        let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "level: expected 6, got 5",
                r#"skills: expected {"sword":2}, got {"sword":2,"magic":3}"#,
                "mana: expected 1, but there is no such field",
            ]
        );
        assert_eq!(exact(&json!("a"), &json!("b"))[0].to_string(), r#"expected "a", got "b""#);
    }
}
