//! Placement: which models of a sharded store (Redis Cluster) share one hash slot, so that one
//! invocation can commit them atomically.
//!
//! By default every model is its own placement unit: its keys share the hash tag `{Type:key}`.
//! A model type may instead declare a [`Placement`] in its schema: a *group* name and which part
//! of the model's key picks the slot inside the group ([`PlacementKey`]). Models of any types
//! whose placement names the same group and the same part share the hash tag `{@group:part}`
//! (or `{@group}`), so they live in one slot. The tag never names the type: that is what lets a
//! user and their cart, or the accounts and the journal of one ledger, co-locate.
//!
//! ```toml
//! name = "Cart"
//! placement = { group = "shop", by = "key" }      # Cart:alice lives beside User:alice
//! [fields]
//! items = { type = "list<str>" }
//! ```

use std::fmt;

use serde::Deserialize;

use super::ids::validate_name;
use crate::error::SchemaError;

/// The separator of [`PlacementKey::Prefix`] when a schema names none.
pub const DEFAULT_SEPARATOR: &str = ":";

/// Which part of a model's key chooses its slot inside a placement group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlacementKey {
    /// Every model of the group shares one slot (simple, but one slot takes the group's whole
    /// load).
    Group,
    /// Models with the same key share a slot, whatever their type (`User:alice` and
    /// `Cart:alice`).
    Key,
    /// Models whose keys start with the same text before the first separator share a slot
    /// (`Account:l1/alice` and `Account:l1/bob` with separator `/`); a key without the
    /// separator is its own part.
    Prefix {
        /// The separator (not empty).
        separator: String,
    },
}

/// A model type's placement (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    group: String,
    by: PlacementKey,
}

impl Placement {
    /// A placement in `group` by `by`.
    ///
    /// # Errors
    /// [`SchemaError::InvalidPlacement`] for a group name that is not a valid name (as model
    /// types are named) or an empty separator.
    pub fn new(group: impl Into<String>, by: PlacementKey) -> Result<Self, SchemaError> {
        let group = group.into();
        let bad = |reason: String| SchemaError::InvalidPlacement { group: group.clone(), reason };
        validate_name(&group).map_err(bad)?;
        if let PlacementKey::Prefix { separator } = &by
            && (separator.is_empty() || separator.chars().any(char::is_control))
        {
            return Err(bad("a placement separator is not empty and has no control characters".into()));
        }
        Ok(Self { group, by })
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Which part of the key chooses the slot.
    pub fn by(&self) -> &PlacementKey {
        &self.by
    }

    /// The part of `key` that, with the group, names the model's slot (`None` for
    /// [`PlacementKey::Group`]).
    pub fn part<'k>(&self, key: &'k str) -> Option<&'k str> {
        match &self.by {
            PlacementKey::Group => None,
            PlacementKey::Key => Some(key),
            PlacementKey::Prefix { separator } => Some(key.split_once(separator.as_str()).map_or(key, |(p, _)| p)),
        }
    }

    /// The file form: `{"group": .., "by": "group" | "key" | "prefix", "separator": ..}`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.by {
            PlacementKey::Group => serde_json::json!({ "group": self.group, "by": "group" }),
            PlacementKey::Key => serde_json::json!({ "group": self.group, "by": "key" }),
            PlacementKey::Prefix { separator } => {
                serde_json::json!({ "group": self.group, "by": "prefix", "separator": separator })
            }
        }
    }
}

impl serde::Serialize for Placement {
    /// As [`Placement::to_json`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.by {
            PlacementKey::Group => write!(f, "group {}", self.group),
            PlacementKey::Key => write!(f, "group {} by key", self.group),
            PlacementKey::Prefix { separator } => write!(f, "group {} by key prefix before {separator:?}", self.group),
        }
    }
}

/// A schema file's `placement`: a group name alone (every model of the type in one slot of that
/// group), or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PlacementFile {
    /// `placement = "ledger"`.
    Group(String),
    /// `placement = { group = "ledger", by = "prefix", separator = "/" }`.
    Table(PlacementTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlacementTable {
    group: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    separator: Option<String>,
}

impl PlacementFile {
    /// The placement the file form names.
    ///
    /// # Errors
    /// [`SchemaError::InvalidPlacement`] for an unknown `by`, a separator without
    /// `by = "prefix"`, or what [`Placement::new`] refuses.
    pub(super) fn placement(self) -> Result<Placement, SchemaError> {
        match self {
            Self::Group(group) => Placement::new(group, PlacementKey::Group),
            Self::Table(PlacementTable { group, by, separator }) => {
                let bad = |reason: &str| SchemaError::InvalidPlacement { group: group.clone(), reason: reason.into() };
                let by = match (by.as_deref().unwrap_or("group"), separator) {
                    ("group", None) => PlacementKey::Group,
                    ("key", None) => PlacementKey::Key,
                    ("prefix", separator) => {
                        PlacementKey::Prefix { separator: separator.unwrap_or_else(|| DEFAULT_SEPARATOR.to_owned()) }
                    }
                    ("group" | "key", Some(_)) => return Err(bad("a separator goes with `by = \"prefix\"` only")),
                    (_, _) => return Err(bad("`by` is one of \"group\", \"key\", \"prefix\"")),
                };
                Placement::new(group, by)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_picks_its_part_of_the_key() {
        let group = Placement::new("ledger", PlacementKey::Group).expect("valid");
        let key = Placement::new("shop", PlacementKey::Key).expect("valid");
        let prefix = Placement::new("ledger", PlacementKey::Prefix { separator: "/".into() }).expect("valid");
        assert_eq!(group.part("l1/alice"), None);
        assert_eq!(key.part("l1/alice"), Some("l1/alice"));
        assert_eq!(prefix.part("l1/alice"), Some("l1"));
        assert_eq!(prefix.part("alice"), Some("alice"));
        assert!(Placement::new("", PlacementKey::Group).is_err());
        assert!(Placement::new("g{", PlacementKey::Group).is_err());
        assert!(Placement::new("g", PlacementKey::Prefix { separator: String::new() }).is_err());
    }
}
