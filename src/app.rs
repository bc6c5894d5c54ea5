//! Dispatch: a parsed command line to its command, and the command's end to an exit code.
//! Nothing is decided here: each command returns a [`Status`] or a [`CommandError`], which
//! owns its exit code and is shown through [`ui`].

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, EvidenceCommand};
use crate::cmd::{self, CommandResult, Ctx, Status, session_options, ui};
use crate::exit;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let matches = Cli::command().after_help(exit::help_text()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            ui::err_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let ctx = Ctx::new(&cli.global);
    let code = match runtime.block_on(dispatch(&ctx, &cli.command)) {
        Ok(status) => status.exit_code(),
        Err(error) => {
            ui::print_error(&error, ctx.output);
            error.exit_code()
        }
    };
    ExitCode::from(code)
}

/// A closed standard output (`contain tabletop … | head`) ends the process quietly, as it does
/// other Unix tools, instead of a panic on the failed write.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts; no
    // handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn dispatch(ctx: &Ctx, command: &Command) -> CommandResult {
    match command {
        Command::Validate { playbooks, set } => cmd::validate::run(ctx, playbooks, set),
        Command::Plan {
            playbook,
            snapshot,
            out,
        } => cmd::plan::plan(ctx, playbook, snapshot.as_deref(), out.as_deref()).await,
        Command::Tabletop { playbook, snapshot } => {
            cmd::plan::tabletop(ctx, playbook, snapshot).await
        }
        Command::Run(args) => cmd::run::run(ctx, args).await,
        Command::Drill(args) => Ok(Status::Drill(crate::drill::command(args, ctx).await)),
        Command::Exercise(args) => crate::exercise::command(ctx, args).await,
        Command::Snapshot { file } => cmd::snapshot::run(ctx, file.as_deref()).await,
        Command::Rbac {
            playbook,
            snapshot,
            name,
        } => cmd::rbac::run(ctx, playbook, snapshot.as_deref(), name.as_deref()).await,
        Command::ExplainAccess { pod, snapshot } => {
            cmd::explain_access::run(ctx, pod, snapshot.as_deref()).await
        }
        Command::Resume {
            run,
            yes,
            lock,
            notify,
        } => cmd::resume::run(ctx, run, session_options(*yes, lock, notify)).await,
        Command::Rollback {
            run,
            to,
            yes,
            lock,
            notify,
        } => {
            let options = session_options(*yes, lock, notify);
            cmd::rollback::run(ctx, run, to.as_deref(), options).await
        }
        Command::Report {
            run,
            format,
            out,
            templates,
        } => cmd::report::run(ctx, run, *format, out.as_deref(), templates.as_deref()),
        Command::Journal { command } => cmd::journal::run(ctx, command).await,
        Command::Runs {
            all_namespaces,
            target,
            due,
        } => cmd::runs::list(ctx, *all_namespaces, target.as_deref(), *due).await,
        Command::Handover {
            run,
            format,
            templates,
        } => cmd::runs::handover(ctx, run, *format, templates.as_deref()).await,
        Command::Review { yes, notify } => {
            cmd::session::refuse_unattended(*yes, "review runs (a due run may be rolled back)")?;
            let options = session_options(*yes, &crate::cli::LockArgs::default(), notify);
            cmd::runs::review(ctx, options).await
        }
        Command::Crd => cmd::runs::crd(),
        Command::Evidence {
            command: EvidenceCommand::Verify { dir, trusted_key },
        } => cmd::evidence::verify(ctx, dir, trusted_key),
        Command::VerifyImage {
            image,
            keys,
            registry_config,
        } => cmd::verify_image::run(ctx, image, keys, registry_config.as_deref()).await,
        Command::Schema => cmd::info::schema(ctx),
        Command::ExitCodes => cmd::info::exit_codes(ctx),
        Command::Actions { name } => cmd::actions::run(ctx, name.as_deref()),
        Command::Man => cmd::info::man(),
        Command::Completions { shell } => cmd::info::completions(*shell),
    }
}
