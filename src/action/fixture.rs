//! Plain-data fixtures for the actions' unit tests: a cluster of `json!` objects held in
//! memory, a step's input, and the plan an action makes over them, rendered as the responder
//! reads it. No API server, no I/O.

use serde_json::{Value, json};

use super::{Action, ActionError, ResolvedTarget, StepInput};
use crate::cluster::Selector;
use crate::cluster::kinds;
use crate::cluster::sim::SimCluster;
use crate::plan::StepPlan;

/// A cluster of exactly these objects, besides its `kube-system` namespace.
pub fn cluster(objects: Vec<Value>) -> SimCluster {
    let system = json!({"kind": "Namespace", "metadata": {"name": "kube-system"}});
    SimCluster::with_objects("fixture", std::iter::once(system).chain(objects))
        .expect("fixture objects load")
}

/// A target naming one object.
pub fn named(kind: &str, namespace: Option<&str>, name: &str) -> ResolvedTarget {
    ResolvedTarget {
        kind: kinds::lookup(kind).expect("known kind"),
        namespace: namespace.map(str::to_string),
        name: Some(name.to_string()),
        selector: None,
        all_namespaces: false,
        image: None,
    }
}

/// A target picking by labels in one namespace.
pub fn selected(kind: &str, namespace: &str, labels: &[(&str, &str)]) -> ResolvedTarget {
    ResolvedTarget {
        name: None,
        selector: Some(Selector::labels(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )),
        ..named(kind, Some(namespace), "")
    }
}

/// The input of step `step` of run `run-1`.
pub fn input(step: &str, target: Option<ResolvedTarget>, with: Value) -> StepInput {
    StepInput {
        step_id: step.to_string(),
        run_id: "run-1".to_string(),
        target,
        with,
        canaries: Vec::new(),
    }
}

/// The plan `action` makes for `input` over `cluster`.
pub fn plan(
    action: &dyn Action,
    input: &StepInput,
    cluster: &SimCluster,
) -> Result<StepPlan, ActionError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(crate::cluster::observe::decide(cluster, |seen| {
            action.plan(input, seen)
        }))
}

/// What `action` finds when it verifies `plan` over `cluster`.
pub fn verify(
    action: &dyn Action,
    input: &StepInput,
    plan: &StepPlan,
    cluster: &SimCluster,
) -> Result<crate::outcome::Verification, ActionError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(crate::cluster::observe::decide(cluster, |seen| {
            action.verify(input, plan, seen)
        }))
}

/// The objects after `ops`, applied to `objects` as the API server would store them: creates
/// added, field changes set, deletes removed (evictions and reads change nothing here).
pub fn applied(objects: Vec<Value>, ops: &[crate::plan::Op]) -> Vec<Value> {
    use crate::cluster::merge;
    use crate::cluster::object::ObjectRef;
    use crate::plan::Op;
    let mut objects = objects;
    let find = |objects: &mut Vec<Value>, target: &ObjectRef| {
        objects
            .iter()
            .position(|o| ObjectRef::of(o).as_ref() == Some(target))
    };
    for op in ops {
        match op {
            Op::Create { object } => objects.push(object.clone()),
            Op::Patch {
                target, changes, ..
            } => {
                let at = find(&mut objects, target).expect("the patched object exists");
                for change in changes {
                    merge::set(&mut objects[at], &change.path, change.after.clone());
                }
            }
            Op::Delete { target, .. } => {
                if let Some(at) = find(&mut objects, target) {
                    objects.remove(at);
                }
            }
            _ => {}
        }
    }
    objects
}

/// The plan as `contain plan` shows it, undo operations included.
pub fn shown(plan: &StepPlan) -> String {
    crate::plan::display::render_step(plan, true)
}

/// A running pod with labels, owned by `owner` (`Kind/name`) when given.
pub fn pod(namespace: &str, name: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut pod = json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": "node-a", "serviceAccountName": "web",
                 "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"phase": "Running"},
    });
    if let Some((kind, owner)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": format!("uid-{owner}"),
            "controller": true,
        }]);
    }
    pod
}

/// A namespace.
pub fn namespace(name: &str) -> Value {
    json!({"kind": "Namespace", "metadata": {"name": name}})
}

/// A ReplicaSet `web-5d9` of the Deployment `web`, owning the `app: web` pods of `shop`.
pub fn replica_set() -> Value {
    json!({"kind": "ReplicaSet", "metadata": {"name": "web-5d9", "namespace": "shop", "uid": "uid-web-5d9",
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web", "controller": true}]},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}})
}

/// The Deployment `web` of `shop`, whose ReplicaSet is [`replica_set`].
pub fn deployment() -> Value {
    json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web"},
           "spec": {"selector": {"matchLabels": {"app": "web"}}}})
}

/// A Service `web` of `shop`, selecting `app: web`.
pub fn service() -> Value {
    json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"app": "web"}}})
}
