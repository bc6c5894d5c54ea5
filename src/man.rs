//! `contain man`: the manual page, generated from the command line's own definition (every
//! command, argument and flag with its help) and the exit-code table, so it cannot drift from
//! the binary. Shipped as `man/contain.1` (a test keeps the two equal).

use std::fmt::Write as _;

use clap::{Arg, Command};

/// roff-escapes text: backslashes, and a leading dot or quote that roff would read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn help_of(arg: &Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn flag(arg: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("\\fB\\-{short}\\fR"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", roff(long)));
    }
    let value = if arg.get_action().takes_values() {
        arg.get_value_names()
            .map(|v| format!(" \\fI{}\\fR", roff(&v.join(" "))))
            .unwrap_or_default()
    } else {
        String::new()
    };
    format!("{}{value}", names.join(", "))
}

fn options(out: &mut String, command: &Command, global: bool) {
    for arg in command.get_arguments() {
        if arg.is_hide_set() || arg.get_id() == "help" || arg.get_id() == "version" {
            continue;
        }
        if arg.is_global_set() != global {
            continue;
        }
        let name = if arg.is_positional() {
            format!(
                "\\fI{}\\fR",
                roff(
                    &arg.get_value_names()
                        .map(|v| v.join(" "))
                        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase())
                )
            )
        } else {
            flag(arg)
        };
        let _ = writeln!(out, ".TP\n{name}\n{}", roff(&help_of(arg)));
    }
}

fn commands(out: &mut String, command: &Command, path: &str) {
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let full = format!("{path} {}", sub.get_name());
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, ".SS \"{}\"\n{}", roff(&full), roff(&about));
        let mut local = String::new();
        options(&mut local, sub, false);
        if !local.is_empty() {
            out.push_str(".RS\n");
            out.push_str(&local);
            out.push_str(".RE\n");
        }
        commands(out, sub, &full);
    }
}

/// The manual page, in roff.
pub fn page(mut command: Command) -> String {
    command.build();
    let name = command.get_name().to_string();
    let version = command.get_version().unwrap_or_default().to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH {} 1 \"\" \"{name} {version}\" \"User Commands\"",
        name.to_uppercase()
    );
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, ".SH NAME\n{name} \\- {}", roff(&about));
    let _ = writeln!(
        out,
        ".SH SYNOPSIS\n\\fB{name}\\fR [\\fIglobal flags\\fR] \\fIcommand\\fR [\\fIargs\\fR]"
    );
    if let Some(long) = command.get_long_about() {
        let _ = writeln!(out, ".SH DESCRIPTION\n{}", roff(&long.to_string()));
    }
    out.push_str(".SH GLOBAL FLAGS\n");
    options(&mut out, &command, true);
    out.push_str(".SH COMMANDS\n");
    commands(&mut out, &command, &name);
    out.push_str(".SH EXIT STATUS\n");
    for (code, meaning) in crate::exit::TABLE {
        let _ = writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff(meaning));
    }
    out.push_str(
        ".SH ENVIRONMENT\n.TP\n\\fBKUBECONFIG\\fR\nthe kubeconfig, when \\fB\\-\\-kubeconfig\\fR is not given\n\
.TP\n\\fBCONTAIN_JOURNAL\\fR\nthe journal directory (default $XDG_STATE_HOME/contain/journal)\n\
.TP\n\\fBCONTAIN_EVIDENCE\\fR\nthe evidence directory\n\
.TP\n\\fBNO_COLOR\\fR\nplain text, no colour\n",
    );
    out.push_str(".SH SEE ALSO\n\\fBkubectl\\fR(1); the README shipped with contain\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn roff_requests_and_escapes_in_help_text_are_neutralized() {
        assert_eq!(super::roff(".SH evil\\n"), "\\&.SH evil\\en");
        assert_eq!(super::roff("--flag"), "\\-\\-flag");
    }
}
