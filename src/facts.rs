//! Facts: named read-only lookups of cluster objects, resolved in order before the first step.

use serde_json::Value;

use crate::cluster::object::{self, ObjectRef, controller_of};
use crate::cluster::{Cluster, ClusterError, kinds};
use crate::playbook::render::{RenderError, Renderer, Scope};
use crate::playbook::types::FactSpec;

/// Why a fact could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(
        "fact `{fact}`: {object} not found (mark the fact `optional: true` if it may be absent)"
    )]
    NotFound { fact: String, object: String },
    #[error("fact `{fact}`: {source}")]
    Cluster {
        fact: String,
        #[source]
        source: ClusterError,
    },
}

/// A pod and what a responder needs around it: the controller chain up to the workload, its
/// ServiceAccount and its node. Missing pieces are null (a bare pod has no workload).
async fn pod_context(pod: Value, cluster: &dyn Cluster) -> Result<Value, ClusterError> {
    let namespace = object::namespace(&pod).map(str::to_string);
    let mut owners = Vec::new();
    let mut current = pod.clone();
    // Follow controller references: Pod → ReplicaSet → Deployment, Pod → Job → CronJob, …
    for _ in 0..4 {
        let Some(owner) = controller_of(&current) else {
            break;
        };
        let Some(kind) = kinds::lookup(&owner.0) else {
            break;
        };
        let r = ObjectRef::new(kind.kind, namespace.as_deref(), &owner.1);
        match cluster.get(&r).await? {
            Some(mut found) => {
                redact(&mut found);
                owners.push(found.clone());
                current = found;
            }
            None => break,
        }
    }
    let workload = owners.last().map(|o| {
        serde_json::json!({"kind": o["kind"], "name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]})
    });
    let account_name = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let account = cluster
        .get(&ObjectRef::new(
            "ServiceAccount",
            namespace.as_deref(),
            account_name,
        ))
        .await?;
    let node = match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
        Some(node) => cluster.get(&ObjectRef::new("Node", None, node)).await?,
        None => None,
    };
    let annotations = object::string_map(pod.pointer("/metadata/annotations"));
    let labels = object::labels(&pod);
    // A mirror pod is the API's shadow of a static pod its kubelet runs from a file.
    let static_pod = annotations.contains_key("kubernetes.io/config.mirror");
    let control_plane = labels.get("tier").map(String::as_str) == Some("control-plane")
        || (namespace.as_deref() == Some("kube-system")
            && labels.get("component").is_some_and(|c| {
                matches!(
                    c.as_str(),
                    "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "etcd"
                )
            }));
    Ok(serde_json::json!({
        "static_pod": static_pod,
        "control_plane": control_plane,
        "pod": pod,
        "owners": owners,
        "workload": workload,
        "serviceAccount": account,
        "node": node,
    }))
}

/// A workload and what a responder needs around it: the pods it owns (by ownerReference uid,
/// never by selector), with their nodes, ServiceAccounts and image digests, and the lists of
/// each that later steps loop over (`for_each: facts.<name>.nodes`).
async fn workload_context(workload: Value, cluster: &dyn Cluster) -> Result<Value, ClusterError> {
    let owned = crate::cluster::observe::decide(cluster, |seen| {
        crate::action::owned::pods_of(seen, &workload).map_err(crate::action::ActionError::from)
    })
    .await
    .map_err(|e| match e {
        crate::action::ActionError::Cluster(e) => e,
        other => ClusterError::Unsupported(other.to_string()),
    })?;
    let mut nodes = std::collections::BTreeSet::new();
    let mut accounts = std::collections::BTreeSet::new();
    let mut images = std::collections::BTreeSet::new();
    let mut pods = Vec::new();
    for found in &owned {
        let pod = &found.pod;
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str);
        let account = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default");
        // The digest the kubelet reports is what runs; the spec's reference where none is known.
        let running: Vec<String> = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("imageID").and_then(Value::as_str))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        let declared: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str).map(str::to_string))
            .collect();
        let pod_images = if running.is_empty() {
            declared
        } else {
            running
        };
        if let Some(node) = node {
            nodes.insert(node.to_string());
        }
        accounts.insert(account.to_string());
        images.extend(pod_images.iter().cloned());
        pods.push(serde_json::json!({
            "name": object::name(pod),
            "namespace": object::namespace(pod),
            "node": node,
            "service_account": account,
            "images": pod_images,
            "owned_by": found.describe(),
        }));
    }
    let mut workload = workload;
    redact(&mut workload);
    Ok(serde_json::json!({
        "kind": workload["kind"],
        "name": workload["metadata"]["name"],
        "namespace": workload["metadata"]["namespace"],
        "workload": workload,
        "pods": pods,
        "nodes": nodes,
        "service_accounts": accounts,
        "images": images,
    }))
}

/// Looks up one fact, rendering its name with the scope so far.
pub async fn resolve(
    name: &str,
    spec: &FactSpec,
    scope: &Scope,
    cluster: &dyn Cluster,
) -> Result<(Value, Option<ObjectRef>), FactError> {
    let renderer = Renderer::new(scope);
    let field = format!("facts.{name}");
    let context = spec.kind == crate::playbook::types::POD_CONTEXT;
    let of_workload = spec.kind == crate::playbook::types::WORKLOAD_CONTEXT;
    let of = match (&spec.of, of_workload) {
        (Some(of), true) => renderer.render_str(&format!("{field}.of"), of)?,
        _ => String::new(),
    };
    if of_workload && crate::action::owned::intermediate(&of).is_none() {
        return Err(RenderError {
            field: format!("{field}.of"),
            message: format!(
                "`{of}` is not a workload kind (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)"
            ),
            column: None,
        }
        .into());
    }
    let kind_name = if context {
        "Pod"
    } else if of_workload {
        of.as_str()
    } else {
        spec.kind.as_str()
    };
    let kind = kinds::lookup(kind_name).ok_or_else(|| RenderError {
        field: format!("{field}.kind"),
        message: format!("unknown kind `{}`", spec.kind),
        column: None,
    })?;
    let object_name = renderer.render_str(&format!("{field}.name"), &spec.name)?;
    let invalid = |f: &str, message: String| RenderError {
        field: format!("{field}.{f}"),
        message,
        column: None,
    };
    object::validate_object_name(kind.kind, &object_name)
        .map_err(|e| invalid("name", e.to_string()))?;
    let namespace = match (&spec.namespace, kind.namespaced) {
        (Some(ns), true) => {
            let ns = renderer.render_str(&format!("{field}.namespace"), ns)?;
            object::validate_namespace(&ns).map_err(|e| invalid("namespace", e.to_string()))?;
            Some(ns)
        }
        _ => None,
    };
    let r = ObjectRef::new(kind.kind, namespace.as_deref(), &object_name);
    match cluster.get(&r).await {
        Ok(Some(mut found)) => {
            redact(&mut found);
            if context {
                let value =
                    pod_context(found, cluster)
                        .await
                        .map_err(|source| FactError::Cluster {
                            fact: name.to_string(),
                            source,
                        })?;
                return Ok((value, Some(r)));
            }
            if of_workload {
                let value = workload_context(found, cluster).await.map_err(|source| {
                    FactError::Cluster {
                        fact: name.to_string(),
                        source,
                    }
                })?;
                return Ok((value, Some(r)));
            }
            Ok((found, Some(r)))
        }
        Ok(None) if spec.optional => Ok((Value::Null, None)),
        Ok(None) => Err(FactError::NotFound {
            fact: name.to_string(),
            object: r.to_string(),
        }),
        Err(source) => Err(FactError::Cluster {
            fact: name.to_string(),
            source,
        }),
    }
}

/// Where a pod spec sits in the objects the tool reads: a pod, a workload's template, a
/// CronJob's job template.
const POD_SPECS: &[&str] = &[
    "/spec",
    "/spec/template/spec",
    "/spec/jobTemplate/spec/template/spec",
];

/// Literal environment values of every container (`env[].value`) are replaced: they are where
/// credentials end up when they are not in a Secret. References (`valueFrom`) stay, they name
/// where a value comes from and hold none.
fn redact_env(object: &mut Value) {
    for spec in POD_SPECS {
        for containers in ["containers", "initContainers", "ephemeralContainers"] {
            let pointer = format!("{spec}/{containers}");
            let Some(list) = object.pointer_mut(&pointer).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in list {
                let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) else {
                    continue;
                };
                for variable in env {
                    if let Some(value) = variable.get_mut("value")
                        && value.is_string()
                    {
                        *value = Value::String("(redacted)".into());
                    }
                }
            }
        }
    }
}

/// Secret values never reach templates, outputs or reports: a Secret's data, kubectl's
/// last-applied annotation (it can hold a Secret's data in plain text), and literal environment
/// values of containers.
pub fn redact(object: &mut Value) {
    redact_env(object);
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                for value in map.values_mut() {
                    *value = Value::String("(redacted)".into());
                }
            }
        }
    }
    // kubectl's last-applied annotation can hold a Secret's data in plain text: on the object,
    // and on the pod template a workload stamps onto its pods.
    for metadata in [
        "/metadata",
        "/spec/template/metadata",
        "/spec/jobTemplate/spec/template/metadata",
    ] {
        if let Some(annotations) = object
            .pointer_mut(&format!("{metadata}/annotations"))
            .and_then(Value::as_object_mut)
        {
            annotations.remove(LAST_APPLIED);
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A copy with Secret values redacted, for anything that is stored.
#[must_use]
pub fn redacted(value: &Value) -> Value {
    let mut copy = value.clone();
    redact(&mut copy);
    copy
}

#[cfg(test)]
mod redaction_tests {
    use serde_json::json;

    #[test]
    fn literal_env_values_are_redacted_in_pods_and_templates_and_references_kept() {
        let container = json!({"name": "app", "env": [
            {"name": "TOKEN", "value": "canary-env"},
            {"name": "FROM", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]});
        for object in [
            json!({"kind": "Pod", "spec": {"containers": [container.clone()], "initContainers": [container.clone()]}}),
            json!({"kind": "Deployment", "spec": {"template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "canary-env"}},
                "spec": {"containers": [container.clone()]}}}}),
            json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [container.clone()]}}}}}}),
        ] {
            let text = super::redacted(&object).to_string();
            assert!(!text.contains("canary-env"), "{text}");
            assert!(
                text.contains("(redacted)") && text.contains("secretKeyRef"),
                "{text}"
            );
        }
    }
}
