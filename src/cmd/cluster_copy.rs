//! A session's side of a run's copy in the cluster (its ContainmentRun): starting the copy of a
//! new run, checking a recorded run against its copy before a resume or a rollback (a journal
//! that fell behind is refused, naming the newer records), pulling a run into the local
//! journal, and saying at the end how far the copy got.

use std::path::PathBuf;
use std::time::Duration;

use journal::{Journal, Record};
use serde_json::json;

use super::ctx::{Ctx, JournalMode};
use super::error::CommandError;
use super::ui;
use crate::cluster::kube::KubeCluster;
use crate::cluster::run_copy::{self as copy, Standing};
use crate::cluster::run_store::{self as store, ClusterCopy, CopyError, Found};
use crate::journal::{RunInfo, RunState};
use crate::plan::RunPlan;
use crate::playbook::load::Loaded;
use crate::runs::mirror::{Durability, Mirror, MirrorReport, Start};

/// How long the end of a run waits for its copy to catch up.
const FINISH_WAIT: Duration = Duration::from_secs(15);

/// Who drives a run from here: `user on host`.
pub fn responder(user: &str) -> String {
    format!("{user} on {}", crate::run_lock::host())
}

fn durability(ctx: &Ctx) -> Option<Durability> {
    match ctx.journal_mode {
        JournalMode::Mirrored => Some(Durability::Follow),
        JournalMode::Cluster => Some(Durability::WriteAhead),
        JournalMode::Local => None,
    }
}

fn cannot_record(e: impl std::fmt::Display) -> CommandError {
    CommandError::Journal(format!(
        "cannot record the run in the cluster (--journal cluster), so nothing was written: {e}"
    ))
}

/// Starts the copy of a new run whose header is journaled: with `--journal cluster` the run's
/// object exists when this returns.
pub async fn start_new(
    ctx: &Ctx,
    cluster: &KubeCluster,
    journal: &Journal,
    run: &str,
    plan: &RunPlan,
    loaded: &Loaded,
    info: &RunInfo,
) -> Result<Option<Mirror>, CommandError> {
    let Some(durability) = durability(ctx) else {
        return Ok(None);
    };
    let header = journal.run(run).map_err(cannot_record)?;
    let state = RunState::from_header(&header).map_err(cannot_record)?;
    let start = Start {
        cluster: cluster.clone(),
        namespace: crate::runs::home_namespace(plan),
        run: run.to_string(),
        spec: crate::runs::spec(&header, info, plan, loaded.source.text(), durability),
        existing: None,
        state,
        unsent: Vec::new(),
        durability,
    };
    Mirror::start(start).await.map(Some).map_err(cannot_record)
}

/// Checks a recorded run against its copy and starts the copy for a resume or a rollback: a
/// local journal the copy has moved past is refused, naming the newer records.
pub async fn start_existing(
    ctx: &Ctx,
    cluster: &KubeCluster,
    journal: &Journal,
    state: &RunState,
) -> Result<Option<Mirror>, CommandError> {
    let Some(durability) = durability(ctx) else {
        return Ok(None);
    };
    let run = state.run.as_str();
    let records = journal
        .records(run)
        .map_err(|e| CommandError::Journal(e.to_string()))?;
    let header = journal
        .run(run)
        .map_err(|e| CommandError::Journal(e.to_string()))?;
    let found = match store::find(cluster, run).await {
        Ok(found) => found,
        Err(e) if durability == Durability::Follow => {
            ui::warn(&format!(
                "cannot read run {run}'s copy in the cluster, going on from the local journal: {e}"
            ));
            None
        }
        Err(e) => return Err(cannot_record(e)),
    };
    let (existing, from) = match &found {
        Some(found) => {
            let from = match copy::standing(&records, found.state().head.as_ref()) {
                Standing::InStep => records.len(),
                Standing::Ahead { from } => from,
                Standing::Behind {
                    local,
                    cluster: end,
                } => {
                    // Behind, or gone another way from some record on: the copy's own
                    // records say which.
                    let theirs = found.records(cluster).await.unwrap_or_default();
                    let first_other = records.iter().find(|mine| {
                        theirs
                            .iter()
                            .find(|r| r.seq == mine.seq)
                            .is_some_and(|r| r.hash != mine.hash)
                    });
                    let refusal = match first_other {
                        Some(mine) => diverged(run, found, mine.seq),
                        None => behind(run, found, local, end),
                    };
                    return Err(CommandError::Refused(refusal));
                }
                Standing::Diverged { seq } => {
                    return Err(CommandError::Refused(diverged(run, found, seq)));
                }
            };
            (Some(ClusterCopy::open(cluster, found)), from)
        }
        None => (None, 0),
    };
    let base = RunState::from_records(&header, &records[..from])
        .map_err(|e| CommandError::Journal(e.to_string()))?;
    let source = std::fs::read_to_string(&state.info.playbook_path).unwrap_or_default();
    let spec = match &state.plan {
        Some(plan) => crate::runs::spec(&header, &state.info, plan, &source, durability),
        None => json!({}),
    };
    let namespace = state
        .plan
        .as_ref()
        .map(crate::runs::home_namespace)
        .unwrap_or_else(|| crate::run_lock::CLUSTER_SCOPED_NAMESPACE.to_string());
    let start = Start {
        cluster: cluster.clone(),
        namespace,
        run: run.to_string(),
        spec,
        existing,
        state: base,
        unsent: records[from..].to_vec(),
        durability,
    };
    Mirror::start(start).await.map(Some).map_err(cannot_record)
}

/// The refusal of a journal that differs from the cluster's copy from record `seq` on: this
/// journal has records (written before a crash) the copy never got, and someone went on from
/// the copy.
fn diverged(run: &str, found: &Found, seq: u64) -> String {
    format!(
        "run {run} went on without this journal: from record {seq} on, the cluster's copy (ContainmentRun {}, now ending at record {}) holds other records than this journal (held by {}{}). Refusing; this journal's records from {seq} on were never part of the run others continued (to go on from the copy, pull the run into an empty journal: `contain --journal DIR journal pull {run}`).",
        found.describe(),
        found.state().seq(),
        found.responder(),
        taken_over(found)
    )
}

/// `; B took it over from A at T`, from the copy's last hand-over.
fn taken_over(found: &Found) -> String {
    found.object["status"]["handovers"]
        .as_array()
        .and_then(|h| h.last())
        .map(|h| {
            format!(
                "; {} took it over from {} at {}",
                h["to"].as_str().unwrap_or("someone"),
                h["from"].as_str().unwrap_or("someone"),
                h["at"].as_str().unwrap_or("an unknown time")
            )
        })
        .unwrap_or_default()
}

/// The refusal of a journal the cluster's copy has moved past.
fn behind(run: &str, found: &Found, local: u64, cluster: u64) -> String {
    let by = taken_over(found);
    format!(
        "run {run} went on without this journal: the cluster's copy (ContainmentRun {}) ends at record {cluster}, this journal at record {local}; records {}-{cluster} are newer (held by {}{by}). Refusing; `contain journal pull {run}` brings them here.",
        found.describe(),
        local + 1,
        found.responder()
    )
}

/// Waits for the copy to catch up, and says how far it got.
pub async fn finish(mirror: Option<Mirror>) -> Option<MirrorReport> {
    let report = mirror?.finish(FINISH_WAIT).await;
    let object = report.object.as_deref().unwrap_or("(not created)");
    match &report.error {
        Some(error) => ui::warn(&format!(
            "the run's copy in the cluster (ContainmentRun {object}) is {} record(s) behind the local journal: {error}; a resume or rollback from this journal catches it up",
            report.behind
        )),
        None => ui::err_line(&format!(
            "cluster copy: ContainmentRun {object}, {} record(s), in step ({} API write(s) for {} record(s))",
            report.copied, report.writes, report.records_written
        )),
    }
    Some(report)
}

/// What a pull brought.
#[derive(Debug)]
pub struct Pulled {
    pub object: String,
    pub records: usize,
    pub added: usize,
    pub playbook: PathBuf,
}

/// Where a pulled run's playbook text is kept beside the journal.
pub fn pulled_playbook(ctx: &Ctx, run: &str) -> PathBuf {
    ctx.journal_root.join(format!("{run}.playbook.yaml"))
}

/// Brings a run from its copy in the cluster into the local journal: the copy's chain is
/// verified first, and a local journal that differs from it is refused.
pub async fn pull(ctx: &Ctx, cluster: &KubeCluster, run: &str) -> Result<Pulled, CommandError> {
    let found = store::find(cluster, run)
        .await
        .map_err(|e| CommandError::Cluster(e.to_string()))?
        .ok_or_else(|| {
            CommandError::Input(format!(
                "no ContainmentRun for run {run} in this cluster (see `contain runs -A`)"
            ))
        })?;
    let unreadable = |e: CopyError| CommandError::Journal(e.to_string());
    let header = found.header().map_err(unreadable)?;
    let records = found.records(cluster).await.map_err(unreadable)?;
    check_chain(run, &found, &records)?;
    let journal = crate::journal::open_new(&ctx.journal_root, run)
        .map_err(|e| CommandError::Journal(e.to_string()))?;
    let local = match journal.run(run) {
        Ok(_) => journal
            .records(run)
            .map_err(|e| CommandError::Journal(e.to_string()))?,
        Err(_) => Vec::new(),
    };
    if let Standing::Diverged { seq } = copy::standing(&local, found.state().head.as_ref()) {
        return Err(CommandError::Refused(diverged(run, &found, seq)));
    }
    let added = journal
        .import(&header, &records)
        .map_err(|e| CommandError::Journal(e.to_string()))?;
    let playbook = pulled_playbook(ctx, run);
    if let Some(source) = found.object["spec"]["playbook"]["source"].as_str()
        && !source.is_empty()
    {
        std::fs::write(&playbook, source).map_err(|e| {
            CommandError::Journal(format!("cannot write {}: {e}", playbook.display()))
        })?;
    }
    Ok(Pulled {
        object: found.describe(),
        records: records.len(),
        added,
        playbook,
    })
}

/// The copy's records must chain from the first to the head its status names.
fn check_chain(run: &str, found: &Found, records: &[Record]) -> Result<(), CommandError> {
    let raw = records
        .iter()
        .map(|r| (r.seq, serde_json::to_vec(r).expect("records serialize")))
        .collect();
    let verification = journal::verify_chain(run, raw, found.state().head);
    if verification.is_intact() {
        return Ok(());
    }
    Err(CommandError::Journal(format!(
        "the cluster's copy of run {run} (ContainmentRun {}) is broken: {}",
        found.describe(),
        verification.problems.join("; ")
    )))
}
