//! The plan/apply contract, offline: the whole run planned against the effects of the steps
//! before each one, guards that refuse, typed checks, and one outcome per run whose words and
//! exit code agree in every mode. (The live half is in `contract_live`.)

use contain::cluster::Cluster;
use contain::cluster::sim::SimCluster;
use contain::event::{Outcome, Recorder};
use contain::execute::{AutoApprove, Executor, Mode, RunConfig};
use contain::playbook::load::{bind_params, load_bytes};
use contain::source::Source;
use serde_json::Value;

use crate::harness::{Contain, playbook_file, repo};

const SUSPECT: &str = "web-fjejlcldef-x7k2p";

fn snapshot() -> String {
    repo("examples/snapshots/cluster.yaml")
}

fn compromised_pod() -> String {
    repo("playbooks/compromised-pod.yaml")
}

/// The plan document of `contain -o json plan|tabletop …`.
fn document(mode: &str, playbook: &str, set: &[&str]) -> (i32, Value) {
    let mut args = vec!["-o", "json", mode, playbook, "--snapshot"];
    let snapshot = snapshot();
    args.push(&snapshot);
    for s in set {
        args.extend(["--set", s]);
    }
    let out = Contain::new().args(args).run();
    (out.code, out.json())
}

fn step<'a>(document: &'a Value, id: &str) -> &'a Value {
    document["plan"]["steps"]
        .as_array()
        .expect("the document carries the plan")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

/// A revocation in two steps: the rotation is planned after the unbinding.
const REVOKE_THEN_ROTATE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: revoke-then-rotate}
steps:
  - id: revoke
    action: serviceaccount.revoke
    target: {kind: ServiceAccount, name: web, namespace: shop}
    with: {modes: [unbind, legacy-secrets]}
  - id: rotate
    action: serviceaccount.revoke
    target: {kind: ServiceAccount, name: web, namespace: shop}
    with: {modes: [rotate]}
"#;

#[test]
fn the_rotation_is_planned_against_the_state_the_revocation_leaves() {
    let file = playbook_file(REVOKE_THEN_ROTATE);
    let (code, doc) = document("plan", &file.path().display().to_string(), &[]);
    assert_eq!(code, 0, "{doc}");
    let revoke = step(&doc, "revoke");
    let unbinds = revoke["plan"]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["op"] == "patch")
        .count();
    assert_eq!(unbinds, 2, "revoke unbinds both bindings: {revoke}");
    let rotate = step(&doc, "rotate");
    assert_eq!(rotate["state"], "planned");
    let notes = rotate["plan"]["notes"].to_string();
    assert!(
        notes.contains("0 legacy token Secret(s), 0 binding(s) name it"),
        "the rotation sees the bindings and the Secret the revocation removes as gone: {notes}"
    );
    assert_eq!(doc["outcome"]["status"], "planned");
}

#[test]
fn the_shipped_compromised_pod_playbook_rotates_in_the_step_that_unbinds() {
    let (code, doc) = document(
        "plan",
        &compromised_pod(),
        &[
            &format!("pod={SUSPECT}"),
            "namespace=shop",
            "rotate_account=true",
        ],
    );
    assert_eq!(code, 0, "{doc}");
    assert_eq!(step(&doc, "revoke")["state"], "skipped");
    let rotate = step(&doc, "rotate");
    let ops: Vec<&str> = rotate["plan"]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|op| op["op"].as_str())
        .collect();
    assert_eq!(
        ops.iter().filter(|op| **op == "patch").count(),
        2,
        "the bindings are unbound in the rotating step: {rotate}"
    );
    assert!(
        ops.contains(&"create"),
        "and the account recreated: {ops:?}"
    );
}

#[test]
fn the_kube_system_guard_refuses_in_plan_and_tabletop_before_any_step() {
    for mode in ["plan", "tabletop"] {
        let (code, doc) = document(
            mode,
            &compromised_pod(),
            &["pod=coredns-7db6d8ff4d-9xk2m", "namespace=kube-system"],
        );
        assert_eq!(code, 5, "{mode}: {doc}");
        assert_eq!(doc["outcome"]["status"], "refused", "{mode}");
        assert!(
            doc["outcome"]["reason"]
                .as_str()
                .unwrap()
                .contains("refusing to run in kube-system"),
            "{mode}: {doc}"
        );
        assert!(
            doc["steps"].as_array().unwrap().is_empty(),
            "{mode}: nothing planned"
        );
    }
}

#[test]
fn a_static_control_plane_pod_is_refused_by_its_own_guard() {
    // The namespace guard is the first line; the pod's own nature is the second, whatever the
    // namespace param says.
    let text = std::fs::read_to_string(compromised_pod()).unwrap().replace(
        "  - that: params.namespace != \"kube-system\"\n",
        "  - that: \"true\"\n",
    );
    let playbook = playbook_file(&text);
    let (code, doc) = document(
        "tabletop",
        &playbook.path().display().to_string(),
        &["pod=kube-apiserver-node-a", "namespace=kube-system"],
    );
    assert_eq!(code, 5, "{doc}");
    assert!(
        doc["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("is a control-plane pod"),
        "{doc}"
    );
}

#[test]
fn an_unchecked_verification_is_never_reported_as_verified() {
    let (code, doc) = document(
        "tabletop",
        &compromised_pod(),
        &[&format!("pod={SUSPECT}"), "namespace=shop"],
    );
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["outcome"]["status"], "succeeded_unchecked");
    let steps = doc["steps"].as_array().unwrap();
    let capture = steps.iter().find(|s| s["id"] == "capture").unwrap();
    assert_eq!(capture["verified"], "partly", "{capture}");
    assert_eq!(capture["checks"]["passed"], 0);
    assert_eq!(capture["checks"]["not_checked"], 1);
    let counted: u64 = steps
        .iter()
        .map(|s| s["checks"]["not_checked"].as_u64().unwrap())
        .sum();
    assert_eq!(doc["checks"]["not_checked"].as_u64(), Some(counted));
    assert_eq!(
        doc["outcome"]["not_checked"].as_u64(),
        Some(counted),
        "the outcome counts what was not checked"
    );

    let text = Contain::new()
        .args(["tabletop", &compromised_pod(), "--snapshot", &snapshot()])
        .args([
            "--set",
            &format!("pod={SUSPECT}"),
            "--set",
            "namespace=shop",
        ])
        .run();
    let line = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("capture ") && l.contains("forensics.capture"))
        .unwrap();
    assert!(line.ends_with("partly (1 not checked)"), "{line}");
    assert!(
        text.stdout.contains(&format!(
            "outcome: succeeded, with {counted} check(s) not performed (exit 0)"
        )),
        "{}",
        text.stdout
    );
}

/// Playbooks whose outcome is known, with the status word and the exit code it must give.
const OUTCOMES: &[(&str, &str, i32)] = &[
    (
        "steps:\n  - id: mark\n    action: object.label\n    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}\n    with: {labels: {a: b}}\n",
        "succeeded",
        0,
    ),
    (
        "require:\n  - {that: 'false', message: no today}\nsteps:\n  - id: mark\n    action: object.label\n    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}\n    with: {labels: {a: b}}\n",
        "refused",
        5,
    ),
    (
        "steps:\n  - id: missing\n    action: object.label\n    target: {kind: Pod, name: nope, namespace: shop}\n    with: {labels: {a: b}}\n    on_failure: continue\n  - id: mark\n    action: object.label\n    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}\n    with: {labels: {a: b}}\n",
        "failed",
        1,
    ),
    (
        "steps:\n  - id: wait\n    action: wait\n    target: {kind: Deployment, name: web, namespace: shop}\n    with: {field: status.phase, equals: Never, timeout: 1s}\n",
        "failed",
        1,
    ),
];

#[test]
fn exit_codes_and_outcome_words_agree_in_every_mode() {
    for (steps, status, code) in OUTCOMES {
        let text =
            format!("apiVersion: contain/v1\nkind: Playbook\nmetadata: {{name: t}}\n{steps}");
        let playbook = playbook_file(&text);
        let path = playbook.path().display().to_string();
        for mode in ["plan", "tabletop"] {
            let (got, doc) = document(mode, &path, &[]);
            // Planning cannot know what applying will do: a plan that plans is "planned".
            let (want_status, want_code) = match (mode, *status) {
                ("plan", "succeeded" | "failed") => ("planned", 0),
                _ => (*status, *code),
            };
            assert_eq!(
                doc["outcome"]["status"], want_status,
                "{mode} of {steps}: {doc}"
            );
            assert_eq!(got, want_code, "{mode} of {steps}");
            assert_eq!(doc["exit_code"].as_i64(), Some(want_code as i64), "{mode}");
            let out = Contain::new()
                .args([mode, &path, "--snapshot", &snapshot()])
                .run();
            assert_eq!(out.code, want_code, "{mode} text of {steps}");
            let last = out
                .stdout
                .lines()
                .find(|l| l.starts_with("outcome: "))
                .unwrap_or_else(|| panic!("{mode}: no outcome line in {}", out.stdout));
            assert!(
                last.ends_with(&format!("(exit {want_code})")),
                "{mode}: {last}"
            );
            let word_failed = last.starts_with("outcome: failed");
            assert_eq!(word_failed, want_status == "failed", "{mode}: {last}");
            let word_succeeded = last.starts_with("outcome: succeeded");
            assert_eq!(
                word_succeeded,
                want_code == 0 && mode == "tabletop",
                "{mode}: {last}"
            );
        }
    }
}

#[test]
fn the_readme_exit_code_table_is_the_one_in_the_code() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(
        readme.contains(&contain::exit::markdown_table()),
        "README.md must carry the exit-code table exactly as `contain::exit::markdown_table()` renders it:\n{}",
        contain::exit::markdown_table()
    );
    let listed = Contain::new()
        .args(["-o", "json", "exit-codes"])
        .run()
        .json();
    let codes: Vec<(u64, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["code"].as_u64().unwrap(), e["meaning"].as_str().unwrap()))
        .collect();
    let table: Vec<(u64, &str)> = contain::exit::TABLE
        .iter()
        .map(|(c, m)| (u64::from(*c), *m))
        .collect();
    assert_eq!(codes, table, "`contain exit-codes -o json` is the table");
    let help = Contain::new().args(["--help"]).run();
    // clap wraps long lines: compare with white space folded.
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let folded = fold(&help.stdout);
    for (code, meaning) in contain::exit::TABLE {
        assert!(
            folded.contains(&fold(&format!("{code} {meaning}"))),
            "--help lacks exit code {code}: {}",
            help.stdout
        );
    }
}

const INVALID_AFTER_IRREVERSIBLE: &str = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
params:
  ticket: {type: string, default: "INC 42 / urgent!"}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}
  - id: mark
    action: object.label
    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}
    with: {labels: {contain.dev/suspect: "true"}}
  - id: revoke
    action: serviceaccount.revoke
    target: {kind: ServiceAccount, name: web, namespace: shop}
    with: {modes: [legacy-secrets]}
  - id: ticket
    action: object.label
    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}
    with: {labels: {contain.dev/ticket: "{{ params.ticket }}"}}
"#;

#[tokio::test]
async fn an_invalid_label_after_an_irreversible_step_refuses_the_run_before_any_write() {
    let text = std::fs::read_to_string(snapshot()).unwrap();
    let sim = SimCluster::load(&Source::new("cluster.yaml", text)).unwrap();
    let before = sim.objects();
    let loaded = load_bytes("t.yaml", INVALID_AFTER_IRREVERSIBLE.as_bytes().to_vec()).unwrap();
    let params = bind_params(&loaded, &[]).unwrap();
    let config = RunConfig::new("r", Mode::Tabletop, params, "t.yaml");
    let mut recorder = Recorder::default();
    let result = Executor::new(&sim, &mut recorder, &mut AutoApprove)
        .run(&loaded, &config)
        .await
        .unwrap();
    let Outcome::Refused { reason } = &result.outcome else {
        panic!("{:?}", result.outcome)
    };
    assert!(
        reason.contains("step 4 (ticket)") && reason.contains("contain.dev/ticket"),
        "{reason}"
    );
    assert_eq!(sim.objects(), before, "nothing was written");
    assert!(sim.identity().await.is_ok());
}

#[test]
fn a_hyphenated_step_id_is_referenced_with_brackets() {
    let text = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
steps:
  - id: scale-down
    action: workload.scale
    target: {kind: Deployment, name: web, namespace: shop}
    with: {replicas: 0}
    evidence: {waived: test}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: shop}
    with: {annotations: {before: "{{ steps['scale-down'].outputs.previous_replicas.web }}"}}
"#;
    let playbook = playbook_file(text);
    let path = playbook.path().display().to_string();
    let out = Contain::new().args(["validate", &path]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, doc) = document("tabletop", &path, &[]);
    assert_eq!(code, 0, "{doc}");
    let note = step(&doc, "note");
    assert!(
        note["plan"].to_string().contains("\\\"3\\\"")
            || note["plan"].to_string().contains("\"3\""),
        "{note}"
    );
}

#[test]
fn every_template_in_the_docs_compiles_and_reads_only_the_documented_scopes() {
    let mut seen = 0;
    // Drill params are templates over the drill run's own scopes; the README's drill section
    // is checked against those.
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let drills_at = readme
        .find("## Chaos drills")
        .expect("the README has a drill section");
    let drills_end = drills_at + 3 + readme[drills_at + 3..].find("\n## ").unwrap();
    let playbook_docs = [
        format!("{}{}", &readme[..drills_at], &readme[drills_end..]),
        std::fs::read_to_string(repo("playbooks/README.md")).unwrap(),
    ];
    let drill_doc = readme[drills_at..drills_end].to_string();
    let docs = [
        // `item` in a `for_each` step, `plan` in a `require_plan` guard.
        (
            "README.md",
            &playbook_docs[0],
            &["params", "facts", "steps", "run", "item", "plan"][..],
        ),
        (
            "playbooks/README.md",
            &playbook_docs[1],
            &["params", "facts", "steps", "run", "item", "plan"][..],
        ),
        ("README.md (drills)", &drill_doc, &["run", "decoys"][..]),
    ];
    for (doc, text, scopes) in docs {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                break;
            };
            let template = &rest[start..start + len + 2];
            rest = &rest[start + len + 2..];
            // A prose mention of the markers themselves ("a string without `{{` …") is not a
            // template.
            if template.contains('`') || template.contains('\n') {
                continue;
            }
            seen += 1;
            contain::playbook::render::check_syntax(template)
                .unwrap_or_else(|e| panic!("{doc}: `{template}` does not compile: {e}"));
            for reference in contain::playbook::refs::in_template(template) {
                assert!(
                    scopes.contains(&reference.root.as_str()),
                    "{doc}: `{template}` reads `{}`, which is not a scope (a hyphenated step id needs brackets)",
                    reference.root
                );
            }
        }
    }
    assert!(seen >= 10, "only {seen} templates found in the docs");
}

#[test]
fn a_run_killed_before_its_plan_was_durable_never_started() {
    let dir = tempfile::tempdir().unwrap();
    // One run killed before its header was durable (an empty store), one after the header but
    // before the approved plan.
    let empty = "20261127T000000Z-aaaaaa";
    let header_only = "20261127T000001Z-bbbbbb";
    drop(contain::journal::open_new(dir.path(), empty).unwrap());
    {
        let journal = contain::journal::open_new(dir.path(), header_only).unwrap();
        let info = contain::journal::RunInfo {
            playbook_path: repo("playbooks/label-suspect-pod.yaml"),
            playbook_sha256: "0".repeat(64),
            playbook_name: "label-suspect-pod".into(),
            params: serde_json::Map::new(),
            cluster_id: "x".into(),
            server: "https://127.0.0.1:1".into(),
            context: None,
            user: "someone".into(),
            mode: "live".into(),
            started_at: "2026-11-27T00:00:01Z".into(),
            locks: Vec::new(),
            host: None,
            review: Default::default(),
            next_steps: Vec::new(),
            sensitive_params: Vec::new(),
        };
        contain::journal::RunJournal::create(&journal, header_only, &info).unwrap();
    }
    let contain = || Contain::new().args(["--journal", &dir.path().display().to_string()]);
    let listed = contain().args(["-o", "json", "journal", "ls"]).run().json();
    for row in listed.as_array().unwrap() {
        assert_eq!(row["status"], "never started, nothing written", "{row}");
    }
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for run in [empty, header_only] {
        for command in [
            vec!["resume", "--yes", run],
            vec!["rollback", "--yes", run],
            vec!["journal", "show", run],
        ] {
            let out = contain().args(command.clone()).run();
            assert_eq!(out.code, 9, "{command:?}: {}{}", out.stdout, out.stderr);
            assert!(
                out.stdout.contains("never started") && out.stdout.contains("nothing was written"),
                "{command:?}: {}",
                out.stdout
            );
        }
    }
    for run in [empty, header_only] {
        let verify = contain().args(["journal", "verify", run]).run();
        assert_eq!(verify.code, 9, "{}{}", verify.stdout, verify.stderr);
        assert!(verify.stdout.contains("never started"), "{}", verify.stdout);
    }
}

#[test]
fn a_fact_field_that_does_not_exist_is_caught_by_validate() {
    let text = std::fs::read_to_string(compromised_pod()).unwrap().replace(
        "name: \"{{ facts.suspect.pod.spec.nodeName }}\"",
        "name: \"{{ facts.suspect.pod.spec.nodename }}\"",
    );
    let playbook = playbook_file(&text);
    let out = Contain::new()
        .args(["validate", &playbook.path().display().to_string()])
        .run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("has no field `nodename`")
            && out.stderr.contains("did you mean `nodeName`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn messages_point_at_the_place_and_state_the_limit() {
    let syntax = playbook_file(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: t}\nsteps:\n  - id: a\n    action: wait\n    with: {duration: [1s\n",
    );
    let out = Contain::new()
        .args(["validate", &syntax.path().display().to_string()])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains(":7:22]") && out.stderr.contains(" 7 │     with: {duration: [1s"),
        "the snippet is at the error, not at 1:1: {}",
        out.stderr
    );

    let pattern = playbook_file(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: t}\nparams:\n  ticket: {type: string, required: true, pattern: \"INC-[0-9]+\"}\nsteps:\n  - id: a\n    action: wait\n    with: {duration: 1s}\n",
    );
    let out = Contain::new()
        .args(["validate", &pattern.path().display().to_string()])
        .args(["--set", "ticket=bad"])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("does not match the pattern"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("is required"),
        "a value given but refused is not also missing: {}",
        out.stderr
    );

    let big = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(big.path(), vec![b'a'; 2_000_000]).unwrap();
    let out = Contain::new()
        .args(["validate", &big.path().display().to_string()])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("is larger than the limit of 1048576 bytes")
            && !out.stderr.contains("1048577"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_closed_standard_output_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        vec!["completions", "bash"],
        vec![
            "tabletop",
            "playbooks/compromised-pod.yaml",
            "--snapshot",
            "examples/snapshots/cluster.yaml",
            "--set",
            "pod=web-fjejlcldef-x7k2p",
            "--set",
            "namespace=shop",
        ],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_contain"))
            .args(&args)
            .current_dir(repo(""))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -0`: the reader goes away before the first line.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(
            out.status.signal() == Some(libc_sigpipe()) || out.status.code() == Some(0),
            "{args:?}: {:?}",
            out.status
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: a panic");
    }
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

/// A node whose pod a PodDisruptionBudget protects, allowing no disruption now.
const BUDGETED: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-1, namespace: shop, uid: rs1}
spec: {replicas: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1-a
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: rs1, controller: true}]
spec: {nodeName: n1, containers: [{name: app, image: x}]}
status: {phase: Running}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
status: {disruptionsAllowed: 0}
"#;

#[test]
fn a_drain_a_budget_blocks_now_is_planned_and_retried_at_apply_time_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.yaml");
    std::fs::write(&snapshot, BUDGETED).unwrap();
    let playbook = playbook_file(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: drain}\nsteps:\n  - id: drain\n    action: node.drain\n    target: {kind: Node, name: n1}\n    evidence: {waived: test}\n",
    );
    let out = Contain::new()
        .args(["plan", &playbook.path().display().to_string(), "--snapshot"])
        .args([snapshot.display().to_string()])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PodDisruptionBudget shop/web allows no disruption now: the eviction of web-1-a is tried at apply time"),
        "{}",
        out.stdout
    );
}

fn compromised_daemonset() -> String {
    repo("tests/fixtures/compromised-daemonset.yaml")
}

/// The shipped compromised-workload playbook over a DaemonSet whose selector a bystander's
/// pods match too: only the DaemonSet's own pods, accounts and nodes are in the plan.
#[test]
fn a_compromised_daemon_set_is_contained_by_ownership_in_parts_per_account_and_node() {
    let (code, doc) = {
        let out = Contain::new()
            .args([
                "-o",
                "json",
                "tabletop",
                &repo("playbooks/compromised-workload.yaml"),
            ])
            .args(["--snapshot", &compromised_daemonset()])
            .args([
                "--set",
                "kind=DaemonSet",
                "--set",
                "name=miner",
                "--set",
                "namespace=shop",
            ])
            .run();
        (out.code, out.json())
    };
    assert_eq!(code, 0, "{doc}");
    let ids: Vec<&str> = doc["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "planned")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "capture",
            "isolate",
            "suspend",
            "revoke@miner",
            "quarantine@node-a",
            "quarantine@node-b"
        ]
    );
    let text = doc.to_string();
    assert!(
        !text.contains("agent-a"),
        "the bystander's pod is in no plan"
    );
    assert_eq!(
        step(&doc, "isolate")["plan"]["outputs"]["pods"],
        serde_json::json!(["miner-a", "miner-b"])
    );
}

#[test]
fn quarantining_every_schedulable_node_needs_an_explicit_allow() {
    let every = |allow: bool| {
        playbook_file(&format!(
            "apiVersion: contain/v1\nkind: Playbook\nmetadata: {{name: all-nodes}}\nsteps:\n  - id: q\n    action: node.quarantine\n    target: {{kind: Node, selector: {{}}}}\n    with: {{allow_every_node: {allow}}}\n"
        ))
    };
    let refused = Contain::new()
        .args([
            "plan",
            &every(false).path().display().to_string(),
            "--snapshot",
            &compromised_daemonset(),
        ])
        .run();
    assert_eq!(refused.code, 5, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stdout.contains("the plan quarantines every schedulable node of the cluster (3 of 3: node-a, node-b, node-c)"),
        "{}",
        refused.stdout
    );
    let allowed = Contain::new()
        .args([
            "plan",
            &every(true).path().display().to_string(),
            "--snapshot",
            &compromised_daemonset(),
        ])
        .run();
    assert_eq!(allowed.code, 0, "{}\n{}", allowed.stdout, allowed.stderr);
}

#[test]
fn a_require_plan_guard_refuses_a_plan_past_its_limit_with_its_message() {
    let playbook = playbook_file(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: limited}\nmax_node_share: 50%\nrequire_plan:\n  - that: plan.nodes_quarantined <= 1\n    message: \"at most one node per run ({{ plan.nodes_quarantined }} planned)\"\nsteps:\n  - id: q\n    action: node.cordon\n    for_each: params.nodes\n    target: {kind: Node, name: \"{{ item }}\"}\nparams:\n  nodes: {type: list, default: [node-a]}\n",
    );
    let path = playbook.path().display().to_string();
    let one = Contain::new()
        .args(["plan", &path, "--snapshot", &compromised_daemonset()])
        .run();
    assert_eq!(one.code, 0, "{}\n{}", one.stdout, one.stderr);
    let two = Contain::new()
        .args([
            "plan",
            &path,
            "--snapshot",
            &compromised_daemonset(),
            "--set",
            "nodes=node-a,node-b",
        ])
        .run();
    assert_eq!(two.code, 5, "{}\n{}", two.stdout, two.stderr);
    assert!(
        two.stdout
            .contains("more than the playbook's max_node_share of 50%"),
        "the share is checked first: {}",
        two.stdout
    );
}

#[test]
fn item_is_defined_only_in_a_step_with_for_each_and_plan_figures_are_checked() {
    let out = Contain::new()
        .args(["validate", &playbook_file(
            "apiVersion: contain/v1\nkind: Playbook\nmetadata: {name: t}\nrequire_plan:\n  - {that: plan.nodes_quarantned < 2, message: no}\nsteps:\n  - id: l\n    action: object.label\n    target: {kind: Node, name: \"{{ item }}\"}\n    with: {labels: {a: b}}\n",
        ).path().display().to_string()])
        .run();
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("`item` is only defined in a step with `for_each`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`plan.nodes_quarantned` is not a figure of the plan"),
        "{}",
        out.stderr
    );
}
