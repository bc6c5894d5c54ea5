//! JSON merge patch (RFC 7386), as the API server applies `application/merge-patch+json`.

use serde_json::Value;

/// Applies `patch` to `target` in place: objects merge key by key, `null` removes a key, and
/// anything else replaces the value.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            apply(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Merges two patch documents into one, keeping `null`s (they mean "remove" when the result is
/// applied). Unlike [`apply`], which carries the removals out.
pub fn combine(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into_map), Value::Object(patch_map)) => {
            for (key, value) in patch_map {
                match into_map.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        combine(existing, value)
                    }
                    _ => {
                        into_map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

/// Builds the merge patch that sets `path` to `value` (`None` removes it).
pub fn patch_for(path: &[String], value: Option<&Value>) -> Value {
    let mut patch = value.cloned().unwrap_or(Value::Null);
    for segment in path.iter().rev() {
        let mut map = serde_json::Map::new();
        map.insert(segment.clone(), patch);
        patch = Value::Object(map);
    }
    patch
}

/// A path segment naming the element of a list whose `field` is `value`, e.g. a node's taint
/// `[key=contain.dev/quarantine]`. Lists are replaced whole by merge patches, so changes through
/// such a segment rebuild the list from the object as it is when the change is applied.
pub fn keyed(field: &str, value: &str) -> String {
    format!("[{field}={value}]")
}

/// The `(field, value)` of a keyed segment.
pub fn parse_keyed(segment: &str) -> Option<(&str, &str)> {
    segment
        .strip_prefix('[')?
        .strip_suffix(']')?
        .split_once('=')
}

/// The value at `path` (segments, not a pointer: label keys contain `/` and `.`).
pub fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |node, segment| match (parse_keyed(segment), node) {
            (Some((field, value)), Value::Array(items)) => items
                .iter()
                .find(|i| i.get(field).and_then(Value::as_str) == Some(value)),
            _ => node.get(segment),
        })
}

/// Sets (or with `None` removes) the value at `path` inside `object`, keyed segments included.
pub fn set(object: &mut Value, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        if let Some(value) = value {
            *object = value;
        }
        return;
    };
    let mut node = object;
    for segment in parents {
        node = match (parse_keyed(segment), node) {
            (Some((field, key)), Value::Array(items)) => {
                let index = match items
                    .iter()
                    .position(|i| i.get(field).and_then(Value::as_str) == Some(key))
                {
                    Some(index) => index,
                    None => {
                        items.push(serde_json::json!({field: key}));
                        items.len() - 1
                    }
                };
                &mut items[index]
            }
            (_, node) => {
                if !node.is_object() {
                    *node = Value::Object(serde_json::Map::new());
                }
                node.as_object_mut()
                    .expect("made an object above")
                    .entry(segment.clone())
                    .or_insert(Value::Null)
            }
        };
    }
    match (parse_keyed(last), node) {
        (Some((field, key)), node) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let items = node.as_array_mut().expect("made an array above");
            let index = items
                .iter()
                .position(|i| i.get(field).and_then(Value::as_str) == Some(key));
            match (index, value) {
                (Some(i), Some(v)) => items[i] = v,
                (None, Some(v)) => items.push(v),
                (Some(i), None) => {
                    items.remove(i);
                }
                (None, None) => {}
            }
        }
        (None, node) => {
            if !node.is_object() {
                *node = Value::Object(serde_json::Map::new());
            }
            let map = node.as_object_mut().expect("made an object above");
            match value {
                Some(v) => {
                    map.insert(last.clone(), v);
                }
                None => {
                    map.remove(last);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_like_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        apply(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }

    #[test]
    fn combining_keeps_removals() {
        let mut doc = json!({});
        combine(&mut doc, &json!({"metadata": {"labels": {"a": null}}}));
        combine(&mut doc, &json!({"metadata": {"labels": {"b": "x"}}}));
        assert_eq!(doc, json!({"metadata": {"labels": {"a": null, "b": "x"}}}));
    }

    #[test]
    fn keyed_segments_address_list_elements() {
        let mut node = json!({"spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]}});
        let path = vec![
            "spec".to_string(),
            "taints".to_string(),
            keyed("key", "ours"),
        ];
        assert_eq!(get(&node, &path), None);
        set(
            &mut node,
            &path,
            Some(json!({"key": "ours", "effect": "NoSchedule"})),
        );
        assert_eq!(
            get(&node, &path),
            Some(&json!({"key": "ours", "effect": "NoSchedule"}))
        );
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 2);
        set(&mut node, &path, None);
        assert_eq!(
            node,
            json!({"spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]}})
        );
    }

    #[test]
    fn builds_nested_patches() {
        let path = vec![
            "metadata".to_string(),
            "labels".to_string(),
            "a/b.c".to_string(),
        ];
        assert_eq!(
            patch_for(&path, Some(&json!("x"))),
            json!({"metadata": {"labels": {"a/b.c": "x"}}})
        );
        assert_eq!(
            patch_for(&path, None),
            json!({"metadata": {"labels": {"a/b.c": null}}})
        );
        let doc = json!({"metadata": {"labels": {"a/b.c": "x"}}});
        assert_eq!(get(&doc, &path), Some(&json!("x")));
    }
}
