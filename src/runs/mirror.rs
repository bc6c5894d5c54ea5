//! The cluster copy of a run's journal, kept by a task beside the run. Two durabilities, one
//! protocol (the same records, chained the same way):
//!
//! - [`Durability::Follow`] (default): the local sled journal is the write-ahead log; each
//!   commit is handed to the task, which writes it (with whatever else waits: one status write
//!   for a burst of commits) without holding the run up. A copy that falls behind is caught up
//!   at the next commit and at the end; what is still missing then is said (the lag).
//! - [`Durability::WriteAhead`] (`--journal cluster`): the copy is the write-ahead log; a commit
//!   returns only once the API server has the records, so each precedes the write it covers,
//!   and a commit the API server refused stops the run before that write.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use journal::Record;
use serde_json::{Value, json};
use std::sync::mpsc::SyncSender;
use tokio::sync::{mpsc, oneshot};

use super::summary;
use crate::cluster::kube::KubeCluster;
use crate::cluster::run_store::{ClusterCopy, CopyError};
use crate::journal::RunState;

/// Which journal is the write-ahead log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Follow,
    WriteAhead,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Follow => "mirror",
            Durability::WriteAhead => "cluster",
        }
    }
}

/// How far the copy got: what the run's summary says of it.
#[derive(Clone, Debug, Default)]
pub struct MirrorReport {
    /// `namespace/name` of the ContainmentRun, once it exists.
    pub object: Option<String>,
    /// Records in the copy, and records the local journal has that the copy lacks.
    pub copied: u64,
    pub behind: u64,
    /// API writes made, and records carried by them.
    pub writes: usize,
    pub records_written: u64,
    /// Why the copy stopped or fell behind.
    pub error: Option<String>,
}

enum Message {
    Records(Vec<Record>, Option<SyncSender<Result<(), String>>>),
    Finish(oneshot::Sender<MirrorReport>),
}

/// How long a follower's commit that precedes a write waits for the copy: in the usual case
/// the copy is then as far as the local journal at every write, so a run taken over after a
/// crash loses nothing; a slow or unreachable API server only makes the copy lag.
const FOLLOW_WAIT: Duration = Duration::from_secs(2);

/// Where the task starts from.
pub struct Start {
    pub cluster: KubeCluster,
    pub namespace: String,
    pub run: String,
    /// The run's spec, for an object created here.
    pub spec: Value,
    /// The run's object when it already exists (a resume, a rollback), opened.
    pub existing: Option<ClusterCopy>,
    /// The run as read so far (its header, and the records already journaled).
    pub state: RunState,
    /// Records the local journal has that the copy lacks (a copy that fell behind).
    pub unsent: Vec<Record>,
    pub durability: Durability,
}

/// The handle a run's journal sink writes through.
#[derive(Clone)]
pub struct MirrorHandle {
    tx: mpsc::UnboundedSender<Message>,
    durability: Durability,
}

impl std::fmt::Debug for MirrorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MirrorHandle({})", self.durability.as_str())
    }
}

impl crate::journal::RecordCopy for MirrorHandle {
    /// Hands committed records to the copy. `before_write`: they precede a cluster write (an
    /// approved plan, a step's intent). With [`Durability::WriteAhead`], returns once the API
    /// server has them (an error then stops the run before that write); following, such a
    /// commit waits a little for the copy, and any other is handed over without waiting.
    fn send(&self, records: Vec<Record>, before_write: bool) -> Result<(), String> {
        let stopped = || "the cluster journal stopped".to_string();
        let wait = match self.durability {
            Durability::WriteAhead => None,
            Durability::Follow if before_write => Some(FOLLOW_WAIT),
            Durability::Follow => {
                // A copy whose task ended (it could not write) leaves the local journal as is.
                let _ = self.tx.send(Message::Records(records, None));
                return Ok(());
            }
        };
        let (ack, answer) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Message::Records(records, Some(ack))).is_err() {
            return match self.durability {
                Durability::WriteAhead => Err(stopped()),
                Durability::Follow => Ok(()),
            };
        }
        // The executor's sinks are synchronous; this thread waits while the runtime's other
        // worker writes to the API server.
        tokio::task::block_in_place(|| match wait {
            None => answer.recv().map_err(|_| stopped())?,
            // Following, the copy's own failure is in its report, never the run's.
            Some(wait) => {
                let _ = answer.recv_timeout(wait);
                Ok(())
            }
        })
    }
}

/// The task keeping a run's copy, and its handle.
pub struct Mirror {
    handle: MirrorHandle,
    task: tokio::task::JoinHandle<()>,
    report: Arc<Mutex<MirrorReport>>,
}

impl Mirror {
    /// Starts the copy. With [`Durability::WriteAhead`] the run's object exists (created, or
    /// caught up) when this returns, or the error says why nothing may be written.
    pub async fn start(start: Start) -> Result<Mirror, CopyError> {
        let durability = start.durability;
        let mut keeper = Keeper::new(start);
        match durability {
            Durability::WriteAhead => keeper.flush().await?,
            // What the copy lacks goes first, before the session writes anything more.
            Durability::Follow if !keeper.pending.is_empty() => {
                let _ = tokio::time::timeout(FOLLOW_WAIT, keeper.follow()).await;
            }
            Durability::Follow => {}
        }
        let report = keeper.report.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(keeper.serve(rx));
        Ok(Mirror {
            handle: MirrorHandle { tx, durability },
            task,
            report,
        })
    }

    /// The handle a run's journal sink writes through.
    pub fn handle(&self) -> Box<dyn crate::journal::RecordCopy> {
        Box::new(self.handle.clone())
    }

    /// Writes what is still pending (waiting at most `wait`) and says how far the copy got.
    pub async fn finish(self, wait: Duration) -> MirrorReport {
        let (ack, answer) = oneshot::channel();
        let sent = self.handle.tx.send(Message::Finish(ack)).is_ok();
        let report = if sent {
            tokio::time::timeout(wait, answer)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        match report {
            Some(report) => report,
            None => {
                self.task.abort();
                let mut report = self.report.lock().expect("report lock").clone();
                report.error.get_or_insert_with(|| {
                    format!("the API server did not answer within {wait:?}")
                });
                report
            }
        }
    }
}

/// The task's own state.
struct Keeper {
    cluster: KubeCluster,
    namespace: String,
    run: String,
    spec: Value,
    copy: Option<ClusterCopy>,
    state: RunState,
    pending: Vec<Record>,
    durability: Durability,
    plan_hash: Option<String>,
    /// Once set the copy is not written again (not installed, or moved on elsewhere).
    stopped: bool,
    report: Arc<Mutex<MirrorReport>>,
}

impl Keeper {
    fn new(start: Start) -> Self {
        let copied = start.existing.as_ref().map_or(0, |c| c.state.seq());
        let object = start
            .existing
            .as_ref()
            .map(|c| format!("{}/{}", c.namespace, c.name));
        let plan_hash = start
            .state
            .plan
            .as_ref()
            .map(|p| sha256_of(&serde_json::to_value(p).unwrap_or_default()));
        let mut keeper = Keeper {
            cluster: start.cluster,
            namespace: start.namespace,
            run: start.run,
            spec: start.spec,
            copy: start.existing,
            state: start.state,
            pending: Vec::new(),
            durability: start.durability,
            plan_hash,
            stopped: false,
            report: Arc::new(Mutex::new(MirrorReport {
                object,
                copied,
                ..MirrorReport::default()
            })),
        };
        keeper.take(start.unsent);
        keeper
    }

    /// Reads records into the summary and queues them for the copy.
    fn take(&mut self, records: Vec<Record>) {
        for record in &records {
            if record.body["record"] == "approved" {
                self.plan_hash = Some(sha256_of(&record.body["plan"]));
            }
            // A record the summary cannot read still goes to the copy, as it was journaled.
            let _ = self.state.apply(record.clone());
        }
        self.pending.extend(records);
        self.report.lock().expect("report lock").behind = self.pending.len() as u64;
    }

    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        while let Some(message) = rx.recv().await {
            match message {
                Message::Records(records, ack) => {
                    self.take(records);
                    if let Some(ack) = ack {
                        let written = match self.durability {
                            Durability::WriteAhead => self.flush().await.map_err(|e| e.to_string()),
                            Durability::Follow => {
                                self.follow().await;
                                Ok(())
                            }
                        };
                        let _ = ack.send(written);
                        continue;
                    }
                    // Following: whatever else waits goes in the same write, and a commit that
                    // precedes a cluster write among them is answered only once it is written.
                    let mut finish = None;
                    let mut waiting = Vec::new();
                    while let Ok(more) = rx.try_recv() {
                        match more {
                            Message::Records(records, ack) => {
                                self.take(records);
                                waiting.extend(ack);
                            }
                            Message::Finish(ack) => finish = Some(ack),
                        }
                    }
                    self.follow().await;
                    for ack in waiting {
                        let _ = ack.send(Ok(()));
                    }
                    if let Some(ack) = finish {
                        let _ = ack.send(self.report.lock().expect("report lock").clone());
                        return;
                    }
                }
                Message::Finish(ack) => {
                    self.follow().await;
                    let _ = ack.send(self.report.lock().expect("report lock").clone());
                    return;
                }
            }
        }
    }

    /// A follower's write: a failure is kept in the report, and the records stay pending for
    /// the next commit.
    async fn follow(&mut self) {
        if self.stopped {
            return;
        }
        if let Err(e) = self.flush().await {
            // What no retry mends stops the copy: no CRD, no permission, another writer.
            self.stopped = matches!(
                e,
                CopyError::NotInstalled
                    | CopyError::Moved { .. }
                    | CopyError::Api(crate::cluster::ClusterError::Forbidden { .. })
            );
            self.report.lock().expect("report lock").error = Some(e.to_string());
        }
    }

    /// Creates the object when needed and writes every pending record with the summary.
    async fn flush(&mut self) -> Result<(), CopyError> {
        if self.copy.is_none() {
            let copy =
                ClusterCopy::create(&self.cluster, &self.namespace, &self.run, self.spec.clone())
                    .await?;
            let mut report = self.report.lock().expect("report lock");
            report.object = Some(format!("{}/{}", copy.namespace, copy.name));
            report.writes += 1;
            drop(report);
            self.copy = Some(copy);
        }
        let status = self.status();
        let copy = self.copy.as_mut().expect("created above");
        let writes = copy.write(&self.run, &self.pending, status).await?;
        let mut report = self.report.lock().expect("report lock");
        report.writes += writes;
        report.records_written += self.pending.len() as u64;
        report.copied = copy.state.seq();
        report.behind = 0;
        report.error = None;
        self.pending.clear();
        Ok(())
    }

    fn status(&self) -> Value {
        let mut status =
            serde_json::to_value(summary::summarize(&self.state)).unwrap_or_else(|_| json!({}));
        status["responder"] = json!(self.state.holder());
        status["leases"] = json!(
            self.state
                .info
                .locks
                .iter()
                .map(|l| json!({"lease": l.lease, "target": l.target}))
                .collect::<Vec<_>>()
        );
        status["handovers"] = json!(
            self.state
                .handovers
                .iter()
                .map(|h| json!({"from": h.from, "to": h.to, "at": h.at, "as": h.purpose}))
                .collect::<Vec<_>>()
        );
        status["onReviewDue"] = json!(self.state.info.review.on_due);
        if let Some(hash) = &self.plan_hash {
            status["planHash"] = json!(hash);
        }
        status
    }
}

fn sha256_of(value: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}
