//! The data model: typed values, model schemas, ids, snapshots and field changes.

pub mod change;
pub mod ids;
pub mod placement;
pub mod schema;
pub mod value;
