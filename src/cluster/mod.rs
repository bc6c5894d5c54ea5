//! The `Cluster` seam: the only place that talks to Kubernetes. `KubeCluster` speaks to an API
//! server; `SimCluster` answers from a snapshot in memory, like the API server would.

pub mod authorize;
pub mod kinds;
pub mod kube;
pub mod lease;
pub mod merge;
pub mod object;
pub mod observe;
pub mod overlay;
pub mod read;
pub mod recording;
pub mod run_copy;
pub mod run_store;
pub mod semantics;
pub mod sim;
pub mod wait;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

pub use kinds::Kind;
pub use object::{ObjectRef, Selector};

/// A boxed future, so `Cluster` can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream that yields once per change it saw (the change itself is read again by the waiter).
pub type Changes = Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

/// The objects a wait is about: a kind in one namespace (or all), narrowed by labels and fields.
#[derive(Clone, Debug)]
pub struct Watch {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub labels: Selector,
    /// A field selector, e.g. `metadata.name=web` or `spec.nodeName=node-1`.
    pub fields: Option<String>,
}

impl Watch {
    /// Every object of `kind` in `namespace` matching `labels`.
    pub fn matching(kind: &str, namespace: Option<&str>, labels: Selector) -> Self {
        Watch {
            kind: kinds::lookup(kind).expect("watched kinds are known"),
            namespace: namespace.map(str::to_string),
            labels,
            fields: None,
        }
    }

    /// One object.
    pub fn object(object: &ObjectRef) -> Self {
        let mut watch = Watch::matching(
            &object.kind,
            object.namespace.as_deref(),
            Selector::default(),
        );
        watch.fields = Some(format!("metadata.name={}", object.name));
        watch
    }
}

/// What the user is told about where a run is going.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterInfo {
    /// `live` or `simulated`.
    pub kind: &'static str,
    /// The API server URL, or the snapshot file.
    pub server: String,
    pub context: Option<String>,
}

/// How a write is carried out: for real, or validated by the server and discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Apply,
    DryRun,
}

/// Preconditions the server checks before a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Why a cluster call failed. Messages name the object and the server's reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("{object} not found")]
    NotFound { object: String },
    #[error("{object} already exists")]
    AlreadyExists { object: String },
    /// A precondition (uid, resourceVersion) did not hold, or a stale write lost a race.
    #[error("conflict on {object}: {message}")]
    Conflict { object: String, message: String },
    #[error("forbidden: {object}: {message}")]
    Forbidden { object: String, message: String },
    #[error("rejected by the API server: {object}: {message}")]
    Invalid { object: String, message: String },
    #[error("too many requests for {object}: {message}")]
    TooManyRequests {
        object: String,
        message: String,
        /// How long the server asked the client to wait (API Priority and Fairness and a
        /// disruption budget's refusal both say so), when it did.
        retry_after_seconds: Option<u32>,
    },
    #[error("{operation} timed out after {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    #[error("API error {code} on {object}: {message}")]
    Api {
        code: u16,
        object: String,
        message: String,
    },
    #[error("cannot reach the cluster: {0}")]
    Connection(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ClusterError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::NotFound { .. })
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// What a command run in a container produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// The exit code, when the runtime reported one.
    pub exit_code: Option<i32>,
    /// Why it failed, when the runtime said (a missing binary, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A pod a token is bound to: the token dies with the pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundPod {
    pub name: String,
    pub uid: String,
}

/// The API server's verdict on a bearer token (TokenReview).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenVerdict {
    pub authenticated: bool,
    pub username: Option<String>,
    pub error: Option<String>,
}

/// Who the cluster says we are (SelfSubjectReview).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity a ServiceAccount's token authenticates as: its username and the groups the
    /// API server adds for every ServiceAccount.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// One API permission a plan needs, as `kubectl auth can-i` asks it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Access {
    pub verb: String,
    /// The API group; empty for the core group.
    pub group: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Access {
    /// The permission to call `verb` on one object (or, without a name, on its collection).
    pub fn on(verb: &str, kind: &Kind, namespace: Option<&str>, name: Option<&str>) -> Self {
        Access {
            verb: verb.to_string(),
            group: kind.group.to_string(),
            resource: kind.plural.to_string(),
            subresource: String::new(),
            namespace: namespace.filter(|_| kind.namespaced).map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    /// The same permission on a subresource (`pods/eviction`, `serviceaccounts/token`).
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = subresource.to_string();
        self
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.verb)?;
        write!(f, "{}", self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

/// The API server's answer to one access review.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessVerdict {
    pub access: Access,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn unsupported<'a, T: Send + 'a>(what: &str) -> BoxFuture<'a, Result<T>> {
    let message = format!("{what} is not available on this cluster");
    Box::pin(async move { Err(ClusterError::Unsupported(message)) })
}

/// Object-level access to a cluster, in JSON. Implementations answer like the API server:
/// uids, resourceVersions, 404 and 409 included.
pub trait Cluster: Send + Sync {
    fn info(&self) -> ClusterInfo;

    /// A stable identity of the cluster: the uid of the `kube-system` namespace.
    fn identity(&self) -> BoxFuture<'_, Result<String>>;

    /// The object, or `None` when it does not exist.
    fn get<'a>(&'a self, object: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>>>;

    /// Objects of a kind, in one namespace or all, matching a selector.
    fn list<'a>(
        &'a self,
        kind: &'static Kind,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<Value>>>;

    /// The pods bound to a node. The API server answers this with a field selector; the
    /// default lists every pod and keeps the node's (a snapshot in memory).
    fn pods_on_node<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Vec<Value>>> {
        Box::pin(async move {
            let pods = self
                .list(
                    kinds::lookup("Pod").expect("known kind"),
                    None,
                    &Selector::default(),
                )
                .await?;
            Ok(pods
                .into_iter()
                .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
                .collect())
        })
    }

    /// Creates an object; fails with `AlreadyExists` when the name is taken.
    fn create<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>>;

    /// Applies a JSON merge patch. `metadata.uid` and `metadata.resourceVersion` in the patch
    /// are preconditions: the server answers 409 when they do not match.
    fn patch<'a>(
        &'a self,
        object: &'a ObjectRef,
        patch: &'a Value,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Value>>;

    /// Deletes an object when the preconditions hold.
    fn delete<'a>(
        &'a self,
        object: &'a ObjectRef,
        preconditions: &'a Preconditions,
        grace_period_seconds: Option<i64>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>>;

    /// Server-side apply with the field manager `contain`: creates or updates the fields the
    /// object names.
    fn apply<'a>(&'a self, object: &'a Value, mode: WriteMode) -> BoxFuture<'a, Result<Value>>;

    /// Evicts a pod through the Eviction API, which refuses (429) when a PodDisruptionBudget
    /// would be violated.
    fn evict<'a>(
        &'a self,
        pod: &'a ObjectRef,
        uid: Option<&'a str>,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<()>>;

    /// The log of one container, current or previous.
    fn logs<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        previous: bool,
    ) -> BoxFuture<'a, Result<String>> {
        let _ = (pod, container, previous);
        unsupported("reading pod logs")
    }

    /// Streams the log of one container (with timestamps) into `sink`; returns the bytes written.
    /// Memory stays bounded whatever the log's size.
    fn stream_logs<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        previous: bool,
        sink: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<u64>> {
        let _ = (pod, container, previous, sink);
        unsupported("reading pod logs")
    }

    /// Asks the kubelet for a checkpoint of a container through the node proxy
    /// (`POST /api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}`).
    fn checkpoint<'a>(
        &'a self,
        node: &'a str,
        pod: &'a ObjectRef,
        container: &'a str,
    ) -> BoxFuture<'a, Result<String>> {
        let _ = (node, pod, container);
        unsupported("container checkpoints")
    }

    /// Runs a command in a container and collects its output.
    fn exec<'a>(
        &'a self,
        pod: &'a ObjectRef,
        container: &'a str,
        command: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput>> {
        let _ = (pod, container, command);
        unsupported("exec")
    }

    /// Mints a token for a ServiceAccount (TokenRequest), bound to a pod when `pod` is given.
    fn request_token<'a>(
        &'a self,
        account: &'a ObjectRef,
        seconds: i64,
        pod: Option<&'a BoundPod>,
    ) -> BoxFuture<'a, Result<String>> {
        let _ = (account, seconds, pod);
        unsupported("TokenRequest")
    }

    /// Asks the API server whether a token is (still) valid (TokenReview).
    fn review_token<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenVerdict>> {
        let _ = token;
        unsupported("TokenReview")
    }

    /// Asks the API server whether the caller may do each of `checks`
    /// (SelfSubjectAccessReview). A cluster without authorization (a snapshot) says
    /// `Unsupported`.
    fn review_access<'a>(
        &'a self,
        checks: &'a [Access],
    ) -> BoxFuture<'a, Result<Vec<AccessVerdict>>> {
        let _ = checks;
        unsupported("access review")
    }

    /// Asks whether `user`, with its groups, may do each of `checks` (SubjectAccessReview).
    /// By default RBAC is evaluated over the cluster's own Roles and bindings (a snapshot);
    /// the API server answers for itself.
    fn review_subject_access<'a>(
        &'a self,
        user: &'a UserInfo,
        checks: &'a [Access],
    ) -> BoxFuture<'a, Result<Vec<AccessVerdict>>> {
        Box::pin(async move {
            let every = Selector::default();
            let list = |kind: &str| kinds::lookup(kind).expect("known kind");
            let roles = self.list(list("Role"), None, &every).await?;
            let cluster_roles = self.list(list("ClusterRole"), None, &every).await?;
            let role_bindings = self.list(list("RoleBinding"), None, &every).await?;
            let cluster_role_bindings = self.list(list("ClusterRoleBinding"), None, &every).await?;
            let rbac = authorize::Rbac {
                roles: &roles,
                cluster_roles: &cluster_roles,
                role_bindings: &role_bindings,
                cluster_role_bindings: &cluster_role_bindings,
            };
            Ok(rbac.review(user, checks))
        })
    }

    /// The object's `metadata.managedFields` (which every other read strips): who wrote which
    /// field, read only to name a field's owner when a plan went stale. `None` where the
    /// cluster keeps no such record (a snapshot).
    fn managed_fields<'a>(&'a self, object: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>>> {
        let _ = object;
        Box::pin(async { Ok(None) })
    }

    /// Whether the cluster serves a kind (API discovery): a CRD's kind is served only where it
    /// is installed.
    fn serves<'a>(&'a self, kind: &'static Kind) -> BoxFuture<'a, Result<bool>> {
        let _ = kind;
        Box::pin(async { Ok(false) })
    }

    /// The identity the cluster sees (SelfSubjectReview).
    fn whoami(&self) -> BoxFuture<'_, Result<UserInfo>>;

    /// Notice of every change to the watched objects, so a wait wakes when its condition may
    /// have become true instead of on a timer. `None` where nothing changes on its own (a
    /// snapshot): waits then poll.
    fn changes(&self, watch: &Watch) -> Option<Changes> {
        let _ = watch;
        None
    }
}
