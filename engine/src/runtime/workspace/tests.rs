//! Workspace semantics and both change computations, without wasm.

use std::sync::Arc;

use super::ModelWorkspace;
use crate::error::AccessError;
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};
use crate::runtime::config::RuleLimits;

fn schema() -> Arc<ModelSchema> {
    let schema = ModelSchema::builder("Character")
        .field("name", FieldType::Scalar(ScalarKind::Str))
        .field_with_default("level", FieldType::Scalar(ScalarKind::Int), FieldValue::Scalar(Scalar::Int(1)))
        .field("speed", FieldType::Scalar(ScalarKind::Float))
        .field("inventory", FieldType::List(ScalarKind::Str))
        .field("skills", FieldType::Dict(ScalarKind::Int))
        .build()
        .expect("valid schema");
    Arc::new(schema)
}

/// A workspace over a character with some state: level 5, a sword and a shield, one skill.
fn workspace_with(limits: RuleLimits) -> ModelWorkspace {
    let schema = schema();
    let target = ModelTarget { id: ModelId::new("Character", "hero"), schema: Arc::clone(&schema) };
    let mut snapshot = ModelSnapshot::defaults(&schema);
    snapshot.values[1] = FieldValue::Scalar(Scalar::Int(5));
    snapshot.values[3] = FieldValue::List(vec!["sword".into(), "shield".into()]);
    snapshot.values[4] = FieldValue::Dict([("fire".to_owned(), Scalar::Int(2))].into());
    snapshot.version = 7;
    ModelWorkspace::new(&target, snapshot, limits)
}

fn workspace() -> ModelWorkspace {
    workspace_with(RuleLimits::default())
}

fn strs(items: &[&str]) -> Vec<Scalar> {
    items.iter().map(|&s| Scalar::from(s)).collect()
}

fn f() -> String {
    "inventory".to_owned()
}

#[test]
fn reads_fall_back_to_the_snapshot_and_see_earlier_writes() {
    let mut w = workspace();
    assert_eq!(w.get_scalar("level"), Ok(&Scalar::Int(5)));
    w.set_scalar("level", Scalar::Int(6)).expect("set");
    assert_eq!(w.get_scalar("level"), Ok(&Scalar::Int(6)));
    assert_eq!(w.get("level"), Ok(&FieldValue::Scalar(Scalar::Int(6))), "a second read sees the write too");
    assert_eq!(w.increment("level", 2), Ok(8));
    assert_eq!(w.get_scalar("level"), Ok(&Scalar::Int(8)));
    assert_eq!(w.value("level"), Some(&FieldValue::Scalar(Scalar::Int(8))));
}

#[test]
fn only_written_fields_are_copied() {
    let mut w = workspace();
    w.list_append("inventory", "bow".into()).expect("append");
    let copied: Vec<usize> = w.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i).collect();
    assert_eq!(copied, [3]);
    assert_eq!(w.base.values[3], FieldValue::List(strs(&["sword", "shield"])), "the snapshot is untouched");
}

#[test]
fn unknown_fields_and_wrong_types_are_refused() {
    let mut w = workspace();
    assert_eq!(w.get("mana"), Err(AccessError::UnknownField { field: "mana".into() }));
    let mismatch = |field: &str, expected: &str, found: &str| {
        Some(AccessError::TypeMismatch { field: field.into(), expected: expected.into(), found: found.into() })
    };
    assert_eq!(w.increment("name", 1).err(), mismatch("name", "int field", "str field"));
    assert_eq!(w.list_append("skills", "x".into()).err(), mismatch("skills", "list field", "dict<int> field"));
    assert_eq!(w.list_append("inventory", Scalar::Int(1)).err(), mismatch("inventory", "str", "int"));
    assert_eq!(w.dict_set("skills", "ice".into(), "x".into()).err(), mismatch("skills", "int", "str"));
    assert_eq!(w.set("level", FieldValue::List(vec![])).err(), mismatch("level", "int", "list value"));
    assert_eq!(w.set_scalar("speed", Scalar::Float(f64::NAN)).err(), mismatch("speed", "finite float", "NaN"));
    assert_eq!(w.set_scalar("speed", Scalar::Float(f64::INFINITY)).err(), mismatch("speed", "finite float", "inf"));
    assert_eq!(w.get_scalar("inventory").err(), mismatch("inventory", "scalar field", "list<str> field"));
    assert!(!w.is_changed(), "refused writes change nothing");
    assert!(w.intent_changes().is_empty());
}

#[test]
fn list_ops_follow_python() {
    let mut w = workspace();
    w.list_insert("inventory", -1, "bow".into()).expect("insert before the last");
    w.list_insert("inventory", 100, "axe".into()).expect("clamps to the end");
    w.list_insert("inventory", -100, "map".into()).expect("clamps to the start");
    assert_eq!(w.list("inventory"), Ok(&strs(&["map", "sword", "bow", "shield", "axe"])[..]));
    assert_eq!(w.list_get("inventory", -1), Ok(&Scalar::from("axe")));
    assert_eq!(w.list_pop("inventory", None), Ok("axe".into()));
    assert_eq!(w.list_pop("inventory", Some(-4)), Ok("map".into()));
    w.list_remove("inventory", "bow".into()).expect("remove");
    assert_eq!(w.list_len("inventory"), Ok(2));
    assert_eq!(
        w.list_remove("inventory", "bow".into()),
        Err(AccessError::NotFound { what: "\"bow\" in list `inventory`".into() })
    );
    assert_eq!(w.list_get("inventory", 2), Err(AccessError::IndexOutOfRange { field: f(), index: 2, len: 2 }));
    assert_eq!(w.list_pop("inventory", Some(-3)), Err(AccessError::IndexOutOfRange { field: f(), index: -3, len: 2 }));
    w.list_clear("inventory").expect("clear");
    assert_eq!(w.list_pop("inventory", None), Err(AccessError::IndexOutOfRange { field: f(), index: -1, len: 0 }));
}

#[test]
fn dict_ops() {
    let mut w = workspace();
    assert_eq!(w.dict_get("skills", "fire"), Ok(Some(&Scalar::Int(2))));
    w.dict_update("skills", vec![("ice".into(), 1.into()), ("air".into(), 3.into()), ("ice".into(), 4.into())])
        .expect("update");
    assert_eq!(w.dict_keys("skills"), Ok(vec!["air".to_owned(), "fire".into(), "ice".into()]));
    assert_eq!(w.dict_get("skills", "ice"), Ok(Some(&Scalar::Int(4))), "later duplicates win");
    assert_eq!(w.dict_pop("skills", "fire"), Ok(Some(Scalar::Int(2))));
    assert_eq!(w.dict_pop("skills", "fire"), Ok(None));
    assert_eq!(w.dict_len("skills"), Ok(2));
    w.dict_clear("skills").expect("clear");
    assert_eq!(w.dict_len("skills"), Ok(0));
}

#[test]
fn limits_refuse_the_write_and_leave_the_field() {
    let limits = RuleLimits { max_list_len: 3, max_dict_len: 2, max_value_bytes: 100, ..RuleLimits::default() };
    let mut w = workspace_with(limits);
    w.list_append("inventory", "bow".into()).expect("third item fits");
    assert!(matches!(w.list_append("inventory", "axe".into()), Err(AccessError::LimitExceeded { .. })));
    assert!(matches!(w.list_extend("inventory", strs(&["a", "b"])), Err(AccessError::LimitExceeded { .. })));
    assert_eq!(w.list_len("inventory"), Ok(3));

    w.dict_set("skills", "ice".into(), 1.into()).expect("second entry fits");
    assert!(matches!(w.dict_set("skills", "air".into(), 1.into()), Err(AccessError::LimitExceeded { .. })));
    w.dict_set("skills", "ice".into(), 5.into()).expect("overwriting an entry adds none");

    let long = "x".repeat(101);
    assert!(matches!(w.set_scalar("name", long.as_str().into()), Err(AccessError::LimitExceeded { .. })));
    assert_eq!(w.get_scalar("name"), Ok(&Scalar::from("")));

    w.set_scalar("level", Scalar::Int(i64::MAX)).expect("set");
    let overflow = w.increment("level", 1);
    assert!(
        matches!(&overflow, Err(AccessError::LimitExceeded { limit }) if limit.contains("overflow")),
        "{overflow:?}"
    );
    assert_eq!(w.get_scalar("level"), Ok(&Scalar::Int(i64::MAX)));
}

#[test]
fn state_changes_diff_against_the_snapshot_in_write_order() {
    let mut w = workspace();
    w.list_append("inventory", "bow".into()).expect("append");
    w.set_scalar("level", Scalar::Int(6)).expect("set");
    w.set_scalar("name", Scalar::from("")).expect("same as the snapshot");
    w.dict_pop("skills", "fire").expect("pop");
    assert!(w.is_changed());
    assert_eq!(
        w.state_changes(),
        [
            FieldChange::ListAppend { field: f(), items: strs(&["bow"]) },
            FieldChange::Set { field: "level".into(), value: Scalar::Int(6) },
            FieldChange::Clear { field: "skills".into() },
        ]
    );
}

#[test]
fn popping_from_the_end_is_a_truncate() {
    let mut w = workspace();
    w.list_pop("inventory", None).expect("pop");
    assert_eq!(w.state_changes(), [FieldChange::ListTruncate { field: f(), len: 1 }]);
    assert_eq!(w.intent_changes(), [FieldChange::ListPop { field: f(), index: None }]);
}

#[test]
fn writes_that_undo_themselves_leave_no_state_change() {
    let mut w = workspace();
    w.increment("level", 3).expect("inc");
    w.increment("level", -3).expect("dec");
    w.list_append("inventory", "bow".into()).expect("append");
    w.list_pop("inventory", None).expect("pop");
    assert!(!w.is_changed());
    assert!(w.state_changes().is_empty());
    assert_eq!(
        w.intent_changes(),
        [
            FieldChange::ListAppend { field: f(), items: strs(&["bow"]) },
            FieldChange::ListPop { field: f(), index: None }
        ],
        "the zero increment sum is omitted, the list ops are kept"
    );
}

#[test]
fn intent_keeps_the_ops() {
    let mut w = workspace();
    w.increment("level", 2).expect("inc");
    w.list_append("inventory", "bow".into()).expect("append");
    w.increment("level", 3).expect("inc");
    w.list_extend("inventory", strs(&["axe", "map"])).expect("extend");
    w.list_insert("inventory", 0, "hat".into()).expect("insert");
    w.list_remove("inventory", "sword".into()).expect("remove");
    w.dict_set("skills", "ice".into(), 1.into()).expect("set");
    w.dict_update("skills", vec![("air".into(), 2.into())]).expect("update");
    w.dict_pop("skills", "fire").expect("pop");
    w.dict_pop("skills", "missing").expect("pop of a missing key");
    w.set_scalar("name", "Ann".into()).expect("set");
    w.increment("speed", 1).expect_err("float");
    let skills = || "skills".to_owned();
    assert_eq!(
        w.intent_changes(),
        [
            FieldChange::Increment { field: "level".into(), delta: 5 },
            FieldChange::ListAppend { field: f(), items: strs(&["bow", "axe", "map"]) },
            FieldChange::ListInsert { field: f(), index: 0, item: "hat".into() },
            FieldChange::ListRemove { field: f(), item: "sword".into() },
            FieldChange::DictSet { field: skills(), entries: vec![("air".into(), 2.into()), ("ice".into(), 1.into())] },
            FieldChange::DictRemove { field: skills(), keys: vec!["fire".into()] },
            FieldChange::Set { field: "name".into(), value: "Ann".into() },
        ]
    );
}

#[test]
fn whole_value_writes_in_intent() {
    let mut w = workspace();
    w.list_append("inventory", "bow".into()).expect("append");
    w.set("inventory", FieldValue::List(strs(&["a"]))).expect("replace");
    w.set("skills", FieldValue::Dict([("x".to_owned(), Scalar::Int(1))].into())).expect("replace");
    w.reset("level").expect("reset");
    w.increment("level", 1).expect("inc after an assignment");
    w.list_clear("inventory").expect("clear");
    assert_eq!(
        w.intent_changes(),
        [
            FieldChange::Clear { field: f() },
            FieldChange::Clear { field: "skills".into() },
            FieldChange::DictSet { field: "skills".into(), entries: vec![("x".into(), 1.into())] },
            FieldChange::Set { field: "level".into(), value: Scalar::Int(2) },
        ]
    );
    assert_eq!(
        w.state_changes(),
        [
            FieldChange::Clear { field: f() },
            FieldChange::DictRemove { field: "skills".into(), keys: vec!["fire".into()] },
            FieldChange::DictSet { field: "skills".into(), entries: vec![("x".into(), 1.into())] },
            FieldChange::Set { field: "level".into(), value: Scalar::Int(2) },
        ]
    );
}

#[test]
fn size_accounting_tracks_every_op() {
    let mut w = workspace();
    w.list_extend("inventory", strs(&["bow", "axe"])).expect("extend");
    w.list_pop("inventory", Some(0)).expect("pop");
    w.list_insert("inventory", 1, "map".into()).expect("insert");
    w.list_remove("inventory", "axe".into()).expect("remove");
    w.dict_update("skills", vec![("ice".into(), 1.into()), ("fire".into(), 9.into())]).expect("update");
    w.dict_pop("skills", "ice").expect("pop");
    for (i, slot) in w.slots.iter().enumerate() {
        if let Some(slot) = slot {
            assert_eq!(slot.bytes, slot.value.stored_len(), "field {i}");
        }
    }
}
