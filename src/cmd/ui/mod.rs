//! The one place that writes to the terminal: standard output for answers (summaries, documents
//! in `-o json|yaml`, tables), standard error for diagnostics, progress and questions. Commands
//! and the library below them return values and errors; this module shows them.

pub mod progress;

use std::io::{IsTerminal, Write};

use serde_json::{Value, json};

use super::error::CommandError;
use crate::cli::Output;
use crate::diagnostics::Report;
use crate::event::{EventKind, EventSink, Fanout, Outcome, Recorder};
use crate::execute::{Approver, Mode};
use crate::plan::RunPlan;
use crate::report::summary::RunSummary;
use progress::ProgressPrinter;

/// Text on standard output, as it is, shown at once (a prompt without a line break too).
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A line on standard output.
pub fn out_line(text: &str) {
    out(&format!("{text}\n"));
}

/// A line on standard error.
pub fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `warning: …` on standard error.
pub fn warn(text: &str) {
    err_line(&format!("warning: {text}"));
}

/// Whether diagnostics on standard error may be coloured.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether standard error is a terminal (where a spinner or a progress bar may be drawn).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether a person can answer a question on standard input.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Problems with their places: rendered on standard error for text, as one document on
/// standard output for `-o json|yaml`.
pub fn print_reports(reports: &[Report], output: Output) {
    if output == Output::Text {
        for report in reports {
            let _ = std::io::stderr()
                .lock()
                .write_all(report.render(color()).as_bytes());
        }
    } else {
        print_output(
            &json!({"valid": false, "problems": problems(reports)}),
            output,
        );
    }
}

/// Every problem of `reports`, as JSON.
pub fn problems(reports: &[Report]) -> Vec<Value> {
    reports
        .iter()
        .flat_map(|r| r.to_json().as_array().cloned().unwrap_or_default())
        .collect()
}

/// A document in the output format (JSON made inert on a terminal, or YAML).
pub fn print_output(value: &Value, output: Output) {
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(value)
            .unwrap_or_else(|e| format!("# cannot render YAML: {e}\n")),
        _ => {
            crate::escape::inert_json(serde_json::to_string_pretty(value).unwrap_or_default())
                + "\n"
        }
    };
    out(&text);
}

/// A JSON schema: JSON (what the shipped schema files hold), or YAML with `-o yaml`.
pub fn print_schema(schema: &Value, output: Output) {
    let output = match output {
        Output::Yaml => Output::Yaml,
        _ => Output::Json,
    };
    print_output(schema, output);
}

/// Shows why a command failed, the way each failure is said.
pub fn print_error(error: &CommandError, output: Output) {
    match error {
        CommandError::Invalid(reports) => print_reports(reports, output),
        CommandError::NotConfirmed => err_line(&error.to_string()),
        CommandError::NeverStarted(answer) => out_line(answer),
        CommandError::SignatureRefused(why) => err_line(&format!("refused: {why}")),
        CommandError::Locked(held) => {
            err_line(&format!("error: {held}"));
            err_line(
                "another run is acting on this target; nothing was written. `--steal REASON` takes the lock anyway (recorded in the journal).",
            );
        }
        _ => err_line(&format!("error: {error}")),
    }
}

/// Asks a yes/no question on the terminal; anything but yes is no.
pub fn confirm(question: &str) -> bool {
    eprint_flush(&format!("{question} [y/N] "));
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES")
}

/// Text on standard error without a line break, shown at once (a prompt).
pub fn eprint_flush(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Asks on the terminal.
pub struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve(&mut self, step: &str, message: &str) -> bool {
        confirm(&format!(
            "step {step}: {}",
            crate::escape::sanitize(message)
        ))
    }
}

/// The sinks every run reports through: a recorder (summary, JSON output) and, for text
/// output, the progress printer.
pub struct Reporting {
    recorder: Recorder,
    printer: ProgressPrinter,
    output: Output,
}

impl Reporting {
    pub fn new(output: Output, no_progress: bool, verbose: u8, mode: Mode) -> Self {
        let text = output == Output::Text;
        let animated = text && !no_progress && std::io::stderr().is_terminal();
        let mut printer = ProgressPrinter::new(animated);
        printer.verbose = verbose > 0;
        printer.show_inverse = mode != Mode::Live || verbose > 0;
        Reporting {
            recorder: Recorder::default(),
            printer,
            output,
        }
    }

    /// The sinks of one executor; `journal` first, so a record is durable before anything is
    /// shown.
    pub fn sinks<'s>(&'s mut self, journal: Option<&'s mut dyn EventSink>) -> Fanout<'s> {
        let mut sinks: Vec<&mut dyn EventSink> = Vec::new();
        if let Some(journal) = journal {
            sinks.push(journal);
        }
        sinks.push(&mut self.recorder);
        if self.output == Output::Text {
            sinks.push(&mut self.printer);
        }
        Fanout(sinks)
    }

    /// The outcome of the run so far, if it finished.
    pub fn outcome(&self) -> Option<Outcome> {
        self.recorder
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::RunFinished { outcome } => Some(outcome.clone()),
                _ => None,
            })
    }

    /// Prints the summary (text) or the document (JSON/YAML); the run's outcome decides how the
    /// command ends.
    pub fn report(&self, mode: Mode, plan: Option<&RunPlan>) -> super::CommandResult {
        let mut summary = RunSummary::from_events(&self.recorder.events);
        match mode {
            Mode::Tabletop => summary.notes.push(
                "tabletop: changes were applied to a simulated copy of the snapshot; no controllers ran there (no pods were replaced or rescheduled)".into(),
            ),
            Mode::Plan => summary.notes.push(
                "plan: nothing was written; each step was planned against the cluster as the steps before it leave it".into(),
            ),
            Mode::DryRun => summary.notes.push(
                "dry run: the API server validated each write to an object no earlier step changes (dryRun=All) and stored nothing; writes to objects an earlier step changes were checked against the planned state".into(),
            ),
            Mode::Live => {}
        }
        if let Some(plan) = plan {
            summary.notes.extend(plan.notes.iter().cloned());
        }
        if self.output == Output::Text {
            out(&summary.render_text());
        } else {
            let mut document = serde_json::to_value(&summary).unwrap_or(Value::Null);
            if let Some(plan) = plan {
                document["plan"] = serde_json::to_value(plan).unwrap_or(Value::Null);
            }
            document["events"] = serde_json::to_value(&self.recorder.events).unwrap_or(Value::Null);
            print_output(&document, self.output);
        }
        match self.outcome() {
            Some(outcome) => Ok(super::Status::Finished(outcome)),
            None => Err(CommandError::Internal(
                "the run ended without an outcome".into(),
            )),
        }
    }
}
