//! The playbook format v1, as Rust types. The JSON schema (`contain schema`) is derived from
//! these types and is what validation checks a file against, so the two cannot drift apart.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reviewed, declarative incident response.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Always `contain/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Playbook`.
    pub kind: PlaybookKind,
    pub metadata: Metadata,
    /// Inputs given on the command line with `--set name=value`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, ParamSpec>,
    /// Named read-only lookups of cluster objects, resolved in order before the first step.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub facts: IndexMap<String, FactSpec>,
    /// Guards checked once the facts are resolved, before anything is planned or written: a
    /// false one refuses the run (exit 5) with its message, in run, plan and tabletop alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Guard>,
    /// Guards over the finished plan, checked before it is shown for approval: a false one
    /// refuses the run (exit 5) with its message. They read `plan.namespaces` (the namespaces
    /// the plan writes in), `plan.pods_evicted`, `plan.pods_evicted_outside` (evicted in a
    /// namespace no step's target names), `plan.nodes_quarantined`, `plan.schedulable_nodes`,
    /// `plan.irreversible` (steps a rollback cannot undo) and `plan.writes`, besides params
    /// and facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_plan: Vec<Guard>,
    /// The largest share of the cluster's schedulable nodes a run may quarantine, e.g. `50%`.
    /// Quarantining every schedulable node is refused whatever this says, unless the step that
    /// does it sets `allow_every_node: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]|[1-9][0-9]|100)%$"))]
    pub max_node_share: Option<String>,
    /// The response, run in order.
    pub steps: Vec<Step>,
    /// What to do when a step fails and its own `on_failure` says `stop` or nothing.
    #[serde(default)]
    pub on_failure: RunFailurePolicy,
    /// How long the whole run may take once approved, e.g. `15m` (`--run-timeout` overrides
    /// it). Past it, the step in flight is cut and journaled as failed and the run stops where
    /// it is, with no automatic rollback, for `contain resume` to finish or `contain rollback`
    /// to undo. Default: no limit beyond each step's own `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// How long the containment may stay in force before someone must look at it again, e.g.
    /// `4h` (a step's own `review_after` overrides it): the run's ContainmentRun records the
    /// due time, `contain runs --due` lists it once past, and `contain review` fires an Event
    /// and the run's notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub review_after: Option<String>,
    /// What `contain review` does with a run whose review is due: `notify` (default: an Event
    /// and the notifications; nothing is undone) or `rollback` (the normal journaled rollback).
    #[serde(default)]
    pub on_review_due: OnReviewDue,
    /// What whoever takes the incident over should do next: printed in `contain handover`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
}

pub use crate::outcome::OnReviewDue;

impl Playbook {
    /// The rules a playbook declares (its durations were validated when it was loaded).
    pub fn review_policy(&self) -> crate::outcome::ReviewPolicy {
        let seconds = |text: &Option<String>| {
            text.as_deref()
                .and_then(crate::duration::parse_duration)
                .map(|d| d.as_secs().max(1))
        };
        crate::outcome::ReviewPolicy {
            after_seconds: seconds(&self.review_after),
            steps: self
                .steps
                .iter()
                .enumerate()
                .filter_map(|(i, step)| Some((i + 1, seconds(&step.review_after)?)))
                .collect(),
            on_due: self.on_review_due,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "contain/v1")]
    V1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlaybookKind {
    Playbook,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// A DNS-1123 name, used in journal records and reports.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// A typed input of the playbook.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// A required param has no default and must be given with `--set`.
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// The only values allowed.
    #[serde(rename = "enum", default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// A regular expression a string value (or each list item) must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value is not for others to read: the run's ContainmentRun in the cluster (and a
    /// hand-over briefing read from it) shows `(redacted)` instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    /// A list of strings; on the command line, comma-separated.
    List,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::List => "list",
        }
    }
}

/// A read-only lookup of one cluster object. A missing object is an error unless `optional`,
/// in which case the fact is null.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FactSpec {
    /// The object kind, e.g. `Pod`, `Node`, `ServiceAccount`, `Deployment`.
    pub kind: String,
    /// Template; rendered with params and the facts declared above this one.
    pub name: String,
    /// Template; omit for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub optional: bool,
    /// For a `WorkloadContext`: the workload's kind (`Deployment`, `StatefulSet`, `DaemonSet`,
    /// `ReplicaSet`, `Job` or `CronJob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A condition the run must meet, or be refused.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// A template expression over `params` and `facts`, like `when:`; e.g.
    /// `params.namespace != "kube-system"`.
    #[schemars(length(min = 1))]
    pub that: String,
    /// Why the run is refused when `that` is false (a template; it may name params and facts).
    #[schemars(length(min = 1))]
    pub message: String,
}

/// One action of the response.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the playbook; a DNS-1123 label. Later steps read this step's outputs as
    /// `steps.<id>.outputs`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub id: String,
    /// An action from the catalogue (`contain actions`).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The objects the action works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The action's own fields (see `contain actions`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub with: serde_json::Map<String, serde_json::Value>,
    /// A template expression; the step runs only when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Overrides the playbook's `on_failure` for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<StepFailurePolicy>,
    /// How long the step may take, e.g. `30s`, `5m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Overrides the playbook's `review_after` for what this step puts in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub review_after: Option<String>,
    /// The path of a list, e.g. `facts.miner.nodes` or `params.nodes`: the step is
    /// planned once per item, as parts `<id>@<item>`, each journaled, applied, verified and
    /// rolled back on its own; its target and `with` read the item as `item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// Waives the evidence-first rule for this step, with a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The objects a step works on: one by `name`, or all matching `selector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A kind from `contain actions --kinds`, e.g. `Pod`, `Deployment`, `Node`.
    pub kind: String,
    /// Template; one object by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Equality-based label selector (matchLabels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<IndexMap<String, String>>,
    /// Select in every namespace (like `kubectl -A`), with `selector` or `image`: one
    /// compromised image running across namespaces is contained in one step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// Pods only: the pods running an image with this digest (`sha256:<64 hex>`, or a reference
    /// ending in `@sha256:<64 hex>`), matched against each container's image and the image ID
    /// the kubelet reports. Template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Why this step may destroy evidence without a capture first.
    #[schemars(length(min = 1))]
    pub waived: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunFailurePolicy {
    /// Stop at the failed step; completed steps stay applied (resume or roll back later).
    #[default]
    Stop,
    /// Undo the completed steps, newest first.
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepFailurePolicy {
    Stop,
    /// Record the failure and go on with the next step.
    Continue,
    Rollback,
}

/// The fact kind that expands a pod into its whole context.
pub const POD_CONTEXT: &str = "PodContext";

/// The fact kind that expands a workload into the pods it owns and what they run on.
pub const WORKLOAD_CONTEXT: &str = "WorkloadContext";
