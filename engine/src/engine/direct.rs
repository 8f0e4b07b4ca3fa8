//! Direct field operations: atomic single-model updates without a rule, for the cases the
//! reference answers with `field.asave()`. Each is one store round trip, checked against the
//! schema, and bumps the model's version like any commit.

use super::Engine;
use crate::error::{AccessError, Error, Result};
use crate::model::change::{FieldChange, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::value::{FieldType, FieldValue, Scalar};
use crate::store::{CommitGuard, CommitRequest};

impl Engine {
    /// Replaces one field's whole value (a scalar, a whole list or a whole dict).
    ///
    /// # Errors
    /// [`Error::UnknownModelType`], [`Error::InvalidKey`], [`Error::Access`] with
    /// `UnknownField` or `TypeMismatch` (a value of another type, or a NaN or infinite float, as
    /// a rule's write of it gets), or a store error. Nothing is written on error.
    pub async fn set_field(&self, model_type: &str, key: &str, field: &str, value: FieldValue) -> Result<u64> {
        let (target, ty) = self.field_target(model_type, key, field)?;
        if !ty.admits(&value) {
            return Err(mismatch(&target.id, field, ty, describe(&value)));
        }
        match &value {
            FieldValue::Scalar(s) => check_finite(&target.id, field, [s])?,
            FieldValue::List(items) => check_finite(&target.id, field, items)?,
            FieldValue::Dict(map) => check_finite(&target.id, field, map.values())?,
        }
        let field = field.to_owned();
        let changes = match value {
            FieldValue::Scalar(value) => vec![FieldChange::Set { field, value }],
            FieldValue::List(items) if items.is_empty() => vec![FieldChange::Clear { field }],
            FieldValue::List(items) => vec![FieldChange::ListReplace { field, items }],
            FieldValue::Dict(map) => {
                let mut changes = vec![FieldChange::Clear { field: field.clone() }];
                if !map.is_empty() {
                    changes.push(FieldChange::DictSet { field, entries: map.into_iter().collect() });
                }
                changes
            }
        };
        self.apply_direct(target, changes).await
    }

    /// Adds `delta` to an int field, atomically (`HINCRBY`), and returns the model's new
    /// version.
    ///
    /// # Errors
    /// As [`Engine::set_field`], plus [`Error::CannotApply`] if the stored value is not an int
    /// or would overflow.
    pub async fn increment(&self, model_type: &str, key: &str, field: &str, delta: i64) -> Result<u64> {
        let (target, ty) = self.field_target(model_type, key, field)?;
        if ty != FieldType::Scalar(crate::ScalarKind::Int) {
            return Err(mismatch(&target.id, field, ty, "an increment".into()));
        }
        self.apply_direct(target, vec![FieldChange::Increment { field: field.to_owned(), delta }]).await
    }

    /// Appends items to a list field (`RPUSH`).
    ///
    /// # Errors
    /// As [`Engine::set_field`].
    pub async fn list_append(&self, model_type: &str, key: &str, field: &str, items: Vec<Scalar>) -> Result<u64> {
        let (target, ty) = self.field_target(model_type, key, field)?;
        let FieldType::List(kind) = ty else {
            return Err(mismatch(&target.id, field, ty, "a list append".into()));
        };
        if let Some(bad) = items.iter().find(|i| i.kind() != kind) {
            return Err(mismatch(&target.id, field, ty, format!("a {} item", bad.kind())));
        }
        check_finite(&target.id, field, &items)?;
        self.apply_direct(target, vec![FieldChange::ListAppend { field: field.to_owned(), items }]).await
    }

    /// Sets entries of a dict field (`HSET`).
    ///
    /// # Errors
    /// As [`Engine::set_field`].
    pub async fn dict_set(
        &self,
        model_type: &str,
        key: &str,
        field: &str,
        entries: Vec<(String, Scalar)>,
    ) -> Result<u64> {
        let (target, ty) = self.field_target(model_type, key, field)?;
        let FieldType::Dict(kind) = ty else {
            return Err(mismatch(&target.id, field, ty, "a dict update".into()));
        };
        if let Some((_, bad)) = entries.iter().find(|(_, v)| v.kind() != kind) {
            return Err(mismatch(&target.id, field, ty, format!("a {} value", bad.kind())));
        }
        check_finite(&target.id, field, entries.iter().map(|(_, v)| v))?;
        self.apply_direct(target, vec![FieldChange::DictSet { field: field.to_owned(), entries }]).await
    }

    /// Deletes a model's data: it reads as defaults again. Returns the new version.
    ///
    /// # Errors
    /// [`Error::UnknownModelType`], [`Error::InvalidKey`], or a store error.
    pub async fn delete_model(&self, model_type: &str, key: &str) -> Result<u64> {
        let id = ModelId::new(model_type, key);
        id.validate()?;
        let target = ModelTarget { schema: self.model_type(model_type)?, id };
        self.inner.protocol.forget_cached(std::slice::from_ref(&target));
        Ok(self.store().delete(&target).await?)
    }

    fn field_target(&self, model_type: &str, key: &str, field: &str) -> Result<(ModelTarget, FieldType)> {
        let id = ModelId::new(model_type, key);
        id.validate()?;
        let schema = self.model_type(model_type)?;
        let ty = schema.field(field).map(|f| f.ty).ok_or_else(|| Error::Access {
            model: Some(id.clone()),
            error: AccessError::UnknownField { field: field.to_owned() },
        })?;
        Ok((ModelTarget { id, schema }, ty))
    }

    async fn apply_direct(&self, target: ModelTarget, changes: Vec<FieldChange>) -> Result<u64> {
        let models = [target];
        self.inner.protocol.forget_cached(&models);
        let changes = [changes];
        let receipt = self
            .store()
            .commit(CommitRequest {
                models: &models,
                changes: &changes,
                guard: CommitGuard::Unguarded,
                records: crate::store::CommitRecords::NONE,
            })
            .await?;
        Ok(receipt.versions.first().copied().unwrap_or_default())
    }
}

/// Refuses a non-finite float before anything reaches the store, with the error a rule's write
/// of it gets (the store's own check would call it `CannotApply`).
fn check_finite<'a>(model: &ModelId, field: &str, scalars: impl IntoIterator<Item = &'a Scalar>) -> Result<()> {
    scalars
        .into_iter()
        .try_for_each(|s| s.check_finite(field))
        .map_err(|error| Error::Access { model: Some(model.clone()), error })
}

fn mismatch(model: &ModelId, field: &str, ty: FieldType, found: String) -> Error {
    Error::Access {
        model: Some(model.clone()),
        error: AccessError::TypeMismatch { field: field.to_owned(), expected: ty.to_string(), found },
    }
}

fn describe(value: &FieldValue) -> String {
    match value {
        FieldValue::Scalar(s) => format!("a {} value", s.kind()),
        FieldValue::List(items) => {
            items.first().map_or_else(|| "a list".to_owned(), |i| format!("a list of {}", i.kind()))
        }
        FieldValue::Dict(map) => {
            map.values().next().map_or_else(|| "a dict".to_owned(), |v| format!("a dict of {}", v.kind()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::ModelSchema;
    use crate::model::value::ScalarKind;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn non_finite_floats_are_a_type_mismatch_before_the_store_sees_them() -> Result<()> {
        let schema = ModelSchema::builder("Gauge")
            .field("level", FieldType::Scalar(ScalarKind::Float))
            .field("samples", FieldType::List(ScalarKind::Float))
            .field("peaks", FieldType::Dict(ScalarKind::Float))
            .build()?;
        let engine = Engine::builder().store(MemoryStore::new()).model(schema).build()?;
        let before = engine.read_model("Gauge", "g").await?;
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let bad = Scalar::Float(value);
            let fine = Scalar::Float(1.5);
            let list = FieldValue::List(vec![fine.clone(), bad.clone()]);
            let dict = FieldValue::Dict([("a".to_owned(), fine.clone()), ("b".to_owned(), bad.clone())].into());
            let attempts = [
                ("level", engine.set_field("Gauge", "g", "level", FieldValue::Scalar(bad.clone())).await),
                ("samples", engine.set_field("Gauge", "g", "samples", list).await),
                ("peaks", engine.set_field("Gauge", "g", "peaks", dict).await),
                ("samples", engine.list_append("Gauge", "g", "samples", vec![fine.clone(), bad.clone()]).await),
                ("peaks", engine.dict_set("Gauge", "g", "peaks", vec![("b".into(), bad.clone())]).await),
            ];
            for (field, result) in attempts {
                let expected = AccessError::TypeMismatch {
                    field: field.into(),
                    expected: "finite float".into(),
                    found: value.to_string(),
                };
                match result {
                    Err(Error::Access { model: Some(model), error }) => {
                        assert_eq!(error, expected, "{field} {value}");
                        assert_eq!(model, ModelId::new("Gauge", "g"));
                    }
                    other => panic!("{field} {value}: {other:?}"),
                }
            }
        }
        assert_eq!(engine.read_model("Gauge", "g").await?, before, "nothing was written");
        Ok(())
    }
}
