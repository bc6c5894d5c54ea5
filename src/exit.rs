//! Exit codes, documented in the README. Errors are mapped onto them in one place (`app`).

/// The run (or command) did what it was asked.
pub const SUCCESS: u8 = 0;
/// A step failed and the run stopped (or rolled back).
pub const STEP_FAILED: u8 = 1;
/// The command line is wrong (unknown flag, missing argument).
pub const USAGE: u8 = 2;
/// A playbook, snapshot or `--set` value is invalid. Nothing was written.
pub const INVALID_INPUT: u8 = 3;
/// The cluster could not be reached, or a fact could not be read. Nothing was written.
pub const CLUSTER: u8 = 4;
/// A live run was refused: not confirmed, not approved, or non-interactive without `--yes`.
pub const REFUSED: u8 = 5;
/// Every step ran but a post-condition check failed.
pub const VERIFY_FAILED: u8 = 6;
/// The run could not be recorded, or a journal fails verification.
pub const JOURNAL: u8 = 7;
/// A bug: please report it.
pub const INTERNAL: u8 = 70;

/// Every code with its meaning, for `--help` and the README.
pub const TABLE: &[(u8, &str)] = &[
    (SUCCESS, "success"),
    (STEP_FAILED, "a step failed; the run stopped or rolled back"),
    (USAGE, "bad command line"),
    (
        INVALID_INPUT,
        "invalid playbook, snapshot or --set value; nothing written",
    ),
    (
        CLUSTER,
        "cluster unreachable or a fact lookup failed; nothing written",
    ),
    (
        REFUSED,
        "live run not confirmed or not approved, or non-interactive without --yes",
    ),
    (VERIFY_FAILED, "a post-condition check failed"),
    (
        JOURNAL,
        "the run could not be recorded, or the journal fails verification",
    ),
    (INTERNAL, "internal error"),
];
