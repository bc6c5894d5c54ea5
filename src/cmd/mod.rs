//! The command layer: one file per command, each taking the invocation's [`Ctx`] and its own
//! arguments and returning a [`CommandResult`]. Live sessions (run, resume, rollback, and the
//! drill's containment) share [`session::Session`]; everything shown goes through [`ui`].

pub mod actions;
pub mod cluster_copy;
pub mod ctx;
pub mod error;
pub mod evidence;
pub mod explain_access;
pub mod info;
pub mod journal;
pub mod plan;
pub mod rbac;
pub mod report;
pub mod resume;
pub mod rollback;
pub mod run;
pub mod runs;
pub mod session;
pub mod snapshot;
pub mod ui;
pub mod validate;
pub mod verify_image;

pub use ctx::Ctx;
pub use error::{CommandError, CommandResult, Finding, Status};
pub use session::SessionOptions;

use crate::cli::{LockArgs, NotifyArgs};

/// The options of a live run, a resume or a rollback, from the command line.
pub fn session_options(yes: bool, lock: &LockArgs, notify: &NotifyArgs) -> SessionOptions {
    SessionOptions {
        yes,
        lock: lock.options(),
        notify: crate::notify::NotifyOptions {
            events: !notify.no_events,
            webhooks: notify.webhooks.clone(),
            templates: notify.notify_templates.clone(),
        },
    }
}
