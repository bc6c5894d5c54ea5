//! [`Ctx`]: what every command shares, built once per invocation from the global options:
//! how to connect, where the journal and the evidence live, how to show things, and the
//! loaders of playbooks, snapshots and recorded runs (each failure a [`CommandError`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::CommandError;
use crate::cli::{Global, Output};
use crate::cluster::Cluster;
use crate::cluster::kube::{Connect, KubeCluster};
use crate::cluster::sim::SimCluster;
use crate::journal::{self, RunState};
use crate::playbook::load::{self, LoadError, Loaded};
use crate::source::Source;
use crate::yaml::node::Limits;

/// The shared context of one invocation.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// The default for a playbook param named `namespace`, and the namespace of
    /// `explain-access` and `snapshot`.
    pub namespace: Option<String>,
    pub output: Output,
    pub no_progress: bool,
    pub verbose: u8,
    pub journal_root: PathBuf,
    pub evidence_root: PathBuf,
    pub evidence_key: Option<PathBuf>,
    pub call_timeout: Duration,
    pub run_timeout: Option<Duration>,
    /// Where live runs are journaled: beside the local journal (following it), in the cluster
    /// only (write-ahead), or not in the cluster.
    pub journal_mode: JournalMode,
    /// The scratch journal of `--journal cluster`, removed when the invocation ends.
    _scratch: Option<std::sync::Arc<tempfile::TempDir>>,
}

/// Which journal a live run writes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    /// The local journal is the write-ahead log; the run's ContainmentRun follows each commit.
    Mirrored,
    /// The run's ContainmentRun is the write-ahead log (`--journal cluster`).
    Cluster,
    /// The local journal only (`--no-cluster-copy`).
    Local,
}

impl Ctx {
    pub fn new(global: &Global) -> Self {
        let cluster = global.journal.as_deref() == Some(Path::new("cluster"));
        // The cluster is the journal: records pass through a scratch store on their way.
        if cluster {
            sweep_scratch();
        }
        let scratch = cluster
            .then(|| {
                tempfile::Builder::new()
                    .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .ok()
            })
            .flatten()
            .map(std::sync::Arc::new);
        let journal_mode = match (cluster, global.no_cluster_copy) {
            (true, _) => JournalMode::Cluster,
            (false, true) => JournalMode::Local,
            (false, false) => JournalMode::Mirrored,
        };
        Ctx {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
            namespace: global.namespace.clone(),
            output: global.output,
            no_progress: global.no_progress,
            verbose: global.verbose,
            journal_root: match &scratch {
                Some(dir) => dir.path().to_path_buf(),
                None => global
                    .journal
                    .clone()
                    .unwrap_or_else(crate::paths::journal_root),
            },
            evidence_root: global
                .evidence
                .clone()
                .unwrap_or_else(crate::paths::evidence_root),
            evidence_key: global.evidence_key.clone(),
            call_timeout: global.call_timeout,
            run_timeout: global.run_timeout,
            journal_mode,
            _scratch: scratch,
        }
    }

    /// The context of a run inside another command (a drill's containment and its rollback):
    /// plain text lines within the outer command's output, no progress bar, no `-n` default.
    pub fn inner(&self) -> Self {
        Ctx {
            output: Output::Text,
            no_progress: true,
            namespace: None,
            ..self.clone()
        }
    }

    pub fn text(&self) -> bool {
        self.output == Output::Text
    }

    /// Connects to the cluster of the kubeconfig's (or `--context`'s) context.
    pub async fn connect(&self) -> Result<KubeCluster, CommandError> {
        self.connect_as(None).await
    }

    /// Connects with a User-Agent of our own (a drill's carries its run id).
    pub async fn connect_as(
        &self,
        user_agent: Option<String>,
    ) -> Result<KubeCluster, CommandError> {
        let options = Connect {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            call_timeout: Some(self.call_timeout),
            user_agent,
        };
        KubeCluster::connect(&options)
            .await
            .map(|cluster| cluster.warning_to(super::ui::warn))
            .map_err(|e| CommandError::Cluster(e.to_string()))
    }

    /// The snapshot when one is given, else the live cluster.
    pub async fn snapshot_or_live(
        &self,
        snapshot: Option<&Path>,
    ) -> Result<Box<dyn Cluster>, CommandError> {
        Ok(match snapshot {
            Some(path) => Box::new(self.load_snapshot(path)?),
            None => Box::new(self.connect().await?),
        })
    }

    /// A snapshot file as a simulated cluster.
    pub fn load_snapshot(&self, path: &Path) -> Result<SimCluster, CommandError> {
        let name = path.display().to_string();
        let bytes = crate::yaml::read_bounded(path, Limits::SNAPSHOT.max_bytes)
            .map_err(|e| CommandError::Input(format!("cannot read snapshot {name}: {e}")))?;
        let text = crate::yaml::node::text_from_bytes(&name, bytes, Limits::SNAPSHOT)
            .map_err(|e| CommandError::Input(e.to_string()))?;
        SimCluster::load(&Source::new(name, text))
            .map_err(|report| CommandError::Invalid(vec![report]))
    }

    /// Loads and validates a playbook.
    pub fn load_playbook(&self, path: &Path) -> Result<Loaded, CommandError> {
        load::load_file(path).map_err(|e| match e {
            LoadError::Invalid(report) => CommandError::Invalid(vec![report]),
            e @ LoadError::Io { .. } => CommandError::Input(e.to_string()),
        })
    }

    /// Loads a playbook and binds its params: the `--set` values, plus `-n` as the `namespace`
    /// param when the playbook has one and `--set` does not give it.
    pub fn load_with_params(
        &self,
        path: &Path,
        set: &[String],
    ) -> Result<(Loaded, Map<String, Value>), CommandError> {
        let loaded = self.load_playbook(path)?;
        let params = load::bind_params(&loaded, &self.assignments(&loaded, set))
            .map_err(CommandError::Invalid)?;
        Ok((loaded, params))
    }

    /// The `--set` values, plus `-n` as the `namespace` param when the playbook has one and
    /// `--set` does not give it.
    pub fn assignments(&self, loaded: &Loaded, set: &[String]) -> Vec<String> {
        let mut set = set.to_vec();
        if let Some(ns) = &self.namespace
            && loaded.playbook.params.contains_key("namespace")
            && !set.iter().any(|s| s.starts_with("namespace="))
        {
            set.push(format!("namespace={ns}"));
        }
        set
    }

    /// Whether the journal holds `run` at all (a run killed before its header was written does
    /// not appear; it wrote nothing, though it may have taken its targets' locks).
    pub fn run_recorded(&self, run: &str) -> bool {
        journal::run_ids(&self.journal_root)
            .iter()
            .any(|id| id == run)
    }

    /// Opens a recorded run's store (waiting a little for a process that still has it open).
    pub fn open_run(&self, run: &str) -> Result<::journal::Journal, CommandError> {
        journal::open_run(&self.journal_root, run, Duration::from_secs(5)).map_err(|e| match e {
            ::journal::JournalError::UnknownRun(_) => CommandError::Input(e.to_string()),
            _ => CommandError::Journal(e.to_string()),
        })
    }

    /// Reads a run's records; a run whose header never became durable never started.
    pub fn read_run(
        &self,
        run: &str,
        journal: &::journal::Journal,
    ) -> Result<RunState, CommandError> {
        RunState::read(journal, run).map_err(|e| journal_error(run, e))
    }

    /// Where a live run's evidence goes, and whom it is attributed to.
    pub fn evidence_config(
        &self,
        cluster_id: &str,
        collector: &str,
    ) -> crate::evidence::EvidenceConfig {
        crate::evidence::EvidenceConfig {
            root: self.evidence_root.clone(),
            cluster_id: cluster_id.to_string(),
            collector: collector.to_string(),
            signing_key: self.evidence_key.clone(),
        }
    }
}

/// The scratch journals of `--journal cluster`: `contain-journal-<pid>-…` in the temp directory.
const SCRATCH_PREFIX: &str = "contain-journal-";

/// Removes the scratch journals of processes that are gone (killed, so they could not remove
/// their own): the cluster holds those runs; the scratch copies only take space.
fn sweep_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SCRATCH_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A journal read that failed; a run whose header never became durable never started.
pub fn journal_error(run: &str, error: ::journal::JournalError) -> CommandError {
    match error {
        ::journal::JournalError::UnknownRun(_) => CommandError::NeverStarted(format!(
            "run {run} never started: nothing was recorded, nothing was written"
        )),
        e => CommandError::Journal(e.to_string()),
    }
}

/// A time-sortable run id: UTC time to the millisecond, then 6 hex digits
/// (`20261127T031200123Z-4f2a1c`), so runs of the same second still list in order.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let seed = format!(
        "{}-{}-{:?}",
        now.as_nanosecond(),
        std::process::id(),
        std::thread::current().id()
    );
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}{:03}Z-{}",
        now.strftime("%Y%m%dT%H%M%S"),
        now.subsec_millisecond(),
        &digest[..6]
    )
}

/// The playbook path a plan and the journal record: absolute, so `resume` finds it anywhere.
pub fn playbook_path(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
