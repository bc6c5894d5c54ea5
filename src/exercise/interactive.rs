//! The exercise at a terminal, line by line (so a facilitator can drive it from any terminal,
//! and a test through tmux): injects arrive on the exercise clock while the room talks;
//! `next`, `pause`, `resume`, `inject`, `decide STEP`, `note OBJECTIVE`, `status`, `help` and
//! `end`; a decision asks who and why, then shows the step's plan; the hot wash asks each
//! question at the end.

use crate::cmd::ui;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::session::Session;

const HELP: &str = "commands: next (n) · inject (i) · pause (p) · resume (r) · decide STEP (d) · note OBJECTIVE · status (s) · help (h) · end";

/// The exercise clock: wall time since the start, less the time spent paused.
struct Clock {
    started: Instant,
    paused_total: Duration,
    paused_since: Option<Instant>,
}

impl Clock {
    fn now(&self) -> Duration {
        let paused = self.paused_total + self.paused_since.map_or(Duration::ZERO, |p| p.elapsed());
        self.started.elapsed().saturating_sub(paused)
    }
}

/// What the next line answers.
enum Pending {
    Command,
    DecideWho { step: String },
    DecideWhy { step: String, who: String },
    NoteWho { objective: String },
    NoteText { objective: String, who: String },
}

fn say(lines: Vec<String>) {
    for line in lines {
        ui::out_line(&crate::escape::sanitize(&line));
    }
}

fn prompt(text: &str) {
    ui::out(text);
}

/// Runs the exercise until `end` (or the last module's `next`), then the hot wash.
pub async fn run(session: &mut Session<'_>) {
    let mut clock = Clock {
        started: Instant::now(),
        paused_total: Duration::ZERO,
        paused_since: None,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    say(vec![
        format!(
            "exercise {}: {}",
            session.loaded.scenario.metadata.name, session.loaded.scenario.metadata.title
        ),
        HELP.to_string(),
    ]);
    say(session.next_module(clock.now()).unwrap_or_default());
    let mut pending = Pending::Command;
    prompt("> ");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let line = tokio::select! {
            // Ctrl-C ends the exercise where it is: the after-action report is written with
            // what was given, decided and noted so far (no hot wash).
            _ = tokio::signal::ctrl_c() => {
                say(vec![
                    String::new(),
                    "interrupted: the exercise ends here; the after-action report has what was decided so far".into(),
                ]);
                session.interrupted = true;
                session.end(clock.now());
                return;
            }
            _ = tick.tick() => {
                let given = session.tick(clock.now());
                if !given.is_empty() {
                    say(std::iter::once(String::new()).chain(given).collect());
                    prompt("> ");
                }
                continue;
            }
            line = lines.next_line() => line,
        };
        let Ok(Some(line)) = line else { break };
        let line = line.trim().to_string();
        let now = clock.now();
        pending = match pending {
            Pending::DecideWho { step } => {
                prompt("why? ");
                Pending::DecideWhy { step, who: line }
            }
            Pending::DecideWhy { step, who } => {
                say(session.decide(now, &who, &step, &line));
                prompt("> ");
                Pending::Command
            }
            Pending::NoteWho { objective } => {
                prompt("note? ");
                Pending::NoteText {
                    objective,
                    who: line,
                }
            }
            Pending::NoteText { objective, who } => {
                say(session.note(now, &objective, &who, &line));
                prompt("> ");
                Pending::Command
            }
            Pending::Command => {
                let mut words = line.split_whitespace();
                let next = match (words.next(), words.next()) {
                    (None, _) => Pending::Command,
                    (Some("next" | "n"), _) => match session.next_module(now) {
                        Some(shown) => {
                            say(shown);
                            Pending::Command
                        }
                        None => break,
                    },
                    (Some("inject" | "i"), _) => {
                        say(session.inject_now(now));
                        Pending::Command
                    }
                    (Some("pause" | "p"), _) => {
                        if clock.paused_since.is_none() {
                            clock.paused_since = Some(Instant::now());
                        }
                        session.paused = true;
                        say(vec![format!("paused at {}", super::session::clock(now))]);
                        Pending::Command
                    }
                    (Some("resume" | "r"), _) => {
                        if let Some(since) = clock.paused_since.take() {
                            clock.paused_total += since.elapsed();
                        }
                        session.paused = false;
                        say(vec![format!(
                            "resumed at {}",
                            super::session::clock(clock.now())
                        )]);
                        say(session.tick(clock.now()));
                        Pending::Command
                    }
                    (Some("decide" | "d"), Some(step)) => {
                        prompt("who? ");
                        Pending::DecideWho {
                            step: step.to_string(),
                        }
                    }
                    (Some("note"), Some(objective)) => {
                        prompt("who? ");
                        Pending::NoteWho {
                            objective: objective.to_string(),
                        }
                    }
                    (Some("status" | "s"), _) => {
                        say(session.status(now));
                        Pending::Command
                    }
                    (Some("end"), _) => break,
                    (Some("help" | "h"), _) => {
                        say(vec![HELP.to_string()]);
                        Pending::Command
                    }
                    (Some(other), _) => {
                        say(vec![format!("`{other}`? {HELP}")]);
                        Pending::Command
                    }
                };
                if matches!(next, Pending::Command) {
                    prompt("> ");
                }
                next
            }
        };
    }
    session.end(clock.now());
    let questions = session.loaded.scenario.spec.hotwash.clone();
    if !questions.is_empty() {
        say(vec![String::new(), "== hot wash".into()]);
    }
    for (i, question) in questions.iter().enumerate() {
        prompt(&format!(
            "hot wash {}/{}: {question} ",
            i + 1,
            questions.len()
        ));
        let answer = match lines.next_line().await {
            Ok(Some(answer)) => answer.trim().to_string(),
            _ => "(no answer)".to_string(),
        };
        session.hotwash.push((question.clone(), answer));
    }
}
