//! The drill format v1 (`kind: Drill`), as Rust types. Its JSON schema
//! (`contain drill schema`, shipped as `playbooks/drill.schema.json`) is derived from these types
//! and is what a drill file is checked against, so the two cannot drift apart.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::playbook::types::ApiVersion;

/// A scheduled chaos drill: decoys in a per-run namespace, abuse detonated against them, the
/// alerts it must raise, the playbook that must contain it, and everything put back.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Always `contain/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Drill`.
    pub kind: DrillKind,
    pub metadata: DrillMetadata,
    pub spec: DrillSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrillKind {
    Drill,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillMetadata {
    /// A DNS-1123 name, used in object names, journal records and reports.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 40))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    pub target: DrillTarget,
    /// Kubeconfig contexts (or, in a cluster, server URLs) this drill may run against; anything
    /// else is refused before the first write.
    #[schemars(length(min = 1))]
    pub contexts: Vec<String>,
    /// Workloads created in the per-run namespace for the detonations to abuse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decoys: Vec<Decoy>,
    /// The abuse, detonated in order.
    #[schemars(length(min = 1))]
    pub detonations: Vec<Detonation>,
    /// The containment playbook, run through the same engine and journal as `contain run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contain: Option<ContainSpec>,
    /// Post-conditions checked after containment, from outside the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<PostCondition>,
    #[serde(default)]
    pub slo: Slo,
    #[serde(default)]
    pub receiver: ReceiverSpec,
    /// Pull mode: poll this Alertmanager's `/api/v2/alerts` as well as receiving pushes (and to
    /// see which alerts already fire when the drill arms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerPull>,
    #[serde(default)]
    pub timing: Timing,
}

/// Where the drill runs. The namespace must exist and carry `contain.dev/drill-target=true`; it
/// holds the drill's Lease lock and the per-run result ConfigMaps, and names the per-run
/// namespace (`<namespace>-<run>`), which the drill creates and deletes.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillTarget {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 40))]
    pub namespace: String,
    /// Labels the per-run namespace carries too, so admission treats it as production's
    /// namespaces are treated (e.g. `pod-security.kubernetes.io/enforce: baseline`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub run_namespace_labels: IndexMap<String, String>,
}

/// A decoy: a one-replica Deployment (and, with `port`, a Service) labelled with the run id.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decoy {
    /// Names the decoy in detonations, params (`{{ decoys.<name>.pod }}`) and post-conditions.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 20))]
    pub name: String,
    /// The container image (a digest keeps the drill reproducible).
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Schedule onto nodes with these labels (KWOK nodes in a test cluster, say).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub node_selector: IndexMap<String, String>,
    /// Tolerate every taint (a test cluster's fake nodes carry one).
    #[serde(default)]
    pub tolerate_all: bool,
}

/// The lifecycle phase a control belongs to, for coverage and failure reports.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Build,
    Deploy,
    #[default]
    Runtime,
    Respond,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Deploy => "deploy",
            Phase::Runtime => "runtime",
            Phase::Respond => "respond",
        }
    }
}

/// One act of abuse and the alerts it must raise.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detonation {
    /// Unique in the drill; part of every object name it creates.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 20))]
    pub id: String,
    /// What the intruder does (exactly one pattern).
    pub abuse: Pattern,
    /// The lifecycle phase whose control this detonation tests.
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<Expectation>,
}

/// The abuse patterns.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pattern {
    /// Create a privileged pod (hostPID, privileged container) in the run namespace.
    PrivilegedPod {
        image: String,
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        node_selector: IndexMap<String, String>,
        #[serde(default)]
        tolerate_all: bool,
    },
    /// `count` exec calls into a decoy's pod, as an intruder's interactive session would.
    ExecBurst {
        decoy: String,
        #[serde(default = "default_exec_count")]
        #[schemars(range(min = 1, max = 200))]
        count: u32,
        #[serde(default = "default_exec_command")]
        command: Vec<String>,
    },
    /// Mint a token for a decoy's ServiceAccount and use it against another namespace.
    TokenMisuse {
        decoy: String,
        /// Where the stolen token is used (default: the drill's target namespace).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        against_namespace: Option<String>,
    },
    /// Create a pod whose image comes from a registry outside the allowlist.
    ForeignRegistryPod {
        image: String,
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        node_selector: IndexMap<String, String>,
        #[serde(default)]
        tolerate_all: bool,
    },
}

fn default_exec_count() -> u32 {
    10
}

fn default_exec_command() -> Vec<String> {
    vec!["id".into()]
}

impl Pattern {
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::PrivilegedPod { .. } => "privileged_pod",
            Pattern::ExecBurst { .. } => "exec_burst",
            Pattern::TokenMisuse { .. } => "token_misuse",
            Pattern::ForeignRegistryPod { .. } => "foreign_registry_pod",
        }
    }

    /// The decoy the pattern abuses, if any.
    pub fn decoy(&self) -> Option<&str> {
        match self {
            Pattern::ExecBurst { decoy, .. } | Pattern::TokenMisuse { decoy, .. } => Some(decoy),
            _ => None,
        }
    }
}

/// An alert the detonation must raise.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The alert, by Falco rule name or Alertmanager alertname (one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertname: Option<String>,
    /// Deadline after the detonation; an alert after it is LATE, none at all MISSED.
    #[schemars(range(min = 1, max = 3600))]
    pub within_seconds: u64,
    /// How an alert must tie to this run: `run_id` (the run id appears in it, e.g. the audit
    /// User-Agent), `namespace` (the per-run namespace, or the run id), `name_prefix` (an object
    /// name with the run's prefix, or either of the above), or `window` (rule and time window
    /// only: for metric alerts that carry no object; drills never overlap, thanks to the lock).
    #[serde(default)]
    pub attribution: Attribution,
    /// Weight of this expectation in the drill's score.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Expectation {
    /// The alert's name as the intake sees it (rule or alertname).
    pub fn alert(&self) -> &str {
        self.rule
            .as_deref()
            .or(self.alertname.as_deref())
            .unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    RunId,
    Namespace,
    #[default]
    NamePrefix,
    Window,
}

/// The containment playbook and its params. Param values are templates over `run.namespace`,
/// `run.id`, `run.prefix` and `decoys.<name>.pod` / `.deployment` / `.service_account`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainSpec {
    /// Path of the playbook, relative to the drill file.
    pub playbook: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, Value>,
    /// Start containment only once an expected alert arrived (true), or right after the
    /// detection wait whatever came (false: the playbook is still exercised on a MISSED drill).
    #[serde(default)]
    pub after_detection: bool,
}

/// A post-condition, read from the cluster by the drill itself (not from the engine's own
/// verification).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PostCondition {
    /// No ingress reaches the decoy's pod and it reaches nothing but DNS and the allowed
    /// namespaces, from every NetworkPolicy of its namespace.
    Isolated { decoy: String },
    /// The decoy's pod carries this label (with this value, when given).
    Labelled {
        decoy: String,
        label: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    /// The decoy's ServiceAccount can no longer reach anything sensitive beyond what every
    /// authenticated identity may (SubjectAccessReviews, as the API server judges them), and a
    /// token the drill minted for it before containment is rejected by TokenReview.
    Revoked { decoy: String },
    /// The decoy's workload runs no pod any more.
    Suspended { decoy: String },
}

impl PostCondition {
    pub fn decoy(&self) -> &str {
        match self {
            PostCondition::Isolated { decoy }
            | PostCondition::Labelled { decoy, .. }
            | PostCondition::Revoked { decoy }
            | PostCondition::Suspended { decoy } => decoy,
        }
    }
}

/// Service-level objectives; a breach fails the drill like a late alert.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_contain_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_restore_seconds: Option<f64>,
    /// Lowest acceptable weighted score, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
}

/// The alert receiver inside `contain drill`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSpec {
    /// Address to listen on (`POST /falco`, `/alertmanager`, `/generic`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Environment variable holding the bearer token senders must present (never the token
    /// itself in the file). Unset: the receiver refuses every push.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// How `POST /generic` bodies map onto an alert: JSONPath (`$.a.b`, `$.a[0]`) per field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericMapping>,
}

impl Default for ReceiverSpec {
    fn default() -> Self {
        ReceiverSpec {
            listen: default_listen(),
            token_env: default_token_env(),
            generic: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9095".into()
}

fn default_token_env() -> String {
    "CONTAIN_DRILL_TOKEN".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericMapping {
    /// Path of the rule or alert name.
    pub rule: String,
    /// Path of the event time (RFC 3339); the receipt time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Path of a dedupe key; a hash of the body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerPull {
    /// Alertmanager's base URL, e.g. `http://alertmanager.monitoring:9093`.
    pub url: String,
    #[serde(default = "default_poll")]
    #[schemars(range(min = 1, max = 300))]
    pub poll_seconds: u64,
}

fn default_poll() -> u64 {
    2
}

/// Bounds on the drill's waits.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// How long decoys may take to be ready.
    #[serde(default = "default_ready")]
    pub decoys_ready_seconds: u64,
    /// How long to wait, when arming, for an expected alert that already fires to resolve
    /// (a detection cannot be measured on an alert that was already up).
    #[serde(default = "default_quiet")]
    pub quiet_seconds: u64,
    /// How long cleanup may take to see every drill object gone.
    #[serde(default = "default_cleanup")]
    pub cleanup_seconds: u64,
    /// The Lease's duration; renewed at a third of it.
    #[serde(default = "default_lease")]
    #[schemars(range(min = 6, max = 3600))]
    pub lease_seconds: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            decoys_ready_seconds: default_ready(),
            quiet_seconds: default_quiet(),
            cleanup_seconds: default_cleanup(),
            lease_seconds: default_lease(),
        }
    }
}

fn default_ready() -> u64 {
    120
}
fn default_quiet() -> u64 {
    180
}
fn default_cleanup() -> u64 {
    120
}
fn default_lease() -> u64 {
    30
}
