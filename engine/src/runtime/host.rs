//! The host side of the WIT world: one [`HostState`] per run, holding the models' workspaces,
//! the handle table, the memory cap and the log sink.

use std::collections::VecDeque;

use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use super::bindings::wasmtx::rule::{log, models, types as wit};
use super::convert::{
    access_error_to_wit, entries_from_wit, field_type_to_wit, scalar_from_wit, scalar_to_wit, scalars_from_wit,
    value_from_wit, value_to_wit,
};
use super::limits::MemoryCap;
use super::log::RuleLog;
use super::workspace::ModelWorkspace;
use crate::error::AccessError;
use crate::model::ids::ModelId;

/// A rule's handle to one declared model: the index of its workspace.
#[derive(Debug)]
pub struct ModelHandle {
    index: usize,
}

/// Live handles a rule may hold at once; a rule opening models in a loop without dropping the
/// handles gets `limit-exceeded` instead of growing the host's table without bound.
const MAX_HANDLES: usize = 1024;

/// How many recent failed accesses to remember for attributing a propagated `access` error.
const FAILURES_KEPT: usize = 16;

/// The data of one run's `Store`.
#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) workspaces: Vec<ModelWorkspace>,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) log: RuleLog,
    /// Recent failed accesses, newest last: (the model's index if a handle was involved, the
    /// error). When the rule returns `err(access(e))`, the newest entry equal to `e` names the
    /// model for [`Error::Access`](crate::Error::Access).
    failures: VecDeque<(Option<usize>, AccessError)>,
}

impl HostState {
    pub(crate) fn new(workspaces: Vec<ModelWorkspace>, memory: MemoryCap, log: RuleLog) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        Self { workspaces, table, memory, log, failures: VecDeque::with_capacity(FAILURES_KEPT) }
    }

    /// The model of the newest failed access that returned `error`, if any.
    pub(crate) fn model_of_failure(&self, error: &AccessError) -> Option<ModelId> {
        let (index, _) = self.failures.iter().rev().find(|(_, e)| e == error)?;
        index.map(|i| self.workspaces[i].id().clone())
    }

    fn fail(&mut self, model: Option<usize>, error: AccessError) -> wit::AccessError {
        let wit = access_error_to_wit(&error);
        if self.failures.len() == FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back((model, error));
        wit
    }

    /// Runs one model operation on the handle's workspace, converting its error for the guest.
    fn with_model<R>(
        &mut self,
        handle: &Resource<ModelHandle>,
        op: &'static str,
        field: &str,
        f: impl FnOnce(&mut ModelWorkspace) -> Result<R, AccessError>,
    ) -> wasmtime::Result<Result<R, wit::AccessError>> {
        let _span = tracing::trace_span!("wasmtx.model", op, field).entered();
        // An unknown handle is a guest (or bindings) bug: trap rather than hand back an error.
        let index = self.table.get(handle)?.index;
        let result = f(&mut self.workspaces[index]);
        Ok(result.map_err(|e| self.fail(Some(index), e)))
    }

    fn open_index(&mut self, index: usize) -> wasmtime::Result<Result<Resource<models::Model>, wit::AccessError>> {
        match self.table.push(ModelHandle { index }) {
            Ok(handle) => Ok(Ok(handle)),
            Err(ResourceTableError::Full) => {
                let error = AccessError::LimitExceeded {
                    limit: format!("a rule holds at most {MAX_HANDLES} model handles at once"),
                };
                Ok(Err(self.fail(Some(index), error)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl wit::Host for HostState {}

impl models::Host for HostState {
    fn open(&mut self, index: u32) -> wasmtime::Result<Result<Resource<models::Model>, wit::AccessError>> {
        let _span = tracing::trace_span!("wasmtx.models", op = "open", index).entered();
        match usize::try_from(index).ok().filter(|&i| i < self.workspaces.len()) {
            Some(i) => self.open_index(i),
            None => {
                let reason = format!("no model at index {index}: the invocation declared {}", self.workspaces.len());
                Ok(Err(self.fail(None, AccessError::Denied { reason })))
            }
        }
    }

    fn open_by_key(
        &mut self,
        model_type: String,
        key: String,
    ) -> wasmtime::Result<Result<Resource<models::Model>, wit::AccessError>> {
        let _span = tracing::trace_span!("wasmtx.models", op = "open-by-key", model_type, key).entered();
        let found = self.workspaces.iter().position(|w| w.id().model_type == model_type && w.id().key == key);
        match found {
            Some(i) => self.open_index(i),
            None => {
                let reason = format!("model {model_type}:{key} was not declared by the invocation");
                Ok(Err(self.fail(None, AccessError::Denied { reason })))
            }
        }
    }
}

impl models::HostModel for HostState {
    fn key(&mut self, h: Resource<models::Model>) -> wasmtime::Result<String> {
        let _span = tracing::trace_span!("wasmtx.model", op = "key").entered();
        let index = self.table.get(&h)?.index;
        Ok(self.workspaces[index].id().key.clone())
    }

    fn model_type(&mut self, h: Resource<models::Model>) -> wasmtime::Result<String> {
        let _span = tracing::trace_span!("wasmtx.model", op = "model-type").entered();
        let index = self.table.get(&h)?.index;
        Ok(self.workspaces[index].id().model_type.clone())
    }

    fn fields(&mut self, h: Resource<models::Model>) -> wasmtime::Result<Vec<(String, wit::FieldType)>> {
        let _span = tracing::trace_span!("wasmtx.model", op = "fields").entered();
        let index = self.table.get(&h)?.index;
        let schema = self.workspaces[index].schema();
        Ok(schema.fields().map(|(name, def)| (name.to_owned(), field_type_to_wit(def.ty))).collect())
    }

    fn get(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<wit::Value, wit::AccessError>> {
        self.with_model(&h, "get", &field, |w| w.get(&field).map(value_to_wit))
    }

    fn set(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        value: wit::Value,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "set", &field, |w| w.set(&field, value_from_wit(value)))
    }

    fn reset(&mut self, h: Resource<models::Model>, field: String) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "reset", &field, |w| w.reset(&field))
    }

    fn get_scalar(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<wit::Scalar, wit::AccessError>> {
        self.with_model(&h, "get-scalar", &field, |w| w.get_scalar(&field).cloned().map(scalar_to_wit))
    }

    fn set_scalar(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        value: wit::Scalar,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "set-scalar", &field, |w| w.set_scalar(&field, scalar_from_wit(value)))
    }

    fn increment(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wit::AccessError>> {
        self.with_model(&h, "increment", &field, |w| w.increment(&field, delta))
    }

    fn list_append(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        item: wit::Scalar,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "list-append", &field, |w| w.list_append(&field, scalar_from_wit(item)))
    }

    fn list_extend(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        items: Vec<wit::Scalar>,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "list-extend", &field, |w| w.list_extend(&field, scalars_from_wit(items)))
    }

    fn list_insert(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        index: i64,
        item: wit::Scalar,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "list-insert", &field, |w| w.list_insert(&field, index, scalar_from_wit(item)))
    }

    fn list_pop(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        index: Option<i64>,
    ) -> wasmtime::Result<Result<wit::Scalar, wit::AccessError>> {
        self.with_model(&h, "list-pop", &field, |w| w.list_pop(&field, index).map(scalar_to_wit))
    }

    fn list_remove(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        item: wit::Scalar,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "list-remove", &field, |w| w.list_remove(&field, scalar_from_wit(item)))
    }

    fn list_clear(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "list-clear", &field, |w| w.list_clear(&field))
    }

    fn list_len(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<u32, wit::AccessError>> {
        self.with_model(&h, "list-len", &field, |w| w.list_len(&field))
    }

    fn list_get(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        index: i64,
    ) -> wasmtime::Result<Result<wit::Scalar, wit::AccessError>> {
        self.with_model(&h, "list-get", &field, |w| w.list_get(&field, index).cloned().map(scalar_to_wit))
    }

    fn dict_get(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Scalar>, wit::AccessError>> {
        self.with_model(&h, "dict-get", &field, |w| w.dict_get(&field, &key).map(|v| v.cloned().map(scalar_to_wit)))
    }

    fn dict_set(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        key: String,
        value: wit::Scalar,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "dict-set", &field, |w| w.dict_set(&field, key, scalar_from_wit(value)))
    }

    fn dict_update(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        entries: Vec<(String, wit::Scalar)>,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "dict-update", &field, |w| w.dict_update(&field, entries_from_wit(entries)))
    }

    fn dict_pop(
        &mut self,
        h: Resource<models::Model>,
        field: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Scalar>, wit::AccessError>> {
        self.with_model(&h, "dict-pop", &field, |w| w.dict_pop(&field, &key).map(|v| v.map(scalar_to_wit)))
    }

    fn dict_clear(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<(), wit::AccessError>> {
        self.with_model(&h, "dict-clear", &field, |w| w.dict_clear(&field))
    }

    fn dict_keys(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit::AccessError>> {
        self.with_model(&h, "dict-keys", &field, |w| w.dict_keys(&field))
    }

    fn dict_len(
        &mut self,
        h: Resource<models::Model>,
        field: String,
    ) -> wasmtime::Result<Result<u32, wit::AccessError>> {
        self.with_model(&h, "dict-len", &field, |w| w.dict_len(&field))
    }

    fn drop(&mut self, h: Resource<models::Model>) -> wasmtime::Result<()> {
        let _span = tracing::trace_span!("wasmtx.model", op = "drop").entered();
        self.table.delete(h)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn emit(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        let _span = tracing::trace_span!("wasmtx.log", op = "emit").entered();
        self.log.emit(level, message, &fields);
        Ok(())
    }
}
