//! One operation of a plan. Writes carry what the plan observed (uid, field values) so that
//! applying them later, after a crash or a human's change, is safe: see `execute::apply`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::{Access, ObjectRef, kinds};

/// One field of an object that a patch changes: `before` is what the plan observed, `after`
/// what it writes (`None`: the field is absent / removed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: Vec<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl FieldChange {
    /// The same change, backwards.
    pub fn inverse(&self) -> FieldChange {
        FieldChange {
            path: self.path.clone(),
            before: self.after.clone(),
            after: self.before.clone(),
        }
    }

    /// `metadata.labels["contain.dev/quarantine"]`.
    pub fn display_path(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.path.iter().enumerate() {
            let plain = segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if crate::cluster::merge::parse_keyed(segment).is_some() {
                out.push_str(segment);
            } else if plain {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(segment);
            } else {
                out.push_str(&format!("[{segment:?}]"));
            }
        }
        out
    }
}

/// Where a captured artifact comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum CaptureSource {
    /// The object as served (managedFields stripped, Secret values redacted).
    Object { target: ObjectRef },
    /// Events about one object.
    Events {
        namespace: Option<String>,
        kind: String,
        name: String,
    },
    /// A container's log, with timestamps.
    Logs {
        pod: ObjectRef,
        container: String,
        previous: bool,
    },
    /// A command run in a container: stdout, stderr and exit code.
    Exec {
        pod: ObjectRef,
        container: String,
        command: Vec<String>,
        timeout_millis: u64,
    },
    /// A kubelet checkpoint through the node proxy.
    Checkpoint {
        node: String,
        pod: ObjectRef,
        container: String,
    },
    /// The NetworkPolicies that select a pod.
    Policies { pod: ObjectRef },
    /// The bindings (and their roles) that name a ServiceAccount.
    Bindings { account: ObjectRef },
    /// A pod's controller chain.
    Owners { pod: ObjectRef },
}

impl fmt::Display for CaptureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureSource::Object { target } => write!(f, "{target}"),
            CaptureSource::Events { kind, name, .. } => write!(f, "events of {kind} {name}"),
            CaptureSource::Logs {
                pod,
                container,
                previous,
            } => {
                write!(
                    f,
                    "{}logs of {pod} container {container}",
                    if *previous { "previous " } else { "" }
                )
            }
            CaptureSource::Exec {
                pod,
                container,
                command,
                ..
            } => write!(f, "exec {command:?} in {pod} container {container}"),
            CaptureSource::Checkpoint { pod, container, .. } => {
                write!(f, "checkpoint of {pod} container {container}")
            }
            CaptureSource::Policies { pod } => write!(f, "NetworkPolicies selecting {pod}"),
            CaptureSource::Bindings { account } => write!(f, "bindings of {account}"),
            CaptureSource::Owners { pod } => write!(f, "controller chain of {pod}"),
        }
    }
}

/// An operation, as planned, journaled and applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create an object. On AlreadyExists, the existing object is adopted only when it carries
    /// this run's id label.
    Create { object: Value },
    /// Change fields of one object, guarded by its uid and the values the plan observed.
    Patch {
        target: ObjectRef,
        uid: String,
        changes: Vec<FieldChange>,
    },
    /// Delete one object. With a uid, only that object; without (undo of a create whose uid was
    /// not known at plan time), only if it carries `run_id` in its `contain.dev/run-id` label.
    Delete {
        target: ObjectRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_period_seconds: Option<i64>,
    },
    /// Evict a pod through the Eviction API; a PodDisruptionBudget's 429 is retried with
    /// backoff for up to `timeout_millis`.
    Evict {
        target: ObjectRef,
        uid: String,
        timeout_millis: u64,
    },
    /// Mint a short-lived token for a ServiceAccount before revoking it, so verification can
    /// prove the revocation with a TokenReview. Minted only while the account still has `uid`;
    /// the token is kept in memory, never journaled.
    MintCanary {
        account: ObjectRef,
        uid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bound_pod: Option<crate::cluster::BoundPod>,
    },
    /// Collect one artifact into the step's evidence bundle. Reads the cluster, writes only to
    /// the local bundle.
    Capture {
        artifact: String,
        source: CaptureSource,
    },
    /// Write the bundle's manifest (and, with `archive`, a `.tar.gz` and its sha256); the
    /// manifest's sha256 becomes a step output, and so goes into the journal.
    Seal { archive: bool },
    /// Verify, right before the write, that an image digest carries a valid cosign signature
    /// by one of `keys` (PEM public keys).
    VerifyImage {
        image: String,
        keys: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry_config: Option<String>,
    },
    /// Wait until a workload's rollout is complete: every replica updated and available.
    WaitRollout {
        target: ObjectRef,
        timeout_millis: u64,
    },
    /// Pause for a fixed time.
    Sleep { millis: u64 },
    /// Poll an object until a field has a value.
    WaitFor {
        target: ObjectRef,
        path: Vec<String>,
        equals: Value,
        timeout_millis: u64,
    },
    /// Ask a human before going on.
    Approve { message: String },
}

impl Op {
    /// Deletes an object as it was read: that object only (its uid), never one created under
    /// its name since.
    pub fn delete_read(object: &Value) -> Op {
        Op::Delete {
            target: ObjectRef::of(object).expect("read objects have names"),
            uid: crate::cluster::object::uid(object).map(str::to_string),
            run_id: None,
            grace_period_seconds: None,
        }
    }

    /// The undo of a create whose uid the plan cannot know: deletes the object only if it
    /// carries `run_id` in its `contain.dev/run-id` label.
    pub fn delete_created(target: ObjectRef, run_id: &str) -> Op {
        Op::Delete {
            target,
            uid: None,
            run_id: Some(run_id.to_string()),
            grace_period_seconds: None,
        }
    }

    /// The same delete with this grace period (any other operation as it is).
    pub fn with_grace_period(mut self, seconds: Option<i64>) -> Op {
        if let Op::Delete {
            grace_period_seconds,
            ..
        } = &mut self
        {
            *grace_period_seconds = seconds;
        }
        self
    }

    /// True when the operation changes the cluster.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Create { .. } | Op::Patch { .. } | Op::Delete { .. } | Op::Evict { .. }
        )
    }

    /// The object the operation is about, if any.
    pub fn target(&self) -> Option<ObjectRef> {
        match self {
            Op::Create { object } => ObjectRef::of(object),
            Op::Patch { target, .. }
            | Op::Delete { target, .. }
            | Op::WaitFor { target, .. }
            | Op::Evict { target, .. } => Some(target.clone()),
            Op::MintCanary { account, .. } => Some(account.clone()),
            Op::Capture { .. } | Op::Seal { .. } | Op::VerifyImage { .. } => None,
            Op::WaitRollout { target, .. } => Some(target.clone()),
            Op::Sleep { .. } | Op::Approve { .. } => None,
        }
    }

    /// The API permissions applying this operation needs, reads included (a patch re-reads its
    /// object; a create may adopt an object of this run). The preflight asks the API server
    /// about each before the first write.
    pub fn access(&self) -> Vec<Access> {
        let on = |verb: &str, r: &ObjectRef| -> Option<Access> {
            let kind = r.kind_info()?;
            Some(Access::on(
                verb,
                kind,
                r.namespace.as_deref(),
                Some(r.name.as_str()),
            ))
        };
        let list = |kind: &str, namespace: Option<&str>| -> Option<Access> {
            Some(Access::on("list", kinds::lookup(kind)?, namespace, None))
        };
        let found: Vec<Option<Access>> = match self {
            Op::Create { object } => match ObjectRef::of(object) {
                Some(r) => vec![on("create", &r), on("get", &r)],
                None => Vec::new(),
            },
            Op::Patch { target, .. } => vec![on("get", target), on("patch", target)],
            Op::Delete { target, .. } => vec![on("get", target), on("delete", target)],
            Op::Evict { target, .. } => vec![
                on("get", target),
                on("create", target).map(|a| a.subresource("eviction")),
            ],
            Op::MintCanary { account, .. } => vec![
                on("get", account),
                on("create", account).map(|a| a.subresource("token")),
            ],
            Op::Capture { source, .. } => match source {
                CaptureSource::Object { target } => vec![on("get", target)],
                CaptureSource::Events { namespace, .. } => {
                    vec![list("Event", namespace.as_deref())]
                }
                CaptureSource::Logs { pod, .. } => {
                    vec![on("get", pod), on("get", pod).map(|a| a.subresource("log"))]
                }
                // Exec streams over a WebSocket, opened with a GET: the API server asks for
                // `get` on pods/exec as well as `create`.
                CaptureSource::Exec { pod, .. } => {
                    vec![
                        on("get", pod),
                        on("get", pod).map(|a| a.subresource("exec")),
                        on("create", pod).map(|a| a.subresource("exec")),
                    ]
                }
                CaptureSource::Checkpoint { node, .. } => {
                    vec![
                        on("create", &ObjectRef::new("Node", None, node))
                            .map(|a| a.subresource("proxy")),
                    ]
                }
                CaptureSource::Policies { pod } => vec![
                    on("get", pod),
                    list("NetworkPolicy", pod.namespace.as_deref()),
                ],
                // The bindings naming the account, wherever they are, and the roles they grant.
                CaptureSource::Bindings { .. } => vec![
                    list("RoleBinding", None),
                    list("ClusterRoleBinding", None),
                    kinds::lookup("Role").map(|k| Access::on("get", k, None, None)),
                    kinds::lookup("ClusterRole").map(|k| Access::on("get", k, None, None)),
                ],
                CaptureSource::Owners { pod } => vec![on("get", pod)],
            },
            Op::WaitRollout { target, .. } | Op::WaitFor { target, .. } => {
                vec![on("get", target)]
            }
            Op::Seal { .. } | Op::VerifyImage { .. } | Op::Sleep { .. } | Op::Approve { .. } => {
                Vec::new()
            }
        };
        found.into_iter().flatten().collect()
    }

    /// `+` create, `~` patch, `-` delete, `…` wait, `?` approve.
    pub fn symbol(&self) -> char {
        match self {
            Op::Create { .. } => '+',
            Op::Patch { .. } => '~',
            Op::Delete { .. } => '-',
            Op::Evict { .. } => '!',
            Op::MintCanary { .. } => '*',
            Op::Capture { .. } | Op::Seal { .. } => '>',
            Op::VerifyImage { .. } => '✓',
            Op::WaitRollout { .. } => '…',
            Op::Sleep { .. } | Op::WaitFor { .. } => '…',
            Op::Approve { .. } => '?',
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { object } => match ObjectRef::of(object) {
                Some(r) => write!(f, "create {r}"),
                None => write!(f, "create object"),
            },
            Op::Patch {
                target, changes, ..
            } => {
                write!(
                    f,
                    "patch {target} ({} field{})",
                    changes.len(),
                    if changes.len() == 1 { "" } else { "s" }
                )
            }
            Op::Delete { target, .. } => write!(f, "delete {target}"),
            Op::Evict { target, .. } => write!(f, "evict {target}"),
            Op::MintCanary {
                account,
                bound_pod: Some(pod),
                ..
            } => {
                write!(
                    f,
                    "mint a canary token of {account} bound to pod {}",
                    pod.name
                )
            }
            Op::MintCanary { account, .. } => write!(f, "mint a canary token of {account}"),
            Op::Capture { artifact, source } => write!(f, "capture {source} → {artifact}"),
            Op::VerifyImage { image, keys, .. } => write!(
                f,
                "verify the cosign signature of {image} ({} key(s))",
                keys.len()
            ),
            Op::WaitRollout {
                target,
                timeout_millis,
            } => write!(
                f,
                "wait for the rollout of {target} (up to {})",
                human_millis(*timeout_millis)
            ),
            Op::Seal { archive: true } => write!(
                f,
                "seal the bundle: manifest.json and a .tar.gz, with their sha256"
            ),
            Op::Seal { archive: false } => write!(
                f,
                "seal the bundle: manifest.json, its sha256 into the journal"
            ),
            Op::Sleep { millis } => write!(f, "sleep {}", human_millis(*millis)),
            Op::WaitFor {
                target,
                path,
                equals,
                ..
            } => {
                write!(f, "wait for {target} {} = {equals}", path.join("."))
            }
            Op::Approve { message } => write!(f, "approve: {}", crate::escape::sanitize(message)),
        }
    }
}

pub fn human_millis(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// Where the run of patches starting at `from` ends: at the first operation that is not a
/// patch, or that patches an object the run already patches. Those patches name distinct
/// objects, each with its own uid precondition, so they can be sent side by side; a second patch
/// of one object waits for the first.
pub fn patch_run<T: std::borrow::Borrow<Op>>(ops: &[T], from: usize) -> usize {
    let mut objects = std::collections::HashSet::new();
    ops[from..]
        .iter()
        .position(|op| {
            let op = op.borrow();
            !matches!(op, Op::Patch { .. }) || !op.target().is_some_and(|t| objects.insert(t))
        })
        .map_or(ops.len(), |n| from + n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(name: &str) -> Op {
        Op::Patch {
            target: ObjectRef::new("Pod", Some("shop"), name),
            uid: format!("uid-{name}"),
            changes: Vec::new(),
        }
    }

    #[test]
    fn a_patch_run_ends_at_another_op_or_a_second_patch_of_one_object() {
        let ops = [
            patch("a"),
            patch("b"),
            Op::Sleep { millis: 1 },
            patch("c"),
            patch("d"),
            patch("c"),
            patch("e"),
        ];
        assert_eq!(patch_run(&ops, 0), 2);
        assert_eq!(patch_run(&ops, 2), 3, "a non-patch is a run of its own");
        assert_eq!(
            patch_run(&ops, 3),
            5,
            "`c` again waits for the first patch of `c`"
        );
        assert_eq!(patch_run(&ops, 5), 7);
    }
}
