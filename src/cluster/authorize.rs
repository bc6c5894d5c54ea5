//! RBAC as the API server's authorizer evaluates it, over objects in memory: whether a user
//! with its groups may make a request, and which binding allows it. A cluster that cannot be
//! asked (a snapshot) answers SubjectAccessReviews with this; the API server answers them
//! itself everywhere else.
//!
//! The rules follow `k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go`: a verb, group
//! or resource matches literally or by `*`; a resource with a subresource matches
//! `resource/subresource` or `*/subresource`, never the bare resource; `resourceNames` narrow a
//! rule to those names; a RoleBinding grants only in its namespace, a ClusterRoleBinding
//! everywhere.

use serde_json::Value;

use super::{Access, AccessVerdict, UserInfo, object};

/// The RBAC objects of a cluster, as listed.
#[derive(Clone, Copy, Debug)]
pub struct Rbac<'a> {
    pub roles: &'a [Value],
    pub cluster_roles: &'a [Value],
    pub role_bindings: &'a [Value],
    pub cluster_role_bindings: &'a [Value],
}

impl Rbac<'_> {
    /// The verdict on each of `checks` for `user`.
    pub fn review(&self, user: &UserInfo, checks: &[Access]) -> Vec<AccessVerdict> {
        checks
            .iter()
            .map(|access| {
                let reason = self.allowed_by(user, access);
                AccessVerdict {
                    access: access.clone(),
                    allowed: reason.is_some(),
                    reason,
                }
            })
            .collect()
    }

    /// The binding that allows `access` to `user`, said as the API server says it.
    fn allowed_by(&self, user: &UserInfo, access: &Access) -> Option<String> {
        let cluster_wide = self.cluster_role_bindings.iter().map(|b| (b, None));
        let namespaced = self
            .role_bindings
            .iter()
            .filter(|b| {
                access.namespace.is_some() && object::namespace(b) == access.namespace.as_deref()
            })
            .map(|b| (b, object::namespace(b)));
        for (binding, namespace) in cluster_wide.chain(namespaced) {
            let Some(subject) = binding
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|s| applies_to(s, user, object::namespace(binding)))
            else {
                continue;
            };
            let role_kind = binding.pointer("/roleRef/kind").and_then(Value::as_str);
            let role_name = binding.pointer("/roleRef/name").and_then(Value::as_str);
            let role = match role_kind {
                Some("ClusterRole") => self
                    .cluster_roles
                    .iter()
                    .find(|r| object::name(r) == role_name),
                Some("Role") => self
                    .roles
                    .iter()
                    .find(|r| object::name(r) == role_name && object::namespace(r) == namespace),
                _ => None,
            };
            let grants = role
                .and_then(|r| r.get("rules"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|rule| rule_allows(rule, access));
            if grants {
                let binding_kind = if namespace.is_some() {
                    "RoleBinding"
                } else {
                    "ClusterRoleBinding"
                };
                let at = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
                return Some(format!(
                    "RBAC: allowed by {binding_kind} \"{at}{}\" of {} \"{}\" to {} \"{}\"",
                    object::name(binding).unwrap_or_default(),
                    role_kind.unwrap_or_default(),
                    role_name.unwrap_or_default(),
                    subject
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    subject
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ));
            }
        }
        None
    }
}

/// Whether a binding's subject is `user` (or one of its groups).
pub fn applies_to(subject: &Value, user: &UserInfo, binding_namespace: Option<&str>) -> bool {
    let field = |name: &str| {
        subject
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match field("kind") {
        "User" => field("name") == user.username,
        "Group" => user.groups.iter().any(|g| g == field("name")),
        "ServiceAccount" => {
            let namespace = Some(field("namespace"))
                .filter(|ns| !ns.is_empty())
                .or(binding_namespace)
                .unwrap_or_default();
            user.username == format!("system:serviceaccount:{namespace}:{}", field("name"))
        }
        _ => false,
    }
}

/// Whether one PolicyRule allows `access`.
pub fn rule_allows(rule: &Value, access: &Access) -> bool {
    let list = |name: &str| -> Vec<&str> {
        rule.get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    };
    let has = |name: &str, wanted: &str| list(name).iter().any(|v| *v == "*" || *v == wanted);
    let resource_matches = list("resources").iter().any(|r| {
        *r == "*"
            || (access.subresource.is_empty() && *r == access.resource)
            || (!access.subresource.is_empty()
                && (*r == format!("{}/{}", access.resource, access.subresource)
                    || *r == format!("*/{}", access.subresource)))
    });
    let names = list("resourceNames");
    let name_matches =
        names.is_empty() || access.name.as_deref().is_some_and(|n| names.contains(&n));
    has("verbs", &access.verb)
        && has("apiGroups", &access.group)
        && resource_matches
        && name_matches
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn access(verb: &str, resource: &str, namespace: Option<&str>) -> Access {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Access {
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.map(str::to_string),
            name: None,
        }
    }

    fn account(namespace: &str, name: &str) -> UserInfo {
        UserInfo::service_account(namespace, name)
    }

    #[test]
    fn a_rule_matches_like_the_api_server_s() {
        let rule = json!({"apiGroups": [""], "resources": ["pods", "*/log"], "verbs": ["get"]});
        assert!(rule_allows(&rule, &access("get", "pods", None)));
        assert!(rule_allows(&rule, &access("get", "pods/log", None)));
        assert!(!rule_allows(&rule, &access("get", "pods/exec", None)));
        assert!(!rule_allows(&rule, &access("list", "pods", None)));
        // A wildcard asked for is matched only by a wildcard granted.
        assert!(!rule_allows(&rule, &access("*", "pods", None)));
        let everything = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]});
        assert!(rule_allows(&everything, &access("*", "pods/exec", None)));
        let named = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["db"]});
        assert!(!rule_allows(&named, &access("get", "secrets", None)));
        let mut one = access("get", "secrets", None);
        one.name = Some("db".into());
        assert!(rule_allows(&named, &one));
    }

    #[test]
    fn an_account_is_granted_by_name_as_a_user_and_through_its_groups() {
        let role = json!({"kind": "ClusterRole", "metadata": {"name": "secrets"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]});
        let by_group = json!({"kind": "ClusterRoleBinding", "metadata": {"name": "all-shop"},
            "roleRef": {"kind": "ClusterRole", "name": "secrets"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:shop"}]});
        let as_user = json!({"kind": "RoleBinding", "metadata": {"name": "as-user", "namespace": "shop"},
            "roleRef": {"kind": "ClusterRole", "name": "secrets"},
            "subjects": [{"kind": "User", "name": "system:serviceaccount:shop:web"}]});
        let roles = [role];
        let user = account("shop", "web");
        let list_secrets = [
            access("list", "secrets", Some("shop")),
            access("list", "secrets", None),
        ];
        let only_user = Rbac {
            roles: &[],
            cluster_roles: &roles,
            role_bindings: std::slice::from_ref(&as_user),
            cluster_role_bindings: &[],
        };
        let verdicts = only_user.review(&user, &list_secrets);
        assert!(verdicts[0].allowed, "in its namespace: {verdicts:?}");
        assert!(
            !verdicts[1].allowed,
            "a RoleBinding grants nothing cluster-wide"
        );
        let with_group = Rbac {
            cluster_role_bindings: std::slice::from_ref(&by_group),
            ..only_user
        };
        let verdicts = with_group.review(&user, &list_secrets);
        assert!(verdicts[1].allowed);
        assert_eq!(
            verdicts[1].reason.as_deref(),
            Some(
                "RBAC: allowed by ClusterRoleBinding \"all-shop\" of ClusterRole \"secrets\" to Group \"system:serviceaccounts:shop\""
            )
        );
        // Another namespace's accounts are not in that group.
        assert!(!with_group.review(&account("other", "web"), &list_secrets)[1].allowed);
    }
}
