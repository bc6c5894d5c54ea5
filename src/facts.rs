//! Facts: named read-only lookups of cluster objects, resolved in order before the first step.

use serde_json::Value;

use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Cluster, ClusterError, kinds};
use crate::playbook::types::FactSpec;
use crate::render::{RenderError, Renderer, Scope};

/// Why a fact could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(
        "fact `{fact}`: {object} not found (mark the fact `optional: true` if it may be absent)"
    )]
    NotFound { fact: String, object: String },
    #[error("fact `{fact}`: {source}")]
    Cluster {
        fact: String,
        #[source]
        source: ClusterError,
    },
}

/// Looks up one fact, rendering its name with the scope so far.
pub async fn resolve(
    name: &str,
    spec: &FactSpec,
    scope: &Scope,
    cluster: &dyn Cluster,
) -> Result<(Value, Option<ObjectRef>), FactError> {
    let renderer = Renderer::new(scope);
    let field = format!("facts.{name}");
    let kind = kinds::lookup(&spec.kind).ok_or_else(|| RenderError {
        field: format!("{field}.kind"),
        message: format!("unknown kind `{}`", spec.kind),
        column: None,
    })?;
    let object_name = renderer.render_str(&format!("{field}.name"), &spec.name)?;
    let invalid = |f: &str, message: String| RenderError {
        field: format!("{field}.{f}"),
        message,
        column: None,
    };
    object::validate_object_name(kind.kind, &object_name)
        .map_err(|e| invalid("name", e.to_string()))?;
    let namespace = match (&spec.namespace, kind.namespaced) {
        (Some(ns), true) => {
            let ns = renderer.render_str(&format!("{field}.namespace"), ns)?;
            object::validate_namespace(&ns).map_err(|e| invalid("namespace", e.to_string()))?;
            Some(ns)
        }
        _ => None,
    };
    let r = ObjectRef::new(kind.kind, namespace.as_deref(), &object_name);
    match cluster.get(&r).await {
        Ok(Some(mut found)) => {
            redact(&mut found);
            Ok((found, Some(r)))
        }
        Ok(None) if spec.optional => Ok((Value::Null, None)),
        Ok(None) => Err(FactError::NotFound {
            fact: name.to_string(),
            object: r.to_string(),
        }),
        Err(source) => Err(FactError::Cluster {
            fact: name.to_string(),
            source,
        }),
    }
}

/// Secret values never reach templates, outputs or reports.
pub fn redact(object: &mut Value) {
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                for value in map.values_mut() {
                    *value = Value::String("(redacted)".into());
                }
            }
        }
    }
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        // kubectl's last-applied annotation can hold a Secret's data in plain text.
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A copy with Secret values redacted, for anything that is stored.
pub fn redacted(value: &Value) -> Value {
    let mut copy = value.clone();
    redact(&mut copy);
    copy
}
