//! Typed models: work on a plain Rust struct, save back only what changed.
//!
//! Derive [`Model`](derive@crate::Model) on a struct whose fields name fields of a model type,
//! load it with [`Context::load`], change it with ordinary Rust, and [`Tracked::save`] it:
//!
//! ```
//! use std::collections::BTreeMap;
//! use wasmtx_guest::prelude::*;
//!
//! /// The fields of `GameCharacter` this rule uses (the schema may have more).
//! #[derive(Debug, Model)]
//! struct GameCharacter {
//!     level: Counter,                // int, saved as an increment
//!     health: i64,                   // int, saved as an assignment
//!     inventory: Vec<String>,        // list<str>
//!     skills: BTreeMap<String, i64>, // dict<int>
//! }
//!
//! fn level_up(ctx: &Context, _input: ()) -> RuleResult<i64> {
//!     let mut c = ctx.load::<GameCharacter>(0)?; // checks the schema, reads 4 fields
//!     c.level += 1;
//!     c.health = 100;
//!     let level = c.level.get();
//!     c.inventory.push(format!("badge_{level}"));
//!     *c.skills.entry("sword".into()).or_insert(0) += 1;
//!     c.save()?; // extend inventory by one item, set one skill, increment level, set health
//!     Ok(c.level.get())
//! }
//!
//! export_rule!(level_up);
//! # fn main() {}
//! ```
//!
//! [`Tracked`] dereferences to the struct, so each statement borrows the whole struct through
//! it: a statement that mutates one field while reading another
//! (`c.inventory.push(c.name.clone())`) does not compile. Read into a local first, as above,
//! or reborrow the struct once (`let ch = &mut *c;`) and use `ch.inventory` and `ch.name`
//! freely.
//!
//! # Field types
//!
//! | Rust type | schema type | saved as |
//! |---|---|---|
//! | `i64`, `f64`, `bool`, `String`, `Vec<u8>` | `int`, `float`, `bool`, `str`, `bytes` | `set` when it changed |
//! | [`Counter`] | `int` | one `increment` of what was added (`set` after [`Counter::set`]) |
//! | `Vec<T>` | `list<T>` | `list-extend` of the new tail if it only grew, `list-pop`s if it only shrank from the end, `list-clear` if emptied, else a whole `set` |
//! | `BTreeMap<String, T>` | `dict<T>` | `dict-pop` of each removed key, one `dict-update` of the new and changed entries, `dict-clear` if emptied |
//!
//! where `T` is one of the scalar types of the first row ([`ScalarItem`]). Implement
//! [`ModelField`] to use other types.
//!
//! # Attributes
//!
//! - `#[wasmtx(rename = "name")]` on a field: the model field's name, when it differs from the
//!   Rust field's (`r#type` maps to `type` without it).
//! - `#[wasmtx(skip)]` on a field: not a model field; set to `Default::default()` on load and
//!   never saved.
//! - `#[wasmtx(model_type = "Name")]` on the struct: the model type the struct is for; loading
//!   a model of another type fails with [`AccessError::Denied`](crate::AccessError::Denied), and [`Context::load_key`]
//!   opens a model of this type. Without it, [`Context::load_key`] uses the struct's name.
//! - `#[wasmtx(crate = "path")]` on the struct: where `wasmtx-guest` is, when it is not a
//!   direct dependency named `wasmtx_guest`.
//!
//! # Schema mismatches
//!
//! Loading checks the struct against the model's schema before reading anything: a field the
//! schema lacks is [`AccessError::UnknownField`](crate::AccessError::UnknownField), a field whose Rust type cannot hold the
//! schema type is [`AccessError::TypeMismatch`](crate::AccessError::TypeMismatch) (its `found` names the struct and the field).
//! The [`ModelError`] says which struct, model and field; `?` turns it into
//! [`RuleError::Access`](crate::RuleError::Access) and logs the full message.
//!
//! # Pipeline mode
//!
//! In lock and optimistic modes the engine commits what the model's state became, so every
//! field type is safe. In pipeline mode it commits the *intent* of each write, applied to
//! whatever is stored when the batch runs: list appends, dict entry changes and
//! [`Counter`] increments compose with concurrent invocations, but a plain scalar field
//! (`i64` included) is an assignment: **the last writer wins**. Use [`Counter`] for `int`
//! fields that concurrent invocations add to.
//!
//! # Saving
//!
//! Saving is explicit: [`Tracked::save`] reports errors, a drop cannot. A [`Tracked`] dropped
//! with unsaved changes logs a warning (see [`Tracked`]).

mod counter;
mod error;
mod field;
mod tracked;

pub use counter::Counter;
pub use error::ModelError;
pub use field::{FieldWrite, ModelField, ScalarItem};
pub use tracked::{FieldReader, Tracked};

use crate::Context;
use crate::bindings::wasmtx::rule::types::FieldType;

/// A struct that mirrors fields of a model type. Implement it with
/// [`#[derive(Model)]`](derive@crate::Model); the items are for the generated code and for
/// [`Tracked`].
pub trait TypedModel: Sized {
    /// The struct's name, for errors and logs.
    const STRUCT_NAME: &'static str;
    /// The model type the struct is for (`#[wasmtx(model_type = "...")]`), if declared.
    const MODEL_TYPE: Option<&'static str>;
    /// The model fields the struct reads and writes, in struct order.
    const FIELDS: &'static [FieldSpec];

    /// Reads every field of [`TypedModel::FIELDS`] through `reader`.
    ///
    /// # Errors
    ///
    /// The first field that cannot be read.
    fn read_fields(reader: &FieldReader<'_>) -> Result<Self, ModelError>;

    /// A copy of the model fields (skipped fields at their default): the state a
    /// [`Tracked`] compares against.
    fn snapshot(&self) -> Self;

    /// Plans the writes that turn `original` into `current`, as `(index in FIELDS, write)`.
    fn writes(original: &Self, current: &Self, out: &mut Vec<(usize, FieldWrite)>);
}

/// One field of a [`TypedModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The model field's name in the schema.
    pub name: &'static str,
    /// The Rust field's name.
    pub rust_field: &'static str,
    /// The Rust field's type, as written.
    pub rust_type: &'static str,
    /// The schema type the Rust type holds.
    pub field_type: FieldType,
}

impl Context {
    /// Opens the declared model at `index` (as [`Context::model`]) and loads it as `T`; see
    /// [`Tracked::load`].
    ///
    /// # Errors
    ///
    /// [`AccessError::Denied`](crate::AccessError::Denied) if the invocation declared fewer
    /// models, or any error of [`Tracked::load`] (a struct that does not fit the schema).
    pub fn load<T: TypedModel>(&self, index: u32) -> Result<Tracked<T>, ModelError> {
        let model = self
            .model(index)
            .map_err(|error| ModelError::new(T::STRUCT_NAME, format!("#{index}"), None, None, error))?;
        Tracked::load(model)
    }

    /// Opens the declared model of `T`'s model type (its `model_type` attribute, else the
    /// struct's name) with this key, and loads it as `T`; see [`Tracked::load`].
    ///
    /// # Errors
    ///
    /// [`AccessError::Denied`](crate::AccessError::Denied) if the invocation did not declare
    /// that model, or any error of [`Tracked::load`].
    pub fn load_key<T: TypedModel>(&self, key: &str) -> Result<Tracked<T>, ModelError> {
        let model_type = T::MODEL_TYPE.unwrap_or(T::STRUCT_NAME);
        let model = self
            .open(model_type, key)
            .map_err(|error| ModelError::new(T::STRUCT_NAME, format!("{model_type}:{key}"), None, None, error))?;
        Tracked::load(model)
    }
}

#[cfg(all(test, feature = "derive"))]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bindings::wasmtx::rule::types::{Scalar, ScalarKind};

    #[derive(Debug, crate::Model)]
    #[wasmtx(model_type = "GameCharacter")]
    struct Character {
        level: Counter,
        health: i64,
        #[wasmtx(rename = "inventory")]
        items: Vec<String>,
        skills: BTreeMap<String, i64>,
        #[wasmtx(skip)]
        scratch: Vec<String>,
        r#type: String,
    }

    fn character() -> Character {
        Character {
            level: Counter::new(4),
            health: 30,
            items: vec!["sword".into()],
            skills: [("magic".to_owned(), 2)].into(),
            scratch: vec!["x".into()],
            r#type: "elf".into(),
        }
    }

    #[test]
    fn the_derive_describes_the_fields() {
        assert_eq!(Character::STRUCT_NAME, "Character");
        assert_eq!(Character::MODEL_TYPE, Some("GameCharacter"));
        let names: Vec<_> = Character::FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(names, ["level", "health", "inventory", "skills", "type"]);
        assert_eq!(
            Character::FIELDS[2],
            FieldSpec {
                name: "inventory",
                rust_field: "items",
                rust_type: "Vec<String>",
                field_type: FieldType::List(ScalarKind::Str)
            }
        );
        assert_eq!(Character::FIELDS[3].rust_type, "BTreeMap<String, i64>");
        assert_eq!(Character::FIELDS[4].rust_field, "r#type");
    }

    #[test]
    fn the_derive_plans_writes_for_changed_fields_only() {
        let original = character();
        let snapshot = original.snapshot();
        assert!(snapshot.scratch.is_empty(), "skipped fields are not copied");
        let mut current = original.snapshot();
        let mut out = Vec::new();
        Character::writes(&original, &current, &mut out);
        assert_eq!(out, []);

        current.level += 1;
        current.items.push("shield".into());
        *current.skills.entry("magic".into()).or_insert(0) += 1;
        current.scratch.push("ignored".into());
        Character::writes(&original, &current, &mut out);
        assert_eq!(
            out,
            [
                (0, FieldWrite::Increment(1)),
                (2, FieldWrite::ListExtend(vec!["shield".into()])),
                (3, FieldWrite::DictUpdate(vec![("magic".into(), Scalar::Int(3))])),
            ]
        );
    }
}
