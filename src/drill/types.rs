//! The drill's shared types: who a run is (and the labels its objects carry), what a
//! detonation did, and a post-condition's result. The phases that produce them and the records
//! and scores that read them all import them from here, never from each other.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::spec::Phase;

/// Every drill object carries the run id under this label.
pub const RUN_LABEL: &str = "contain.dev/drill-run";

/// A decoy's objects carry its name under this label.
pub const DECOY_LABEL: &str = "contain.dev/drill-decoy";

/// The label a namespace needs before a drill may act in it.
pub const TARGET_LABEL: &str = "contain.dev/drill-target";

/// What ties an alert to one drill run.
#[derive(Clone, Debug)]
pub struct RunIdentity {
    pub run_id: String,
    pub namespace: String,
    pub prefix: String,
}

/// What the cluster did with a detonation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// The abuse went through (the detection must now see it).
    Executed { detail: String },
    /// Admission refused it (a PodSecurity level, a ValidatingAdmissionPolicy, a webhook).
    Refused { message: String },
    /// It could not be carried out for another reason (no permission, no decoy pod…).
    Failed { message: String },
}

impl Effect {
    /// The effect in words, for the progress lines and the timeline.
    pub fn describe(&self) -> String {
        match self {
            Effect::Executed { detail } => format!("executed: {detail}"),
            Effect::Refused { message } => format!("refused by admission: {message}"),
            Effect::Failed { message } => format!("failed: {message}"),
        }
    }
}

/// A detonation as it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Detonated {
    pub id: String,
    pub pattern: String,
    pub phase: Phase,
    pub at: Timestamp,
    #[serde(flatten)]
    pub effect: Effect,
}

/// One post-condition's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub condition: String,
    pub passed: bool,
    pub detail: String,
}
