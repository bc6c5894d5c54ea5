//! Container registries: image references, a small OCI distribution client, and cosign
//! signature verification.

pub mod client;
pub mod cosign;
pub mod reference;

pub use client::{Registry, RegistryError};
pub use reference::ImageRef;
