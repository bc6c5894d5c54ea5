//! How a command ends: [`Status`] when it ran to its end (its answer shown), [`CommandError`]
//! when it could not. Each knows its exit code (from the one table in [`crate::exit`]); `main`
//! renders the error through [`super::ui`] and exits with the code, and nothing else decides one.

use crate::diagnostics::Report;
use crate::event::Outcome;
use crate::execute::RunError;
use crate::exit;

/// A command that ran to its end, with its answer shown.
#[derive(Debug)]
pub enum Status {
    /// It did what it was asked.
    Success,
    /// A run, a resume or a rollback ended with this outcome, which the summary showed; the
    /// outcome decides the code.
    Finished(Outcome),
    /// What the command checked failed the check, and the answer was shown.
    Failed(Finding),
    /// A drill's verdict, reported: `SUCCESS`, `DRILL_FAILED`, `DRILL_ERROR` or
    /// `CLEANUP_INCOMPLETE` of the one table.
    Drill(u8),
}

/// A check whose "no" is the command's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Among the files validated, some are invalid (each problem was shown).
    Invalid,
    /// A journal's hash chain is broken (`journal verify`, `report`).
    ChainBroken,
    /// An evidence bundle changed, or its manifest does not match the journal.
    EvidenceAltered,
    /// An exercise run with `--fail-on-unmet` left objectives unmet.
    ObjectivesUnmet,
    /// `contain review` could not say or undo every run that fell due.
    ReviewIncomplete,
}

impl Status {
    pub fn exit_code(&self) -> u8 {
        match self {
            Status::Success => exit::SUCCESS,
            Status::Finished(outcome) => outcome.exit_code(),
            Status::Failed(Finding::Invalid) => exit::INVALID_INPUT,
            Status::Failed(Finding::ChainBroken) => exit::JOURNAL,
            Status::Failed(Finding::EvidenceAltered) => exit::VERIFY_FAILED,
            Status::Failed(Finding::ObjectivesUnmet) => exit::OBJECTIVES_UNMET,
            Status::Failed(Finding::ReviewIncomplete) => exit::STEP_FAILED,
            Status::Drill(code) => *code,
        }
    }
}

/// Every way a command fails. Messages are the whole line a person reads after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command line asks for what cannot be done (a missing argument clap cannot see).
    #[error("{0}")]
    Usage(String),
    /// A playbook, snapshot, drill or scenario has problems, each with its place.
    #[error("invalid input")]
    Invalid(Vec<Report>),
    /// An input could not be read or is wrong (a saved plan, a key, a step id, an output file).
    #[error("{0}")]
    Input(String),
    /// The cluster (or a registry) could not be reached, or a read failed. Nothing was written.
    #[error("{0}")]
    Cluster(String),
    /// Refused before any write: a changed playbook, another cluster, no terminal to confirm on.
    #[error("{0}")]
    Refused(String),
    /// The responder answered no. Nothing was written.
    #[error("not confirmed; nothing was written")]
    NotConfirmed,
    /// Another run holds a target's Lease (named with its holder and since when).
    #[error("{0}")]
    Locked(String),
    /// The run could not be recorded, or its journal could not be read.
    #[error("{0}")]
    Journal(String),
    /// The run never started: nothing was recorded or approved, so nothing was written. Said on
    /// standard output, as a plain answer.
    #[error("{0}")]
    NeverStarted(String),
    /// A post-condition does not hold: an image whose signature could not be checked.
    #[error("{0}")]
    Unverified(String),
    /// An image's signature is refused (unsigned, wrongly signed, tampered).
    #[error("{0}")]
    SignatureRefused(String),
    /// The executor could not start or go on.
    #[error("{0}")]
    Run(#[from] RunError),
    /// A bug: please report it.
    #[error("{0}")]
    Internal(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        use crate::execute::RunError as E;
        match self {
            CommandError::Usage(_) => exit::USAGE,
            CommandError::Invalid(_) | CommandError::Input(_) => exit::INVALID_INPUT,
            CommandError::Cluster(_) => exit::CLUSTER,
            CommandError::Refused(_) | CommandError::NotConfirmed => exit::REFUSED,
            CommandError::Locked(_) => exit::LOCKED,
            CommandError::Journal(_) => exit::JOURNAL,
            CommandError::NeverStarted(_) => exit::NEVER_STARTED,
            CommandError::Unverified(_) | CommandError::SignatureRefused(_) => exit::VERIFY_FAILED,
            CommandError::Run(E::Fact(crate::facts::FactError::Render(_))) => exit::INVALID_INPUT,
            CommandError::Run(E::Fact(_) | E::Preflight(_) | E::Radius(_)) => exit::CLUSTER,
            CommandError::Run(E::Sink(_)) => exit::JOURNAL,
            CommandError::Internal(_) => exit::INTERNAL,
        }
    }
}

/// A command's result.
pub type CommandResult = Result<Status, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_owns_its_documented_code() {
        let documented: Vec<u8> = exit::TABLE.iter().map(|(code, _)| *code).collect();
        for error in [
            CommandError::Usage(String::new()),
            CommandError::Invalid(Vec::new()),
            CommandError::Input(String::new()),
            CommandError::Cluster(String::new()),
            CommandError::Refused(String::new()),
            CommandError::NotConfirmed,
            CommandError::Locked(String::new()),
            CommandError::Journal(String::new()),
            CommandError::NeverStarted(String::new()),
            CommandError::Unverified(String::new()),
            CommandError::SignatureRefused(String::new()),
            CommandError::Internal(String::new()),
        ] {
            assert!(
                documented.contains(&error.exit_code()),
                "{error:?} exits with an undocumented code"
            );
            assert_ne!(error.exit_code(), exit::SUCCESS, "{error:?} exits 0");
        }
        assert_eq!(CommandError::NotConfirmed.exit_code(), exit::REFUSED);
        assert_eq!(
            Status::Failed(Finding::ChainBroken).exit_code(),
            exit::JOURNAL
        );
    }
}
