//! `contain runs`, `contain handover`, `contain review` and `contain crd`: the runs the cluster
//! records (their ContainmentRuns), read by any responder, and what falls due.

use std::path::Path;

use journal::Record;
use serde_json::{Value, json};

use super::session::{Recorded, Session, SessionOptions};
use super::ui;
use super::{CommandError, CommandResult, Ctx, Status};
use crate::cli::Output;
use crate::cluster::kube::KubeCluster;
use crate::cluster::run_store::{self as store, Found};
use crate::cluster::{Cluster, WriteMode};
use crate::journal::RunState;
use crate::report::handover::{self, Format};
use crate::runs::listing::{self, Row};
use crate::runs::{drift, summary};

fn copy_error(e: store::CopyError) -> CommandError {
    CommandError::Cluster(e.to_string())
}

/// A run as its copy in the cluster holds it: its state and records.
async fn read_copy(
    cluster: &KubeCluster,
    found: &Found,
) -> Result<(RunState, Vec<Record>), CommandError> {
    let unreadable = |e: &dyn std::fmt::Display| CommandError::Journal(e.to_string());
    let header = found.header().map_err(|e| unreadable(&e))?;
    let records = found.records(cluster).await.map_err(|e| unreadable(&e))?;
    let state = RunState::from_records(&header, &records).map_err(|e| unreadable(&e))?;
    Ok((state, records))
}

/// What of the run's containment in force was undone outside `contain`.
async fn undone_by_hand(cluster: &KubeCluster, state: &RunState) -> Vec<String> {
    let mut found = Vec::new();
    for in_force in summary::in_force(state) {
        let Some(plan) = state
            .steps
            .iter()
            .find(|s| s.step == in_force.step)
            .and_then(|s| s.plan.as_ref())
        else {
            continue;
        };
        let mut undone = Vec::new();
        let mut standing = Vec::new();
        for op in &plan.ops {
            let Some(object) = drift::checked_object(op) else {
                continue;
            };
            // An object that cannot be read is not called undone.
            let Ok(current) = cluster.get(&object).await else {
                continue;
            };
            let lines = drift::of_op(op, current.as_ref());
            if lines.is_empty() && matches!(op, crate::plan::op::Op::Create { .. }) {
                standing.push(object.to_string());
            }
            undone.extend(lines.into_iter().map(|l| format!("{}: {l}", in_force.step)));
        }
        // Half a containment is the dangerous kind: say what of it still acts (a node guard
        // still refusing pods on a node someone uncordoned).
        if !undone.is_empty() && !standing.is_empty() {
            undone.push(format!(
                "{}: still in force: {}",
                in_force.step,
                standing.join(", ")
            ));
        }
        found.extend(undone);
    }
    found
}

/// `contain runs`.
pub async fn list(
    ctx: &Ctx,
    all_namespaces: bool,
    target: Option<&str>,
    due: bool,
) -> CommandResult {
    let cluster = ctx.connect().await?;
    let namespace = ctx.namespace.as_deref().filter(|_| !all_namespaces);
    let now = jiff::Timestamp::now();
    let mut rows: Vec<Row> = Vec::new();
    for found in store::list(&cluster, namespace).await.map_err(copy_error)? {
        let mut row = listing::row(&found.object, now);
        if target.is_some_and(|t| !row.target.contains(t)) || (due && !row.overdue) {
            continue;
        }
        if row.in_force > 0 {
            match read_copy(&cluster, &found).await {
                Ok((state, _)) => row.undone_by_hand = undone_by_hand(&cluster, &state).await,
                // Not compared is said, never shown as nothing undone.
                Err(e) => row.not_compared = Some(e.to_string()),
            }
        }
        rows.push(row);
    }
    rows.sort_by(|a, b| a.run.cmp(&b.run));
    if !ctx.text() {
        ui::print_output(
            &serde_json::to_value(&rows).unwrap_or(Value::Null),
            ctx.output,
        );
        return Ok(Status::Success);
    }
    if rows.is_empty() {
        ui::err_line(if due {
            "no run's review is due"
        } else {
            "no runs recorded in the cluster here"
        });
        return Ok(Status::Success);
    }
    let mut out = format!(
        "{:<27} {:<12} {:<20} {:<24} {:<12} {:<26} {:<6} {:<14} review due\n",
        "RUN", "NAMESPACE", "PLAYBOOK", "TARGET", "PHASE", "RESPONDER", "AGE", "IN FORCE"
    );
    for row in &rows {
        let in_force = match &row.in_force_since {
            Some(since) if row.in_force > 0 => {
                format!("{} for {}", row.in_force, listing::age(since, now))
            }
            _ => "0".to_string(),
        };
        let review = match (&row.review_due, row.overdue) {
            (Some(due), true) => format!("OVERDUE since {due}"),
            (Some(due), false) if row.in_force > 0 => due.clone(),
            _ => "-".to_string(),
        };
        out.push_str(&crate::escape::sanitize(&format!(
            "{:<27} {:<12} {:<20} {:<24} {:<12} {:<26} {:<6} {:<14} {review}",
            row.run,
            row.namespace,
            row.playbook,
            row.target,
            row.phase,
            row.responder,
            listing::age(&row.started, now),
            in_force,
        )));
        out.push('\n');
        let lines = row
            .undone_by_hand
            .iter()
            .map(|l| format!("undone by hand: {l}"));
        let unknown = row
            .not_compared
            .iter()
            .map(|why| format!("not compared with the cluster: {why}"));
        for line in lines.chain(unknown) {
            out.push_str(&crate::escape::sanitize(&format!("    {line}")));
            out.push('\n');
        }
    }
    ui::out(&out);
    Ok(Status::Success)
}

/// `contain handover RUN`: from the local journal when it has the run, else from the cluster.
pub async fn handover(
    ctx: &Ctx,
    run: &str,
    format: Option<Format>,
    templates: Option<&Path>,
) -> CommandResult {
    let format = format.unwrap_or(match ctx.output {
        Output::Json => Format::Json,
        _ => Format::Markdown,
    });
    let cluster = ctx.connect().await.ok();
    let (state, records, intact) = if ctx.run_recorded(run) {
        let journal = ctx.open_run(run)?;
        let unreadable = |e| super::ctx::journal_error(run, e);
        // The records once: the state is read from them, the briefing shows them.
        let records = journal.records(run).map_err(unreadable)?;
        let header = journal.run(run).map_err(unreadable)?;
        let state = RunState::from_records(&header, &records).map_err(unreadable)?;
        let intact = journal.verify(run).map_err(unreadable)?.is_intact();
        (state, records, intact)
    } else {
        let cluster = cluster.as_ref().ok_or_else(|| {
            CommandError::Input(format!(
                "run {run} is not in this journal, and the cluster cannot be reached to read its copy"
            ))
        })?;
        let found = store::find(cluster, run)
            .await
            .map_err(copy_error)?
            .ok_or_else(|| {
                CommandError::Input(format!(
                    "run {run} is neither in this journal nor in the cluster (see `contain runs -A`)"
                ))
            })?;
        let (state, records) = read_copy(cluster, &found).await?;
        let raw = records
            .iter()
            .map(|r| (r.seq, serde_json::to_vec(r).expect("records serialize")))
            .collect();
        let intact = journal::verify_chain(run, raw, found.state().head).is_intact();
        (state, records, intact)
    };
    let drift = match &cluster {
        Some(cluster) => Some(undone_by_hand(cluster, &state).await),
        None => None,
    };
    let mut leases = handover::LeaseHolders::new();
    if let Some(cluster) = &cluster {
        for lock in &state.info.locks {
            let Some((namespace, name)) = lock.lease.split_once('/') else {
                continue;
            };
            if let Ok(holder) = crate::cluster::lease::holder_now(cluster, namespace, name).await {
                leases.insert(lock.lease.clone(), holder);
            }
        }
    }
    let view = handover::build(&state, &records, intact, drift.as_deref(), &leases);
    let text = handover::render_as(&view, format, templates).map_err(CommandError::Input)?;
    ui::out(&text);
    Ok(Status::Success)
}

/// `contain crd`.
pub fn crd() -> CommandResult {
    ui::out(crate::runs::CRD_MANIFEST);
    Ok(Status::Success)
}

/// `contain review`: every run (in `-n`'s namespace, else in all) whose review fell due with
/// containment in force gets an Event and the notifications (once per due time), and is rolled
/// back when its playbook says so.
pub async fn review(ctx: &Ctx, options: SessionOptions) -> CommandResult {
    let cluster = ctx.connect().await?;
    let now = jiff::Timestamp::now();
    let mut failed = false;
    for found in store::list(&cluster, ctx.namespace.as_deref())
        .await
        .map_err(copy_error)?
    {
        let row = listing::row(&found.object, now);
        if !row.overdue {
            continue;
        }
        let due = row.review_due.clone().unwrap_or_default();
        let status = &found.object["status"];
        if status["reviewNotifiedAt"].as_str() != Some(due.as_str()) {
            let message = format!(
                "contain run {}: {} containment(s) in force since {}, review was due at {due}; `contain handover {}` briefs, `contain rollback {}` undoes",
                row.run,
                row.in_force,
                row.in_force_since.as_deref().unwrap_or("-"),
                row.run,
                row.run
            );
            match post_due_event(&cluster, &found, &due, &message).await {
                Ok(()) => ui::out_line(&format!(
                    "run {}: review due since {due}: Event posted",
                    row.run
                )),
                Err(e) => {
                    failed = true;
                    ui::warn(&format!(
                        "run {}: could not post the review Event: {e}",
                        row.run
                    ));
                }
            }
            notify_due(&cluster, &options, &row, &message).await;
            if let Err(e) = store::mark_review_notified(&cluster, &found, &due).await {
                ui::warn(&format!(
                    "run {}: could not record the review notice: {e}",
                    row.run
                ));
            }
        }
        if status["onReviewDue"] == "rollback" {
            ui::out_line(&format!(
                "run {}: its playbook says on_review_due: rollback; rolling it back",
                row.run
            ));
            // One run that cannot be rolled back does not keep the others from their review.
            let outcome = match Recorded::pulled(ctx, &cluster, &row.run).await {
                Ok(recorded) => {
                    Session::new(ctx, &cluster, options.clone())
                        .rollback(recorded, None)
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(status) if status.exit_code() == crate::exit::SUCCESS => {}
                Ok(_) => failed = true,
                Err(e) => {
                    failed = true;
                    ui::warn(&format!("run {}: the rollback did not run: {e}", row.run));
                }
            }
        }
    }
    Ok(if failed {
        Status::Failed(super::Finding::ReviewIncomplete)
    } else {
        Status::Success
    })
}

/// The Event saying a run's review is due, on its ContainmentRun (named by run and due time:
/// posting it again is a no-op).
async fn post_due_event(
    cluster: &KubeCluster,
    found: &Found,
    due: &str,
    message: &str,
) -> Result<(), String> {
    let uid = found.object["metadata"]["uid"].as_str().unwrap_or_default();
    let stamp: String = due.chars().filter(char::is_ascii_digit).take(14).collect();
    let now = jiff::Timestamp::now().to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.review-{stamp}", found.name), "namespace": found.namespace,
                     "labels": {store::RUN_LABEL: found.run()}},
        "involvedObject": {"apiVersion": format!("{}/{}", store::GROUP, store::VERSION),
                           "kind": "ContainmentRun", "name": found.name,
                           "namespace": found.namespace, "uid": uid},
        "reason": "ContainReviewDue",
        "message": message,
        "type": "Warning",
        "source": {"component": "contain"},
        "reportingComponent": "contain.dev/contain",
        "reportingInstance": crate::run_lock::host(),
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    match cluster.create(&event, WriteMode::Apply).await {
        Ok(_) | Err(crate::cluster::ClusterError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn notify_due(cluster: &KubeCluster, options: &SessionOptions, row: &Row, message: &str) {
    let notifier = crate::notify::Notifier::new(
        crate::notify::NotifyOptions {
            events: false,
            ..options.notify.clone()
        },
        crate::notify::RunContext {
            run: row.run.clone(),
            playbook: row.playbook.clone(),
            cluster: String::new(),
            user: row.responder.clone(),
        },
    );
    let notice = crate::notify::Notice {
        event: "review_due",
        step: None,
        action: None,
        target: None,
        status: "due".into(),
        message: message.to_string(),
    };
    for delivery in notifier.send(cluster, &notice).await {
        if let Some(error) = delivery.error {
            ui::warn(&format!("could not notify {}: {error}", delivery.channel));
        }
    }
}
