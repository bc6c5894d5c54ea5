//! Exit codes. [`TABLE`] is the one list, for every command including drills: `--help`, the
//! README (a test compares them), `contain exit-codes` and `contain drill exit-codes` are
//! generated from it. A run's outcome maps onto a code in `outcome::Outcome::exit_code`, a
//! command error in `cmd::error`, a drill's verdict in `drill::score`.

/// The run (or command) did what it was asked.
pub const SUCCESS: u8 = 0;
/// A step failed (the run stopped, went on, or rolled back), or a rollback left undo pending.
pub const STEP_FAILED: u8 = 1;
/// The command line is wrong (unknown flag, missing argument).
pub const USAGE: u8 = 2;
/// A playbook, snapshot, saved plan or `--set` value is invalid. Nothing was written.
pub const INVALID_INPUT: u8 = 3;
/// The cluster could not be reached, or a fact could not be read. Nothing was written.
pub const CLUSTER: u8 = 4;
/// Refused before any write: a guard, the preflight (permissions), the responder, or a
/// non-interactive live run without `--yes`.
pub const REFUSED: u8 = 5;
/// Every step ran but a post-condition check failed.
pub const VERIFY_FAILED: u8 = 6;
/// The run could not be recorded, or a journal fails verification.
pub const JOURNAL: u8 = 7;
/// The cluster changed since the plan was approved; the run stopped before the stale step.
pub const STALE_PLAN: u8 = 8;
/// The run never started (no approved plan was recorded): nothing was written.
pub const NEVER_STARTED: u8 = 9;
/// Another run holds a target's lock (its Lease); nothing was written.
pub const LOCKED: u8 = 10;
/// A drill ran, and an expectation (late, missed, unattributed), a post-condition, an SLO or
/// its containment failed.
pub const DRILL_FAILED: u8 = 11;
/// A drill could not run as written (invalid file, preflight refusal, a detonation error) or
/// was aborted (kill switch, SIGTERM, lost lock).
pub const DRILL_ERROR: u8 = 12;
/// A drill's cleanup left objects behind, or its rollback failed or did not restore every
/// object.
pub const CLEANUP_INCOMPLETE: u8 = 13;
/// An exercise ran with `--fail-on-unmet` and an objective was not met (its report is
/// written).
pub const OBJECTIVES_UNMET: u8 = 14;
/// A bug: please report it.
pub const INTERNAL: u8 = 70;

/// The codes a drill ends with (`contain drill exit-codes`).
pub const DRILL: &[u8] = &[SUCCESS, DRILL_FAILED, DRILL_ERROR, CLEANUP_INCOMPLETE];

/// Every code with its meaning.
pub const TABLE: &[(u8, &str)] = &[
    (SUCCESS, "success (also: planned, rolled back on request)"),
    (
        STEP_FAILED,
        "a step failed (the run stopped, went on, or rolled back), or a rollback is incomplete",
    ),
    (USAGE, "bad command line"),
    (
        INVALID_INPUT,
        "invalid playbook, snapshot, saved plan or --set value; nothing written",
    ),
    (
        CLUSTER,
        "cluster unreachable or a fact lookup failed; nothing written",
    ),
    (
        REFUSED,
        "refused before any write: a guard, a missing permission, not confirmed, or no --yes without a terminal",
    ),
    (VERIFY_FAILED, "a post-condition check failed"),
    (
        JOURNAL,
        "the run could not be recorded, or the journal fails verification",
    ),
    (
        STALE_PLAN,
        "the cluster changed since the plan was approved; stopped before the stale step",
    ),
    (NEVER_STARTED, "the run never started; nothing was written"),
    (
        LOCKED,
        "another run holds a target's lock (named with its holder and since when); nothing written",
    ),
    (
        DRILL_FAILED,
        "a drill failed: an expectation (late, missed, unattributed), a post-condition, an SLO or its containment",
    ),
    (
        DRILL_ERROR,
        "a drill could not run or was aborted: invalid drill file, preflight refusal, a detonation error, kill switch, SIGTERM",
    ),
    (
        CLEANUP_INCOMPLETE,
        "a drill's cleanup left objects behind, or its rollback did not restore every object",
    ),
    (
        OBJECTIVES_UNMET,
        "an exercise with --fail-on-unmet left an objective unmet (the after-action report is written)",
    ),
    (INTERNAL, "internal error"),
];

/// The table as `--help` prints it.
pub fn help_text() -> String {
    let mut out = String::from("Exit codes:\n");
    for (code, meaning) in TABLE {
        out.push_str(&format!("  {code:>2}  {meaning}\n"));
    }
    out
}

/// The drill's codes, from the same table.
pub fn drill_text() -> String {
    let mut out = String::new();
    for (code, meaning) in TABLE.iter().filter(|(code, _)| DRILL.contains(code)) {
        let meaning = if *code == SUCCESS {
            "passed: expectations met, contained, verified, reverted and cleaned"
        } else {
            meaning
        };
        out.push_str(&format!("  {code:>2}  {meaning}\n"));
    }
    out
}

/// The table as the README shows it (a Markdown table).
pub fn markdown_table() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for (code, meaning) in TABLE {
        out.push_str(&format!("| {code} | {meaning} |\n"));
    }
    out
}
