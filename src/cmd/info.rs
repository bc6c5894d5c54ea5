//! The commands that describe `contain` itself: the playbook schema, the exit codes, the
//! manual page and shell completions.

use clap::CommandFactory;
use serde_json::{Value, json};

use super::ui;
use super::{CommandResult, Ctx, Status};
use crate::cli::Cli;
use crate::exit;

/// `contain schema`: the JSON schema of the playbook format.
pub fn schema(ctx: &Ctx) -> CommandResult {
    ui::print_schema(&crate::playbook::validate::playbook_schema(), ctx.output);
    Ok(Status::Success)
}

/// `contain exit-codes`: the one table, as text or (`-o json|yaml`) data.
pub fn exit_codes(ctx: &Ctx) -> CommandResult {
    if ctx.text() {
        ui::out(&exit::help_text());
    } else {
        let table: Vec<Value> = exit::TABLE
            .iter()
            .map(|(code, meaning)| json!({"code": code, "meaning": meaning}))
            .collect();
        ui::print_output(&Value::Array(table), ctx.output);
    }
    Ok(Status::Success)
}

/// `contain man`: the manual page (roff), generated from the command line.
pub fn man() -> CommandResult {
    ui::out(&crate::man::page(Cli::command()));
    Ok(Status::Success)
}

/// `contain completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> CommandResult {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "contain", &mut script);
    ui::out(&String::from_utf8_lossy(&script));
    Ok(Status::Success)
}
