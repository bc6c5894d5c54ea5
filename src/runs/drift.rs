//! Containment undone by hand: what a run put in place (a field it set, an object it created)
//! compared with the object as it is now. A node uncordoned with `kubectl uncordon` while the
//! run's quarantine (and its admission guard) is still in force is the case that bites: the
//! scheduler goes on binding pods there and being refused, with nothing pointing at the run.

use serde_json::Value;

use crate::cluster::ObjectRef;
use crate::cluster::merge;
use crate::plan::op::Op;

/// The object an operation's effect is seen on, when it has one to check.
pub fn checked_object(op: &Op) -> Option<ObjectRef> {
    match op {
        Op::Patch { target, .. } => Some(target.clone()),
        Op::Create { object } => ObjectRef::of(object),
        _ => None,
    }
}

/// How the object as it is now (`None`: gone) differs from what the operation put in place.
pub fn of_op(op: &Op, current: Option<&Value>) -> Vec<String> {
    match op {
        Op::Patch {
            target, changes, ..
        } => {
            let Some(current) = current else {
                return vec![format!("{target} is gone")];
            };
            changes
                .iter()
                .filter(|c| merge::get(current, &c.path) != c.after.as_ref())
                .map(|c| {
                    format!(
                        "{target}: {} is {}, the run set {} (changed outside contain)",
                        c.display_path(),
                        shown(merge::get(current, &c.path)),
                        shown(c.after.as_ref())
                    )
                })
                .collect()
        }
        Op::Create { object } if current.is_none() => ObjectRef::of(object)
            .map(|r| {
                vec![format!(
                    "{r}, which the run created, was deleted outside contain"
                )]
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "unset".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::op::FieldChange;
    use serde_json::json;

    fn cordon() -> Op {
        Op::Patch {
            target: ObjectRef::new("Node", None, "node-a"),
            uid: "u1".into(),
            changes: vec![FieldChange {
                path: vec!["spec".into(), "unschedulable".into()],
                before: None,
                after: Some(json!(true)),
            }],
        }
    }

    #[test]
    fn an_uncordoned_node_is_named_and_a_cordoned_one_is_not() {
        let still = json!({"spec": {"unschedulable": true}});
        assert!(of_op(&cordon(), Some(&still)).is_empty());
        let uncordoned = json!({"spec": {}});
        let drift = of_op(&cordon(), Some(&uncordoned));
        assert_eq!(drift.len(), 1);
        assert!(
            drift[0].contains("Node node-a: spec.unschedulable is unset, the run set true"),
            "{drift:?}"
        );
        assert_eq!(of_op(&cordon(), None), ["Node node-a is gone"]);
    }

    #[test]
    fn a_created_object_deleted_by_hand_is_named() {
        let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "contain-isolate", "namespace": "shop"}});
        let op = Op::Create {
            object: policy.clone(),
        };
        assert!(of_op(&op, Some(&policy)).is_empty());
        let drift = of_op(&op, None);
        assert!(drift[0].contains("deleted outside contain"), "{drift:?}");
    }
}
