//! The tabletop exercise format v1 (`kind: Scenario`), as Rust types, after the structure public
//! exercise guidance uses (CISA's tabletop exercise packages, HSEEP): objectives, roles, modules
//! with a narrative, timed injects with discussion questions, the decisions expected (each
//! mapped to a playbook step and an objective), and a hot wash. Its JSON schema (`contain
//! exercise schema`) is derived from these types and is what a scenario is checked against.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::playbook::types::ApiVersion;

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Always `contain/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Scenario`.
    pub kind: ScenarioKind,
    pub metadata: ScenarioMetadata,
    pub spec: ScenarioSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScenarioKind {
    Scenario,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioMetadata {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,
    /// The exercise's title, as the report shows it.
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// The playbook the players decide with, relative to the scenario file.
    pub playbook: String,
    /// Its params, as `--set` would give them.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, Value>,
    /// What the exercise is to show; each expected decision serves one.
    #[schemars(length(min = 1))]
    pub objectives: Vec<Objective>,
    pub roles: Roles,
    /// The exercise's parts, in order.
    #[schemars(length(min = 1))]
    pub modules: Vec<Module>,
    /// The hot-wash questions asked at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hotwash: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub id: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Runs the exercise: advances modules, fires injects.
    pub facilitator: String,
    /// Who decides.
    #[schemars(length(min = 1))]
    pub players: Vec<String>,
    /// Who judges the objectives (their notes go into the report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluators: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Module {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub id: String,
    pub title: String,
    /// What the players are told when the module opens.
    pub narrative: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injects: Vec<Inject>,
}

/// A new piece of information, given at a time after the module opens (or when the
/// facilitator gives it early).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub id: String,
    /// When it comes, after the module opens: `0s`, `90s`, `5m`.
    pub at: String,
    /// What the players hear (an alert, a call, a ticket).
    pub text: String,
    /// Questions for the discussion it opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<String>,
    /// The decisions it should lead to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<Expectation>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The playbook step the players should choose.
    pub step: String,
    /// The objective that decision serves.
    pub objective: String,
    /// Decided within this long after the inject (`5m`), or the objective is not met.
    pub within: String,
}
