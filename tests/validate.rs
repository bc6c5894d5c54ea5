//! `contain validate`: every mistake reported at once, with its place and a caret.

use crate::harness::{Contain, repo};

#[test]
fn reports_every_mistake_with_its_place() {
    // Tests run in the package root; a relative path keeps the rendering (and its line
    // wrapping) the same on every machine.
    let out = Contain::new()
        .args(["validate", "tests/fixtures/many-mistakes.yaml"])
        .run();
    assert_eq!(out.code, 3, "invalid input exits 3");
    insta::assert_snapshot!("many_mistakes", out.stderr);
}

#[test]
fn shipped_playbooks_are_valid() {
    let mut files: Vec<String> = std::fs::read_dir(repo("playbooks"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let out = Contain::new().arg_list(["validate"], &files).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn set_values_are_checked_against_param_types() {
    let out = Contain::new()
        .args([
            "validate",
            &repo("playbooks/scale-down-workload.yaml"),
            "--set",
            "replicas=many",
            "--set",
            "deploymnet=web",
        ])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("--set:1:10: param `replicas` must be an integer, found `many`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("--set:2:1: the playbook has no param `deploymnet`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `deployment`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_required_params_point_at_their_declaration() {
    let out = Contain::new()
        .args([
            "tabletop",
            &repo("playbooks/label-suspect-pod.yaml"),
            "--snapshot",
            &repo("examples/snapshots/cluster.yaml"),
            "--set",
            "pod=x",
        ])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("label-suspect-pod.yaml:16:3: param `namespace` is required"),
        "{}",
        out.stderr
    );
}

#[test]
fn validation_errors_come_out_as_json() {
    let out = Contain::new()
        .args([
            "-o",
            "json",
            "validate",
            &repo("tests/fixtures/many-mistakes.yaml"),
        ])
        .run();
    assert_eq!(out.code, 3);
    let doc = out.json();
    let problems = doc[0]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 12);
    assert!(
        problems
            .iter()
            .all(|p| p["line"].as_u64().is_some() && p["column"].as_u64().is_some())
    );
}

impl Contain {
    fn arg_list(self, first: [&str; 1], rest: &[String]) -> Self {
        self.args(first).args(rest.iter().cloned())
    }
}

const DESTROY_THEN_CAPTURE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: evidence-order}
params:
  pod: {type: string, required: true}
steps:
  - id: kill-it
    action: pod.delete
    target: {kind: Pod, name: "{{ params.pod }}", namespace: shop}
  - id: capture
    action: forensics.capture
    target: {kind: Pod, name: "{{ params.pod }}", namespace: shop}
"#;

#[test]
fn a_destructive_step_before_the_capture_is_rejected_by_name() {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), DESTROY_THEN_CAPTURE).unwrap();
    let out = Contain::new()
        .args(["validate", &file.path().display().to_string()])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains(":8:13: step `kill-it` (pod.delete) can destroy evidence"),
        "{}",
        out.stderr
    );

    // The same steps the other way round are fine: the capture covers the pod.
    let reordered = DESTROY_THEN_CAPTURE.replace("  - id: kill-it\n    action: pod.delete\n    target: {kind: Pod, name: \"{{ params.pod }}\", namespace: shop}\n", "")
        + "  - id: kill-it\n    action: pod.delete\n    target: {kind: Pod, name: \"{{ params.pod }}\", namespace: shop}\n";
    std::fs::write(file.path(), reordered).unwrap();
    let out = Contain::new()
        .args(["validate", &file.path().display().to_string()])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A drain through node.quarantine counts too, and a waiver with a reason lifts the rule.
    let drain = "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: d}\nsteps:\n  - id: q\n    action: node.quarantine\n    target: {kind: Node, name: n1}\n    with: {drain: true}\n";
    std::fs::write(file.path(), drain).unwrap();
    let out = Contain::new()
        .args(["validate", &file.path().display().to_string()])
        .run();
    assert!(
        out.stderr
            .contains("step `q` (node.quarantine) can destroy evidence"),
        "{}",
        out.stderr
    );
    std::fs::write(
        file.path(),
        format!("{drain}    evidence: {{waived: \"EDR already holds a memory image\"}}\n"),
    )
    .unwrap();
    assert_eq!(
        Contain::new()
            .args(["validate", &file.path().display().to_string()])
            .run()
            .code,
        0
    );
}

#[test]
fn wide_targets_are_checked_and_read_as_parts() {
    let playbook = crate::harness::playbook_file(
        r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: wide}
steps:
  - id: everywhere
    action: object.label
    target: {kind: Pod, all_namespaces: true}
    with: {labels: {a: b}}
  - id: tagged
    action: object.label
    target: {kind: Pod, all_namespaces: true, namespace: shop, image: "registry.example/app:1.2"}
    with: {labels: {a: b}}
  - id: nodes
    action: object.label
    target: {kind: Node, all_namespaces: true, selector: {a: b}}
    with: {labels: {c: d}}
  - id: isolate
    action: network.isolate
    target: {kind: Pod, all_namespaces: true, image: "sha256:4f1c0b1f2a6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e1d2c"}
  - id: note
    action: object.annotate
    target: {kind: Namespace, name: default}
    with:
      annotations:
        isolated: "{{ steps.isolate.outputs.count }}"
        policy: "{{ steps.isolate.outputs.policy }}"
"#,
    );
    let out = Contain::new()
        .args(["validate", &playbook.path().display().to_string()])
        .run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    for expected in [
        "`steps[0].target` selects every Pod in the cluster",
        "`steps[1].target` has both `all_namespaces` and `namespace`",
        "`registry.example/app:1.2` is not an image digest",
        "`steps[2].target`: Node is not namespaced",
        "`steps.isolate.outputs.policy`: step `isolate` has no output",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            out.stderr
        );
    }
    // Those five and no more: `steps.isolate.outputs.count` is an output of a step in parts.
    assert!(
        out.stderr.contains("5 problems in"),
        "a step in parts has a count: {}",
        out.stderr
    );
}

/// Writes `text` as a playbook in a temporary directory and validates it.
fn validate_text(text: &str) -> crate::harness::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("playbook.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Contain::new()
        .args(["validate", &path.display().to_string()])
        .run();
    drop(dir);
    out
}

const HEADER: &str = "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: t}\nsteps:\n  - id: evidence\n    action: forensics.capture\n    target: {kind: Pod, namespace: shop, name: web}\n";

#[test]
fn validate_refuses_a_selector_for_an_action_on_one_object_with_its_line() {
    let out = validate_text(&format!(
        "{HEADER}  - id: revoke\n    action: serviceaccount.revoke\n    target: {{kind: ServiceAccount, namespace: shop, selector: {{app: web}}}}\n    with: {{modes: [unbind]}}\n"
    ));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("playbook.yaml:10:13: serviceaccount.revoke works on one object"),
        "{}",
        out.stderr
    );
    // Nodes picked by a selector are planned one part per node.
    let nodes = validate_text(&format!(
        "{HEADER}  - id: quarantine\n    action: node.quarantine\n    target: {{kind: Node, selector: {{pool: web}}}}\n"
    ));
    assert_eq!(nodes.code, 0, "{}", nodes.stderr);
}

#[test]
fn validate_refuses_exclusive_isolation_of_a_namespace_with_its_line() {
    let out = validate_text(&format!(
        "{HEADER}  - id: isolate\n    action: network.isolate\n    target: {{kind: Namespace, name: shop}}\n    with: {{exclusive: true}}\n"
    ));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("playbook.yaml:11:23: `exclusive` needs pods or a workload"),
        "{}",
        out.stderr
    );
}

/// Every refusal `plan` made for a reason visible in the playbook is found by `validate`, at
/// its place: one playbook per rule, each with the line and column the problem points at.
#[test]
fn validate_finds_each_static_refusal_of_an_action_at_its_place() {
    let cases: &[(&str, &str)] = &[
        (
            "  - id: s\n    action: network.isolate\n    target: {kind: Namespace}\n",
            "playbook.yaml:10:13: a Namespace target needs a name",
        ),
        (
            "  - id: s\n    action: network.isolate\n    target: {kind: Namespace, name: shop}\n    with: {allow_namespaces: [Bad_NS]}\n",
            "playbook.yaml:11:30: namespace `Bad_NS` is not a valid DNS-1123 label",
        ),
        (
            "  - id: s\n    action: network.isolate\n    target: {kind: Namespace, name: shop}\n    with: {policy_name: Bad_Name}\n",
            "playbook.yaml:11:25: NetworkPolicy name `Bad_Name` is not a valid DNS-1123 subdomain",
        ),
        (
            "  - id: s\n    action: node.quarantine\n    target: {kind: Node, name: n1}\n    with: {guard_exempt_namespaces: [Bad_NS]}\n",
            "playbook.yaml:11:37: namespace `Bad_NS` is not a valid DNS-1123 label",
        ),
        (
            "  - id: s\n    action: node.taint\n    target: {kind: Node, name: n1}\n    with: {value: \"bad value!\"}\n",
            "playbook.yaml:11:19: label value `bad value!` for `contain.dev/quarantine` is not valid",
        ),
        (
            "  - id: s\n    action: object.label\n    target: {kind: Pod, namespace: shop, name: web}\n    with: {labels: {\"bad key!\": x}}\n",
            "playbook.yaml:11:20: label key `bad key!` is not valid",
        ),
        (
            "  - id: s\n    action: object.label\n    target: {kind: Pod, namespace: shop, name: web}\n    with: {labels: {ok: \"bad value!\"}}\n",
            "playbook.yaml:11:20: label value `bad value!` for `ok` is not valid",
        ),
        (
            "  - id: s\n    action: workload.redeploy\n    target: {kind: Deployment, namespace: shop, name: web}\n    with: {containers: [{name: app, image: \"reg.example/app@sha256:abc\"}], keys: [k.pem]}\n",
            "playbook.yaml:11:24: `reg.example/app@sha256:abc` is not a valid image reference",
        ),
        (
            "  - id: s\n    action: workload.redeploy\n    target: {kind: Deployment, namespace: shop, name: web}\n    with: {containers: [{name: app, image: reg.example/app:1}, {name: app, image: reg.example/app:2}], keys: [k.pem]}\n",
            "playbook.yaml:11:24: container `app` is named twice",
        ),
        (
            "  - id: s\n    action: wait\n    with: {duration: 5s, field: status.phase, equals: Running}\n",
            "playbook.yaml:9:13: give either `duration`, or `field` and `equals`",
        ),
        (
            "  - id: s\n    action: wait\n    with: {field: status.phase, equals: Running}\n",
            "playbook.yaml:10:19: waiting for a field needs a target with a name",
        ),
    ];
    for (step, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("playbook.yaml");
        std::fs::write(&path, format!("{HEADER}{step}")).unwrap();
        let out = Contain::new()
            .args(["validate", "-o", "json", &path.display().to_string()])
            .run();
        assert_eq!(out.code, 3, "{step}\n{}", out.stdout);
        let found: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let places: Vec<String> = found[0]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "playbook.yaml:{}:{}: {}",
                    p["line"],
                    p["column"],
                    p["message"].as_str().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            places.iter().any(|place| place.starts_with(expected)),
            "expected `{expected}` for\n{step}\nfound {places:#?}"
        );
    }
}

/// The static mistakes a new user made, each refused at its place before anything runs.
mod known_mistakes {
    use super::{HEADER, validate_text};
    use crate::harness::{Contain, repo};

    #[test]
    fn a_namespace_given_with_n_is_checked() {
        let out = Contain::new()
            .args([
                "-n",
                "Bad_NS",
                "validate",
                &repo("playbooks/isolate-pod.yaml"),
            ])
            .run();
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr
                .contains("invalid value 'Bad_NS' for '--namespace <NS>'"),
            "{}",
            out.stderr
        );
        // A valid one is bound as the `namespace` param, checked, and nothing else is asked.
        let ok = Contain::new()
            .args([
                "-n",
                "shop",
                "validate",
                &repo("playbooks/isolate-pod.yaml"),
            ])
            .run();
        assert_eq!(ok.code, 0, "{}", ok.stderr);
    }

    #[test]
    fn a_list_is_indexed_in_templates_as_it_is_rendered() {
        let playbook = |path: &str| {
            format!(
                "apiVersion: contain/v1\nkind: Playbook\nmetadata: {{name: t}}\nfacts:\n  pod: {{kind: Pod, name: web, namespace: shop}}\nsteps:\n  - id: l\n    action: object.label\n    target: {{kind: Pod, name: web, namespace: shop}}\n    with: {{labels: {{c: \"{{{{ facts.pod.spec.containers{path} }}}}\"}}}}\n"
            )
        };
        for ok in ["[0].name", "[0][\\\"name\\\"]", "[1].image"] {
            let out = validate_text(&playbook(ok));
            assert_eq!(out.code, 0, "{ok}: {}", out.stderr);
        }
        let out = validate_text(&playbook("[0].nmae"));
        assert_eq!(out.code, 3);
        assert!(
            out.stderr
                .contains("playbook.yaml:10:24: `facts.pod.spec.containers.0.nmae`"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn durations_have_one_bound_everywhere() {
        let out = validate_text(&format!(
            "{HEADER}  - id: pause\n    action: wait\n    timeout: 99999999999999999999s\n    with: {{duration: 721h}}\n"
        ));
        assert_eq!(out.code, 3);
        for place in ["playbook.yaml:10:14:", "playbook.yaml:11:22:"] {
            assert!(out.stderr.contains(place), "{place}: {}", out.stderr);
        }
        // The report wraps long lines; read it as one.
        let said = out.stderr.replace("\n  │ ", " ");
        assert!(
            said.contains("longer than the longest duration allowed (30 days: 720h)"),
            "{said}"
        );
        let flag = Contain::new()
            .args([
                "--run-timeout",
                "99999999999999999999s",
                "validate",
                &repo("playbooks/isolate-pod.yaml"),
            ])
            .run();
        assert_eq!(flag.code, 2);
        assert!(
            flag.stderr
                .contains("longer than the longest duration allowed (30 days: 720h)"),
            "{}",
            flag.stderr
        );
    }

    #[test]
    fn a_replica_count_past_the_api_s_int32_is_refused() {
        let out = validate_text(&format!(
            "{HEADER}  - id: scale\n    action: workload.scale\n    target: {{kind: Deployment, namespace: shop, name: web}}\n    with: {{replicas: 2147483648}}\n"
        ));
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(
            out.stderr.contains("playbook.yaml:11:22:"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn a_directory_validates_every_playbook_in_it() {
        let out = Contain::new().args(["validate", &repo("playbooks")]).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let playbooks = std::fs::read_dir(repo("playbooks"))
            .unwrap()
            .filter(|e| {
                let path = e.as_ref().unwrap().path();
                path.extension().is_some_and(|x| x == "yaml")
            })
            .count();
        assert_eq!(
            out.stdout.lines().filter(|l| l.contains(": ok (")).count(),
            playbooks
        );
        let empty = tempfile::tempdir().unwrap();
        let none = Contain::new()
            .args(["validate", &empty.path().display().to_string()])
            .run();
        assert_ne!(none.code, 0);
        assert!(
            none.stderr.contains("no playbook in this directory"),
            "{}",
            none.stderr
        );
    }

    #[test]
    fn drill_and_exercise_validation_speak_json_when_asked() {
        let drill = Contain::new()
            .args([
                "-o",
                "json",
                "drill",
                "validate",
                &repo("examples/drills/exec-burst.yaml"),
            ])
            .run();
        assert_eq!(drill.code, 0, "{}", drill.stderr);
        assert_eq!(drill.json()[0]["valid"], true);
        let exercise = Contain::new()
            .args([
                "-o",
                "json",
                "exercise",
                "validate",
                &repo("examples/exercises/cryptominer-in-shop.yaml"),
            ])
            .run();
        assert_eq!(exercise.code, 0, "{}", exercise.stderr);
        assert_eq!(exercise.json()[0]["valid"], true);
    }

    #[test]
    fn an_empty_or_comment_only_snapshot_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("empty.yaml", ""),
            ("comments.yaml", "# nothing here\n\n"),
            ("dashes.yaml", "---\n---\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let out = Contain::new()
                .args([
                    "tabletop",
                    &repo("playbooks/isolate-pod.yaml"),
                    "--snapshot",
                    &path.display().to_string(),
                    "--set",
                    "pod=x",
                    "--set",
                    "namespace=shop",
                ])
                .run();
            assert_eq!(out.code, 3, "{name}: {}", out.stderr);
            assert!(
                out.stderr
                    .contains(&format!("{name}:1:1: the snapshot holds no objects")),
                "{name}: {}",
                out.stderr
            );
        }
    }

    #[test]
    fn a_drill_naming_a_param_its_playbook_does_not_have_is_refused_before_it_detonates() {
        let dir = tempfile::tempdir().unwrap();
        let drill = std::fs::read_to_string(repo("examples/drills/exec-burst.yaml"))
            .unwrap()
            .replace(
                "../../playbooks/isolate-pod.yaml",
                &repo("playbooks/isolate-pod.yaml"),
            )
            .replace(
                "      pod: \"{{ decoys.web.pod }}\"",
                "      pdo: \"{{ decoys.web.pod }}\"",
            );
        let path = dir.path().join("drill.yaml");
        std::fs::write(&path, drill).unwrap();
        let out = Contain::new()
            .args(["drill", "validate", &path.display().to_string()])
            .run();
        assert_ne!(out.code, 0);
        let said = out.stderr.replace("\n  │ ", " ");
        assert!(
            said.contains(
                "drill.yaml:43:7: spec.contain.params.pdo: playbook isolate-pod has no param `pdo`"
            ),
            "{said}"
        );
        assert!(
            said.contains("drill.yaml:42:5: spec.contain.params: playbook isolate-pod requires param `pod`, which the drill does not give"),
            "{said}"
        );
    }
}
