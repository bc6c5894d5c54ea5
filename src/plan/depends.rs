//! The collections a step's decision read, kept with its plan: the policies of a namespace an
//! isolation was planned around, the bindings a revocation found, the Services a detach
//! reads. A plan decided from them is stale once they change (a new allowing policy, a new
//! binding), even though none of the objects it writes moved; the executor reads them again
//! before the step's first write and refuses the step when they differ.
//!
//! Only kinds whose content decides a plan are kept (policies, bindings, Services), never pods
//! or controllers, whose status moves all the time. Each member is kept as a digest of what a
//! decision reads of it (everything but server-managed metadata and status).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cluster::object::{self, ObjectRef};
use crate::cluster::observe::Observed;
use crate::cluster::{Selector, UserInfo};

/// The label every object a run creates carries (`contain.dev/run-id`).
const RUN_ID_LABEL: &str = "contain.dev/run-id";

/// The kinds whose collections a plan depends on.
pub const DECIDING_KINDS: &[&str] = &[
    "NetworkPolicy",
    "ClusterNetworkPolicy",
    "RoleBinding",
    "ClusterRoleBinding",
    "Service",
];

/// Past this many members a collection is kept as one digest (a cluster's every RoleBinding):
/// a change is then reported for the collection, not per member.
const MEMBERS_KEPT: usize = 1000;

/// The key of a collection kept as one digest.
const WHOLE: &str = "*";

/// One collection as the decision saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "selector_is_empty")]
    pub selector: Selector,
    /// For bindings read to decide about one identity: only the members that grant it
    /// something (by name, as a User, through a group) are kept, so a change to another
    /// team's binding elsewhere in the cluster is no change to this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaching: Option<UserInfo>,
    /// Each member's `namespace/name` and the digest of its content.
    pub members: BTreeMap<String, String>,
}

fn selector_is_empty(selector: &Selector) -> bool {
    selector.is_empty()
}

/// The bindings, of the deciding kinds.
const BINDINGS: &[&str] = &["RoleBinding", "ClusterRoleBinding"];

/// The collections of the deciding kinds `seen` holds, without what run `run_id` created
/// (its own objects are the plan's doing). `identity`: the one the step decides about (a
/// ServiceAccount target), whose bindings alone count.
pub fn collections(seen: &Observed, run_id: &str, identity: Option<&UserInfo>) -> Vec<Collection> {
    seen.lists()
        .filter(|(kind, ..)| DECIDING_KINDS.contains(kind))
        .map(|(kind, namespace, selector, objects)| {
            let reaching = identity.filter(|_| BINDINGS.contains(&kind)).cloned();
            Collection {
                kind: kind.to_string(),
                namespace: namespace.map(str::to_string),
                selector: selector.clone(),
                members: members(objects, run_id, reaching.as_ref()),
                reaching,
            }
        })
        .collect()
}

/// Whether a binding grants `identity` anything.
fn reaches(binding: &Value, identity: &UserInfo) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| crate::cluster::authorize::applies_to(s, identity, object::namespace(binding)))
}

fn members(
    objects: &[Value],
    run_id: &str,
    reaching: Option<&UserInfo>,
) -> BTreeMap<String, String> {
    let mut members: BTreeMap<String, String> = objects
        .iter()
        .filter(|o| object::labels(o).get(RUN_ID_LABEL).map(String::as_str) != Some(run_id))
        .filter(|o| reaching.is_none_or(|identity| reaches(o, identity)))
        .map(|o| (key(o), digest(o)))
        .collect();
    if members.len() > MEMBERS_KEPT {
        let whole = hex::encode(Sha256::digest(
            serde_json::to_vec(&members).unwrap_or_default(),
        ));
        members = BTreeMap::from([(WHOLE.to_string(), whole)]);
    }
    members
}

fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object::namespace(object).unwrap_or_default(),
        object::name(object).unwrap_or_default()
    )
}

/// What a decision reads of an object: everything but server-managed metadata and status.
fn digest(object: &Value) -> String {
    let mut content = object.clone();
    if let Some(map) = content.as_object_mut() {
        map.remove("status");
        map.remove("metadata");
        map.insert(
            "labels".into(),
            serde_json::to_value(object::labels(object)).unwrap_or_default(),
        );
    }
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// How `collection` differs from `now` (its members listed again), one line per member; the
/// objects in `written` (the step's own targets, checked op by op) do not count.
pub fn changes(
    collection: &Collection,
    now: &[Value],
    run_id: &str,
    written: &HashSet<ObjectRef>,
) -> Vec<String> {
    let kind = &collection.kind;
    let not_written = |member: &String| {
        let (namespace, name) = member.split_once('/').unwrap_or(("", member));
        let namespace = (!namespace.is_empty()).then_some(namespace);
        !written.contains(&ObjectRef::new(kind, namespace, name))
    };
    let now: Vec<Value> = now
        .iter()
        .filter(|o| ObjectRef::of(o).is_none_or(|r| !written.contains(&r)))
        .cloned()
        .collect();
    let current = members(&now, run_id, collection.reaching.as_ref());
    let before: BTreeMap<&String, &String> = collection
        .members
        .iter()
        .filter(|(member, _)| not_written(member))
        .collect();
    let where_ = match &collection.namespace {
        Some(ns) => format!(" in namespace {ns}"),
        None => String::new(),
    };
    if before.contains_key(&WHOLE.to_string()) || current.contains_key(WHOLE) {
        let same = before.get(&WHOLE.to_string()).copied() == current.get(WHOLE);
        return if same {
            Vec::new()
        } else {
            vec![format!(
                "the {kind}s{where_} changed since the plan (its decisions read them)"
            )]
        };
    }
    let mut lines = Vec::new();
    for (member, digest) in &current {
        let shown = member.trim_start_matches('/');
        match before.get(member) {
            None => lines.push(format!(
                "{kind} {shown} appeared since the plan, which was decided without it"
            )),
            Some(was) if *was != digest => {
                lines.push(format!("{kind} {shown} changed since the plan"))
            }
            Some(_) => {}
        }
    }
    for member in before.keys() {
        if !current.contains_key(*member) {
            lines.push(format!(
                "{kind} {} is gone since the plan, which was decided with it",
                member.trim_start_matches('/')
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::observe::{Answer, Read};

    fn policy(name: &str, spec: Value) -> Value {
        json!({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1"}, "spec": spec})
    }

    fn planned(objects: Vec<Value>) -> Collection {
        let mut seen = Observed::new(false);
        seen.record(
            Read::List {
                kind: "NetworkPolicy",
                namespace: Some("shop".into()),
                selector: Selector::default(),
            },
            Answer::Objects(objects),
        );
        seen.record(
            Read::List {
                kind: "Pod",
                namespace: Some("shop".into()),
                selector: Selector::default(),
            },
            Answer::Objects(Vec::new()),
        );
        let found = collections(&seen, "run-1", None);
        assert_eq!(found.len(), 1, "pods are not kept: {found:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn a_new_changed_or_deleted_member_is_named_and_a_status_or_version_bump_is_not() {
        let before = planned(vec![
            policy("allow-web", json!({"podSelector": {}})),
            policy("deny", json!({"podSelector": {}})),
        ]);
        let none = HashSet::new();
        let mut bumped = policy("allow-web", json!({"podSelector": {}}));
        bumped["metadata"]["resourceVersion"] = json!("7");
        let same = [bumped, policy("deny", json!({"podSelector": {}}))];
        assert!(changes(&before, &same, "run-1", &none).is_empty());
        let now = [
            policy(
                "allow-web",
                json!({"podSelector": {"matchLabels": {"a": "b"}}}),
            ),
            policy("allow-all", json!({"podSelector": {}, "ingress": [{}]})),
        ];
        assert_eq!(
            changes(&before, &now, "run-1", &none),
            [
                "NetworkPolicy shop/allow-all appeared since the plan, which was decided without it",
                "NetworkPolicy shop/allow-web changed since the plan",
                "NetworkPolicy shop/deny is gone since the plan, which was decided with it",
            ]
        );
        // The run's own policy, and a policy the step itself patches, are judged elsewhere.
        let mut own = policy("contain-isolate-x", json!({}));
        own["metadata"]["labels"] = json!({RUN_ID_LABEL: "run-1"});
        let written = HashSet::from([ObjectRef::new("NetworkPolicy", Some("shop"), "allow-web")]);
        let patched = [
            policy(
                "allow-web",
                json!({"podSelector": {"matchExpressions": []}}),
            ),
            policy("deny", json!({"podSelector": {}})),
            own,
        ];
        assert!(changes(&before, &patched, "run-1", &written).is_empty());
    }

    #[test]
    fn for_an_identity_only_the_bindings_that_reach_it_count() {
        let binding = |name: &str, subject: Value| {
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": name, "resourceVersion": "1"},
                   "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [subject]})
        };
        let identity = UserInfo::service_account("shop", "web");
        let mut seen = Observed::new(false);
        seen.record(
            Read::List {
                kind: "ClusterRoleBinding",
                namespace: None,
                selector: Selector::default(),
            },
            Answer::Objects(vec![binding(
                "web-view",
                json!({"kind": "ServiceAccount", "name": "web", "namespace": "shop"}),
            )]),
        );
        let before = collections(&seen, "run-1", Some(&identity)).remove(0);
        let none = HashSet::new();
        let mut now = vec![
            binding(
                "web-view",
                json!({"kind": "ServiceAccount", "name": "web", "namespace": "shop"}),
            ),
            // Another team's binding, elsewhere: no change to this plan.
            binding("ops-admin", json!({"kind": "User", "name": "alice"})),
        ];
        assert!(changes(&before, &now, "run-1", &none).is_empty());
        // A new grant through the account's namespace group is.
        now.push(binding(
            "shop-accounts",
            json!({"kind": "Group", "name": "system:serviceaccounts:shop"}),
        ));
        assert_eq!(
            changes(&before, &now, "run-1", &none),
            [
                "ClusterRoleBinding shop-accounts appeared since the plan, which was decided without it"
            ]
        );
    }
}
