//! What the API server checks on a create and on a patch, written once for the two places that
//! answer like it without one: [`super::sim::SimCluster`] (tabletop) and the overlay the planned
//! writes land in ([`super::overlay::Overlay`]). One copy, so the two cannot drift apart; the
//! differential test holds both to the real server.

use serde_json::{Value, json};

use super::kinds::{self, Kind};
use super::object::{self, ObjectRef};
use super::{ClusterError, Result};

/// An object the server would go on to create: its kind known, its name given (or generated),
/// its names and labels valid, and its namespace named when the kind is namespaced.
pub struct NewObject {
    pub object: Value,
    pub reference: ObjectRef,
    pub kind: &'static Kind,
}

/// Checks an object to create as the server does before it looks at what exists; an object
/// with only `metadata.generateName` is named with it and `suffix()`.
pub fn prepare_create(object: &Value, suffix: impl FnOnce() -> String) -> Result<NewObject> {
    let mut object = object.clone();
    let kind_name = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = kinds::lookup(&kind_name).ok_or_else(|| ClusterError::Invalid {
        object: kind_name.clone(),
        message: "unknown kind".into(),
    })?;
    if object::name(&object).is_none() {
        let prefix = object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .ok_or_else(|| ClusterError::Invalid {
                object: kind_name.clone(),
                message: "metadata.name or metadata.generateName is required".into(),
            })?
            .to_string();
        object["metadata"]["name"] = json!(format!("{prefix}{}", suffix()));
    }
    let reference = ObjectRef::of(&object).ok_or_else(|| ClusterError::Invalid {
        object: kind_name,
        message: "metadata.name must be a string".into(),
    })?;
    check_names(&reference, &object)?;
    if kind.namespaced && reference.namespace.is_none() {
        return Err(ClusterError::Invalid {
            object: reference.to_string(),
            message: "metadata.namespace is required".into(),
        });
    }
    Ok(NewObject {
        object,
        reference,
        kind,
    })
}

/// A patch's preconditions against the object as it is: the uid it names (when the object has
/// one: a planned object's uid is the server's to give) and the resourceVersion it names.
pub fn check_preconditions(r: &ObjectRef, current: &Value, patch: &Value) -> Result<()> {
    let uid = object::uid(current);
    if let Some(want) = patch.pointer("/metadata/uid").and_then(Value::as_str)
        && uid.is_some_and(|uid| uid != want)
    {
        return Err(ClusterError::Conflict {
            object: r.to_string(),
            message: format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                uid.unwrap_or_default()
            ),
        });
    }
    if let Some(want) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && Some(want) != object::resource_version(current)
    {
        return Err(ClusterError::Conflict {
            object: r.to_string(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        });
    }
    Ok(())
}

/// The API server's validation of names and labels, which a simulation must not be laxer than.
pub fn check_names(r: &ObjectRef, object: &Value) -> Result<()> {
    let invalid = |message: String| ClusterError::Invalid {
        object: r.to_string(),
        message,
    };
    object::validate_object_name(&r.kind, &r.name).map_err(|e| invalid(e.to_string()))?;
    for (key, value) in object::labels(object) {
        object::validate_label_key(&key).map_err(|e| invalid(e.to_string()))?;
        object::validate_label_value(&key, &value).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_is_named_checked_and_namespaced_as_the_server_does() {
        let generated = prepare_create(
            &json!({"kind": "NetworkPolicy", "metadata": {"generateName": "contain-", "namespace": "shop"}}),
            || "00001".into(),
        )
        .unwrap();
        assert_eq!(generated.reference.name, "contain-00001");
        assert!(generated.kind.namespaced);
        let refused = |object: Value| {
            prepare_create(&object, || "x".into())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(
            refused(json!({"kind": "Widget", "metadata": {"name": "a"}})).contains("unknown kind")
        );
        assert!(
            refused(json!({"kind": "Pod", "metadata": {"namespace": "shop"}}))
                .contains("generateName is required")
        );
        assert!(
            refused(json!({"kind": "Pod", "metadata": {"name": "a"}}))
                .contains("metadata.namespace is required")
        );
        assert!(
            refused(json!({"kind": "Pod", "metadata": {"name": "Bad_Name", "namespace": "shop"}}))
                .contains("Bad_Name")
        );
    }

    #[test]
    fn a_patch_must_name_the_uid_and_version_it_was_planned_against() {
        let r = ObjectRef::new("Pod", Some("shop"), "web");
        let current = json!({"metadata": {"uid": "u1", "resourceVersion": "7"}});
        let patch = |meta: Value| json!({"metadata": meta});
        assert!(
            check_preconditions(
                &r,
                &current,
                &patch(json!({"uid": "u1", "resourceVersion": "7"}))
            )
            .is_ok()
        );
        assert!(check_preconditions(&r, &current, &patch(json!({"uid": "u2"}))).is_err());
        assert!(
            check_preconditions(&r, &current, &patch(json!({"resourceVersion": "6"}))).is_err()
        );
        // A planned object has no uid yet: only the server can refuse a uid precondition then.
        let planned = json!({"metadata": {"resourceVersion": "3"}});
        assert!(check_preconditions(&r, &planned, &patch(json!({"uid": "any"}))).is_ok());
    }
}
