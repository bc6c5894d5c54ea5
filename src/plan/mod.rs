//! Plans are data: what a step will do (operations), how to undo it (inverse operations), and
//! whether it can be undone. Dry-run and tabletop print them; live mode executes exactly them.

pub mod depends;
pub mod display;
pub mod op;
pub mod run;
pub mod target;

use serde::{Deserialize, Serialize};

pub use op::{FieldChange, Op};
pub use run::{PlannedState, PlannedStep, RunPlan};
pub use target::ResolvedTarget;

/// Whether a step can be undone by a rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reversible", rename_all = "snake_case")]
pub enum Reversibility {
    Reversible,
    /// A rollback applies the inverse operations but cannot undo everything (`reason`).
    Partial {
        reason: String,
    },
    Irreversible {
        reason: String,
    },
}

/// What one step will do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    pub step: String,
    pub action: String,
    /// One line a responder can read at a glance.
    pub summary: String,
    pub ops: Vec<Op>,
    /// Undo operations, in the order they are to be applied.
    pub inverse: Vec<Op>,
    #[serde(flatten)]
    pub reversibility: Reversibility,
    /// Things the responder should know (other policies still select the pod, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Values later steps can read as `steps.<id>.outputs`.
    #[serde(default)]
    pub outputs: serde_json::Map<String, serde_json::Value>,
}
