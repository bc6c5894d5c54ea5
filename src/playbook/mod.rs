//! Playbooks: the YAML format, loading with places, and validation.

pub mod load;
pub mod node;
pub mod refs;
pub mod schema_check;
pub mod shape;
pub mod types;
pub mod validate;
