//! `contain snapshot`: exports the objects actions read from a live cluster into a
//! multi-document YAML file that `tabletop --snapshot` loads. Secret values never leave the
//! cluster: Secrets are exported by name and type only.

use serde_json::Value;

use crate::cluster::object::{self, Selector};
use crate::cluster::{Cluster, ClusterError, kinds};

/// The kinds a snapshot holds: what actions observe, and nothing more.
pub const SNAPSHOT_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Service",
    "EndpointSlice",
    "ServiceAccount",
    "Secret",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "NetworkPolicy",
    "PodDisruptionBudget",
];

/// Every object of the snapshot kinds, in one namespace (plus the cluster-scoped kinds and the
/// `kube-system` namespace that gives the cluster its identity) or in all.
pub async fn export(
    cluster: &dyn Cluster,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ClusterError> {
    let mut objects = Vec::new();
    for name in SNAPSHOT_KINDS {
        let kind = kinds::lookup(name).expect("snapshot kinds are known");
        let scope = if kind.namespaced { namespace } else { None };
        let mut found = cluster.list(kind, scope, &Selector::default()).await?;
        if kind.kind == "Namespace"
            && let Some(ns) = namespace
        {
            found.retain(|o| matches!(object::name(o), Some(n) if n == ns || n == "kube-system"));
        }
        for mut item in found {
            scrub(&mut item);
            objects.push(item);
        }
    }
    Ok(objects)
}

/// Drops what must not or need not leave the cluster (literal container environment values
/// and kubectl's last-applied annotations are redacted, as in evidence; Secrets lose their
/// data).
pub fn scrub(object: &mut Value) {
    object::strip_server_fields(object);
    // Literal env values and every last-applied annotation, as in evidence.
    crate::facts::redact(object);
    if object.get("kind").and_then(Value::as_str) == Some("Secret")
        && let Some(map) = object.as_object_mut()
    {
        map.remove("data");
        map.remove("stringData");
    }
}

/// The snapshot file: a header, then one document per object.
pub fn to_yaml(objects: &[Value], origin: &str) -> Result<String, String> {
    let mut out = format!(
        "# contain snapshot of {origin}, taken {}: {} objects. Secret values are not included.\n",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        objects.len()
    );
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The snapshot as one JSON `List` (the shape of `kubectl get -o json`): loads about ten times
/// faster than YAML, for snapshots of large clusters.
pub fn to_json(objects: &[Value]) -> Result<String, String> {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    serde_json::to_string(&list)
        .map(|text| text + "\n")
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_lose_their_values() {
        let mut secret = json!({
            "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "t", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"token\":\"c2VjcmV0\"}}"}},
            "data": {"token": "c2VjcmV0"}, "stringData": {"x": "y"}
        });
        scrub(&mut secret);
        assert!(secret.get("data").is_none() && secret.get("stringData").is_none());
        assert!(
            secret["metadata"]["annotations"]
                .as_object()
                .unwrap()
                .is_empty()
        );
        assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    }
}
