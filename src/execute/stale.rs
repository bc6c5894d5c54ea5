//! Is an approved plan still true? Before a step writes anything, each of its writes is checked
//! against the object as it is now: the uid it was planned for, and every field it reads and
//! writes still at the value the plan observed (or already at the planned value, when a resumed
//! step is applied again). A resourceVersion alone would call every plan stale, since status
//! updates bump it constantly; the fields the step depends on are what matter.

use serde_json::Value;

use crate::action::common::RUN_ID_LABEL;
use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Cluster, ClusterError, merge, read};
use crate::plan::Op;

/// Everything that moved under one step's writes, one line each; empty when the plan holds.
pub async fn changes_since_plan(
    ops: &[Op],
    run_id: &str,
    cluster: &dyn Cluster,
) -> Result<Vec<String>, ClusterError> {
    // An object an earlier write of this same step changes (the account a rotation deletes,
    // then creates again) is judged by that first write only: its later state is the step's
    // own doing, not a change since the plan.
    let mut touched = std::collections::HashSet::new();
    let firsts: Vec<(&Op, ObjectRef)> = ops
        .iter()
        .filter_map(|op| {
            let target = op.target().filter(|_| op.is_write())?;
            touched.insert(target.clone()).then_some((op, target))
        })
        .collect();
    // Read together (a list per namespace where the step names many objects there); the
    // changes still reported in the order of the writes.
    let refs: Vec<ObjectRef> = firsts.iter().map(|(_, target)| target.clone()).collect();
    let mut current = read::read_many(cluster, &refs).await?;
    let mut changes = Vec::new();
    for (op, target) in &firsts {
        let now = current.remove(target).flatten();
        let moved = drift(op, target, now.as_ref(), run_id);
        if moved.is_empty() {
            continue;
        }
        changes.extend(with_owners(op, target, moved, cluster).await);
    }
    Ok(changes)
}

/// How the collections a step's decision read moved since the plan (a new allowing policy, a
/// new binding), one line each; the step's own targets are judged by [`changes_since_plan`].
pub async fn collections_since_plan(
    collections: &[crate::plan::depends::Collection],
    ops: &[Op],
    run_id: &str,
    cluster: &dyn Cluster,
) -> Result<Vec<String>, ClusterError> {
    let written: std::collections::HashSet<ObjectRef> = written_by(ops).collect();
    let mut lines = Vec::new();
    for collection in collections {
        let Some(kind) = crate::cluster::kinds::lookup(&collection.kind) else {
            continue;
        };
        let now = cluster
            .list(kind, collection.namespace.as_deref(), &collection.selector)
            .await?;
        lines.extend(crate::plan::depends::changes(
            collection, &now, run_id, &written,
        ));
    }
    Ok(lines)
}

/// The objects `ops` write.
fn written_by(ops: &[Op]) -> impl Iterator<Item = ObjectRef> + '_ {
    ops.iter().filter(|op| op.is_write()).filter_map(Op::target)
}

/// Before a run's first write: every step's collections read again, each judged without the
/// objects that step or an earlier one writes (the plan's own doing). A plan approved minutes
/// ago, or saved yesterday, is refused here when a policy or a binding its decisions read has
/// moved, before anything is written. One line per change, naming the step that read it.
pub async fn collections_before_first_write(
    plan: &crate::plan::RunPlan,
    run_id: &str,
    cluster: &dyn Cluster,
) -> Result<Vec<String>, ClusterError> {
    use crate::plan::PlannedState;
    let mut written = std::collections::HashSet::new();
    let mut listed: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut lines = Vec::new();
    for step in &plan.steps {
        let PlannedState::Planned {
            plan: step_plan,
            depends_on,
            ..
        } = &step.state
        else {
            continue;
        };
        written.extend(written_by(&step_plan.ops));
        for collection in depends_on {
            let Some(kind) = crate::cluster::kinds::lookup(&collection.kind) else {
                continue;
            };
            let key = serde_json::to_string(&(
                &collection.kind,
                &collection.namespace,
                &collection.selector,
            ))
            .unwrap_or_default();
            if !listed.contains_key(&key) {
                let now = cluster
                    .list(kind, collection.namespace.as_deref(), &collection.selector)
                    .await?;
                listed.insert(key.clone(), now);
            }
            for line in crate::plan::depends::changes(collection, &listed[&key], run_id, &written) {
                lines.push(format!("{line} (step {} was planned from it)", step.id));
            }
        }
    }
    lines.dedup();
    Ok(lines)
}

/// Before a run's first write: each write whose object no earlier step writes, checked against
/// the object as it is now (the others can only be judged when their turn comes). One line per
/// change, naming its step.
pub async fn objects_before_first_write(
    plan: &crate::plan::RunPlan,
    run_id: &str,
    cluster: &dyn Cluster,
) -> Result<Vec<String>, ClusterError> {
    let mut written = std::collections::HashSet::new();
    let mut lines = Vec::new();
    for step in &plan.steps {
        let Some(step_plan) = step.plan() else {
            continue;
        };
        let untouched: Vec<Op> = step_plan
            .ops
            .iter()
            .filter(|op| op.is_write())
            .filter(|op| op.target().is_some_and(|t| !written.contains(&t)))
            .cloned()
            .collect();
        for line in changes_since_plan(&untouched, run_id, cluster).await? {
            lines.push(format!("{line} (step {})", step.id));
        }
        written.extend(written_by(&step_plan.ops));
    }
    Ok(lines)
}

/// Names who wrote each changed field now (another controller may be fighting over it: a
/// GitOps agent re-applying its manifest would undo the step again), when the cluster says.
async fn with_owners(
    op: &Op,
    target: &ObjectRef,
    moved: Vec<String>,
    cluster: &dyn Cluster,
) -> Vec<String> {
    let Op::Patch { changes, .. } = op else {
        return moved;
    };
    let Ok(Some(managed)) = cluster.managed_fields(target).await else {
        return moved;
    };
    moved
        .into_iter()
        .map(|line| {
            let owner = changes
                .iter()
                .find(|c| line.contains(&format!(": {} is ", c.display_path())))
                .and_then(|c| object::field_owner(&managed, &c.path));
            match owner {
                Some((manager, operation)) => {
                    let how = if operation == "Apply" {
                        "server-side apply"
                    } else {
                        "an update"
                    };
                    format!("{line}; written by field manager `{manager}` ({how})")
                }
                None => line,
            }
        })
        .collect()
}

/// What moved under one operation, judged on the object as read now (pure, for tests).
pub fn drift(op: &Op, target: &ObjectRef, current: Option<&Value>, run_id: &str) -> Vec<String> {
    match op {
        Op::Patch { uid, changes, .. } => {
            let Some(current) = current else {
                return vec![format!("{target} was deleted since the plan")];
            };
            let found_uid = object::uid(current).unwrap_or_default();
            if !uid.is_empty() && found_uid != uid {
                return vec![format!(
                    "{target} was replaced since the plan (uid {uid} is now {found_uid})"
                )];
            }
            changes
                .iter()
                .filter_map(|change| {
                    let now = merge::get(current, &change.path);
                    let as_planned = now == change.before.as_ref() || now == change.after.as_ref();
                    (!as_planned).then(|| {
                        format!(
                            "{target}: {} is {} (the plan saw {})",
                            change.display_path(),
                            show(now),
                            show(change.before.as_ref())
                        )
                    })
                })
                .collect()
        }
        Op::Create { .. } => match current {
            Some(existing)
                if object::labels(existing)
                    .get(RUN_ID_LABEL)
                    .map(String::as_str)
                    != Some(run_id) =>
            {
                vec![format!(
                    "{target} exists now and was not created by this run"
                )]
            }
            _ => Vec::new(),
        },
        // A delete or an eviction of an object that is gone (or replaced) is a no-op guarded by
        // its uid precondition: nothing the responder approved is lost.
        _ => Vec::new(),
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or("(absent)".into(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FieldChange;
    use serde_json::json;

    fn label_patch() -> (Op, ObjectRef) {
        let target = ObjectRef::new("Pod", Some("shop"), "web");
        let op = Op::Patch {
            target: target.clone(),
            uid: "u1".into(),
            changes: vec![FieldChange {
                path: vec!["metadata".into(), "labels".into(), "app".into()],
                before: Some(json!("web")),
                after: Some(json!("quarantined")),
            }],
        };
        (op, target)
    }

    #[test]
    fn a_patch_holds_at_its_observed_or_planned_value() {
        let (op, target) = label_patch();
        let before =
            json!({"metadata": {"uid": "u1", "labels": {"app": "web"}, "resourceVersion": "9"}});
        let after = json!({"metadata": {"uid": "u1", "labels": {"app": "quarantined"}}});
        assert!(drift(&op, &target, Some(&before), "r").is_empty());
        assert!(drift(&op, &target, Some(&after), "r").is_empty());
    }

    #[test]
    fn a_moved_field_a_new_uid_or_a_deletion_is_stale_and_named() {
        let (op, target) = label_patch();
        let moved = json!({"metadata": {"uid": "u1", "labels": {"app": "api"}}});
        assert_eq!(
            drift(&op, &target, Some(&moved), "r"),
            vec!["Pod shop/web: metadata.labels.app is \"api\" (the plan saw \"web\")".to_string()]
        );
        let replaced = json!({"metadata": {"uid": "u2", "labels": {"app": "web"}}});
        assert!(drift(&op, &target, Some(&replaced), "r")[0].contains("replaced"));
        assert!(drift(&op, &target, None, "r")[0].contains("deleted"));
    }

    #[test]
    fn a_create_is_stale_only_when_someone_else_took_the_name() {
        let target = ObjectRef::new("NetworkPolicy", Some("shop"), "deny");
        let op = Op::Create {
            object: json!({"kind": "NetworkPolicy"}),
        };
        let ours = json!({"metadata": {"labels": {RUN_ID_LABEL: "r"}}});
        let theirs = json!({"metadata": {"labels": {}}});
        assert!(drift(&op, &target, None, "r").is_empty());
        assert!(drift(&op, &target, Some(&ours), "r").is_empty());
        assert_eq!(drift(&op, &target, Some(&theirs), "r").len(), 1);
    }
}
