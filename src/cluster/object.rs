//! Objects as JSON values, references to them, label selectors, and Kubernetes name rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kinds::{self, Kind};

/// Names one object: `Pod shop/web-7d9f-abcde`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The reference of an object as served (`kind`, `metadata.namespace`, `metadata.name`).
    pub fn of(object: &Value) -> Option<Self> {
        Some(ObjectRef {
            kind: object.get("kind")?.as_str()?.to_string(),
            namespace: namespace(object).map(str::to_string),
            name: name(object)?.to_string(),
        })
    }

    pub fn kind_info(&self) -> Option<&'static Kind> {
        kinds::lookup(&self.kind)
    }

    /// The API path of the object, e.g. `/api/v1/namespaces/shop/pods/web-1`.
    pub fn path(&self) -> String {
        match self.kind_info() {
            Some(kind) => format!(
                "{}/{}",
                kind.collection_path(self.namespace.as_deref()),
                self.name
            ),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

pub fn name(object: &Value) -> Option<&str> {
    metadata_str(object, "name")
}

pub fn namespace(object: &Value) -> Option<&str> {
    metadata_str(object, "namespace")
}

pub fn uid(object: &Value) -> Option<&str> {
    metadata_str(object, "uid")
}

pub fn resource_version(object: &Value) -> Option<&str> {
    metadata_str(object, "resourceVersion")
}

/// The (kind, name) of an object's controller owner reference.
pub fn controller_of(object: &Value) -> Option<(String, String)> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| {
            Some((
                r.get("kind")?.as_str()?.to_string(),
                r.get("name")?.as_str()?.to_string(),
            ))
        })
}

/// The object's labels (empty when it has none).
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    string_map(object.get("metadata").and_then(|m| m.get("labels")))
}

/// A string field of `metadata`: these are read for every object a list or snapshot holds, so
/// by direct lookup (a JSON pointer allocates for each of its segments).
fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A label selector: `matchLabels` and `matchExpressions`, as the API server evaluates them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(
        default,
        rename = "matchLabels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "matchExpressions",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl Selector {
    pub fn labels(labels: BTreeMap<String, String>) -> Self {
        Selector {
            match_labels: labels,
            match_expressions: Vec::new(),
        }
    }

    /// A `LabelSelector` object from the API (`spec.selector` of a workload, a PDB, a policy).
    pub fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// True for the empty selector, which selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// The `labelSelector` query parameter form: `a=b,c in (d,e),!f`.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator.as_str() {
                "In" => format!("{} in ({})", r.key, r.values.join(",")),
                "NotIn" => format!("{} notin ({})", r.key, r.values.join(",")),
                "Exists" => r.key.clone(),
                _ => format!("!{}", r.key),
            });
        }
        parts.join(",")
    }
}

/// Why a rendered name or label cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{what} `{value}` is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
    )]
    Subdomain { what: String, value: String },
    #[error(
        "{what} `{value}` is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
    )]
    Label { what: String, value: String },
    #[error(
        "label key `{0}` is not valid (an optional DNS subdomain prefix and '/', then a name of at most 63 characters: letters, digits, '-', '_', '.')"
    )]
    LabelKey(String),
    #[error(
        "label value `{value}` for `{key}` is not valid (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)"
    )]
    LabelValue { key: String, value: String },
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Checks an object name for its kind (namespaces and nodes are labels; most others subdomains).
pub fn validate_object_name(kind: &str, name: &str) -> Result<(), NameError> {
    let what = format!("{kind} name");
    if kind == "Namespace" {
        return validate_namespace(name);
    }
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(NameError::Subdomain {
            what,
            value: name.to_string(),
        })
    }
}

pub fn validate_namespace(name: &str) -> Result<(), NameError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(NameError::Label {
            what: "namespace".to_string(),
            value: name.to_string(),
        })
    }
}

pub fn validate_label_key(key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) || !is_label_name(name) {
        return Err(NameError::LabelKey(key.to_string()));
    }
    Ok(())
}

pub fn validate_label_value(key: &str, value: &str) -> Result<(), NameError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(NameError::LabelValue {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// Removes fields the server owns or that only add noise to a diff or a snapshot.
pub fn strip_server_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// Which field manager owns `path` of an object now, and how it wrote it (`Apply` for
/// server-side apply, `Update` otherwise), from its `metadata.managedFields`: the entry owning the
/// deepest part of the path, the newest on a tie. What a stale plan names, so the responder
/// knows which controller is fighting over the field.
pub fn field_owner(managed_fields: &Value, path: &[String]) -> Option<(String, String)> {
    let entries = managed_fields.as_array()?;
    let mut best: Option<(usize, &str, String, String)> = None;
    for entry in entries {
        let mut node = entry.get("fieldsV1");
        let mut depth = 0;
        for segment in path {
            let next = node.and_then(|n| {
                let map = n.as_object()?;
                match crate::cluster::merge::parse_keyed(segment) {
                    Some((field, value)) => map.iter().find_map(|(k, v)| {
                        let key: Value = serde_json::from_str(k.strip_prefix("k:")?).ok()?;
                        (key.get(field).and_then(Value::as_str) == Some(value)).then_some(v)
                    }),
                    None => map.get(&format!("f:{segment}")),
                }
            });
            match next {
                Some(n) => {
                    node = Some(n);
                    depth += 1;
                }
                None => break,
            }
        }
        let time = entry.get("time").and_then(Value::as_str).unwrap_or("");
        let better = match &best {
            None => depth > 0,
            Some((d, t, _, _)) => depth > *d || (depth == *d && time > *t),
        };
        if better {
            let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("?");
            let operation = entry
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("?");
            best = Some((depth, time, manager.to_string(), operation.to_string()));
        }
    }
    best.map(|(_, _, manager, operation)| (manager, operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_field_is_the_manager_owning_most_of_its_path() {
        let managed = serde_json::json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:podSelector": {}}}},
            {"manager": "gitops-agent", "operation": "Apply", "time": "2026-01-02T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:podSelector": {"f:matchExpressions": {}}}}},
            {"manager": "contain", "operation": "Update", "time": "2026-01-03T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                 "k:{\"name\":\"web\"}": {"f:image": {}}}}}}}},
            {"manager": "kubectl", "operation": "Update", "time": "2026-01-04T00:00:00Z",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                 "k:{\"name\":\"sidecar\"}": {"f:image": {}}}}}}}}
        ]);
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            field_owner(
                &managed,
                &path(&["spec", "podSelector", "matchExpressions"])
            ),
            Some(("gitops-agent".into(), "Apply".into()))
        );
        assert_eq!(
            field_owner(
                &managed,
                &path(&[
                    "spec",
                    "template",
                    "spec",
                    "containers",
                    "[name=web]",
                    "image"
                ])
            ),
            Some(("contain".into(), "Update".into())),
            "keyed list items are matched by their key"
        );
        assert_eq!(
            field_owner(&managed, &path(&["metadata", "labels", "x"])),
            None
        );
    }

    #[test]
    fn names_follow_dns_rules() {
        assert!(validate_object_name("Pod", "web-7d9f.abc").is_ok());
        assert!(validate_object_name("Pod", "Web").is_err());
        assert!(validate_object_name("Pod", "a/b").is_err());
        assert!(validate_object_name("Namespace", "a.b").is_err());
        assert!(validate_object_name("Pod", "x\n{{").is_err());
    }

    #[test]
    fn label_syntax() {
        assert!(validate_label_key("contain.dev/quarantine").is_ok());
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("-app").is_err());
        assert!(validate_label_key("Bad_Prefix/app").is_err());
        assert!(validate_label_value("k", "").is_ok());
        assert!(validate_label_value("k", "v1.2_x").is_ok());
        assert!(validate_label_value("k", "a b").is_err());
    }

    #[test]
    fn selectors_match_like_the_api_server() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
        let sel: Selector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "quarantine", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert!(sel.matches(&labels));
        assert!(Selector::default().matches(&labels));
        let other: Selector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"app": "db"}})).unwrap();
        assert!(!other.matches(&labels));
        assert_eq!(sel.to_query(), "app=web,tier in (fe,be),!quarantine");
    }
}
