//! `contain rbac PLAYBOOK`: the least-privilege ClusterRole a playbook needs, from what planning
//! it reads (recorded), what its operations do, and what their verification reads. Names are
//! dropped (an incident's objects are not known in advance) and so are namespaces (a
//! ClusterRole; bind it with a RoleBinding to confine it to namespaces). Every run also asks
//! about its own permissions and identity, and takes a Lease per target it writes to (in the
//! target's namespace, or `kube-system` for a Node).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::cluster::Access;

/// The ClusterRole granting every access in `needed`, one rule per API group and resource.
pub fn cluster_role(name: &str, needed: &[Access]) -> Value {
    let mut verbs: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for access in needed {
        let resource = if access.subresource.is_empty() {
            access.resource.clone()
        } else {
            format!("{}/{}", access.resource, access.subresource)
        };
        verbs
            .entry((access.group.clone(), resource))
            .or_default()
            .insert(access.verb.clone());
    }
    // What every run does besides the playbook: ask about its own permissions (the preflight)
    // and who it is (recorded in the journal).
    verbs
        .entry((
            "authorization.k8s.io".into(),
            "selfsubjectaccessreviews".into(),
        ))
        .or_default()
        .insert("create".into());
    verbs
        .entry(("authentication.k8s.io".into(), "selfsubjectreviews".into()))
        .or_default()
        .insert("create".into());
    let rules: Vec<Value> = verbs
        .into_iter()
        .map(|((group, resource), verbs)| {
            json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "annotations": {"contain.dev/purpose": "least privilege to run this playbook with contain"}
        },
        "rules": rules
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kinds;

    #[test]
    fn accesses_fold_into_one_rule_per_resource() {
        let pod = kinds::lookup("Pod").unwrap();
        let needed = [
            Access::on("get", pod, Some("shop"), Some("web-1")),
            Access::on("patch", pod, Some("shop"), Some("web-1")),
            Access::on("get", pod, Some("other"), None),
            Access::on("create", pod, Some("shop"), None).subresource("eviction"),
        ];
        let role = cluster_role("r", &needed);
        let rules = role["rules"].as_array().unwrap();
        let pods = rules
            .iter()
            .find(|r| r["resources"] == json!(["pods"]))
            .unwrap();
        assert_eq!(pods["verbs"], json!(["get", "patch"]));
        assert_eq!(pods["apiGroups"], json!([""]));
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!(["pods/eviction"])
                    && r["verbs"] == json!(["create"]))
        );
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!(["selfsubjectaccessreviews"]))
        );
    }
}
