//! The committed schema is the one the code generates, and every shipped playbook satisfies it.

use crate::harness::{Contain, repo};

#[test]
fn committed_schema_is_current() {
    let generated = Contain::new().args(["schema"]).run();
    assert_eq!(generated.code, 0);
    let committed = std::fs::read_to_string(repo("playbooks/schema.json"))
        .expect("playbooks/schema.json exists");
    assert!(
        committed == generated.stdout,
        "playbooks/schema.json is stale: run `cargo run -q -- schema > playbooks/schema.json`"
    );
}

#[test]
fn shipped_playbooks_satisfy_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("playbooks/schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("playbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 3);
}

#[test]
fn the_schema_rejects_what_validation_rejects() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("playbooks/schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({
        "apiVersion": "contain/v1", "kind": "Playbook", "metadata": {"name": "x"},
        "steps": [{"id": "a", "action": "workload.scale", "target": {"kind": "Deployment", "name": "w", "namespace": "n"}, "with": {"replica": 1}}]
    });
    assert!(
        !validator.is_valid(&bad),
        "an unknown `with` field must fail the schema too"
    );
}
