//! Carrying out `Capture` operations: each artifact is written to the step's bundle through a
//! hashing writer, so its sha256 and size are known the moment it is on disk. What the cluster
//! cannot give (no previous container, an exec whose binary is missing, a kubelet without
//! checkpoints) is recorded as the artifact's outcome, not treated as a failure.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::ApplyError;
use crate::action::policies;
use crate::cluster::object::controller_of;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{Cluster, ClusterError, kinds};
use crate::evidence::{Artifact, HashingWriter, safe_relative};
use crate::facts::redacted;
use crate::plan::op::CaptureSource;

/// Collects one artifact into `dir`.
pub async fn capture(
    artifact: &str,
    source: &CaptureSource,
    dir: &Path,
    cluster: &dyn Cluster,
) -> Result<Artifact, ApplyError> {
    if !safe_relative(artifact) {
        return Err(ApplyError::Evidence(format!(
            "artifact path `{artifact}` would leave the bundle"
        )));
    }
    let path = dir.join(artifact);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| evidence_io(&path, e))?;
    }
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| evidence_io(&path, e))?;
    let mut writer = HashingWriter::new(file);
    let collected_at = jiff::Timestamp::now().to_string();
    let (source_path, outcome) = match source {
        CaptureSource::Logs {
            pod,
            container,
            previous,
        } => {
            let api = format!(
                "{}/log?container={container}&previous={previous}&timestamps=true",
                pod.path()
            );
            let outcome = match cluster
                .stream_logs(pod, container, *previous, &mut writer)
                .await
            {
                Ok(_) => "captured".to_string(),
                Err(e) => {
                    let note = format!("unavailable: {e}\n");
                    writer
                        .write_all(note.as_bytes())
                        .await
                        .map_err(|e| evidence_io(&path, e))?;
                    note.trim_end().to_string()
                }
            };
            (api, outcome)
        }
        other => {
            let (api, value, outcome) = json_artifact(other, cluster).await?;
            let bytes = serde_json::to_vec_pretty(&value).expect("values serialize");
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| evidence_io(&path, e))?;
            (api, outcome)
        }
    };
    writer.flush().await.map_err(|e| evidence_io(&path, e))?;
    writer.shutdown().await.map_err(|e| evidence_io(&path, e))?;
    let (sha256, size) = writer.finish();
    Ok(Artifact {
        path: artifact.to_string(),
        sha256,
        size,
        source: source_path,
        collected_at,
        outcome,
    })
}

fn evidence_io(path: &Path, e: std::io::Error) -> ApplyError {
    ApplyError::Evidence(format!("{}: {e}", path.display()))
}

/// The JSON artifacts: (API path, content, outcome).
async fn json_artifact(
    source: &CaptureSource,
    cluster: &dyn Cluster,
) -> Result<(String, Value, String), ApplyError> {
    let captured = "captured".to_string();
    Ok(match source {
        CaptureSource::Object { target } => {
            let value = cluster
                .get(target)
                .await?
                .map(|o| redacted(&o))
                .unwrap_or(Value::Null);
            let outcome = if value.is_null() {
                "not found".to_string()
            } else {
                captured
            };
            (target.path(), value, outcome)
        }
        CaptureSource::Events {
            namespace,
            kind,
            name,
        } => {
            let events = cluster
                .list(
                    kinds::lookup("Event").expect("known kind"),
                    namespace.as_deref(),
                    &Selector::default(),
                )
                .await?;
            let about: Vec<Value> = events
                .into_iter()
                .filter(|e| {
                    e.pointer("/involvedObject/kind").and_then(Value::as_str) == Some(kind.as_str())
                })
                .filter(|e| {
                    e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name.as_str())
                })
                .collect();
            let api = format!(
                "{}?involvedObject.kind={kind},involvedObject.name={name}",
                kinds::lookup("Event")
                    .expect("known kind")
                    .collection_path(namespace.as_deref())
            );
            (api, Value::Array(about), captured)
        }
        CaptureSource::Exec {
            pod,
            container,
            command,
            timeout_millis,
        } => {
            let api = format!("{}/exec?container={container}", pod.path());
            let run = tokio::time::timeout(
                std::time::Duration::from_millis(*timeout_millis),
                cluster.exec(pod, container, command),
            )
            .await;
            let (value, outcome) = match run {
                Ok(Ok(out)) => {
                    let outcome = match out.exit_code {
                        Some(0) => captured,
                        Some(code) => format!("exited {code}"),
                        None => "no exit code reported".to_string(),
                    };
                    (
                        json!({"command": command, "container": container, "stdout": out.stdout, "stderr": out.stderr, "exit_code": out.exit_code, "error": out.error}),
                        outcome,
                    )
                }
                Ok(Err(e)) => (
                    json!({"command": command, "container": container, "error": e.to_string()}),
                    format!("failed: {e}"),
                ),
                Err(_) => (
                    json!({"command": command, "container": container, "error": format!("timed out after {timeout_millis} ms")}),
                    format!("timed out after {timeout_millis} ms"),
                ),
            };
            (api, value, outcome)
        }
        CaptureSource::Checkpoint {
            node,
            pod,
            container,
        } => {
            let api = format!(
                "/api/v1/nodes/{node}/proxy/checkpoint/{}/{}/{container}",
                pod.namespace.as_deref().unwrap_or("default"),
                pod.name
            );
            match cluster.checkpoint(node, pod, container).await {
                Ok(response) => {
                    let parsed = serde_json::from_str(&response).unwrap_or(Value::String(response));
                    (api, json!({"response": parsed}), captured)
                }
                // A kubelet without the checkpoint API answers 404 (or 500); an API server that
                // will not proxy to the node at all answers 400 ("address not allowed") or 5xx.
                // Either way this cluster cannot give a checkpoint: that is the finding.
                Err(
                    e @ (ClusterError::NotFound { .. }
                    | ClusterError::Invalid { .. }
                    | ClusterError::Api {
                        code: 404 | 405 | 500..=599,
                        ..
                    }
                    | ClusterError::Unsupported(_)),
                ) => (
                    api,
                    json!({"error": e.to_string()}),
                    "not supported by this cluster".to_string(),
                ),
                Err(e @ ClusterError::Forbidden { .. }) => (
                    api,
                    json!({"error": e.to_string()}),
                    "not permitted: needs nodes/proxy".to_string(),
                ),
                Err(e) => (api, json!({"error": e.to_string()}), format!("failed: {e}")),
            }
        }
        CaptureSource::Policies { pod } => {
            let found = cluster.get(pod).await?;
            let all = cluster
                .list(
                    kinds::lookup("NetworkPolicy").expect("known kind"),
                    pod.namespace.as_deref(),
                    &Selector::default(),
                )
                .await?;
            let selecting: Vec<Value> = match &found {
                Some(p) => all
                    .into_iter()
                    .filter(|policy| policies::selects(policy, p))
                    .collect(),
                None => Vec::new(),
            };
            let api = kinds::lookup("NetworkPolicy")
                .expect("known kind")
                .collection_path(pod.namespace.as_deref());
            (api, Value::Array(selecting), captured)
        }
        CaptureSource::Bindings { account } => {
            let mut found = Vec::new();
            let namespace = account.namespace.as_deref().unwrap_or_default();
            for binding in crate::cluster::observe::decide(cluster, |seen| {
                let identity = crate::action::reach::service_account(namespace, &account.name);
                crate::action::reach::bindings_granting(seen, &identity)
                    .map_err(crate::action::ActionError::from)
            })
            .await
            .map_err(|e| match e {
                crate::action::ActionError::Cluster(e) => e,
                other => ClusterError::Unsupported(other.to_string()),
            })? {
                let role_kind = binding
                    .pointer("/roleRef/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let role_name = binding
                    .pointer("/roleRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let role_ns = if role_kind == "Role" {
                    object::namespace(&binding)
                } else {
                    None
                };
                let role = cluster
                    .get(&ObjectRef::new(role_kind, role_ns, role_name))
                    .await
                    .ok()
                    .flatten();
                found.push(json!({"binding": binding, "role": role}));
            }
            (
                "/apis/rbac.authorization.k8s.io/v1/{rolebindings,clusterrolebindings}".to_string(),
                Value::Array(found),
                captured,
            )
        }
        CaptureSource::Owners { pod } => {
            let mut chain = Vec::new();
            let mut current = cluster.get(pod).await?;
            while let Some(object) = current.take() {
                let Some((kind, name)) = controller_of(&object) else {
                    break;
                };
                if chain.len() >= 4 {
                    break;
                }
                let owner = match kinds::lookup(&kind) {
                    Some(k) => {
                        cluster
                            .get(&ObjectRef::new(k.kind, pod.namespace.as_deref(), &name))
                            .await?
                    }
                    None => None,
                };
                if let Some(owner) = &owner {
                    chain.push(redacted(owner));
                }
                current = owner;
            }
            (
                format!("{} (ownerReferences)", pod.path()),
                Value::Array(chain),
                captured,
            )
        }
        CaptureSource::Logs { .. } => unreachable!("logs are streamed, not JSON"),
    })
}
