//! The command line, as clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "contain",
    version,
    about = "Run incident-containment playbooks against Kubernetes",
    long_about = "Run declarative incident-containment playbooks against Kubernetes: live, as a dry run, \
or as a tabletop exercise against a cluster snapshot."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Debug, Args)]
pub struct Global {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Default for a playbook param named `namespace` when not given with --set.
    #[arg(short = 'n', long, global = true, value_name = "NS", value_parser = namespace)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Plain lines instead of a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// The journal directory (default: $XDG_STATE_HOME/contain/journal or
    /// ~/.local/state/contain/journal); the run's ContainmentRun in the cluster follows it.
    /// `cluster`: no local journal; the ContainmentRun is the write-ahead log (each record is
    /// on the API server before the write it covers). A directory named `cluster` is
    /// `./cluster`.
    #[arg(
        long,
        global = true,
        env = "CONTAIN_JOURNAL",
        value_name = "DIR|cluster"
    )]
    pub journal: Option<PathBuf>,
    /// Keep no copy of live runs in the cluster (no ContainmentRun): the local journal only.
    #[arg(long, global = true, env = "CONTAIN_NO_CLUSTER_COPY", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cluster_copy: bool,
    /// Where evidence bundles go (default: beside the journal, e.g.
    /// ~/.local/state/contain/evidence).
    #[arg(long, global = true, env = "CONTAIN_EVIDENCE", value_name = "DIR")]
    pub evidence: Option<PathBuf>,
    /// Sign every evidence manifest with this PKCS#8 PEM P-256 key (`manifest.json.sig`, which
    /// `ssh-keygen -Y verify -n contain-evidence` checks); make one with
    /// `ssh-keygen -t ecdsa -b 256 -m PKCS8`.
    #[arg(long, global = true, env = "CONTAIN_EVIDENCE_KEY", value_name = "FILE")]
    pub evidence_key: Option<PathBuf>,
    /// The most one API call may take, e.g. `30s`: a call without an answer by then fails
    /// naming the call (the step's own `timeout` and the run's bound the whole).
    #[arg(long, global = true, env = "CONTAIN_CALL_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub call_timeout: std::time::Duration,
    /// The most a live run (or a resume) may take once approved, instead of the playbook's
    /// `timeout`: past it the step in flight is cut and journaled as failed, and the run stops
    /// for `contain resume` (no automatic rollback).
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    pub run_timeout: Option<std::time::Duration>,
    /// More detail (each operation and verification check).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A duration such as `30s`, `5m` or `1h30m`, longer than zero.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    match crate::duration::parse_duration(text) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err("must be longer than zero".to_string()),
        None => Err(crate::duration::problem(text).unwrap_or_default()),
    }
}

/// A namespace given with `-n`: a DNS-1123 label, as the API server requires.
fn namespace(text: &str) -> Result<String, String> {
    crate::cluster::object::validate_namespace(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct PlaybookArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// Set a param: name=value (lists are comma-separated). Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook file (omit it with --plan: the saved plan names its playbook).
    #[arg(required_unless_present = "plan")]
    pub playbook: Option<PathBuf>,
    /// Set a param: name=value (lists are comma-separated). Repeatable. With --plan, the values
    /// must be the plan's own.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Apply a plan saved with `contain plan --out`, exactly; refused when the playbook, the
    /// params or the cluster differ, or an object it depends on changed.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub plan: Option<PathBuf>,
    /// Send every write with dryRun=All: the API server validates it and stores nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before writing, and approve `approve` steps. Required when not on a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// Who hears what a live run does, besides the terminal and the journal.
#[derive(Debug, Args, Default)]
pub struct NotifyArgs {
    /// Post each step's end and the run's to a webhook: json=URL (generic JSON) or slack=URL
    /// (a Slack-compatible incoming webhook). Repeatable. A failed delivery never fails the run.
    #[arg(long = "notify", value_name = "FORMAT=URL")]
    pub webhooks: Vec<crate::notify::webhook::Webhook>,
    /// A directory whose notify.json.hbs / notify.slack.hbs replace the shipped templates.
    #[arg(long, value_name = "DIR")]
    pub notify_templates: Option<PathBuf>,
    /// Post no Kubernetes Events on the targets (by default each step's end is one).
    #[arg(long)]
    pub no_events: bool,
}

/// The Lease locks a live run takes on the targets it writes to.
#[derive(Debug, Args, Default)]
pub struct LockArgs {
    /// Take the targets' locks even from another live run, for this reason (journaled, and
    /// printed with the holder it was taken from).
    #[arg(long, value_name = "REASON")]
    pub steal: Option<String>,
    /// How long a lock lasts without renewal (renewed every third of it): how long a killed
    /// run keeps others off its targets.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lock_ttl: u64,
}

impl LockArgs {
    pub fn options(&self) -> crate::run_lock::LockOptions {
        crate::run_lock::LockOptions {
            ttl: std::time::Duration::from_secs(self.lock_ttl),
            steal: self.steal.clone(),
            take_over_from: Vec::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Re-hash a bundle (a step's directory, a run's, or the whole evidence directory) and name
    /// every artifact that changed, vanished or appeared; cross-check the manifest against the
    /// journal when the run is there; check each manifest's signature (against these OpenSSH
    /// public keys, with --trusted-key: then an unsigned bundle fails too).
    Verify {
        dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        trusted_key: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// List the runs, oldest first.
    Ls,
    /// Show one run: each step's state and plan.
    Show { run: String },
    /// Print a run's records as JSON lines (header first).
    Export { run: String },
    /// Check a run's hash chain: altered, missing or truncated records.
    Verify { run: String },
    /// Bring a run from its ContainmentRun in the cluster into this journal (its chain
    /// verified first), to resume or roll it back from here.
    Pull { run: String },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExerciseArgs {
    #[command(subcommand)]
    pub command: Option<ExerciseCommand>,
    /// The scenario file (`kind: Scenario`).
    pub scenario: Option<PathBuf>,
    /// Plan the playbook against this snapshot (default: the live cluster, read-only).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Run unattended from a scripted answers file (`kind: ExerciseAnswers`).
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Where aar.md and aar.json go (default ./exercise-reports/<scenario>-<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A directory whose aar.md.hbs replaces the shipped template.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Exit 14 when an objective was not met (the report is written all the same): for an
    /// exercise run unattended in CI.
    #[arg(long)]
    pub fail_on_unmet: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExerciseCommand {
    /// Check scenario files and report every problem with its place.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON schema of the scenario format.
    Schema,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: Option<DrillCommand>,
    /// The drill file (`kind: Drill`).
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub options: DrillOptions,
}

#[derive(Debug, Args)]
pub struct DrillOptions {
    /// Where the reports go (report.json, report.md, junit.xml); default ./drill-reports/<run>.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// A directory whose `report.md.hbs` / `junit.xml.hbs` replace the shipped templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Go on with a drill that stopped (a crash, a killed process) from its last phase.
    Resume {
        /// The drill run id (printed when it started; directories under <journal>/drills).
        run: String,
        #[command(flatten)]
        options: DrillOptions,
    },
    /// Abort a drill: roll its containment back, delete everything it created, and report.
    Cleanup {
        run: String,
        #[command(flatten)]
        options: DrillOptions,
    },
    /// Check drill files and report every problem with its place.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON schema of the drill format.
    Schema,
    /// The drill's exit codes.
    ExitCodes,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks and report every problem with its place.
    Validate {
        /// Playbook files.
        #[arg(required = true)]
        playbooks: Vec<PathBuf>,
        /// Also check these param values: name=value.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Show what a playbook would do against the cluster (or a snapshot), writing nothing:
    /// every step planned against the state the steps before it leave, guards and permissions
    /// checked.
    Plan {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// Plan against a snapshot file instead of a live cluster.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// Save the plan, to be applied exactly later with `contain run --plan FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Plan a playbook, show the plan, and (once approved) apply exactly that plan.
    Run(RunArgs),
    /// Continue an interrupted live run from its first unfinished step.
    Resume {
        /// The run id (see `contain journal ls`).
        run: String,
        /// Do not ask before writing. Required when not on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// The incident report of a run, from its journal and evidence manifests: who ran it from
    /// which context, the timeline, every change with before and after, evidence hashes,
    /// verification results and the rollback status.
    Report {
        /// The run id (see `contain journal ls`).
        run: String,
        /// markdown (default), html or json (`-o json` also gives json).
        #[arg(long, value_enum)]
        format: Option<crate::report::incident::Format>,
        /// Write it to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A directory whose incident.md.hbs / incident.html.hbs replace the shipped templates.
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Undo a live run's completed steps, newest first (irreversible steps are skipped).
    Rollback {
        /// The run id (see `contain journal ls`).
        run: String,
        /// Keep this step and the ones before it; undo only the later ones.
        #[arg(long, value_name = "STEP")]
        to: Option<String>,
        /// Do not ask before writing. Required when not on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Resolve an image to its digest and verify its cosign signature with one of the keys.
    VerifyImage {
        /// `registry/repository:tag` or `registry/repository@sha256:…`.
        image: String,
        /// ECDSA P-256 public key (PEM); repeat for several, any one suffices.
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// Docker config.json with registry credentials.
        #[arg(long, value_name = "FILE")]
        registry_config: Option<PathBuf>,
    },
    /// Check evidence bundles.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// The runs the cluster records (ContainmentRuns): who, when, outcome, and the containment
    /// still in force with its age. Flags containment partly undone by hand.
    Runs {
        /// Every namespace (default: `-n`, or every namespace when `-n` is not given).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only runs whose target contains this text (`Pod shop/web-1`, `web-1`).
        #[arg(long, value_name = "TEXT")]
        target: Option<String>,
        /// Only runs whose review is due (past their `review_after`) with containment in force.
        #[arg(long)]
        due: bool,
    },
    /// The hand-over briefing of a run (ICS-201 style): what was done and proven, what is in
    /// force, pending undos, decisions and approvals, evidence, Leases, and next steps.
    Handover {
        /// The run id (see `contain runs`).
        run: String,
        /// markdown (default) or json (`-o json` also gives json).
        #[arg(long, value_enum)]
        format: Option<crate::report::handover::Format>,
        /// A directory whose handover.md.hbs replaces the shipped template.
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Act on runs whose review fell due (in `-n`'s namespace, else in every namespace): an
    /// Event on the run and its notifications, and a journaled rollback of those whose playbook
    /// says `on_review_due: rollback`. Meant for a schedule (a CronJob).
    Review {
        /// Do not ask before rolling back. Required when not on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Print the ContainmentRun custom resource definitions (`contain crd | kubectl apply -f -`).
    Crd,
    /// Inspect the journal of live runs, or bring one from the cluster (`journal pull`).
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Run a chaos drill: detonate abuse against decoys, wait for the alerts it must raise,
    /// contain with the real playbook, verify, revert, clean up and report. Exit codes: 0
    /// passed, 11 an expectation failed, 12 drill error or abort, 13 cleanup incomplete.
    Drill(DrillArgs),
    /// A tabletop exercise people run together: modules, timed injects, decisions mapped to
    /// playbook steps (each shown with its plan), evaluator notes, a hot wash, and an
    /// after-action report. At a terminal, or from --answers FILE.
    Exercise(ExerciseArgs),
    /// Walk a playbook against a cluster snapshot: plans, simulated changes, summary.
    Tabletop {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// The snapshot (multi-document YAML of cluster objects).
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
    },
    /// Print the least-privilege ClusterRole a playbook needs: what planning it reads, what its
    /// operations write, what verification reads (planned against the cluster or a snapshot).
    Rbac {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// Plan against a snapshot file instead of a live cluster.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// The ClusterRole's name (default: contain-<playbook name>).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// What can reach a pod and what it can reach, from every NetworkPolicy of its namespace
    /// (policies add up), in both directions.
    ExplainAccess {
        /// The pod (its namespace with -n).
        pod: String,
        /// Read a snapshot file instead of the live cluster.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
    },
    /// Export the objects actions read from the live cluster into a snapshot file for tabletop
    /// runs (in one namespace with -n, else all). Secret values are never exported. YAML by
    /// default; `-o json` writes one JSON List, which loads about ten times faster (large clusters).
    Snapshot {
        /// Write here instead of standard output.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the JSON schema of the playbook format.
    Schema,
    /// The exit codes and what each means (`-o json` for programs).
    ExitCodes,
    /// List the actions: fields, what they change, whether they can be undone.
    Actions {
        /// Show one action in full.
        name: Option<String>,
    },
    /// Print the manual page (roff), generated from this command line: `contain man | man -l -`.
    Man,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
