//! A run lives in the cluster too, on the real control plane: responder A (its own journal
//! directory, the admin identity, machine `responder-a`) runs `compromised-pod` and is killed
//! in the middle; responder B (an empty journal directory, a ServiceAccount token, machine
//! `responder-b`) lists the run, pulls it, resumes it to the same end as an uninterrupted run,
//! and rolls it back, while A's later resume is refused naming B's records. The same with
//! `--journal cluster`, where A keeps no local journal at all. And a run past its
//! `review_after` is listed by `contain runs --due`, gets its Event from `contain review`, and
//! a node uncordoned by hand under a quarantine is flagged.

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::{self, ObjectRef};
use contain::cluster::{Cluster, WriteMode};
use serde_json::{Value, json};

use crate::harness::{Contain, Outcome, playbook_file, repo};
use crate::live::{self, Namespace};

/// Which journal the responders write first.
#[derive(Clone, Copy, PartialEq)]
enum Journal {
    /// The local journal, the ContainmentRun following it.
    Mirrored,
    /// The ContainmentRun alone (`--journal cluster`).
    Cluster,
}

/// One responder: a machine name, an identity (kubeconfig) and a journal directory.
struct Responder {
    host: &'static str,
    kubeconfig: std::path::PathBuf,
    journal: tempfile::TempDir,
    evidence: tempfile::TempDir,
    mode: Journal,
}

impl Responder {
    fn new(host: &'static str, kubeconfig: std::path::PathBuf, mode: Journal) -> Self {
        Responder {
            host,
            kubeconfig,
            journal: tempfile::tempdir().unwrap(),
            evidence: tempfile::tempdir().unwrap(),
            mode,
        }
    }

    /// `contain` as this responder, with its journal mode.
    fn contain(&self) -> Contain {
        let journal = match self.mode {
            Journal::Mirrored => self.journal.path().display().to_string(),
            Journal::Cluster => "cluster".to_string(),
        };
        self.with_journal(&journal)
    }

    /// `contain` as this responder on its local journal directory, whatever its mode.
    fn local(&self) -> Contain {
        self.with_journal(&self.journal.path().display().to_string())
    }

    fn with_journal(&self, journal: &str) -> Contain {
        Contain::new()
            .args(["--no-progress", "--kubeconfig"])
            .args([self.kubeconfig.display().to_string()])
            .args(["--journal", journal])
            .args(["--evidence", &self.evidence.path().display().to_string()])
            .env("CONTAIN_HOST", self.host)
    }
}

/// A suspect pod of a Deployment on a node of its own (the quarantine's guard must not touch
/// other tests' nodes), in a namespace of its own.
struct Suspect {
    ns: Namespace,
    node: String,
    pod: String,
}

impl Suspect {
    async fn new(cluster: &KubeCluster, name: &str) -> Self {
        let ns = Namespace::new(cluster, name).await;
        let suffix = ns.name.rsplit('-').next().unwrap().to_string();
        let node = format!("{name}-node-{suffix}");
        live::dedicated_node(cluster, &node, false).await;
        let pod = live::web_on_node(cluster, &ns.name, &node).await;
        Suspect { ns, node, pod }
    }

    fn playbook(&self, responder: &Responder) -> Contain {
        responder
            .contain()
            .args(["run", "--yes", &repo("playbooks/compromised-pod.yaml")])
            .args(["--set", &format!("pod={}", self.pod), "-n", &self.ns.name])
            .args(["--lock-ttl", "3"])
    }

    /// What the run left, as comparable across two suspects: each step's status and what is
    /// in force, from the run's ContainmentRun.
    async fn outcome(&self, responder: &Responder, run: &str) -> Value {
        let row = runs(responder, &["-n", &self.ns.name])
            .into_iter()
            .find(|r| r["run"] == run)
            .unwrap_or_else(|| panic!("run {run} is not listed in {}", self.ns.name));
        let cluster = live::connect(live::kubeconfig()).await;
        let object = cluster
            .get(&ObjectRef::new("Node", None, &self.node))
            .await
            .unwrap()
            .unwrap();
        let shown = responder
            .contain()
            .args(["-o", "json", "handover", run])
            .run();
        assert_eq!(shown.code, 0, "{}", shown.stderr);
        let briefing = shown.json();
        json!({
            "phase": row["phase"],
            "in_force": briefing["in_force"].as_array().unwrap().iter().map(|f| f["step"].clone()).collect::<Vec<_>>(),
            "proven": briefing["done_and_proven"].as_array().unwrap().iter().map(|s| json!([s["step"], s["verification"]["failed"]])).collect::<Vec<_>>(),
            "node_cordoned": object["spec"]["unschedulable"],
            "policies": live::list(&cluster, "NetworkPolicy", &self.ns.name).await.len(),
        })
    }

    async fn cleanup(&self, cluster: &KubeCluster) {
        let guard = format!("contain-quarantine-{}", self.node);
        for kind in [
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
        ] {
            let _ = cluster
                .delete(
                    &ObjectRef::new(kind, None, &guard),
                    &contain::cluster::Preconditions::default(),
                    None,
                    WriteMode::Apply,
                )
                .await;
        }
        live::delete_node(cluster, &self.node).await;
    }
}

/// `contain runs -o json` as a responder sees it.
fn runs(responder: &Responder, args: &[&str]) -> Vec<Value> {
    let out = responder
        .contain()
        .args(["-o", "json", "runs"])
        .args(args.iter().copied())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json().as_array().cloned().unwrap_or_default()
}

/// A kubeconfig for a ServiceAccount bound to cluster-admin: responder B's own identity.
async fn second_identity(
    cluster: &KubeCluster,
    ns: &str,
    dir: &std::path::Path,
) -> (String, std::path::PathBuf) {
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "responder-b", "namespace": ns}});
    let account = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "responder-b-admin", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "responder-b", "namespace": ns}]});
    cluster.create(&binding, WriteMode::Apply).await.unwrap();
    // Cluster-wide reads and writes (the node, admission policies, runs in every namespace).
    let cluster_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("responder-b-{ns}"), "labels": {"contain.dev/test-namespace": ns}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "responder-b", "namespace": ns}]});
    cluster
        .create(&cluster_binding, WriteMode::Apply)
        .await
        .unwrap();
    let token = cluster
        .request_token(&ObjectRef::of(&account).unwrap(), 900, None)
        .await
        .unwrap();
    let user = format!("system:serviceaccount:{ns}:responder-b");
    (user, live::token_kubeconfig(&token, dir))
}

async fn remove_second_identity(cluster: &KubeCluster, ns: &str) {
    let _ = cluster
        .delete(
            &ObjectRef::new("ClusterRoleBinding", None, &format!("responder-b-{ns}")),
            &contain::cluster::Preconditions::default(),
            None,
            WriteMode::Apply,
        )
        .await;
}

fn killed(out: &Outcome) -> bool {
    out.code == -1 && out.stderr.contains("failpoint")
}

/// The run a responder's killed run left in the suspect's namespace.
fn the_run(responder: &Responder, suspect: &Suspect) -> String {
    let listed = runs(responder, &["-n", &suspect.ns.name]);
    assert_eq!(
        listed.len(),
        1,
        "one run in {}: {listed:?}",
        suspect.ns.name
    );
    listed[0]["run"].as_str().unwrap().to_string()
}

async fn hand_over(mode: Journal) {
    let cluster = live::connect(live::kubeconfig()).await;
    let tag = match mode {
        Journal::Mirrored => "handover",
        Journal::Cluster => "handover-c",
    };

    // The uninterrupted run, for comparison.
    let reference = Suspect::new(&cluster, &format!("{tag}-ref")).await;
    let plain = Responder::new("responder-a", live::kubeconfig(), mode);
    let out = reference.playbook(&plain).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let reference_run = the_run(&plain, &reference);
    let expected = reference.outcome(&plain, &reference_run).await;
    let undone = plain
        .contain()
        .args(["rollback", "--yes", &reference_run])
        .run();
    assert_eq!(undone.code, 0, "{}", undone.stderr);
    reference.cleanup(&cluster).await;

    let suspect = Suspect::new(&cluster, tag).await;
    let dir = tempfile::tempdir().unwrap();
    let (b_user, b_kubeconfig) = second_identity(&cluster, &suspect.ns.name, dir.path()).await;
    let a = Responder::new("responder-a", live::kubeconfig(), mode);
    let b = Responder::new("responder-b", b_kubeconfig, mode);

    // A is killed in the middle: after isolating, before detaching.
    let out = suspect
        .playbook(&a)
        .env("CONTAIN_TEST_FAILPOINT", "after-write:isolate")
        .run();
    assert!(
        killed(&out),
        "A was not killed: {}\n{}",
        out.stdout,
        out.stderr
    );
    if mode == Journal::Cluster {
        assert!(
            contain::journal::run_ids(a.journal.path()).is_empty(),
            "with --journal cluster, A keeps no local journal"
        );
    }

    // B sees the run in the cluster, with A holding it.
    let listed = runs(&b, &["-A", "--target", &suspect.pod]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let run = listed[0]["run"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["phase"], "Running", "{listed:?}");
    assert!(
        listed[0]["responder"]
            .as_str()
            .unwrap()
            .ends_with("on responder-a"),
        "{listed:?}"
    );
    if mode == Journal::Mirrored {
        let pulled = b.contain().args(["journal", "pull", &run]).run();
        assert_eq!(pulled.code, 0, "{}", pulled.stderr);
        assert!(pulled.stdout.contains("chain intact"), "{}", pulled.stdout);
        let verified = b.contain().args(["journal", "verify", &run]).run();
        assert_eq!(verified.code, 0, "{}", verified.stdout);
    }
    let resumed = b.contain().args(["resume", "--yes", &run]).run();
    assert_eq!(
        resumed.code, 0,
        "B resumes\n{}\n{}",
        resumed.stdout, resumed.stderr
    );

    // The same end as the uninterrupted run, now held by B, the take-over journaled.
    assert_eq!(suspect.outcome(&b, &run).await, expected);
    let briefing = b
        .contain()
        .args(["-o", "json", "handover", &run])
        .run()
        .json();
    assert_eq!(briefing["holder"], format!("{b_user} on responder-b"));
    let handovers = briefing["handovers"].as_array().unwrap();
    assert!(
        handovers
            .iter()
            .any(|h| h["to"] == format!("{b_user} on responder-b")
                && h["from"].as_str().unwrap().ends_with("on responder-a")
                && h["for"] == "resume"),
        "{handovers:?}"
    );
    assert!(!briefing["pending_undos"].as_array().unwrap().is_empty());
    // Finished, the run released its Leases: the briefing asked the cluster who holds them.
    let locks = briefing["locks"].as_array().unwrap();
    assert!(!locks.is_empty());
    assert!(locks.iter().all(|l| l["held_by"] == "free"), "{locks:?}");
    let markdown = b.contain().args(["handover", &run]).run();
    assert_eq!(markdown.code, 0, "{}", markdown.stderr);
    for section in [
        "## In force now",
        "## Pending",
        "## Decisions and approvals",
        "## Next steps",
    ] {
        assert!(
            markdown.stdout.contains(section),
            "{section}:\n{}",
            markdown.stdout
        );
    }
    assert!(markdown.stdout.contains("isolate"), "{}", markdown.stdout);

    // A comes back and is refused, naming B's records.
    let again = a.contain().args(["resume", "--yes", &run]).run();
    match mode {
        Journal::Mirrored => {
            assert_ne!(again.code, 0, "A's resume went through: {}", again.stdout);
            assert!(
                again.stderr.contains("went on without this journal")
                    && again.stderr.contains("responder-b"),
                "{}",
                again.stderr
            );
        }
        // A had no journal of its own to be behind: it reads the run as B left it, finished,
        // and is told who finished it. Nothing is written.
        Journal::Cluster => assert!(
            again.code == 0
                && again.stdout.contains("already finished")
                && again
                    .stdout
                    .contains("on responder-b, who took it over from"),
            "{}\n{}",
            again.stdout,
            again.stderr
        ),
    }

    // B rolls it back: nothing in force, the node schedulable, no policy left.
    let rolled = b.contain().args(["rollback", "--yes", &run]).run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);
    let after = suspect.outcome(&b, &run).await;
    assert_eq!(after["phase"], "RolledBack");
    assert_eq!(after["in_force"], json!([]));
    assert_ne!(after["node_cordoned"], json!(true));
    assert_eq!(after["policies"], 0);
    // A's local copy (mirrored) is still refused, now behind the rollback too.
    if mode == Journal::Mirrored {
        let later = a.local().args(["rollback", "--yes", &run]).run();
        assert_ne!(later.code, 0, "{}", later.stdout);
        assert!(later.stderr.contains("responder-b"), "{}", later.stderr);
    }
    remove_second_identity(&cluster, &suspect.ns.name).await;
    suspect.cleanup(&cluster).await;
}

#[tokio::test]
async fn a_run_killed_on_one_machine_is_resumed_and_rolled_back_from_another() {
    hand_over(Journal::Mirrored).await;
}

#[tokio::test]
async fn with_the_cluster_as_journal_a_run_is_taken_over_with_no_local_journal() {
    hand_over(Journal::Cluster).await;
}

const REVIEWED: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: reviewed-quarantine}
params:
  node: {type: string, required: true}
review_after: 1s
next_steps: ["Find the miner's way in"]
steps:
  - id: quarantine
    action: node.quarantine
    target: {kind: Node, name: "{{ params.node }}"}
    evidence: {waived: review test}
"#;

#[tokio::test]
async fn a_run_past_its_review_is_listed_due_gets_its_event_and_a_hand_uncordon_is_flagged() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "review").await;
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    let node = format!("review-node-{suffix}");
    live::dedicated_node(&cluster, &node, false).await;
    let playbook = playbook_file(REVIEWED);
    let responder = Responder::new("responder-a", live::kubeconfig(), Journal::Mirrored);
    let out = responder
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args(["--set", &format!("node={node}")])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("cluster copy: ContainmentRun kube-system/"),
        "{}",
        out.stderr
    );
    let run = contain::journal::run_ids(responder.journal.path())
        .pop()
        .unwrap();
    let listed = |args: &[&str]| -> Vec<Value> {
        runs(&responder, args)
            .into_iter()
            .filter(|r| r["run"] == run.as_str())
            .collect()
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let due = listed(&["-A", "--due"]);
    assert_eq!(due.len(), 1, "the run is due");
    assert_eq!(due[0]["overdue"], true);

    // `contain review` says so once: an Event on the run's ContainmentRun.
    // In the run's namespace: other tests' runs are not this one's to review.
    let reviewed = responder
        .contain()
        .args(["-n", "kube-system", "review", "--yes"])
        .run();
    assert_eq!(reviewed.code, 0, "{}\n{}", reviewed.stdout, reviewed.stderr);
    assert!(reviewed.stdout.contains(&run), "{}", reviewed.stdout);
    let events: Vec<Value> = live::list(&cluster, "Event", "kube-system")
        .await
        .into_iter()
        .filter(|e| {
            e["reason"] == "ContainReviewDue"
                && e["message"].as_str().unwrap_or_default().contains(&run)
        })
        .collect();
    assert_eq!(events.len(), 1, "one review Event: {events:?}");
    assert_eq!(events[0]["involvedObject"]["kind"], "ContainmentRun");
    let again = responder
        .contain()
        .args(["-n", "kube-system", "review", "--yes"])
        .run();
    assert!(!again.stdout.contains(&run), "said twice: {}", again.stdout);

    // Someone uncordons the node by hand: the guard is still in force, and `contain runs`
    // says both.
    let uncordoned = live::kubectl(&["uncordon", &node]);
    assert!(uncordoned.status.success());
    let row = listed(&["-A"]).remove(0);
    let flagged = row["undone_by_hand"].as_array().unwrap();
    assert!(
        flagged
            .iter()
            .any(|l| l.as_str().unwrap().contains("spec.unschedulable is unset")),
        "{flagged:?}"
    );
    assert!(
        flagged.iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("still in force: ValidatingAdmissionPolicy")),
        "{flagged:?}"
    );
    let table = responder.contain().args(["runs", "-A"]).run();
    assert!(table.stdout.contains("undone by hand"), "{}", table.stdout);

    let rolled = responder.contain().args(["rollback", "--yes", &run]).run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);
    assert!(
        listed(&["-A", "--due"]).is_empty(),
        "a rolled-back run is not due"
    );
    live::delete_node(&cluster, &node).await;
}

#[test]
fn the_shipped_review_cronjob_applies_with_only_its_names_changed() {
    // Under names of its own: the drill test applies and deletes `contain-system` too.
    let shipped = std::fs::read_to_string(repo("examples/kubernetes/review-cronjob.yaml")).unwrap();
    let manifest = shipped
        .replace("contain-system", "contain-review-test")
        .replace("name: contain-review\n", "name: contain-review-test\n");
    let file = playbook_file(&manifest);
    let path = file.path().display().to_string();
    let applied = live::kubectl(&["apply", "-f", &path]);
    let checked = live::kubectl(&["apply", "--dry-run=server", "-f", &path]);
    let deleted = live::kubectl(&["delete", "-f", &path, "--timeout=90s"]);
    for (what, out) in [
        ("apply", &applied),
        ("dry run", &checked),
        ("delete", &deleted),
    ] {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = String::from_utf8_lossy(&applied.stdout);
    assert!(
        out.contains("cronjob.batch/contain-review-test created"),
        "{out}"
    );
}

const ROLLED_BACK_WHEN_DUE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: label-until-review}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
review_after: 1s
on_review_due: rollback
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true"}}
"#;

#[tokio::test]
async fn a_run_whose_playbook_says_so_is_rolled_back_by_review_through_the_cluster_journal() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "review-rb").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 1).await;
    let pod = object::name(&pods[0]).unwrap().to_string();
    let playbook = playbook_file(ROLLED_BACK_WHEN_DUE);
    let responder = Responder::new("responder-a", live::kubeconfig(), Journal::Mirrored);
    let out = responder
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args(["--set", &format!("pod={pod}"), "-n", &ns.name])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run = contain::journal::run_ids(responder.journal.path())
        .pop()
        .unwrap();
    let label = |cluster: &KubeCluster| {
        let cluster = cluster.clone();
        let (ns, pod) = (ns.name.clone(), pod.clone());
        async move {
            let now = cluster
                .get(&ObjectRef::new("Pod", Some(&ns), &pod))
                .await
                .unwrap()
                .unwrap();
            object::labels(&now).get("contain.dev/suspect").cloned()
        }
    };
    assert_eq!(label(&cluster).await.as_deref(), Some("true"));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    // As the shipped CronJob runs it: no local journal, another machine.
    let reviewer = Responder::new("contain-review", live::kubeconfig(), Journal::Cluster);
    let reviewed = reviewer
        .contain()
        .args(["-n", &ns.name, "review", "--yes"])
        .run();
    assert_eq!(reviewed.code, 0, "{}\n{}", reviewed.stdout, reviewed.stderr);
    assert!(
        reviewed.stdout.contains(&format!(
            "run {run}: its playbook says on_review_due: rollback"
        )),
        "{}",
        reviewed.stdout
    );
    assert_eq!(label(&cluster).await, None, "the label was undone");
    let row = runs(&reviewer, &["-n", &ns.name])
        .into_iter()
        .find(|r| r["run"] == run.as_str())
        .unwrap();
    assert_eq!(row["phase"], "RolledBack", "{row}");
    assert!(
        row["responder"]
            .as_str()
            .unwrap()
            .ends_with("on contain-review"),
        "{row}"
    );
    // The responder's own journal is behind now, and says so.
    let later = responder.contain().args(["rollback", "--yes", &run]).run();
    assert_ne!(later.code, 0, "{}", later.stdout);
    assert!(later.stderr.contains("contain-review"), "{}", later.stderr);
}
