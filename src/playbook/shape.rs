//! The shape of a fact, for validation: a reference like `facts.suspect.pod.spec.nodename` is
//! checked field by field against the fact's kind (its OpenAPI schema as k8s-openapi ships it,
//! or `PodContext`'s documented fields), so a misspelt field is caught before anything runs,
//! with a "did you mean `nodeName`?".

use std::collections::HashMap;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde_json::{Value, json};

use k8s_openapi::api::{apps, batch, core, discovery, networking, policy, rbac};

/// Why a path does not fit a fact's shape.
#[derive(Debug, PartialEq, Eq)]
pub struct ShapeError {
    /// The index of the offending segment in the path.
    pub at: usize,
    /// The fields allowed there (empty when the value there is a scalar).
    pub known: Vec<String>,
    /// What is there instead, when it is no object: `a string`, `a list`.
    pub scalar: Option<&'static str>,
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true))
}

/// The schema of a fact kind, `None` for a kind whose shape is not known here.
pub fn schema_of_kind(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        let mut m: HashMap<&'static str, Value> = HashMap::new();
        m.insert("Namespace", schema::<core::v1::Namespace>());
        m.insert("Node", schema::<core::v1::Node>());
        m.insert("Pod", schema::<core::v1::Pod>());
        m.insert("Service", schema::<core::v1::Service>());
        m.insert("ServiceAccount", schema::<core::v1::ServiceAccount>());
        m.insert("Secret", schema::<core::v1::Secret>());
        m.insert("ConfigMap", schema::<core::v1::ConfigMap>());
        m.insert("Event", schema::<core::v1::Event>());
        m.insert("Deployment", schema::<apps::v1::Deployment>());
        m.insert("ReplicaSet", schema::<apps::v1::ReplicaSet>());
        m.insert("StatefulSet", schema::<apps::v1::StatefulSet>());
        m.insert("DaemonSet", schema::<apps::v1::DaemonSet>());
        m.insert("Job", schema::<batch::v1::Job>());
        m.insert("CronJob", schema::<batch::v1::CronJob>());
        m.insert("EndpointSlice", schema::<discovery::v1::EndpointSlice>());
        m.insert("NetworkPolicy", schema::<networking::v1::NetworkPolicy>());
        m.insert(
            "PodDisruptionBudget",
            schema::<policy::v1::PodDisruptionBudget>(),
        );
        m.insert("Role", schema::<rbac::v1::Role>());
        m.insert("RoleBinding", schema::<rbac::v1::RoleBinding>());
        m.insert("ClusterRole", schema::<rbac::v1::ClusterRole>());
        m.insert(
            "ClusterRoleBinding",
            schema::<rbac::v1::ClusterRoleBinding>(),
        );
        let context = pod_context(&m);
        m.insert(crate::playbook::types::POD_CONTEXT, context);
        m.insert(crate::playbook::types::WORKLOAD_CONTEXT, workload_context());
        m
    });
    schemas.get(kind)
}

/// `PodContext`'s documented fields, with the Kubernetes kinds inside them.
fn pod_context(kinds: &HashMap<&'static str, Value>) -> Value {
    let embed = |kind: &str| -> Value {
        let mut s = kinds.get(kind).cloned().unwrap_or(Value::Bool(true));
        // Each embedded kind keeps its own definitions, found from its own root.
        s["x-root"] = json!(true);
        s
    };
    json!({
        "type": "object",
        "properties": {
            "pod": embed("Pod"),
            "owners": {"type": "array", "items": true},
            "workload": {"type": "object", "properties": {
                "kind": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"}
            }},
            "serviceAccount": embed("ServiceAccount"),
            "node": embed("Node"),
            "control_plane": {"type": "boolean"},
            "static_pod": {"type": "boolean"},
        }
    })
}

/// `WorkloadContext`'s documented fields.
fn workload_context() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "kind": {"type": "string"},
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            // The workload itself, of whichever kind it is.
            "workload": true,
            "pods": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "namespace": {"type": "string"},
                "node": {"type": "string"}, "service_account": {"type": "string"},
                "images": strings, "owned_by": {"type": "string"},
            }}},
            "nodes": strings,
            "service_accounts": strings,
            "images": strings,
        }
    })
}

/// Follows a `$ref` within the definitions of `root`.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .map_or(schema, |s| resolve(s, root)),
        None => schema,
    }
}

fn scalar_name(schema: &Value) -> Option<&'static str> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let kind = types.iter().find(|t| **t != "null")?;
    match *kind {
        "string" => Some("a string"),
        "integer" | "number" => Some("a number"),
        "boolean" => Some("a boolean"),
        "array" => Some("a list"),
        _ => None,
    }
}

/// Checks `path` (the segments after the fact's name) against the fact kind's shape.
pub fn check(kind: &str, path: &[String]) -> Result<(), ShapeError> {
    let Some(root) = schema_of_kind(kind) else {
        return Ok(());
    };
    let mut root = root;
    let mut here = root;
    for (at, segment) in path.iter().enumerate() {
        if here.get("x-root").is_some() {
            root = here;
        }
        here = resolve(here, root);
        if let Some(properties) = here.get("properties").and_then(Value::as_object) {
            match properties.get(segment) {
                Some(next) => {
                    here = next;
                    continue;
                }
                None => {
                    return Err(ShapeError {
                        at,
                        known: properties.keys().cloned().collect(),
                        scalar: None,
                    });
                }
            }
        }
        if let Some(values) = here.get("additionalProperties") {
            here = values;
            continue;
        }
        // A list is indexed (`containers[0]`): the path goes on in its items.
        if segment.bytes().all(|b| b.is_ascii_digit())
            && let Some(items) = here.get("items")
        {
            here = items;
            continue;
        }
        if let Some(name) = scalar_name(here) {
            // Anything else than an index names no field of a list or a scalar.
            return Err(ShapeError {
                at,
                known: Vec::new(),
                scalar: Some(name),
            });
        }
        // A shape this check does not know (free-form JSON): anything goes from here.
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn pod_fields_are_checked_with_their_names() {
        assert_eq!(check("Pod", &path("spec.nodeName")), Ok(()));
        assert_eq!(check("Pod", &path("metadata.labels.anything")), Ok(()));
        let err = check("Pod", &path("spec.nodename")).unwrap_err();
        assert_eq!(err.at, 1);
        assert!(err.known.contains(&"nodeName".to_string()));
        let err = check("Pod", &path("spec.nodeName.first")).unwrap_err();
        assert_eq!((err.at, err.scalar), (2, Some("a string")));
    }

    #[test]
    fn pod_context_embeds_the_kinds_it_documents() {
        assert_eq!(
            check("PodContext", &path("pod.spec.serviceAccountName")),
            Ok(())
        );
        assert_eq!(check("PodContext", &path("node.metadata.name")), Ok(()));
        assert_eq!(check("PodContext", &path("workload.name")), Ok(()));
        assert_eq!(check("PodContext", &path("control_plane")), Ok(()));
        let err = check("PodContext", &path("pod.spec.nodename")).unwrap_err();
        assert_eq!(err.at, 2);
        let err = check("PodContext", &path("workloads")).unwrap_err();
        assert!(err.known.contains(&"workload".to_string()));
    }
}
