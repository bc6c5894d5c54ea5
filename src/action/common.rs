//! Helpers shared by actions: observing targets, building guarded patches, checking them.

use serde_json::Value;

use super::{ActionError, Observed, ResolvedTarget, Verification};
use crate::cluster::merge;
use crate::cluster::object::{self, ObjectRef};
use crate::plan::{FieldChange, Op};

/// Label put on every object contain creates, and on objects it relabels, naming the run.
pub const RUN_ID_LABEL: &str = "contain.dev/run-id";
/// Label naming the step that created an object.
pub const STEP_LABEL: &str = "contain.dev/step";

/// The objects a target names: one by name, or every match of the selector.
pub fn observe(target: &ResolvedTarget, seen: &Observed) -> Result<Vec<Value>, ActionError> {
    if let Some(name) = &target.name {
        let r = ObjectRef::new(target.kind.kind, target.namespace.as_deref(), name);
        return match seen.get(&r)? {
            Some(object) => Ok(vec![object.clone()]),
            None => Err(ActionError::TargetNotFound(r.to_string())),
        };
    }
    let selector = target.selector.clone().unwrap_or_default();
    let objects: Vec<Value> = seen
        .list(target.kind.kind, target.namespace.as_deref(), &selector)?
        .iter()
        .filter(|o| target.admits(o))
        .cloned()
        .collect();
    if objects.is_empty() {
        return Err(ActionError::NoMatch(target.to_string()));
    }
    Ok(objects)
}

/// A field path and the value wanted there (`None`: absent).
pub type Wanted = (Vec<String>, Option<Value>);

/// The one object a step's target names by name, as it is now. `action` names the action in
/// the error when the target is a selector instead.
pub fn observe_named(
    input: &super::StepInput,
    action: &str,
    seen: &Observed,
) -> Result<Value, ActionError> {
    let target = input.required_target()?;
    if target.name.is_none() {
        return Err(ActionError::InvalidParams(super::one_object_message(
            action,
        )));
    }
    Ok(observe(target, seen)?.remove(0))
}

/// The changes that set each `(path, value)` on `object`, skipping values already in place.
pub fn changes_for(object: &Value, wanted: &[Wanted]) -> Vec<FieldChange> {
    wanted
        .iter()
        .filter_map(|(path, after)| {
            let before = merge::get(object, path).cloned();
            (before != *after).then(|| FieldChange {
                path: path.clone(),
                before,
                after: after.clone(),
            })
        })
        .collect()
}

/// A patch and its inverse for `object`, or `None` when nothing changes.
pub fn patch_pair(object: &Value, changes: Vec<FieldChange>) -> Option<(Op, Op)> {
    if changes.is_empty() {
        return None;
    }
    let target = ObjectRef::of(object)?;
    let uid = object::uid(object).unwrap_or_default().to_string();
    let inverse = changes.iter().rev().map(FieldChange::inverse).collect();
    Some((
        Op::Patch {
            target: target.clone(),
            uid: uid.clone(),
            changes,
        },
        Op::Patch {
            target,
            uid,
            changes: inverse,
        },
    ))
}

/// Whether the object a delete was planned for (`uid`) is going away: `Some` with how (`None`:
/// gone; replaced by a new object of the same name; terminating), `None` while it is still
/// there and not terminating.
pub fn deletion(
    seen: &Observed,
    target: &ObjectRef,
    uid: Option<&str>,
) -> Result<Option<Option<&'static str>>, crate::cluster::observe::Missing> {
    Ok(match seen.get(target)? {
        None => Some(None),
        Some(now) if object::uid(now) != uid => {
            Some(Some("replaced by a new object of the same name"))
        }
        Some(now) if now.pointer("/metadata/deletionTimestamp").is_some() => {
            Some(Some("terminating"))
        }
        Some(_) => None,
    })
}

/// Checks that every patch of a plan is in place on the cluster now.
pub fn verify_patches(ops: &[Op], seen: &Observed) -> Result<Verification, ActionError> {
    let patches: Vec<(&ObjectRef, &String, &Vec<crate::plan::FieldChange>)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Patch {
                target,
                uid,
                changes,
            } => Some((target, uid, changes)),
            _ => None,
        })
        .collect();
    // Each patched object is read again, together (a list per namespace where there are many);
    // the checks in the plan's order.
    let refs: Vec<ObjectRef> = patches.iter().map(|(t, _, _)| (*t).clone()).collect();
    let current = seen.get_all(&refs)?;
    let mut verification = Verification::default();
    for ((target, uid, changes), now) in patches.into_iter().zip(current) {
        let now = now.cloned();
        let Some(current) = now.filter(|o| object::uid(o) == Some(uid.as_str())) else {
            verification.check(
                format!("{target} still exists"),
                false,
                Some("the object is gone or was replaced".into()),
            );
            continue;
        };
        for change in changes {
            let now = merge::get(&current, &change.path).cloned();
            let ok = now == change.after;
            verification.check(
                format!(
                    "{target} {} is {}",
                    change.display_path(),
                    show(change.after.as_ref())
                ),
                ok,
                (!ok).then(|| format!("found {}", show(now.as_ref()))),
            );
        }
    }
    Ok(verification)
}

fn show(value: Option<&Value>) -> String {
    value.map_or("(none)".to_string(), Value::to_string)
}

/// `metadata.<field>.<key>` as path segments.
pub fn meta_path(field: &str, key: &str) -> Vec<String> {
    vec!["metadata".to_string(), field.to_string(), key.to_string()]
}

/// The names of the objects, for outputs.
pub fn names(objects: &[Value]) -> Value {
    Value::Array(
        objects
            .iter()
            .filter_map(object::name)
            .map(|n| Value::String(n.to_string()))
            .collect(),
    )
}

/// Permissions for reads in the namespace of a step's target: `(verb, kind)` pairs.
pub fn reads_in_target_namespace(
    input: &super::StepInput,
    reads: &[(&str, &str)],
) -> Vec<crate::cluster::Access> {
    let namespace = input.target.as_ref().and_then(|t| t.namespace.as_deref());
    reads
        .iter()
        .filter_map(|(verb, kind)| {
            Some(crate::cluster::Access::on(
                verb,
                crate::cluster::kinds::lookup(kind)?,
                namespace,
                None,
            ))
        })
        .collect()
}
