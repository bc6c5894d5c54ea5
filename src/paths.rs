//! Where `contain` keeps what it records on the responder's machine when no flag says otherwise:
//! the journal and the evidence bundles, side by side under the XDG state directory.

use std::path::PathBuf;

/// The default journal directory: `$XDG_STATE_HOME/contain/journal`, else
/// `~/.local/state/contain/journal`.
pub fn journal_root() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("contain").join("journal")
}

/// The default evidence directory, beside the journal: `$XDG_STATE_HOME/contain/evidence`.
pub fn evidence_root() -> PathBuf {
    journal_root().with_file_name("evidence")
}
