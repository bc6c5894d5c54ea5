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

/// `-o yaml` is offered wherever `-o json` is, and says the same thing.
#[test]
fn yaml_output_says_what_json_output_says() {
    let snapshot = repo("examples/snapshots/cluster.yaml");
    let playbook = repo("playbooks/compromised-pod.yaml");
    let set = [
        "--set",
        "pod=web-fjejlcldef-x7k2p",
        "--set",
        "namespace=shop",
    ];
    let commands: Vec<Vec<&str>> = vec![
        vec!["actions"],
        vec!["exit-codes"],
        vec!["schema"],
        vec!["drill", "schema"],
        vec!["exercise", "schema"],
        vec!["validate", &playbook],
        vec![
            "explain-access",
            "web-fjejlcldef-x7k2p",
            "-n",
            "shop",
            "--snapshot",
            &snapshot,
        ],
        [
            vec!["rbac", &playbook, "--snapshot", &snapshot],
            set.to_vec(),
        ]
        .concat(),
    ];
    for command in commands {
        let json = Contain::new()
            .args(["-o", "json"])
            .args(command.clone())
            .run();
        let yaml = Contain::new()
            .args(["-o", "yaml"])
            .args(command.clone())
            .run();
        assert_eq!(
            (json.code, yaml.code),
            (0, 0),
            "{command:?}: {}{}",
            json.stderr,
            yaml.stderr
        );
        let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml.stdout)
            .unwrap_or_else(|e| panic!("{command:?}: -o yaml is not YAML ({e}):\n{}", yaml.stdout));
        assert_eq!(
            from_yaml,
            json.json(),
            "{command:?}: -o yaml and -o json differ"
        );
    }
    // A tabletop run carries its own run id and times: the same document, field for field.
    let tabletop = |format: &str| {
        Contain::new()
            .args(["-o", format, "tabletop", &playbook, "--snapshot", &snapshot])
            .args(set)
            .run()
    };
    let (json, yaml) = (tabletop("json"), tabletop("yaml"));
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml.stdout).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&from_yaml), keys(&json.json()));
    assert_eq!(
        from_yaml["steps"].as_array().unwrap().len(),
        json.json()["steps"].as_array().unwrap().len()
    );
}

/// `contain actions` says, for every field of every action, its type, whether it is required
/// or its default, and what it does.
#[test]
fn every_action_field_has_a_type_a_default_and_a_description() {
    let out = Contain::new().args(["actions"]).run();
    assert_eq!(out.code, 0);
    let fields: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("with."))
        .collect();
    assert!(fields.len() > 40, "{}", out.stdout);
    let shape =
        regex::Regex::new(r"^  with\.[a-z_]+ \([^,()]+, (required|optional|default .+)\): \S.*$")
            .unwrap();
    for line in fields {
        assert!(
            shape.is_match(line),
            "a field without its type, default or description: {line}"
        );
    }
    let isolate = Contain::new().args(["actions", "network.isolate"]).run();
    assert!(
        isolate
            .stdout
            .contains("with.mechanism (auto|network-policy|cluster-policy, default \"auto\"):"),
        "{}",
        isolate.stdout
    );
    assert!(
        isolate
            .stdout
            .contains("with.allow_namespaces (string[], default []):"),
        "{}",
        isolate.stdout
    );
}

/// The shipped manual page is the one the binary generates, and `man` renders it with every
/// command in it.
#[test]
fn the_manual_page_is_current_and_renders() {
    let generated = Contain::new().args(["man"]).run();
    assert_eq!(generated.code, 0);
    let shipped = std::fs::read_to_string(repo("man/contain.1")).unwrap();
    assert!(
        shipped == generated.stdout,
        "man/contain.1 is stale: run `cargo run -q -- man > man/contain.1`"
    );
    let rendered = std::process::Command::new("man")
        .args(["-l", &repo("man/contain.1")])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .expect("man runs (scripts/test installs man-db)");
    let text = String::from_utf8_lossy(&rendered.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "GLOBAL FLAGS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
    ] {
        assert!(text.contains(section), "{section}:\n{text}");
    }
    for command in [
        "contain run",
        "contain report",
        "contain exercise",
        "contain drill",
        "contain rollback",
    ] {
        assert!(text.contains(command), "{command} in the manual:\n{text}");
    }
    assert!(
        text.contains("--steal REASON") && text.contains("--lock-ttl SECONDS"),
        "{text}"
    );
}
