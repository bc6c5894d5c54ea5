//! Everything that turns executor events into something a person or a program reads.

pub mod handover;
pub mod incident;
pub mod summary;
pub mod templates;
