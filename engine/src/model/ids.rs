//! Names of model types, keys and actions, and the checks that keep them safe to embed in
//! Redis keys (the `{type:key}` hash tag must stay intact).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The longest model key, action or type name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// One model instance: its type name and its key within the type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelId {
    /// The model type (schema) name.
    pub model_type: String,
    /// The key within the type.
    pub key: String,
}

impl ModelId {
    /// A model id; checked when an invocation uses it.
    pub fn new(model_type: impl Into<String>, key: impl Into<String>) -> Self {
        Self { model_type: model_type.into(), key: key.into() }
    }

    /// Checks the key (the type is checked by resolving it against the registered schemas).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the key is empty, too long, or contains `{`, `}` or control
    /// characters.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| Error::InvalidKey { key: self.key.clone(), reason: reason.to_owned() };
        if self.key.is_empty() {
            return Err(bad("a key cannot be empty"));
        }
        if self.key.len() > MAX_NAME_LEN {
            return Err(bad("a key is at most 256 bytes"));
        }
        if self.key.chars().any(|c| c == '{' || c == '}' || c.is_control()) {
            return Err(bad(
                "a key cannot contain `{`, `}` or control characters (they would break the Redis hash tag)",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.model_type, self.key)
    }
}

impl<T: Into<String>, K: Into<String>> From<(T, K)> for ModelId {
    fn from((t, k): (T, K)) -> Self {
        Self::new(t, k)
    }
}

/// One lock: a model and an action name. Locks are ordered by model then action, which is the
/// global order every engine takes them in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockId {
    /// The model the lock protects.
    pub model: ModelId,
    /// The action name: the same action on the same model serializes, different ones do not.
    pub action: String,
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.model, self.action)
    }
}

/// Checks a model type, field or action name: 1..=256 bytes of ASCII letters, digits and
/// `_ - . :`, starting with a letter or `_`.
///
/// # Errors
/// The reason, in words.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err("a name is 1 to 256 bytes long".into());
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')) {
        return Err("a name starts with a letter or `_` and uses only ASCII letters, digits and `_ - . :`".into());
    }
    Ok(())
}

/// Checks an action name.
///
/// # Errors
/// [`Error::InvalidAction`] with the reason.
pub(crate) fn validate_action(action: &str) -> Result<(), Error> {
    validate_name(action).map_err(|reason| Error::InvalidAction { action: action.to_owned(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_would_break_the_hash_tag_are_refused() {
        for key in ["", "a{b", "a}b", "a\nb"] {
            assert!(ModelId::new("T", key).validate().is_err(), "{key:?}");
        }
        assert!(ModelId::new("T", "user:123 é").validate().is_ok());
    }

    #[test]
    fn names_are_identifiers() {
        assert!(validate_name("level_up").is_ok());
        assert!(validate_name("profile.update-v2").is_ok());
        for bad in ["", "1abc", "a b", "a/b", "é"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locks_order_by_model_then_action() {
        let a = LockId { model: ModelId::new("Account", "a"), action: "z".into() };
        let b = LockId { model: ModelId::new("Account", "b"), action: "a".into() };
        assert!(a < b);
    }
}
