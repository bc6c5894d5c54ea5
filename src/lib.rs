//! `contain`: declarative incident-containment playbooks for Kubernetes.
//!
//! The pipeline is load → validate → resolve facts → render → plan → execute → verify → report;
//! each stage lives in its own module and only [`cluster`] talks to the API server.

pub mod source;
pub mod playbook;
pub mod cluster;
pub mod diagnostics;
pub mod action;
pub mod plan;
pub mod render;
pub mod report;
