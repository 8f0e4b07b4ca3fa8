//! [`ModelError`]: a failed load or save of a typed model, with the struct, model and field.

use std::fmt;

use crate::{AccessError, RuleError};

/// Why loading or saving a typed model failed: the [`AccessError`] the engine gets, plus which
/// struct, model and field it was about.
///
/// `?` in a rule turns it into [`RuleError::Access`] with the access error (what the engine
/// reports to the caller as `Error::Access`); the conversion also logs this error's whole
/// message, struct name included, at `error` level, so the host's log says which struct did
/// not fit the schema.
///
/// A struct that does not fit its model's schema fails at load, before the rule changes
/// anything:
/// - a struct field naming a model field the schema lacks gives the host's
///   [`AccessError::UnknownField`] with the field name;
/// - a struct field whose Rust type cannot hold the schema field's type gives
///   [`AccessError::TypeMismatch`] whose `expected` is the schema type and whose `found` names
///   the struct, the field and its Rust type.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError {
    // Boxed: rules return it through every `?` of a load or save.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    struct_name: &'static str,
    model: String,
    field: Option<&'static str>,
    detail: Option<String>,
    error: AccessError,
}

impl ModelError {
    pub(crate) fn new(
        struct_name: &'static str,
        model: String,
        field: Option<&'static str>,
        detail: Option<String>,
        error: AccessError,
    ) -> Self {
        Self { inner: Box::new(Inner { struct_name, model, field, detail, error }) }
    }

    /// The struct being loaded or saved.
    pub fn struct_name(&self) -> &'static str {
        self.inner.struct_name
    }

    /// The model, as `Type:key` (or `model <index>` when it could not be opened).
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The model field the error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        self.inner.field
    }

    /// The access error the engine reports.
    pub fn access_error(&self) -> &AccessError {
        &self.inner.error
    }

    /// The access error the engine reports, by value.
    pub fn into_access_error(self) -> AccessError {
        self.inner.error
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.inner;
        write!(f, "struct `{}` on model {}", e.struct_name, e.model)?;
        if let Some(field) = e.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", e.error)?;
        if let Some(detail) = &e.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner.error)
    }
}

impl From<ModelError> for RuleError {
    /// Logs the whole error (struct, model, field) at `error` level and keeps its access
    /// error: the rule's error reaches the engine as [`RuleError::Access`].
    fn from(e: ModelError) -> Self {
        crate::log::error(&e.to_string(), &[("struct", e.inner.struct_name), ("model", &e.inner.model)]);
        Self::Access(e.inner.error)
    }
}

impl From<ModelError> for AccessError {
    fn from(e: ModelError) -> Self {
        e.inner.error
    }
}
