//! Live progress: one readable line per event, through an indicatif bar on a terminal and as
//! plain lines otherwise (CI logs, CronJobs, pipes).

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::escape::sanitize;
use crate::event::{Event, EventKind, EventSink, OpOutcome, SinkError};
use crate::outcome::{CheckStatus, Verdict};
use crate::plan::display;

/// Prints events as they come.
pub struct ProgressPrinter {
    bar: Option<ProgressBar>,
    /// Print plans with their undo operations.
    pub show_inverse: bool,
    /// Print each operation's outcome and each verification check.
    pub verbose: bool,
    /// Operations of the current step not carried out in this mode, told once per step.
    skipped: usize,
}

impl ProgressPrinter {
    /// `animated`: draw a progress bar (only on a terminal, and not with `--no-progress`).
    pub fn new(animated: bool) -> Self {
        ProgressPrinter {
            bar: animated.then(|| {
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            }),
            show_inverse: false,
            verbose: false,
            skipped: 0,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text.trim_end_matches('\n')),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
            }
        }
    }
}

/// `512 B`, `12.3 KiB`, `200.0 MiB`.
pub fn human_size(size: u64) -> String {
    match size {
        s if s < 1024 => format!("{s} B"),
        s if s < 1 << 20 => format!("{:.1} KiB", s as f64 / 1024.0),
        s if s < 1 << 30 => format!("{:.1} MiB", s as f64 / (1u64 << 20) as f64),
        s => format!("{:.1} GiB", s as f64 / (1u64 << 30) as f64),
    }
}

impl EventSink for ProgressPrinter {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        match &event.kind {
            EventKind::RunStarted {
                run_id,
                playbook,
                mode,
                cluster,
                steps,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*steps as u64);
                }
                self.line(&format!(
                    "run {run_id}: playbook {} ({mode}) against {} cluster {}",
                    sanitize(playbook),
                    cluster.kind,
                    sanitize(&cluster.server)
                ));
            }
            EventKind::StepAlreadyDone { step } => {
                self.line(&format!("\n{step}: done in the interrupted run"));
            }
            EventKind::FactResolved { fact, object, .. } => {
                let found = object.as_deref().map_or("(absent)".to_string(), sanitize);
                self.line(&format!("fact {fact} = {found}"));
            }
            EventKind::GuardChecked {
                that,
                holds,
                message,
            } => {
                if *holds {
                    if self.verbose {
                        self.line(&format!("guard holds: {}", sanitize(that)));
                    }
                } else {
                    self.line(&format!(
                        "REFUSED by guard `{}`: {}",
                        sanitize(that),
                        sanitize(message)
                    ));
                }
            }
            EventKind::Preflight {
                checked,
                denied,
                not_checked,
            } => {
                if let Some(why) = not_checked {
                    self.line(&format!("\npreflight: {}", sanitize(why)));
                } else if denied.is_empty() {
                    self.line(&format!(
                        "\npreflight: {checked} permission(s) checked with the API server, all allowed"
                    ));
                } else {
                    self.line(&format!(
                        "\npreflight: {} of {checked} permission(s) DENIED:",
                        denied.len()
                    ));
                    for access in denied {
                        self.line(&format!("  missing: {}", sanitize(access)));
                    }
                }
            }
            EventKind::ServerDryRun { refused } => {
                if refused.is_empty() {
                    self.line("server dry run: the API server accepts every planned write");
                } else {
                    self.line("server dry run: REFUSED:");
                    for refusal in refused {
                        self.line(&format!("  {}", sanitize(refusal)));
                    }
                }
            }
            EventKind::PlanApproved { plan } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(0);
                }
                self.line(&format!(
                    "\napplying the approved plan ({} steps; every write is journaled first)",
                    plan.steps.len()
                ));
            }
            EventKind::Resumed { run_id } => {
                self.line(&format!("\nresuming run {run_id} from its approved plan"));
            }
            EventKind::StepResumed { .. } => {
                self.line("  its writes had started: applying them again where not done");
            }
            EventKind::StepStale { step, changes } => {
                self.line(&format!(
                    "  STALE: the cluster changed since the plan was approved; nothing of step {step} was written:"
                ));
                for change in changes {
                    self.line(&format!("    {}", sanitize(change)));
                }
            }
            EventKind::StepStarted {
                step,
                action,
                index,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*index as u64);
                    bar.set_message(format!("{step} ({action})"));
                }
                self.line(&format!("\n[{}] {step} ({action})", index + 1));
            }
            EventKind::StepSkipped { reason, .. } => {
                self.line(&format!("  skipped: {}", sanitize(reason)))
            }
            EventKind::StepPlanned { plan, .. } => {
                self.line(&display::render_step(plan, self.show_inverse))
            }
            EventKind::StepIntent { .. } => {}
            EventKind::OpApplied { op, outcome, .. } => {
                let word = match outcome {
                    OpOutcome::Applied => "applied",
                    OpOutcome::AlreadyDone => "already done",
                    OpOutcome::DryRun => "accepted by server dry-run",
                    OpOutcome::Skipped => "not carried out",
                    OpOutcome::Approved => "approved",
                };
                if *outcome == OpOutcome::Skipped && !self.verbose {
                    self.skipped += 1;
                } else if self.verbose || *outcome != OpOutcome::Applied {
                    self.line(&format!("  {word}: {}", sanitize(op)));
                }
            }
            EventKind::Captured {
                artifact,
                size,
                outcome,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("captured {artifact}"));
                }
                let note = if outcome == "captured" {
                    String::new()
                } else {
                    format!(" [{}]", sanitize(outcome))
                };
                self.line(&format!(
                    "  captured {} ({}){note}",
                    sanitize(artifact),
                    human_size(*size)
                ));
            }
            EventKind::StepVerified { verification, .. } => {
                let counts = verification.counts();
                let line = match verification.verdict() {
                    Verdict::Verified => format!("  verified: {} check(s) passed", counts.passed),
                    Verdict::Partly => format!(
                        "  partly verified: {} check(s) passed, {} not checked",
                        counts.passed, counts.not_checked
                    ),
                    Verdict::Failed => format!(
                        "  NOT verified: {} check(s) failed, {} passed, {} not checked",
                        counts.failed, counts.passed, counts.not_checked
                    ),
                    Verdict::NothingToCheck => String::new(),
                };
                if !line.is_empty() {
                    self.line(&line);
                }
                for check in verification
                    .checks
                    .iter()
                    .filter(|c| self.verbose || c.status != CheckStatus::Passed)
                {
                    let mark = match check.status {
                        CheckStatus::Passed => "ok",
                        CheckStatus::Failed => "FAILED",
                        CheckStatus::NotChecked => "not checked",
                    };
                    let detail = check
                        .detail
                        .as_deref()
                        .map(|d| format!(" ({})", sanitize(d)))
                        .unwrap_or_default();
                    self.line(&format!("    {mark}: {}{detail}", sanitize(&check.what)));
                }
            }
            EventKind::StepDone { elapsed_ms, .. } => {
                let skipped = std::mem::take(&mut self.skipped);
                if skipped > 0 {
                    self.line(&format!(
                        "  {skipped} operation(s) not carried out in this mode (evidence is collected, and waits waited, only in live runs)"
                    ));
                }
                self.line(&format!("  done in {elapsed_ms} ms"))
            }
            EventKind::StepFailed { error, .. } => {
                self.line(&format!("  FAILED: {}", sanitize(error)))
            }
            EventKind::RollbackStarted { reason } => {
                self.line(&format!("\nrolling back: {}", sanitize(reason)))
            }
            EventKind::RollbackStep { step, outcome } => {
                self.line(&format!("  {step}: {}", sanitize(&outcome.describe())))
            }
            EventKind::RunFinished { outcome } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.line(&format!("\nrun {}", sanitize(&outcome.describe())));
            }
            // A notification that could not be delivered is said; the run goes on.
            EventKind::Notified {
                channel,
                about,
                error: Some(error),
            } => self.line(&format!(
                "  warning: could not notify {} ({}): {}",
                sanitize(channel),
                sanitize(about),
                sanitize(error)
            )),
            EventKind::Notified { .. } => {}
        }
        Ok(())
    }
}
