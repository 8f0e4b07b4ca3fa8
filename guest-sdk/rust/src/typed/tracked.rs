//! [`Tracked`]: a typed model loaded from a model handle, saved back field by field.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::error::ModelError;
use super::field::{FieldWrite, ModelField};
use super::{FieldSpec, TypedModel};
use crate::{AccessError, Model};

/// A typed model `T` loaded from one model of the invocation, with the state it was loaded
/// with, so that [`Tracked::save`] writes back only what the rule changed.
///
/// It dereferences to `T`: read and change the fields with ordinary Rust
/// (`c.level += 1`, `c.inventory.push(..)`, `*c.skills.entry(..).or_insert(0) += 1`), then
/// call [`Tracked::save`]. Get one from [`Context::load`](crate::Context::load),
/// [`Context::load_key`](crate::Context::load_key) or [`Tracked::load`].
///
/// # Saving is explicit
///
/// Nothing reaches the model until [`Tracked::save`]: dropping a `Tracked` does not save
/// (a drop cannot report an error). A `Tracked` dropped with unsaved changes logs a `warn`
/// record naming the struct, the model and the changed fields; call [`Tracked::discard`] to
/// drop changes on purpose. Saving twice writes only what changed in between.
///
/// The copy is taken at load: writes made to the same fields through the [`Model`](struct@Model) handle
/// ([`Tracked::model`]) after the load are not seen by the struct, and a save may overwrite
/// them. Use one or the other for a given field.
pub struct Tracked<T: TypedModel> {
    model: Model,
    original: T,
    current: T,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Loaded; saves allowed.
    Live,
    /// A save failed half-way: the host holds some of its writes, so a retry could apply them
    /// twice. Further saves fail.
    Failed,
    /// Discarded: dropping it says nothing.
    Discarded,
}

impl<T: TypedModel> Tracked<T> {
    /// Loads `T` from `model`: checks that every field `T` names exists in the model's schema
    /// with a type the Rust field can hold, then reads each of those fields (one host call
    /// each; fields `T` does not name are not read).
    ///
    /// # Errors
    ///
    /// - [`AccessError::Denied`] if `T` declares a model type (`#[wasmtx(model_type = ..)]`)
    ///   and the model is of another type;
    /// - [`AccessError::UnknownField`] if the schema has no field of a name `T` uses;
    /// - [`AccessError::TypeMismatch`] if a schema field's type does not fit the Rust field's
    ///   type.
    ///
    /// The [`ModelError`] names the struct, the model and the field.
    pub fn load(model: Model) -> Result<Self, ModelError> {
        if let Some(expected) = T::MODEL_TYPE {
            let actual = model.model_type();
            if actual != expected {
                return Err(error::<T>(
                    &model,
                    None,
                    AccessError::Denied(format!(
                        "struct `{}` is for model type `{expected}`, but this model is a `{actual}`",
                        T::STRUCT_NAME
                    )),
                    None,
                ));
            }
        }
        check_schema::<T>(&model)?;
        let current = T::read_fields(&FieldReader { model: &model, struct_name: T::STRUCT_NAME, specs: T::FIELDS })?;
        let original = current.snapshot();
        Ok(Self { model, original, current, state: State::Live })
    }

    /// Writes back every field that changed since the load (or the last save), through the
    /// host's field operations, keeping the intent of the change: see
    /// [`ModelField::writes`] (a `Vec` that only grew is one `list-extend` of the new items, a
    /// map changes entry by entry, a [`Counter`](crate::Counter) is an `increment`, another
    /// changed scalar a `set`). Writes nothing if nothing changed.
    ///
    /// The writes go into the invocation's buffer like every other model operation: they
    /// reach the store only if the rule returns `Ok`.
    ///
    /// # Errors
    ///
    /// The first write the host refuses ([`AccessError::LimitExceeded`] for a list or value
    /// over a limit or a [`Counter`](crate::Counter) that overflowed, for example), with the
    /// field it was writing. Writes before it may already be in the invocation's buffer:
    /// propagate the error (the invocation then writes nothing). Every later save of this
    /// `Tracked` fails with [`AccessError::Denied`].
    pub fn save(&mut self) -> Result<(), ModelError> {
        if self.state == State::Failed {
            return Err(error::<T>(
                &self.model,
                None,
                AccessError::Denied("an earlier save of this model failed; return that error instead".into()),
                None,
            ));
        }
        for (index, write) in self.pending() {
            let spec = &T::FIELDS[index];
            if let Err(e) = write.apply(&self.model, spec.name) {
                self.state = State::Failed;
                return Err(error::<T>(&self.model, Some(spec), e, None));
            }
        }
        self.original = self.current.snapshot();
        Ok(())
    }

    /// Whether a field changed since the load (or the last save).
    pub fn is_modified(&self) -> bool {
        !self.pending().is_empty()
    }

    /// The model fields that changed since the load (or the last save), in struct order.
    pub fn modified_fields(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.pending().into_iter().map(|(i, _)| T::FIELDS[i].name).collect();
        names.dedup();
        names
    }

    /// The writes [`Tracked::save`] would send now, as `(model field, write)`, in order.
    pub fn pending_writes(&self) -> Vec<(&'static str, FieldWrite)> {
        self.pending().into_iter().map(|(i, w)| (T::FIELDS[i].name, w)).collect()
    }

    /// Drops the struct and its unsaved changes without the warning of an unsaved drop.
    pub fn discard(mut self) {
        self.state = State::Discarded;
    }

    /// The model handle, for operations the struct does not cover (see the type's notes on
    /// mixing the two).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model's key.
    pub fn key(&self) -> String {
        self.model.key()
    }

    /// The state as loaded (or as last saved).
    pub fn original(&self) -> &T {
        &self.original
    }

    fn pending(&self) -> Vec<(usize, FieldWrite)> {
        let mut out = Vec::new();
        T::writes(&self.original, &self.current, &mut out);
        out
    }
}

impl<T: TypedModel> Deref for Tracked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.current
    }
}

impl<T: TypedModel> DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.current
    }
}

impl<T: TypedModel> Drop for Tracked<T> {
    fn drop(&mut self) {
        if self.state != State::Live {
            return;
        }
        let changed = self.modified_fields();
        if !changed.is_empty() {
            let model = describe(&self.model);
            crate::log::warn(
                &format!(
                    "struct `{}` on model {model} was changed but never saved: its changes are dropped \
                     (call `save()`, or `discard()` to drop them on purpose)",
                    T::STRUCT_NAME
                ),
                &[("struct", T::STRUCT_NAME), ("model", &model), ("fields", &changed.join(","))],
            );
        }
    }
}

impl<T: TypedModel + fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("model", &self.model)
            .field("original", &self.original)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// Reads the fields of a typed model; used by the code `#[derive(Model)]` generates.
#[derive(Debug)]
pub struct FieldReader<'a> {
    model: &'a Model,
    struct_name: &'static str,
    specs: &'static [FieldSpec],
}

impl FieldReader<'_> {
    /// Reads the field described by `specs[index]` (one host call).
    ///
    /// # Errors
    ///
    /// The host's [`AccessError`], or [`AccessError::TypeMismatch`] if the value does not fit
    /// `F`.
    pub fn read<F: ModelField>(&self, index: usize) -> Result<F, ModelError> {
        let Some(spec) = self.specs.get(index) else {
            return Err(ModelError::new(
                self.struct_name,
                describe(self.model),
                None,
                None,
                AccessError::Denied(format!("no field #{index} in the struct's field list")),
            ));
        };
        let value = self.model.get(spec.name).map_err(|e| self.error(spec, e))?;
        let shape = value.shape();
        F::from_value(value).ok_or_else(|| {
            let found = format!(
                "a {shape} value that `{}: {}` in struct `{}` cannot hold",
                spec.rust_field, spec.rust_type, self.struct_name
            );
            self.error(spec, AccessError::type_mismatch(spec.name, spec.field_type.to_string(), found))
        })
    }

    fn error(&self, spec: &FieldSpec, e: AccessError) -> ModelError {
        ModelError::new(self.struct_name, describe(self.model), Some(spec.name), None, e)
    }
}

/// Checks every field `T` names against the model's schema (one host call).
fn check_schema<T: TypedModel>(model: &Model) -> Result<(), ModelError> {
    let schema = model.fields();
    for spec in T::FIELDS {
        match schema.iter().find(|(name, _)| name == spec.name) {
            None => {
                // Ask the host, so the engine's error names the model too.
                let e = match model.get(spec.name) {
                    Err(e) => e,
                    Ok(_) => AccessError::UnknownField(spec.name.to_owned()),
                };
                let fields: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
                let detail = format!(
                    "struct field `{}: {}` has no model field `{}`; the model type `{}` has: {}",
                    spec.rust_field,
                    spec.rust_type,
                    spec.name,
                    model.model_type(),
                    fields.join(", ")
                );
                return Err(error::<T>(model, Some(spec), e, Some(detail)));
            }
            Some((_, ty)) if *ty != spec.field_type => {
                return Err(error::<T>(model, Some(spec), mismatch(T::STRUCT_NAME, spec, &ty.to_string()), None));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A type mismatch between the schema and a struct field: `expected` is the schema's type,
/// `found` names the struct field, its Rust type and the schema type that type holds.
fn mismatch(struct_name: &str, spec: &FieldSpec, schema_type: &str) -> AccessError {
    AccessError::type_mismatch(
        spec.name,
        schema_type,
        format!("`{}: {}` in struct `{struct_name}`, which holds {}", spec.rust_field, spec.rust_type, spec.field_type),
    )
}

fn error<T: TypedModel>(model: &Model, spec: Option<&FieldSpec>, e: AccessError, detail: Option<String>) -> ModelError {
    ModelError::new(T::STRUCT_NAME, describe(model), spec.map(|s| s.name), detail, e)
}

/// `Type:key`, as the engine prints a model.
pub(crate) fn describe(model: &Model) -> String {
    format!("{}:{}", model.model_type(), model.key())
}
