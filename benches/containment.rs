//! Time to contain, on the local control plane, measured side by side in one run.
//!
//! `reference`: the reference containment (mark, isolate, detach, revoke, quarantine) by
//! `contain run`, by the same steps as a kubectl script, and by the floor: the writes of the
//! approved plan issued back to back by a minimal client over one connection, then the same
//! wait for the replacement pod. Each contender gets a fresh copy of the scenario each trial,
//! in rotating order; medians and ratios are printed, with `contain`'s time split by phase.
//!
//! `mass`: one image digest in N pods across N/20 namespaces on a KWOK node. `contain run` of
//! the shipped `contain-image` playbook against the floor: the same writes (from the same plan)
//! issued by the minimal client at the same concurrency, the write rate the API server
//! sustains on this machine.
//!
//! Run through `scripts/bench`, which builds the release binary and starts the control plane.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use contain::cluster::kube::{Connect, KubeCluster};
use contain::cluster::object::{self, ObjectRef, Selector};
use contain::cluster::{Cluster, Preconditions, Watch, WriteMode, kinds};
use contain::execute::apply::{self, AutoApprove, Carry};
use contain::plan::{Op, PlannedState, RunPlan};
use futures::StreamExt;
use serde_json::{Value, json};

struct Env {
    kubeconfig: PathBuf,
    contain: PathBuf,
    kubectl: PathBuf,
    root: PathBuf,
    cluster: KubeCluster,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let var = |name: &str| {
        PathBuf::from(
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by scripts/bench")),
        )
    };
    let kubeconfig = var("CONTAIN_BENCH_KUBECONFIG");
    let cluster = KubeCluster::connect(&Connect {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
        call_timeout: Some(Duration::from_secs(60)),
        user_agent: None,
    })
    .await
    .expect("the control plane answers");
    let env = Env {
        kubeconfig,
        contain: var("CONTAIN_BENCH_BIN"),
        kubectl: var("CONTAIN_BENCH_KUBECTL"),
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        cluster,
    };
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("reference") => {
            let trials = option("--trials").and_then(|t| t.parse().ok()).unwrap_or(5);
            reference(&env, trials).await;
        }
        Some("mass") => {
            let sizes: Vec<usize> = option("--pods")
                .unwrap_or_else(|| "1000,3000,10000".into())
                .split(',')
                .filter_map(|n| n.parse().ok())
                .collect();
            for pods in sizes {
                mass(&env, pods).await;
            }
        }
        _ => {
            eprintln!("usage: containment reference [--trials N] | mass [--pods 1000,3000,10000]");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reference containment

/// One fresh copy of the scenario: a namespace, a dedicated KWOK node, a Deployment of two pods
/// behind a Service, a policy admitting traffic to them, and a ServiceAccount with a RoleBinding
/// and a legacy token Secret.
struct Scenario {
    namespace: String,
    /// The suspect's node.
    node: String,
    nodes: [String; 2],
    suspect: String,
    suspect_uid: String,
}

async fn scenario(env: &Env, id: &str) -> Scenario {
    let c = &env.cluster;
    let namespace = format!("bench-{id}");
    // Two nodes of the trial's own: the suspect's gets quarantined, the replacement lands on
    // the other.
    let nodes = [format!("bench-node-{id}-a"), format!("bench-node-{id}-b")];
    for node in &nodes {
        create(c, json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": node, "type": "kwok", "bench-trial": id}},
            "spec": {"taints": [{"key": "bench-dedicated", "value": id, "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}
        }))
        .await;
    }
    create(
        c,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    )
    .await;
    until("the default ServiceAccount", || async {
        c.get(&ObjectRef::new(
            "ServiceAccount",
            Some(&namespace),
            "default",
        ))
        .await
        .ok()
        .flatten()
        .is_some()
    })
    .await;
    let ns = &namespace;
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "worker", "namespace": ns}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "worker-token", "namespace": ns,
                            "annotations": {"kubernetes.io/service-account.name": "worker"}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "reader", "namespace": ns},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "worker-reads", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": ns}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "allow-web", "namespace": ns},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"serviceAccountName": "worker",
                                              "nodeSelector": {"bench-trial": id},
                                              "tolerations": [{"key": "bench-dedicated", "operator": "Exists"}],
                                              "containers": [{"name": "app", "image": "registry.example/app:1"}]}}}}),
    ] {
        create(c, object).await;
    }
    let pods = kinds::lookup("Pod").expect("known kind");
    let selector = Selector::labels([("app".to_string(), "web".to_string())].into());
    let running = || async {
        let found = c.list(pods, Some(ns), &selector).await.unwrap_or_default();
        found
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .collect::<Vec<_>>()
    };
    until("two running pods", || async { running().await.len() == 2 }).await;
    let running = running().await;
    // The suspect's Service endpoints must exist before the run, or there is nothing to detach.
    until("the Service's endpoints", || async {
        let slices = c
            .list(
                kinds::lookup("EndpointSlice").expect("known kind"),
                Some(ns),
                &Selector::labels(
                    [("kubernetes.io/service-name".to_string(), "web".to_string())].into(),
                ),
            )
            .await
            .unwrap_or_default();
        slices
            .iter()
            .any(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 2))
    })
    .await;
    Scenario {
        namespace: namespace.clone(),
        node: running[0]["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        nodes,
        suspect: object::name(&running[0]).unwrap_or_default().to_string(),
        suspect_uid: object::uid(&running[0]).unwrap_or_default().to_string(),
    }
}

async fn teardown(env: &Env, s: &Scenario) {
    let c = &env.cluster;
    let _ = c
        .delete(
            &ObjectRef::new("Namespace", None, &s.namespace),
            &Preconditions::default(),
            None,
            WriteMode::Apply,
        )
        .await;
    for node in &s.nodes {
        let _ = c
            .delete(
                &ObjectRef::new("Node", None, node),
                &Preconditions::default(),
                None,
                WriteMode::Apply,
            )
            .await;
    }
}

/// One contender's time, with `contain`'s split by phase when it is `contain`.
struct Timing {
    total: Duration,
    phases: Vec<(String, f64)>,
    /// `(API writes, records)` of the run's ContainmentRun, when it kept one.
    copy: Option<(u64, u64)>,
}

async fn reference(env: &Env, trials: usize) {
    // `contain` keeps its ContainmentRun following the local journal (the default);
    // `local-only` keeps none (--no-cluster-copy), `cluster-wal` makes it the write-ahead log
    // (--journal cluster): what the cluster copy costs, side by side.
    let contenders = ["contain", "kubectl", "floor", "local-only", "cluster-wal"];
    let mut times: Vec<Vec<Timing>> = contenders.iter().map(|_| Vec::new()).collect();
    for trial in 0..trials {
        for k in 0..contenders.len() {
            let which = (trial + k) % contenders.len();
            let id = format!(
                "{}-{trial}-{}",
                contain::cmd::ctx::new_run_id()
                    .rsplit('-')
                    .next()
                    .unwrap_or("x"),
                contenders[which]
            );
            let s = scenario(env, &id).await;
            let timing = match contenders[which] {
                "contain" => contain_run(env, &s, Journaling::Mirrored),
                "local-only" => contain_run(env, &s, Journaling::LocalOnly),
                "cluster-wal" => contain_run(env, &s, Journaling::Cluster),
                "kubectl" => kubectl_run(env, &s),
                _ => floor_run(env, &s).await,
            };
            eprintln!(
                "trial {}: {:<8} {:>7.0} ms",
                trial + 1,
                contenders[which],
                timing.total.as_secs_f64() * 1e3
            );
            times[which].push(timing);
            teardown(env, &s).await;
        }
    }
    let medians: Vec<f64> = times
        .iter()
        .map(|t| median(t.iter().map(|t| t.total.as_secs_f64() * 1e3).collect()))
        .collect();
    println!("\nreference containment, {trials} trials each, medians (ms):");
    for (name, ms) in contenders.iter().zip(&medians) {
        let spread = times[contenders.iter().position(|c| c == name).unwrap()]
            .iter()
            .map(|t| t.total.as_secs_f64() * 1e3)
            .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        println!(
            "  {name:<8} {ms:>8.0}   (min {:.0}, max {:.0})",
            spread.0, spread.1
        );
    }
    println!(
        "  kubectl / contain: {:.1}x    contain / floor: {:.2}x",
        medians[1] / medians[0],
        medians[0] / medians[2]
    );
    // The admission guard takes effect at the API server's next policy refresh (once a second),
    // so any run that waits for it ends 0-1 s later at random: compared apart.
    let settled = |index: usize| {
        median(
            times[index]
                .iter()
                .map(|t| {
                    t.total.as_secs_f64() * 1e3
                        - t.phases
                            .iter()
                            .find(|p| p.0 == "quarantine-node: verify")
                            .map_or(0.0, |p| p.1)
                })
                .collect(),
        )
    };
    let contain_settled = settled(0);
    let floor_phase = |name: &str| {
        median(
            times[2]
                .iter()
                .filter_map(|t| t.phases.iter().find(|p| p.0 == name).map(|p| p.1))
                .collect(),
        )
    };
    println!(
        "  without the admission guard's wait (up to the API server's 1 s policy refresh):\n    contain {contain_settled:.0} ms, floor {:.0} ms (writes alone {:.0} ms): contain / floor {:.2}x",
        floor_phase("writes + controller waits"),
        floor_phase("writes"),
        contain_settled / floor_phase("writes + controller waits")
    );
    // What the run's ContainmentRun costs: the whole run and each of its five steps, against
    // the same run keeping no cluster copy, without the admission guard's 0-1 s wait (which
    // would drown it); and how many records each API write carried.
    let steps = 5.0;
    let local = settled(3);
    println!(
        "\nthe run's ContainmentRun, medians without the admission guard's wait (ms): local only {local:.0}"
    );
    for (name, index) in [
        ("following (default)", 0),
        ("write-ahead (--journal cluster)", 4),
    ] {
        let ms = settled(index);
        println!(
            "  {name:<32} {ms:>7.0}   {:+.0} ms, {:+.1} ms per step",
            ms - local,
            (ms - local) / steps
        );
    }
    for (name, index) in [
        ("following (default)", 0),
        ("write-ahead (--journal cluster)", 4),
    ] {
        let (writes, records) = times[index]
            .iter()
            .filter_map(|t| t.copy)
            .fold((0, 0), |(w, r), (tw, tr)| (w + tw, r + tr));
        if writes > 0 {
            println!(
                "  {name:<32} {:.2} records per API write ({records} records, {writes} writes over {} runs)",
                records as f64 / writes as f64,
                times[index].len()
            );
        }
    }
    println!("\ncontain, median of each phase (ms):");
    let names: Vec<String> = times[0]
        .first()
        .map(|t| t.phases.iter().map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    for name in names {
        let values: Vec<f64> = times[0]
            .iter()
            .filter_map(|t| t.phases.iter().find(|p| p.0 == name).map(|p| p.1))
            .collect();
        println!("  {name:<34} {:>7.1}", median(values));
    }
}

fn contain_command(env: &Env, journal: &Path) -> Command {
    contain_journaling(env, journal, journal.join("journal").as_os_str())
}

/// `contain` with `--journal` set to `journal` (a directory, or `cluster`).
fn contain_journaling(env: &Env, dir: &Path, journal: &std::ffi::OsStr) -> Command {
    let mut command = Command::new(&env.contain);
    command
        .arg("--no-progress")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("--journal")
        .arg(journal)
        .arg("--evidence")
        .arg(dir.join("evidence"));
    command
}

/// Where a benchmarked run journals.
#[derive(Clone, Copy)]
enum Journaling {
    /// The local journal, the ContainmentRun following it (the default).
    Mirrored,
    /// The local journal only (`--no-cluster-copy`).
    LocalOnly,
    /// The ContainmentRun as the write-ahead log (`--journal cluster`).
    Cluster,
}

/// `(API writes, records)` from the run's last line about its cluster copy.
fn copy_cost(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().rev().find(|l| l.contains("cluster copy:"))?;
    let inner = line.split_once("in step (")?.1;
    let mut numbers = inner
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .map(|n| n.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??))
}

fn contain_run(env: &Env, s: &Scenario, journaling: Journaling) -> Timing {
    let dir = tempfile::tempdir().expect("temp dir");
    let spawned = jiff::Timestamp::now();
    let started = Instant::now();
    let mut command = match journaling {
        Journaling::Cluster => contain_journaling(env, dir.path(), "cluster".as_ref()),
        _ => contain_command(env, dir.path()),
    };
    if let Journaling::LocalOnly = journaling {
        command.arg("--no-cluster-copy");
    }
    let out = command
        .args(["-o", "json", "run", "--yes"])
        .arg(env.root.join("benches/reference-containment.yaml"))
        .args([
            "--set",
            &format!("pod={}", s.suspect),
            "--set",
            &format!("namespace={}", s.namespace),
        ])
        .output()
        .expect("contain runs");
    let total = started.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        report["exit_code"],
        0,
        "contain run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Timing {
        total,
        phases: phases(
            &report,
            spawned,
            total,
            &["mark", "isolate", "detach", "revoke", "quarantine-node"],
        ),
        copy: copy_cost(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// `contain`'s time split by its events' timestamps: start-up (process, kubeconfig, first
/// request), planning (facts, plan, preflight, server dry run, the approved plan journaled),
/// per step the stale check with the journaled intent, the writes and the verification, then
/// the end of the run and the process.
fn phases(
    report: &Value,
    spawned: jiff::Timestamp,
    total: Duration,
    steps: &[&str],
) -> Vec<(String, f64)> {
    let events = report["events"].as_array().cloned().unwrap_or_default();
    let ms = |e: &Value| {
        e["at"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| (t - spawned).total(jiff::Unit::Millisecond).unwrap_or(0.0))
    };
    let first = |pred: &dyn Fn(&Value) -> bool| events.iter().find(|e| pred(e)).and_then(ms);
    let last = |pred: &dyn Fn(&Value) -> bool| events.iter().rev().find(|e| pred(e)).and_then(ms);
    let mut phases = Vec::new();
    let started = first(&|e| e["event"] == "run_started").unwrap_or(0.0);
    phases.push(("start-up (process to run start)".to_string(), started));
    let mut at = started;
    for (event, name) in [
        ("fact_resolved", "plan: facts"),
        ("step_planned", "plan: steps against the overlay"),
        ("preflight", "plan: permission preflight (SSAR)"),
        ("server_dry_run", "plan: server-side dry run"),
        ("plan_approved", "plan: approved plan journaled"),
    ] {
        let end = last(&|e| e["event"] == event).unwrap_or(at);
        phases.push((name.to_string(), end - at));
        at = end;
    }
    let approved = at;
    let mut previous = approved;
    for &step in steps {
        let is = |kind: &'static str| move |e: &Value| e["event"] == kind && e["step"] == step;
        let intent = first(&is("step_intent")).unwrap_or(previous);
        let written = last(&is("op_applied")).unwrap_or(intent);
        let verified = first(&is("step_verified")).unwrap_or(written);
        phases.push((format!("{step}: stale check + intent"), intent - previous));
        phases.push((format!("{step}: writes"), written - intent));
        phases.push((format!("{step}: verify"), verified - written));
        previous = first(&is("step_done")).unwrap_or(verified);
    }
    let finished = first(&|e| e["event"] == "run_finished").unwrap_or(previous);
    if steps.is_empty() {
        phases.push(("apply (every step)".to_string(), finished - previous));
    } else {
        phases.push((
            "end of run (last step .. finished)".to_string(),
            finished - previous,
        ));
    }
    phases.push((
        "exit (report, process end)".to_string(),
        total.as_secs_f64() * 1e3 - finished,
    ));
    phases
}

fn kubectl_run(env: &Env, s: &Scenario) -> Timing {
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(env.root.join("benches/reference-kubectl.sh"))
        .args([&s.namespace, &s.suspect, &s.node, "worker"])
        .env("KUBECTL", &env.kubectl)
        .env("KUBECONFIG", &env.kubeconfig)
        .status()
        .expect("bash runs");
    assert!(status.success(), "the kubectl script failed");
    Timing {
        total: started.elapsed(),
        phases: Vec::new(),
        copy: None,
    }
}

/// The plan `contain` would apply, read untimed: the floor issues exactly its writes.
fn plan_of(env: &Env, playbook: &str, sets: &[String]) -> RunPlan {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = contain_command(env, dir.path());
    command
        .args(["-o", "json", "plan"])
        .arg(env.root.join(playbook));
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("contain runs");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON plan");
    serde_json::from_value(report["plan"].clone()).expect("the plan reads back")
}

fn writes(plan: &RunPlan) -> Vec<(String, Op)> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.state {
            PlannedState::Planned { plan, .. } => Some((s.id.clone(), plan.ops.clone())),
            _ => None,
        })
        .flat_map(|(id, ops)| {
            ops.into_iter()
                .filter(Op::is_write)
                .map(move |op| (id.clone(), op))
        })
        .collect()
}

async fn floor_run(env: &Env, s: &Scenario) -> Timing {
    let plan = plan_of(
        env,
        "benches/reference-containment.yaml",
        &[
            format!("pod={}", s.suspect),
            format!("namespace={}", s.namespace),
        ],
    );
    let ops = writes(&plan);
    let c = &env.cluster;
    let selector = Selector::labels([("app".to_string(), "web".to_string())].into());
    let started = Instant::now();
    for (step, op) in &ops {
        apply::apply(op, step, &plan.run_id, Carry::Live, c, &mut AutoApprove)
            .await
            .expect("the floor's write is accepted");
    }
    let written = started.elapsed();
    // The same waits as contain's verification, side by side (the floor's best): the
    // replacement pod, the suspect gone from the Service's endpoints, and the node's admission
    // guard enforced (the API server loads new admission policies once a second).
    let pods = Watch::matching("Pod", Some(&s.namespace), selector.clone());
    let replaced =
        contain::cluster::wait::wait_until(Duration::from_secs(60), c.changes(&pods), || async {
            let found = c
                .list(
                    kinds::lookup("Pod").expect("known kind"),
                    Some(&s.namespace),
                    &selector,
                )
                .await?;
            Ok::<_, contain::cluster::ClusterError>(
                found
                    .iter()
                    .filter(|p| {
                        p["status"]["phase"] == "Running"
                            && object::uid(p) != Some(s.suspect_uid.as_str())
                    })
                    .count()
                    >= 2,
            )
        });
    let service =
        Selector::labels([("kubernetes.io/service-name".to_string(), "web".to_string())].into());
    let slices = Watch::matching("EndpointSlice", Some(&s.namespace), service.clone());
    let unlisted =
        contain::cluster::wait::wait_until(Duration::from_secs(60), c.changes(&slices), || async {
            let found = c
                .list(
                    kinds::lookup("EndpointSlice").expect("known kind"),
                    Some(&s.namespace),
                    &service,
                )
                .await?;
            Ok::<_, contain::cluster::ClusterError>(!contain::action::detach::slices_list_pod(
                &found,
                &s.suspect_uid,
            ))
        });
    let probe = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bench-probe", "namespace": s.namespace},
        "spec": {"nodeName": s.node, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "probe", "image": "registry.example/probe:1"}]}});
    let guarded = async {
        let guarded = contain::cluster::wait::wait_until(Duration::from_secs(15), None, || async {
            let refused = c.create(&probe, WriteMode::DryRun).await.err();
            Ok::<_, contain::cluster::ClusterError>(
                refused.is_some_and(|e| e.to_string().contains("is quarantined")),
            )
        })
        .await;
        (guarded, started.elapsed())
    };
    let controllers = async {
        let (replaced, unlisted) = futures::join!(replaced, unlisted);
        (replaced, unlisted, started.elapsed())
    };
    let ((replaced, unlisted, settled), (guarded, enforced)) = futures::join!(controllers, guarded);
    assert!(
        replaced.expect("the wait ends"),
        "no replacement pod within 60 s"
    );
    assert!(
        unlisted.expect("the wait ends"),
        "the suspect stayed in the endpoints"
    );
    assert!(
        guarded.expect("the wait ends"),
        "the admission guard was not enforced"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Timing {
        total: started.elapsed(),
        phases: vec![
            ("writes".into(), ms(written)),
            ("writes + controller waits".into(), ms(settled)),
            ("writes + admission guard enforced".into(), ms(enforced)),
        ],
        copy: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Mass containment

async fn mass(env: &Env, pods: usize) {
    let c = &env.cluster;
    let per_namespace = 20;
    let namespaces = pods.div_ceil(per_namespace);
    let tag = contain::cmd::ctx::new_run_id();
    let tag = tag.rsplit('-').next().unwrap_or("x");
    let digest = format!("sha256:{}", hex_digest(tag));
    let node = format!("bench-mass-{tag}");
    create(
        c,
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": node, "type": "kwok"}},
            "spec": {"taints": [{"key": "bench-dedicated", "value": node, "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "20000"},
                       "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "20000"}}
        }),
    )
    .await;
    let names: Vec<String> = (0..namespaces)
        .map(|i| format!("bench-mass-{tag}-{i}"))
        .collect();
    let started = Instant::now();
    futures::stream::iter(names.iter().map(|ns| async move {
        create(
            c,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
        // Pods are admitted only once the namespace's default ServiceAccount exists.
        until("the default ServiceAccount", || async {
            c.get(&ObjectRef::new("ServiceAccount", Some(ns), "default"))
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let node_ref = &node;
    let image = format!("registry.example/app@{digest}");
    let image_ref = &image;
    futures::stream::iter((0..pods).map(|i| {
        let ns = &names[i % namespaces];
        async move {
            create(
                c,
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("app-{i}"), "namespace": ns, "labels": {"app": "app"}},
                "spec": {"nodeName": node_ref, "automountServiceAccountToken": false,
                         "tolerations": [{"key": "bench-dedicated", "operator": "Exists"}],
                         "containers": [{"name": "app", "image": image_ref}]}}),
            )
            .await;
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    eprintln!(
        "mass {pods}: {pods} pods in {namespaces} namespaces created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The floor: the plan's writes, 16 in flight (contain's own bound), then their inverse.
    let plan = plan_of(
        env,
        "playbooks/contain-image.yaml",
        &[format!("digest={digest}")],
    );
    let ops = writes(&plan);
    let started = Instant::now();
    run_all(c, &plan.run_id, &ops).await;
    let floor = started.elapsed();
    let inverse: Vec<(String, Op)> = plan
        .steps
        .iter()
        .rev()
        .filter_map(|s| match &s.state {
            PlannedState::Planned { plan, .. } => Some((s.id.clone(), plan.inverse.clone())),
            _ => None,
        })
        .flat_map(|(id, ops)| ops.into_iter().map(move |op| (id.clone(), op)))
        .collect();
    for (step, op) in &inverse {
        let _ = apply::apply(op, step, &plan.run_id, Carry::Live, c, &mut AutoApprove).await;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let spawned = jiff::Timestamp::now();
    let started = Instant::now();
    let out = contain_command(env, dir.path())
        .args(["-o", "json", "run", "--yes"])
        .arg(env.root.join("playbooks/contain-image.yaml"))
        .args(["--set", &format!("digest={digest}")])
        .output()
        .expect("contain runs");
    let run = started.elapsed();
    assert!(
        out.status.success(),
        "contain run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let rate = |d: Duration| ops.len() as f64 / d.as_secs_f64();
    println!(
        "mass {pods:>6} pods / {namespaces:>4} ns: {} writes   floor {:>6.1} s ({:>6.0} writes/s)   contain {:>6.1} s ({:>6.0} writes/s, {:>5.0} pods/s)   contain at {:.0}% of the floor's rate",
        ops.len(),
        floor.as_secs_f64(),
        rate(floor),
        run.as_secs_f64(),
        rate(run),
        pods as f64 / run.as_secs_f64(),
        100.0 * floor.as_secs_f64() / run.as_secs_f64()
    );
    let split: Vec<String> = phases(&report, spawned, run, &[])
        .iter()
        .filter(|(name, _)| !name.contains(": "))
        .chain(
            phases(&report, spawned, run, &[])
                .iter()
                .filter(|(name, _)| name.starts_with("plan: ")),
        )
        .map(|(name, ms)| format!("{name} {:.1} s", ms / 1e3))
        .collect();
    println!("    contain's time: {}", split.join(", "));
    // Clean up before the next size, so its deletion does not compete with the next timing.
    futures::stream::iter(names.iter().map(|ns| async move {
        let _ = c
            .delete(
                &ObjectRef::new("Namespace", None, ns),
                &Preconditions::default(),
                None,
                WriteMode::Apply,
            )
            .await;
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    until("the namespaces to be gone", || async {
        let left = c
            .list(
                kinds::lookup("Namespace").expect("known kind"),
                None,
                &Selector::default(),
            )
            .await
            .unwrap_or_default();
        !left
            .iter()
            .any(|n| object::name(n).is_some_and(|n| n.starts_with(&format!("bench-mass-{tag}-"))))
    })
    .await;
    let _ = c
        .delete(
            &ObjectRef::new("Node", None, &node),
            &Preconditions::default(),
            None,
            WriteMode::Apply,
        )
        .await;
}

/// The writes of a plan, in plan order per step, 16 in flight within a step (as contain does).
async fn run_all(c: &KubeCluster, run_id: &str, ops: &[(String, Op)]) {
    let mut i = 0;
    while i < ops.len() {
        let step = &ops[i].0;
        let end = ops[i..]
            .iter()
            .position(|(s, _)| s != step)
            .map_or(ops.len(), |n| i + n);
        futures::stream::iter(ops[i..end].iter().map(|(step, op)| async move {
            apply::apply(op, step, run_id, Carry::Live, c, &mut AutoApprove)
                .await
                .expect("the floor's write is accepted");
        }))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
        i = end;
    }
}

// ---------------------------------------------------------------------------------------------

async fn create(c: &KubeCluster, object: Value) {
    if let Err(e) = c.create(&object, WriteMode::Apply).await
        && !matches!(e, contain::cluster::ClusterError::AlreadyExists { .. })
    {
        panic!("cannot create {}: {e}", object["metadata"]["name"]);
    }
}

/// Waits up to ten minutes (deleting ten thousand pods' namespaces takes minutes here).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..6000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn hex_digest(seed: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}
