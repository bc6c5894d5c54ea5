//! How NetworkPolicies select pods, as the API defines it: same namespace, `podSelector`
//! matching the pod's labels (the empty selector selects every pod). Policies add up: a pod
//! selected by several gets the union of their allow rules.

use serde_json::Value;

use crate::cluster::object::Selector;

/// Every NetworkPolicy of a namespace, from what was read.
pub fn of_namespace<'a>(
    seen: &'a crate::cluster::observe::Observed,
    namespace: &str,
) -> Result<&'a [Value], crate::cluster::observe::Missing> {
    seen.list("NetworkPolicy", Some(namespace), &Selector::default())
}

/// True when `policy` selects `pod`.
pub fn selects(policy: &Value, pod: &Value) -> bool {
    crate::netpol::selects(policy, pod)
}

/// True when the policy allows some traffic (a rule for one of its policy types). A policy
/// whose types have no rules only denies, and cannot weaken an isolation.
pub fn admits_traffic(policy: &Value) -> bool {
    let types = crate::netpol::policy_types(policy);
    let has_rules = |field: &str| {
        policy
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
    };
    (types.contains(&"Ingress") && has_rules("ingress"))
        || (types.contains(&"Egress") && has_rules("egress"))
}

/// The label keys a pod would have to lose for `policy` to stop selecting it, or `None` when no
/// removal can do it (an empty selector, or one built on `NotIn`/`DoesNotExist`).
pub fn escape_keys(policy: &Value) -> Option<Vec<String>> {
    let selector = policy
        .pointer("/spec/podSelector")
        .and_then(Selector::from_value)
        .unwrap_or_default();
    if selector.is_empty() {
        return None;
    }
    let mut keys: Vec<String> = selector.match_labels.keys().cloned().collect();
    for requirement in &selector.match_expressions {
        match requirement.operator.as_str() {
            "In" | "Exists" => keys.push(requirement.key.clone()),
            _ => {}
        }
    }
    // Removing any one key is enough; removing them all keeps the reasoning simple to show.
    (!keys.is_empty()).then_some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}}})
    }

    #[test]
    fn selection_follows_namespace_and_labels() {
        let all = json!({"metadata": {"namespace": "shop"}, "spec": {"podSelector": {}}});
        let web = json!({"metadata": {"namespace": "shop"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        let db = json!({"metadata": {"namespace": "shop"}, "spec": {"podSelector": {"matchLabels": {"app": "db"}}}});
        let elsewhere = json!({"metadata": {"namespace": "other"}, "spec": {"podSelector": {}}});
        assert!(selects(&all, &pod()) && selects(&web, &pod()));
        assert!(!selects(&db, &pod()) && !selects(&elsewhere, &pod()));
        assert_eq!(escape_keys(&web), Some(vec!["app".to_string()]));
        assert_eq!(escape_keys(&all), None);
    }

    #[test]
    fn deny_only_policies_admit_nothing() {
        let deny = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
        let allow = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": []}]}});
        let legacy = json!({"spec": {"podSelector": {}, "ingress": [{}]}});
        assert!(!admits_traffic(&deny));
        assert!(admits_traffic(&allow) && admits_traffic(&legacy));
    }
}
