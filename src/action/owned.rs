//! The pods of a workload, by ownership: each pod whose controller reference leads, by uid, to
//! the workload (through its ReplicaSets for a Deployment, its Jobs for a CronJob). A label
//! selector is never enough: another workload's pods may match it, and a pod of this one may
//! have been relabelled out of it.

use serde_json::Value;

use super::{Missing, Observed};
use crate::cluster::Selector;
use crate::cluster::object::{self, ObjectRef};

/// A pod of the workload and the owners that lead to it, from the workload down.
#[derive(Clone, Debug)]
pub struct OwnedPod {
    pub pod: Value,
    pub chain: Vec<ObjectRef>,
}

impl OwnedPod {
    /// `Pod shop/web-1 ← ReplicaSet shop/web-6f ← Deployment shop/web`.
    pub fn describe(&self) -> String {
        let mut links = vec![
            ObjectRef::of(&self.pod)
                .map(|r| r.to_string())
                .unwrap_or_default(),
        ];
        links.extend(self.chain.iter().rev().map(ObjectRef::to_string));
        links.join(" ← ")
    }
}

/// The kinds whose pods are found by ownership, and the kind between them and their pods.
pub fn intermediate(kind: &str) -> Option<Option<&'static str>> {
    match kind {
        "Deployment" => Some(Some("ReplicaSet")),
        "CronJob" => Some(Some("Job")),
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => Some(None),
        _ => None,
    }
}

/// The uid of the object's controller (its ownerReference with `controller: true`).
pub fn controller_uid(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// Every pod `workload` controls, directly or through the kind between.
pub fn pods_of(seen: &Observed, workload: &Value) -> Result<Vec<OwnedPod>, Missing> {
    let every = Selector::default();
    let namespace = object::namespace(workload);
    let workload_ref = ObjectRef::of(workload).expect("observed objects have names");
    let uid = object::uid(workload).unwrap_or_default();
    let between = intermediate(&workload_ref.kind).flatten();
    let pods = seen.list("Pod", namespace, &every);
    let middles = between.map(|kind| seen.list(kind, namespace, &every));
    let (pods, middles) = match (pods, middles) {
        (Ok(pods), None) => (pods, Vec::new()),
        (Ok(pods), Some(Ok(middles))) => (pods, middles.to_vec()),
        (pods, middles) => {
            let mut missing = Vec::new();
            for result in [pods.err(), middles.and_then(Result::err)] {
                missing.extend(result.into_iter().flat_map(|m| m.0));
            }
            return Err(Missing(missing));
        }
    };
    // Each owner uid that leads to the workload, with its chain.
    let mut owners: Vec<(String, Vec<ObjectRef>)> =
        vec![(uid.to_string(), vec![workload_ref.clone()])];
    for middle in &middles {
        if controller_uid(middle) == Some(uid)
            && let (Some(middle_uid), Some(middle_ref)) =
                (object::uid(middle), ObjectRef::of(middle))
        {
            owners.push((
                middle_uid.to_string(),
                vec![workload_ref.clone(), middle_ref],
            ));
        }
    }
    if between.is_some() {
        // A Deployment's pods are owned by its ReplicaSets, never by it directly.
        owners.remove(0);
    }
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let owner = controller_uid(pod)?;
            let (_, chain) = owners.iter().find(|(uid, _)| uid == owner)?;
            Some(OwnedPod {
                pod: pod.clone(),
                chain: chain.clone(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture;
    use super::*;
    use crate::cluster::observe::{Answer, Read};

    fn owned(kind: &str, name: &str, uid: &str, labels: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": name, "namespace": "shop", "uid": format!("{name}-uid"),
            "labels": labels,
            "ownerReferences": [{"kind": kind, "name": "x", "uid": uid, "controller": true}]}})
    }

    #[test]
    fn a_bystander_matching_the_selector_is_not_a_pod_of_the_workload() {
        let miner = json!({"kind": "DaemonSet", "metadata": {"name": "miner", "namespace": "shop", "uid": "ds-1"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}}});
        let pods = vec![
            owned("DaemonSet", "miner-a", "ds-1", json!({"app": "agent"})),
            owned("DaemonSet", "agent-a", "ds-2", json!({"app": "agent"})),
            // Relabelled out of the selector, still the miner's.
            owned("DaemonSet", "miner-b", "ds-1", json!({"app": "hidden"})),
            fixture::pod("shop", "loose", json!({"app": "agent"}), None),
        ];
        let mut seen = Observed::new(false);
        seen.record(
            Read::List {
                kind: "Pod",
                namespace: Some("shop".into()),
                selector: Selector::default(),
            },
            Answer::Objects(pods),
        );
        let found: Vec<String> = pods_of(&seen, &miner)
            .unwrap()
            .iter()
            .map(OwnedPod::describe)
            .collect();
        assert_eq!(
            found,
            [
                "Pod shop/miner-a ← DaemonSet shop/miner",
                "Pod shop/miner-b ← DaemonSet shop/miner"
            ]
        );
    }

    #[test]
    fn a_deployment_s_pods_are_found_through_its_replica_sets_and_a_cron_job_s_through_its_jobs() {
        let web = json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}});
        let rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web-6f", "namespace": "shop", "uid": "rs-1",
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-1", "controller": true}]}});
        let other_rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web-copy", "namespace": "shop", "uid": "rs-2"}});
        let mut seen = Observed::new(false);
        let every = Selector::default();
        seen.record(
            Read::List {
                kind: "ReplicaSet",
                namespace: Some("shop".into()),
                selector: every.clone(),
            },
            Answer::Objects(vec![rs, other_rs]),
        );
        // Both lists are asked for in one round.
        assert_eq!(pods_of(&Observed::new(false), &web).unwrap_err().0.len(), 2);
        seen.record(
            Read::List {
                kind: "Pod",
                namespace: Some("shop".into()),
                selector: every,
            },
            Answer::Objects(vec![
                owned("ReplicaSet", "web-6f-a", "rs-1", json!({})),
                owned("ReplicaSet", "web-copy-a", "rs-2", json!({})),
                owned("Deployment", "direct", "d-1", json!({})),
            ]),
        );
        let found: Vec<String> = pods_of(&seen, &web)
            .unwrap()
            .iter()
            .map(OwnedPod::describe)
            .collect();
        assert_eq!(
            found,
            ["Pod shop/web-6f-a ← ReplicaSet shop/web-6f ← Deployment shop/web"]
        );
        assert_eq!(intermediate("CronJob"), Some(Some("Job")));
    }
}
