//! `contain`: declarative incident-containment playbooks for Kubernetes.
//!
//! The pipeline is load → validate → resolve facts → render → plan → execute → verify → report;
//! each stage lives in its own module and only [`cluster`] talks to the API server. The modules
//! sit in layers (the README's Layout section; `tests/layers.rs` keeps them): the ground, the
//! clients, data, records, actions, playbooks, reports, the engine, the commands ([`cmd`]: one
//! file per command, the only writer to the terminal), the uses built on them ([`drill`],
//! [`exercise`]), and [`app`], which only dispatches.

pub mod action;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod diagnostics;
pub mod document;
pub mod drill;
pub mod duration;
pub mod escape;
pub mod event;
pub mod evidence;
pub mod execute;
pub mod exercise;
pub mod exit;
pub mod explain;
pub mod facts;
pub mod journal;
pub mod man;
pub mod netpol;
pub mod notify;
pub mod outcome;
pub mod paths;
pub mod plan;
pub mod playbook;
pub mod rbac;
pub mod registry;
pub mod report;
pub mod run_lock;
pub mod runs;
pub mod snapshot;
pub mod source;
pub mod sshsig;
pub mod yaml;
