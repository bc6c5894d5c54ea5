//! The object kinds contain knows how to address: group, version, plural and scope.

/// One Kubernetes resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection path, e.g. `/apis/apps/v1/namespaces/shop/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }
}

const fn core(kind: &'static str, plural: &'static str, namespaced: bool) -> Kind {
    Kind {
        kind,
        group: "",
        version: "v1",
        plural,
        namespaced,
    }
}

const fn grouped(
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        kind,
        group,
        version: "v1",
        plural,
        namespaced,
    }
}

/// Every kind a playbook may name in a target or a fact.
pub const KINDS: &[Kind] = &[
    core("Namespace", "namespaces", false),
    core("Node", "nodes", false),
    core("Pod", "pods", true),
    core("Service", "services", true),
    core("ServiceAccount", "serviceaccounts", true),
    core("Secret", "secrets", true),
    core("ConfigMap", "configmaps", true),
    core("Event", "events", true),
    grouped("Deployment", "apps", "deployments", true),
    grouped("ReplicaSet", "apps", "replicasets", true),
    grouped("StatefulSet", "apps", "statefulsets", true),
    grouped("DaemonSet", "apps", "daemonsets", true),
    grouped("Job", "batch", "jobs", true),
    grouped("CronJob", "batch", "cronjobs", true),
    grouped("EndpointSlice", "discovery.k8s.io", "endpointslices", true),
    grouped(
        "NetworkPolicy",
        "networking.k8s.io",
        "networkpolicies",
        true,
    ),
    grouped(
        "PodDisruptionBudget",
        "policy",
        "poddisruptionbudgets",
        true,
    ),
    grouped("Role", "rbac.authorization.k8s.io", "roles", true),
    grouped(
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "rolebindings",
        true,
    ),
    grouped(
        "ClusterRole",
        "rbac.authorization.k8s.io",
        "clusterroles",
        false,
    ),
    grouped(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        false,
    ),
    grouped(
        "ValidatingAdmissionPolicy",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        false,
    ),
    grouped(
        "ValidatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        false,
    ),
    // The network-policy-api's cluster-scoped policy (the successor of AdminNetworkPolicy),
    // served where the CRD is installed; `Cluster::serves` tells.
    Kind {
        kind: "ClusterNetworkPolicy",
        group: "policy.networking.k8s.io",
        version: "v1beta1",
        plural: "clusternetworkpolicies",
        namespaced: false,
    },
];

/// The kind named `name` (exact, as in `kind:` fields).
pub fn lookup(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == name)
}

/// The names of every known kind, for error hints.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_layout() {
        let deploy = lookup("Deployment").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(
            deploy.collection_path(Some("shop")),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        assert_eq!(
            lookup("Node").unwrap().collection_path(Some("x")),
            "/api/v1/nodes"
        );
    }
}
