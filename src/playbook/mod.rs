//! Playbooks: the YAML format, loading with places, and validation.

pub mod load;
pub mod refs;
pub mod render;
pub mod shape;
pub mod types;
pub mod validate;
