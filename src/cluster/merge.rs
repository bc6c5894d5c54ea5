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

/// The value at `path` (segments, not a pointer: label keys contain `/` and `.`).
pub fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |node, segment| node.get(segment))
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
