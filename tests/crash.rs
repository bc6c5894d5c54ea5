//! Crash at every boundary, on the live control plane: the process is aborted (as `kill -9`
//! would) before a step's intent is journaled, after it and before the write, after the write
//! and before the step is done, and in the middle of a rollback. After `resume`, the cluster
//! must be exactly as an uninterrupted run leaves it, with no write done twice and no object
//! recreated; after `rollback`, exactly as it was before the run.

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::{self, ObjectRef};
use contain::cluster::{Cluster, WriteMode};
use serde_json::{Value, json};

use crate::harness::{Contain, Live, Outcome};
use crate::live::{self, Namespace};

const PLAYBOOK: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: crash-test}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
facts:
  pod: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true", app.kubernetes.io/role: null}}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with: {annotations: {contain.dev/ticket: INC-9, contain.dev/node: "{{ facts.pod.spec.nodeName }}"}}
  - id: shrink
    action: workload.scale
    target: {kind: Deployment, name: api, namespace: "{{ params.namespace }}"}
    with: {replicas: 1}
    evidence: {waived: crash test}
  - id: tag-account
    action: object.label
    target: {kind: ServiceAccount, name: worker, namespace: "{{ params.namespace }}"}
    with: {labels: {tier: frozen}}
"#;

const STEPS: &[&str] = &["mark", "note", "shrink", "tag-account"];

/// The objects the playbook touches, in a namespace of their own.
struct Scenario {
    ns: Namespace,
    pod: String,
    live: Live,
    playbook: tempfile::NamedTempFile,
    /// `--journal cluster`: the run's ContainmentRun is its only journal.
    cluster_journal: bool,
}

impl Scenario {
    async fn new(cluster: &KubeCluster, name: &str) -> Self {
        let ns = Namespace::new(cluster, name).await;
        let pods = live::deployment(cluster, &ns.name, "web", 1).await;
        live::deployment(cluster, &ns.name, "api", 2).await;
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "worker", "namespace": ns.name, "labels": {"tier": "hot"}}});
        cluster.create(&account, WriteMode::Apply).await.unwrap();
        let pod = object::name(&pods[0]).unwrap().to_string();
        let pod_ref = ObjectRef::new("Pod", Some(&ns.name), &pod);
        let role = json!({"metadata": {"labels": {"app.kubernetes.io/role": "frontend"}}});
        cluster
            .patch(&pod_ref, &role, WriteMode::Apply)
            .await
            .unwrap();
        let mut playbook = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut playbook, PLAYBOOK.as_bytes()).unwrap();
        Scenario {
            ns,
            pod,
            live: Live::new(),
            playbook,
            cluster_journal: false,
        }
    }

    /// The same scenario with the cluster as the journal.
    fn on_cluster_journal(mut self) -> Self {
        self.cluster_journal = true;
        self
    }

    fn contain(&self, args: &[&str]) -> Contain {
        let contain = if self.cluster_journal {
            Contain::new().args([
                "--no-progress",
                "--kubeconfig",
                &live::kubeconfig().display().to_string(),
                "--journal",
                "cluster",
                "--evidence",
                &self.live.evidence.path().display().to_string(),
            ])
        } else {
            self.live.contain()
        };
        contain.args(args.iter().copied())
    }

    /// The local journal's commands (`journal ls`, `export`), on a copy pulled from the
    /// cluster first when the cluster is the journal.
    fn local(&self, args: &[&str]) -> Contain {
        self.live.contain().args(args.iter().copied())
    }

    /// Each run of the scenario (id, status), oldest first: from the local journal, or from
    /// the ContainmentRuns of its namespace (pulled into the local journal, to be read like
    /// it) with the cluster as the journal.
    fn runs(&self) -> Vec<(String, String)> {
        if self.cluster_journal {
            let listed = self
                .contain(&["-o", "json", "-n", &self.ns.name, "runs"])
                .run()
                .json();
            let mut runs: Vec<(String, String)> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let run = r["run"].as_str().unwrap().to_string();
                    let phase = r["phase"].as_str().unwrap_or_default();
                    // A run whose approved plan never reached the cluster never started.
                    let status = match phase {
                        "Planned" => "never started".to_string(),
                        other => other.to_ascii_lowercase(),
                    };
                    (run, status)
                })
                .collect();
            runs.sort();
            for (run, _) in &runs {
                let pulled = self.local(&["journal", "pull", run]).run();
                assert_eq!(pulled.code, 0, "{}", pulled.stderr);
            }
            return runs;
        }
        let listed = self.local(&["-o", "json", "journal", "ls"]).run().json();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["run"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn command(&self) -> Contain {
        self.contain(&["run", "--yes", &self.playbook.path().display().to_string()])
            .args([
                "--set".to_string(),
                format!("namespace={}", self.ns.name),
                "--set".to_string(),
                format!("pod={}", self.pod),
            ])
    }

    fn run(&self, failpoint: Option<&str>) -> Outcome {
        let mut contain = self.command();
        if let Some(point) = failpoint {
            contain = contain.env("CONTAIN_TEST_FAILPOINT", point);
        }
        contain.run()
    }

    fn run_id(&self) -> String {
        self.live.last_run()
    }

    /// What the playbook's objects look like now: the fields it changes, and the uids that must
    /// never change (no object recreated).
    async fn state(&self, cluster: &KubeCluster) -> Value {
        let get = |kind: &str, name: &str| ObjectRef::new(kind, Some(&self.ns.name), name);
        let pod = cluster.get(&get("Pod", &self.pod)).await.unwrap().unwrap();
        let web = cluster
            .get(&get("Deployment", "web"))
            .await
            .unwrap()
            .unwrap();
        let api = cluster
            .get(&get("Deployment", "api"))
            .await
            .unwrap()
            .unwrap();
        let account = cluster
            .get(&get("ServiceAccount", "worker"))
            .await
            .unwrap()
            .unwrap();
        let annotations = |o: &Value| {
            let mut map = o["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            // The deployment controller owns this one; it is not the playbook's doing.
            map.remove("deployment.kubernetes.io/revision");
            Value::Object(map)
        };
        json!({
            "pod": {"uid": object::uid(&pod), "labels": object::labels(&pod)},
            "web": {"uid": object::uid(&web), "annotations": annotations(&web)},
            "api": {"uid": object::uid(&api), "replicas": api["spec"]["replicas"]},
            "account": {"uid": object::uid(&account), "labels": object::labels(&account)},
        })
    }

    /// Each planned write is applied exactly once across the crashed run and its resume.
    fn assert_each_write_once(&self, run: &str) {
        self.assert_writes(run, false);
    }

    /// Like `assert_each_write_once`, for a process killed at any instant: a kill between the
    /// API server's answer and the journal's `applied` record leaves a write the journal cannot
    /// know of, which the resumed run then finds done (`already_done`). Never more than once.
    fn assert_writes_at_most_once(&self, run: &str) {
        self.assert_writes(run, true);
    }

    fn assert_writes(&self, run: &str, killed_anywhere: bool) {
        let out = self.local(&["journal", "export", run]).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let records: Vec<Value> = out
            .stdout
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for step in STEPS {
            let approved = records
                .iter()
                .find(|r| r["body"]["record"] == "approved")
                .expect("the approved plan is journaled");
            let writes = approved["body"]["plan"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == *step)
                .and_then(|s| s["plan"]["ops"].as_array())
                .map(|ops| {
                    ops.iter()
                        .filter(|op| {
                            matches!(
                                op["op"].as_str(),
                                Some("create" | "patch" | "delete" | "evict")
                            )
                        })
                        .count()
                })
                .unwrap_or(0);
            let count = |outcome: &str| {
                records
                    .iter()
                    .filter(|r| {
                        r["body"]["record"] == "applied"
                            && r["body"]["step"] == *step
                            && r["body"]["outcome"] == outcome
                    })
                    .count()
            };
            let applied = count("applied");
            if killed_anywhere {
                assert!(
                    applied <= writes && applied + count("already_done") >= writes,
                    "step {step}: {applied} write(s) applied, {} found done, for {writes} planned",
                    count("already_done")
                );
            } else {
                assert_eq!(
                    applied, writes,
                    "step {step}: {applied} write(s) applied for {writes} planned"
                );
            }
        }
        let verify = self.local(&["journal", "verify", run]).run();
        assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    }
}

/// Before, and after an uninterrupted run: the reference every crashed run must match.
async fn reference(cluster: &KubeCluster) -> (Value, Value) {
    let (before, after, _) = timed_reference(cluster).await;
    (before, after)
}

/// The reference, and how long the uninterrupted run took (process start to exit).
async fn timed_reference(cluster: &KubeCluster) -> (Value, Value, std::time::Duration) {
    let scenario = Scenario::new(cluster, "crash-ref").await;
    let before = normalize(scenario.state(cluster).await);
    let started = std::time::Instant::now();
    let out = scenario.run(None);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let after = normalize(scenario.state(cluster).await);
    (before, after, took)
}

/// Uids and names differ between namespaces: keep only what the playbook decides.
fn normalize(mut state: Value) -> Value {
    for key in ["pod", "web", "api", "account"] {
        state[key].as_object_mut().unwrap().remove("uid");
    }
    if let Some(labels) = state["pod"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    if let Some(annotations) = state["web"]["annotations"].as_object_mut() {
        annotations.remove("contain.dev/node");
    }
    state
}

fn crashed(out: &Outcome) -> bool {
    out.code == -1 && out.stderr.contains("failpoint")
}

async fn crash_and_resume(point: &str) {
    let cluster = live::connect(live::kubeconfig()).await;
    let (before, expected) = reference(&cluster).await;
    for step in STEPS {
        let scenario = Scenario::new(&cluster, &format!("crash-{}", &point[..5])).await;
        let original = scenario.state(&cluster).await;
        let out = scenario.run(Some(&format!("{point}:{step}")));
        assert!(
            crashed(&out),
            "{point}:{step} did not crash: {}\n{}",
            out.stdout,
            out.stderr
        );
        let run = scenario.run_id();
        let resumed = scenario.contain(&["resume", "--yes", &run]).run();
        assert_eq!(
            resumed.code, 0,
            "resume after {point}:{step}\n{}\n{}",
            resumed.stdout, resumed.stderr
        );
        let after = scenario.state(&cluster).await;
        for key in ["pod", "web", "api", "account"] {
            assert_eq!(
                after[key]["uid"], original[key]["uid"],
                "{point}:{step}: {key} was recreated"
            );
        }
        assert_eq!(
            normalize(after.clone()),
            expected,
            "{point}:{step}: resumed run differs from an uninterrupted one"
        );
        scenario.assert_each_write_once(&run);
        let rolled = scenario.contain(&["rollback", "--yes", &run]).run();
        assert_eq!(
            rolled.code, 0,
            "rollback after {point}:{step}\n{}\n{}",
            rolled.stdout, rolled.stderr
        );
        assert_eq!(
            normalize(scenario.state(&cluster).await),
            before,
            "{point}:{step}: rollback did not restore the objects"
        );
    }
}

#[tokio::test]
async fn crash_before_the_intent_then_resume() {
    crash_and_resume("before-intent").await;
}

#[tokio::test]
async fn crash_after_the_intent_before_the_write_then_resume() {
    crash_and_resume("after-intent").await;
}

#[tokio::test]
async fn crash_after_the_write_before_done_then_resume() {
    crash_and_resume("after-write").await;
}

#[tokio::test]
async fn crash_in_the_middle_of_a_rollback_then_roll_back_again() {
    let cluster = live::connect(live::kubeconfig()).await;
    for step in ["mark", "shrink"] {
        let scenario = Scenario::new(&cluster, "crash-rollb").await;
        let before = scenario.state(&cluster).await;
        let out = scenario.run(None);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let run = scenario.run_id();
        let crashed_rollback = scenario
            .contain(&["rollback", "--yes", &run])
            .env("CONTAIN_TEST_FAILPOINT", &format!("in-rollback:{step}"))
            .run();
        assert!(
            crashed(&crashed_rollback),
            "{}\n{}",
            crashed_rollback.stdout,
            crashed_rollback.stderr
        );
        let again = scenario.contain(&["rollback", "--yes", &run]).run();
        assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
        assert_eq!(
            scenario.state(&cluster).await,
            before,
            "in-rollback:{step}: objects not restored"
        );
        // A third rollback has nothing left to do and changes nothing.
        let third = scenario.contain(&["rollback", "--yes", &run]).run();
        assert_eq!(third.code, 0);
        assert!(
            third.stdout.contains("nothing to roll back"),
            "{}",
            third.stdout
        );
        assert_eq!(scenario.state(&cluster).await, before);
    }
}

#[test]
fn resume_refuses_a_changed_playbook() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cluster = live::connect(live::kubeconfig()).await;
        let scenario = Scenario::new(&cluster, "crash-chg").await;
        let out = scenario.run(Some("before-intent:note"));
        assert!(crashed(&out));
        let run = scenario.run_id();
        std::fs::write(
            scenario.playbook.path(),
            PLAYBOOK.replace("INC-9", "INC-10"),
        )
        .unwrap();
        let refused = scenario.contain(&["resume", "--yes", &run]).run();
        assert_eq!(refused.code, 5, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("changed since run"),
            "{}",
            refused.stderr
        );
    });
}

#[test]
fn resume_and_rollback_refuse_another_cluster() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = contain::journal::open_new(dir.path(), "20261127T000000Z-aaaaaa").unwrap();
        let info = contain::journal::RunInfo {
            playbook_path: crate::harness::repo("playbooks/label-suspect-pod.yaml"),
            playbook_sha256: "0".repeat(64),
            playbook_name: "label-suspect-pod".into(),
            params: serde_json::Map::new(),
            cluster_id: "00000000-0000-0000-0000-000000000000".into(),
            server: "https://elsewhere.example:6443".into(),
            context: None,
            user: "someone".into(),
            mode: "live".into(),
            started_at: "2026-11-27T00:00:00Z".into(),
            locks: Vec::new(),
            host: None,
            review: Default::default(),
            next_steps: Vec::new(),
            sensitive_params: Vec::new(),
        };
        let mut sink =
            contain::journal::RunJournal::create(&journal, "20261127T000000Z-aaaaaa", &info)
                .unwrap();
        let plan: contain::plan::RunPlan = serde_json::from_value(json!({
            "format": 1, "run_id": "20261127T000000Z-aaaaaa", "created_at": "2026-11-27T00:00:00Z",
            "playbook": {"path": info.playbook_path, "name": "label-suspect-pod", "sha256": info.playbook_sha256},
            "params": {}, "cluster": {"id": info.cluster_id, "server": info.server, "kind": "live"},
            "steps": []
        }))
        .unwrap();
        sink.append(&contain::journal::Entry::Approved {
            plan: Box::new(plan),
        })
        .unwrap();
    }
    for command in ["resume", "rollback"] {
        let out = Contain::new()
            .args([
                "--kubeconfig",
                &live::kubeconfig().display().to_string(),
                "--journal",
                &dir.path().display().to_string(),
            ])
            .args([command, "--yes", "20261127T000000Z-aaaaaa"])
            .run();
        assert_eq!(out.code, 5, "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("was made on another cluster"),
            "{command}: {}",
            out.stderr
        );
    }
}

const SLOW: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: slow}
params:
  namespace: {type: string, required: true}
steps:
  - id: pause
    action: wait
    with: {duration: 8s}
  - id: tag-account
    action: object.label
    target: {kind: ServiceAccount, name: default, namespace: "{{ params.namespace }}"}
    with: {labels: {tier: frozen}}
"#;

#[tokio::test]
async fn runs_side_by_side_share_a_journal_but_one_run_has_one_writer() {
    let cluster = live::connect(live::kubeconfig()).await;
    let scenario = Scenario::new(&cluster, "crash-conc").await;
    let slow_playbook = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(slow_playbook.path(), SLOW).unwrap();
    let journal = scenario.live.journal.path().display().to_string();
    let kubeconfig = live::kubeconfig().display().to_string();
    let mut slow = std::process::Command::new(env!("CARGO_BIN_EXE_contain"))
        .args([
            "--no-progress",
            "--kubeconfig",
            &kubeconfig,
            "--journal",
            &journal,
            "run",
            "--yes",
        ])
        .arg(slow_playbook.path())
        .args(["--set", &format!("namespace={}", scenario.ns.name)])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The slow run's store appears as soon as the run starts.
    let mut run = None;
    for _ in 0..40 {
        run = contain::journal::run_ids(scenario.live.journal.path())
            .into_iter()
            .next();
        if run.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let run = run.expect("the slow run started");
    // Another run on the same journal (and other targets: a target's lock would refuse it) goes
    // ahead at once.
    let side = scenario.run(None);
    assert_eq!(side.code, 0, "{}\n{}", side.stdout, side.stderr);
    // A second writer on the slow run is refused with a clear message.
    let second = scenario.contain(&["resume", "--yes", &run]).run();
    assert_eq!(second.code, 7, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("in use by another process"),
        "{}",
        second.stderr
    );
    assert!(slow.wait().unwrap().success());
    let verify = scenario.contain(&["journal", "verify", &run]).run();
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

/// A small deterministic generator for kill delays (the seed is printed, so a failing trial can
/// be replayed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

#[tokio::test]
async fn killed_at_random_instants_a_run_resumes_to_the_uninterrupted_result() {
    killed_at_random_instants(false, 12).await;
}

#[tokio::test]
async fn killed_at_random_instants_with_the_cluster_as_journal_a_run_resumes_to_the_same_result() {
    killed_at_random_instants(true, 8).await;
}

/// Kills a run at random instants (its ContainmentRun following the local journal, or with
/// `cluster_journal` the cluster as its only journal) and resumes it: the uninterrupted result.
async fn killed_at_random_instants(cluster_journal: bool, trials: usize) {
    let cluster = live::connect(live::kubeconfig()).await;
    let (before, expected, took) = timed_reference(&cluster).await;
    // Kill anywhere from the process start to a little past its end.
    let span_ms = (took.as_millis() as u64 * 11 / 10).max(50);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!(
        "random kills (cluster journal: {cluster_journal}): seed {seed}, delays below {span_ms} ms"
    );
    let mut random = Lcg(seed);
    let mut outcomes = std::collections::BTreeMap::new();
    for trial in 0..trials {
        let mut scenario = Scenario::new(&cluster, "crash-kill").await;
        if cluster_journal {
            scenario = scenario.on_cluster_journal();
        }
        let original = scenario.state(&cluster).await;
        // Half the kills anywhere; half in the later part of the run, where the writes are (the
        // first part is connecting, reading facts, planning and the preflight).
        let delay = if trial % 2 == 0 {
            random.below(span_ms)
        } else {
            span_ms / 2 + random.below(span_ms / 2)
        };
        // A short lock, so a run killed holding its targets' Leases frees them soon.
        let mut child = scenario.command().args(["--lock-ttl", "3"]).spawn();
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        let runs = scenario.runs();
        let status = runs
            .first()
            .map_or("no record".to_string(), |(_, s)| s.clone());
        let context = format!(
            "trial {trial} (cluster journal: {cluster_journal}, seed {seed}, killed after {delay} ms, {status})"
        );
        let never_started = runs.is_empty() || status.starts_with("never started");
        if never_started {
            // Nothing was written: the objects are as they were, and a new run does the job.
            assert_eq!(
                scenario.state(&cluster).await,
                original,
                "{context}: a run that never started wrote something"
            );
            // A run killed after taking its locks keeps the targets until its lease expires:
            // the next run is refused (naming it) until then, and then does the job.
            let started = std::time::Instant::now();
            let again = loop {
                let again = scenario.run(None);
                if again.code != 10 || started.elapsed() > std::time::Duration::from_secs(10) {
                    break again;
                }
                let holder = runs
                    .last()
                    .map(|(r, _)| r.as_str())
                    .unwrap_or("contain run");
                assert!(again.stderr.contains(holder), "{context}: {}", again.stderr);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            };
            assert_eq!(
                again.code, 0,
                "{context}: {}\n{}",
                again.stdout, again.stderr
            );
        } else if !finished && !status.starts_with("succeeded") {
            let run = runs
                .iter()
                .rev()
                .find(|(r, _)| {
                    let shown = scenario.local(&["journal", "show", r]).run();
                    shown.code != 9
                })
                .unwrap()
                .0
                .clone();
            let resumed = scenario.contain(&["resume", "--yes", &run]).run();
            assert_eq!(
                resumed.code, 0,
                "{context}: resume\n{}\n{}",
                resumed.stdout, resumed.stderr
            );
        }
        *outcomes
            .entry(if never_started {
                "never started"
            } else if finished {
                "finished"
            } else {
                "resumed"
            })
            .or_insert(0) += 1;
        let after = scenario.state(&cluster).await;
        for key in ["pod", "web", "api", "account"] {
            assert_eq!(
                after[key]["uid"], original[key]["uid"],
                "{context}: {key} was recreated"
            );
        }
        assert_eq!(
            normalize(after),
            expected,
            "{context}: differs from an uninterrupted run"
        );
        // The run that wrote (a killed run that never started is listed too, and run ids of the
        // same second do not sort by time).
        let runs = scenario.runs();
        let run = runs
            .iter()
            .find(|(_, status)| !status.starts_with("never started"))
            .map(|(run, _)| run.clone())
            .unwrap_or_else(|| panic!("{context}: no run wrote: {runs:?}"));
        scenario.assert_writes_at_most_once(&run);
        let rolled = scenario.contain(&["rollback", "--yes", &run]).run();
        assert_eq!(
            rolled.code, 0,
            "{context}: rollback\n{}\n{}",
            rolled.stdout, rolled.stderr
        );
        assert_eq!(
            normalize(scenario.state(&cluster).await),
            before,
            "{context}: rollback did not restore the objects"
        );
    }
    eprintln!("random kills (cluster journal: {cluster_journal}): {outcomes:?}");
}

/// Copies a directory tree (a run's sled journal).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What `journal verify` made of a journal cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The chain ends, whole, at the record before the cut one.
    WithoutIt,
    /// The cut spared the record: the chain ends at it.
    WithIt,
    /// Refused with a message (exit 7).
    Refused,
}

/// A copy of the run's journal with its log cut at byte `at`: `journal verify` never takes a
/// torn append for a record, and `resume` reads it and stops cleanly.
fn cut_and_read(
    after: &std::path::Path,
    run: &str,
    at: usize,
    earlier: usize,
    unreachable: &std::path::Path,
) -> Cut {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    copy_dir(after, &root.join(run));
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(run).join("db"))
        .unwrap();
    log.set_len(at as u64).unwrap();
    drop(log);
    let context = format!("the log cut at byte {at}");
    let root_arg = root.display().to_string();
    let verify = Contain::new()
        .args([
            "--journal",
            &root_arg,
            "-o",
            "json",
            "journal",
            "verify",
            run,
        ])
        .run();
    assert!(
        !verify.stderr.contains("panicked"),
        "{context}: {}",
        verify.stderr
    );
    let cut = match verify.code {
        0 => match verify.json()["records"].as_u64() {
            Some(n) if n as usize == earlier => Cut::WithoutIt,
            Some(n) if n as usize == earlier + 1 => Cut::WithIt,
            other => panic!("{context}: a chain of {other:?} records: {}", verify.stdout),
        },
        7 => Cut::Refused,
        code => panic!(
            "{context}: journal verify exits {code}\n{}\n{}",
            verify.stdout, verify.stderr
        ),
    };
    let resume = Contain::new()
        .args([
            "--journal",
            &root_arg,
            "--call-timeout",
            "100ms",
            "--kubeconfig",
        ])
        .args([unreachable.display().to_string()])
        .args(["resume", "--yes", run])
        .run();
    assert!(
        matches!(resume.code, 4 | 7),
        "{context}: resume reads the journal, then stops cleanly (exit {}):\n{}\n{}",
        resume.code,
        resume.stdout,
        resume.stderr
    );
    assert!(!resume.stderr.contains("panicked"), "{context}");
    cut
}

#[tokio::test]
async fn a_journal_cut_at_every_byte_of_its_last_record_is_caught_and_never_crashes_resume() {
    let cluster = live::connect(live::kubeconfig()).await;
    let scenario = Scenario::new(&cluster, "crash-cut").await;
    let out = scenario.run(None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let finished = scenario.state(&cluster).await;
    let run = scenario.run_id();

    // The same run written again up to its last record ("before"), then with it ("after"): the
    // bytes that differ are where that last record lives in the journal's files.
    let (header, records) = {
        let journal = ::journal::Journal::open(
            &scenario.live.journal.path().join(&run),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        (journal.run(&run).unwrap(), journal.records(&run).unwrap())
    };
    let (last, earlier) = records.split_last().unwrap();
    let work = tempfile::tempdir().unwrap();
    let before = work.path().join("before").join(&run);
    {
        let journal = ::journal::Journal::open(&before, std::time::Duration::from_secs(5)).unwrap();
        journal.create_run(&run, header.info.clone()).unwrap();
        for record in earlier {
            journal.append(&run, record.body.clone()).unwrap();
        }
    }
    let after = work.path().join("after").join(&run);
    copy_dir(&before, &after);
    let appended = {
        let journal = ::journal::Journal::open(&after, std::time::Duration::from_secs(5)).unwrap();
        journal.append(&run, last.body.clone()).unwrap()
    };
    // The append's bytes in the log (`db`): from the first byte that differs from the journal
    // without it to the end of the two values it wrote in one batch, the record and the head
    // (sled stores values as given). What a close writes after them is not the record.
    let old = std::fs::read(before.join("db")).unwrap();
    let new = std::fs::read(after.join("db")).unwrap();
    let first = new
        .iter()
        .zip(&old)
        .position(|(a, b)| a != b)
        .unwrap_or(old.len());
    let end_of = |needle: &[u8]| {
        new.windows(needle.len())
            .rposition(|w| w == needle)
            .map(|at| at + needle.len())
            .expect("the appended value is in the log")
    };
    let record_end = end_of(&serde_json::to_vec(&appended).unwrap());
    let head_end = end_of(format!("\"hash\":\"{}\"}}", appended.hash).as_bytes());
    let end = record_end.max(head_end);
    assert!(
        first < end && end - first < 64 * 1024,
        "the append is bytes {first}..{end} of the log"
    );

    // An address nothing listens on: resume reads the journal, then cannot connect (exit 4).
    let unreachable = work.path().join("unreachable.kubeconfig");
    std::fs::write(
        &unreachable,
        std::fs::read_to_string(live::kubeconfig())
            .unwrap()
            .lines()
            .map(|l| match l.trim().strip_prefix("server: ") {
                Some(_) => "    server: https://127.0.0.1:1".to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    // Every offset, on four threads (each trial mostly waits on sled's fsyncs).
    let outcomes: Vec<Cut> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let (after, unreachable, run) = (&after, &unreachable, &run);
                let earlier = earlier.len();
                scope.spawn(move || {
                    (first + worker..end)
                        .step_by(4)
                        .map(|at| cut_and_read(after, run, at, earlier, unreachable))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a trial failed"))
            .collect()
    });
    let count = |kind: Cut| outcomes.iter().filter(|&&c| c == kind).count();
    eprintln!(
        "journal cuts: {} offsets ({first}..{end} of the log) in {:?}; chain intact without the last record {}, with it {}, refused {}",
        outcomes.len(),
        started.elapsed(),
        count(Cut::WithoutIt),
        count(Cut::WithIt),
        count(Cut::Refused)
    );
    assert!(
        count(Cut::WithoutIt) > 0,
        "some cut lost the last record whole"
    );

    // Resume from the journal as a crash mid-append leaves it: it finishes the run, and the
    // cluster is exactly as the uninterrupted run left it.
    let resumed_root = work.path().join("resumed");
    copy_dir(&before, &resumed_root.join(&run));
    let root_arg = resumed_root.display().to_string();
    let resume = Contain::new()
        .args(["--no-progress", "--journal", &root_arg, "--kubeconfig"])
        .args([live::kubeconfig().display().to_string()])
        .args(["resume", "--yes", &run])
        .run();
    assert_eq!(resume.code, 0, "{}\n{}", resume.stdout, resume.stderr);
    assert_eq!(scenario.state(&cluster).await, finished);
}
