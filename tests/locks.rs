//! The Lease lock per target, live: a second responder on a target a run is acting on is refused
//! with who holds it and since when; a killed run keeps others off until its lease expires, and
//! its own resume takes its lock over; `--steal REASON` takes it anyway and the journal says
//! from whom and why.

use std::time::{Duration, Instant};

use contain::cluster::object::ObjectRef;
use contain::cluster::{Cluster, WriteMode};
use serde_json::{Value, json};

use crate::harness::{Live, Outcome, playbook_file};
use crate::live::{self, Namespace};

/// Waits, then labels the ServiceAccount `worker`: the lock is held for the whole run.
const SLOW_LABEL: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: slow-label}
params:
  namespace: {type: string, required: true}
steps:
  - id: pause
    action: wait
    with: {duration: 6s}
  - id: tag
    action: object.label
    target: {kind: ServiceAccount, name: worker, namespace: "{{ params.namespace }}"}
    with: {labels: {contain-test/tier: frozen}}
"#;

/// Labels the same ServiceAccount at once, with a value of its own each time (so every run
/// writes).
const LABEL: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: label}
params:
  namespace: {type: string, required: true}
  owner: {type: string, default: second}
steps:
  - id: tag
    action: object.label
    target: {kind: ServiceAccount, name: worker, namespace: "{{ params.namespace }}"}
    with: {labels: {contain-test/owner: "{{ params.owner }}"}}
"#;

fn run_args(playbook: &std::path::Path, ns: &str) -> Vec<String> {
    vec![
        "run".into(),
        "--yes".into(),
        playbook.display().to_string(),
        "--set".into(),
        format!("namespace={ns}"),
    ]
}

/// The LABEL playbook's arguments, with a label value no earlier run wrote.
fn label_args(playbook: &std::path::Path, ns: &str) -> Vec<String> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut args = run_args(playbook, ns);
    args.extend(["--set".into(), format!("owner=run-{n}")]);
    args
}

/// The journal header's `locks` of a run.
fn locks_of(live: &Live, run: &str) -> Value {
    let out = live.contain().args(["journal", "export", run]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let header: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    fn find(v: &Value) -> Option<Value> {
        match v {
            Value::Object(map) => map
                .get("locks")
                .cloned()
                .or_else(|| map.values().find_map(find)),
            _ => None,
        }
    }
    find(&header).unwrap_or(Value::Null)
}

/// Runs LABEL with a failpoint that kills it after its lock is taken and before it writes; the
/// killed run's id.
fn killed_holding_the_lock(
    live: &Live,
    playbook: &std::path::Path,
    ns: &str,
    extra: &[&str],
) -> String {
    let crash = live
        .contain()
        .args(label_args(playbook, ns))
        .args(extra.iter().copied())
        .env("CONTAIN_TEST_FAILPOINT", "before-intent:tag")
        .run();
    assert!(crash.stderr.contains("failpoint"), "{}", crash.stderr);
    live.last_run()
}

/// The id of the first run in `live`'s journal once it appears (a run's journal is created once
/// its locks are held), polled for up to 10 s.
async fn started_run(live: &Live) -> Option<String> {
    for _ in 0..100 {
        if let Some(run) = contain::journal::run_ids(live.journal.path())
            .into_iter()
            .next()
        {
            return Some(run);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn refused_by(out: &Outcome, holder_run: &str) {
    assert_eq!(
        out.code, 10,
        "exit 10 (locked)\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains("is held by contain-admin on")
            && out.stderr.contains(&format!("(contain run {holder_run})"))
            && out.stderr.contains(" since 20"),
        "the refusal names the holder and since when: {}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
}

#[tokio::test]
async fn a_second_run_on_a_locked_target_is_refused_until_the_holder_ends_or_its_lease_expires() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "lock").await;
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "worker", "namespace": ns.name}});
    cluster.create(&account, WriteMode::Apply).await.unwrap();
    let slow = playbook_file(SLOW_LABEL);
    let quick = playbook_file(LABEL);
    let live = Live::new();

    // 1. Concurrent: a run that is acting holds the target; a second responder is refused.
    let mut first = live.contain().args(run_args(slow.path(), &ns.name)).spawn();
    let holder = started_run(&live)
        .await
        .expect("the first run started (its journal appears once its lock is held)");
    let second = Live::new();
    let refused = second
        .contain()
        .args(label_args(quick.path(), &ns.name))
        .run();
    refused_by(&refused, &holder);
    assert!(
        contain::journal::run_ids(second.journal.path()).is_empty(),
        "a refused run records nothing"
    );
    assert!(first.wait().unwrap().success());
    let r = ObjectRef::new("ServiceAccount", Some(&ns.name), "worker");
    let labels = cluster.get(&r).await.unwrap().unwrap()["metadata"]["labels"].clone();
    assert_eq!(
        labels,
        json!({"contain-test/tier": "frozen"}),
        "only the first run wrote"
    );
    assert_eq!(
        locks_of(&live, &holder)[0]["lease"],
        format!("{}/contain-serviceaccount-worker", ns.name)
    );
    // Released at its end: the next run goes ahead at once.
    let after = second
        .contain()
        .args(label_args(quick.path(), &ns.name))
        .run();
    assert_eq!(after.code, 0, "{}\n{}", after.stdout, after.stderr);

    // 2. A killed run (no release) keeps others off until its lease expires; then they proceed.
    let killed = Live::new();
    let dead = killed_holding_the_lock(&killed, quick.path(), &ns.name, &["--lock-ttl", "6"]);
    let killed_at = Instant::now();
    refused_by(
        &second
            .contain()
            .args(label_args(quick.path(), &ns.name))
            .run(),
        &dead,
    );
    let mut proceeded = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = second
            .contain()
            .args(label_args(quick.path(), &ns.name))
            .run();
        if next.code == 0 {
            proceeded = Some(killed_at.elapsed());
            break;
        }
        refused_by(&next, &dead);
    }
    let proceeded = proceeded.expect("the next run proceeds once the killed run's lease expired");
    assert!(
        proceeded >= Duration::from_secs(5),
        "not before the 6 s lease expired: {proceeded:?}"
    );

    // 3. The killed run's own resume takes its lock over, even while its lease lasts.
    let dead = killed_holding_the_lock(&killed, quick.path(), &ns.name, &[]);
    let resumed = killed.contain().args(["resume", "--yes", &dead]).run();
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);

    // 4. Stealing from a live holder: allowed with a reason, printed and journaled.
    let dead = killed_holding_the_lock(&killed, quick.path(), &ns.name, &[]);
    let reason = "the first responder's laptop died mid-run";
    let stolen = second
        .contain()
        .args(label_args(quick.path(), &ns.name))
        .args(["--steal", reason])
        .run();
    assert_eq!(stolen.code, 0, "{}\n{}", stolen.stdout, stolen.stderr);
    assert!(
        stolen.stderr.contains("took the lock on ServiceAccount")
            && stolen.stderr.contains(&format!("(contain run {dead})"))
            && stolen.stderr.contains(reason),
        "{}",
        stolen.stderr
    );
    let record = &locks_of(&second, &second.last_run())[0];
    assert!(
        record["stolen_from"]["holder"]
            .as_str()
            .unwrap()
            .contains(&dead),
        "{record}"
    );
    assert_eq!(record["reason"], reason);
}

/// A run started again after its predecessor was killed before its plan was approved (a drill
/// does this) takes over the predecessor's locks, and only those.
#[tokio::test]
async fn a_run_that_continues_a_killed_one_takes_over_its_locks_and_no_one_elses() {
    use contain::cluster::lease::{Holder, acquire};
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "lock-succ").await;
    let ttl = Duration::from_secs(30);
    let holder = |run: &str, predecessors: &[&str]| Holder {
        identity: format!("test {run}"),
        run: run.to_string(),
        predecessors: predecessors.iter().map(|p| p.to_string()).collect(),
    };
    // The killed run: its lock is never released (dropping it only stops the renewals).
    drop(
        acquire(
            &cluster,
            &ns.name,
            "contain-pod-web",
            &holder("killed", &[]),
            ttl,
            false,
        )
        .await
        .unwrap(),
    );
    let stranger = acquire(
        &cluster,
        &ns.name,
        "contain-pod-web",
        &holder("other", &["someone-else"]),
        ttl,
        false,
    )
    .await;
    assert!(
        stranger.is_err(),
        "a run that does not continue `killed` is refused"
    );
    let successor = acquire(
        &cluster,
        &ns.name,
        "contain-pod-web",
        &holder("again", &["killed"]),
        ttl,
        false,
    )
    .await
    .expect("the run continuing `killed` takes its lock over");
    assert!(
        successor.stolen().is_none(),
        "taking over a predecessor's lock is not a steal"
    );
    successor.release().await;
}

/// A run whose lock is taken from it mid-run (stolen: its next renewal finds the Lease changed)
/// stops before its next write, whatever its playbook says; the thief's write stands.
#[tokio::test]
async fn a_run_whose_lock_is_stolen_mid_run_stops_before_its_next_write() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "lock-lost").await;
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "worker", "namespace": ns.name}});
    cluster.create(&account, WriteMode::Apply).await.unwrap();
    let slow = playbook_file(SLOW_LABEL);
    let quick = playbook_file(LABEL);
    let victim = Live::new();
    // Renewed every second; its write comes after a 6 s wait.
    let mut running = victim
        .contain()
        .args(run_args(slow.path(), &ns.name))
        .args(["--lock-ttl", "3"])
        .spawn();
    let run = started_run(&victim).await.expect("the victim started");
    let thief = Live::new();
    let mut stolen = None;
    for _ in 0..3 {
        let out = thief
            .contain()
            .args(label_args(quick.path(), &ns.name))
            .args(["--steal", "the other responder went home"])
            .run();
        // A renewal landing between the thief's read and write is a conflict: try again.
        if out.code == 4 && out.stderr.contains("conflict") {
            continue;
        }
        stolen = Some(out);
        break;
    }
    let stolen = stolen.expect("the steal went through within three tries");
    assert_eq!(stolen.code, 0, "{}\n{}", stolen.stdout, stolen.stderr);
    let status = running.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the victim's step failed");
    let r = ObjectRef::new("ServiceAccount", Some(&ns.name), "worker");
    let labels = cluster.get(&r).await.unwrap().unwrap()["metadata"]["labels"].clone();
    assert!(
        labels.get("contain-test/tier").is_none(),
        "the victim wrote nothing: {labels}"
    );
    assert!(
        labels.get("contain-test/owner").is_some(),
        "the thief's write stands: {labels}"
    );
    let export = victim.contain().args(["journal", "export", &run]).run();
    let lease = format!(
        "(Lease {}/contain-serviceaccount-worker) could not be renewed",
        ns.name
    );
    assert!(
        export
            .stdout
            .lines()
            .any(|l| l.contains("\"record\":\"failed\"") && l.contains(&lease)),
        "the failure names the lost lock: {}",
        export.stdout
    );
    assert!(
        !export.stdout.contains("\"record\":\"intent\""),
        "no write of the victim started: {}",
        export.stdout
    );
}
