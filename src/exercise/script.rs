//! Scripted answers (`--answers FILE`, `kind: ExerciseAnswers`): what the facilitator and players
//! do, each at a time on the exercise clock, so an exercise runs without a terminal (in CI, in
//! tests) through the same session as the interactive mode.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::session::Session;
use crate::diagnostics::Problem;
use crate::document::{self, DocumentError};
use crate::duration::parse_duration;
use crate::playbook::types::ApiVersion;

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    pub kind: AnswersKind,
    /// In time order.
    pub actions: Vec<Timed>,
    /// The hot wash's answers, in the order of the scenario's questions.
    #[serde(default)]
    pub hotwash: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AnswersKind {
    ExerciseAnswers,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Timed {
    /// When, on the exercise clock (`0s`, `4m30s`).
    pub at: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Action {
    /// Open the next module (after the last one: end the exercise).
    Next,
    /// Give the open module's next inject now.
    Inject,
    Pause,
    Resume,
    /// A player's decision: a step of the playbook, and why.
    Decide {
        who: String,
        step: String,
        why: String,
    },
    /// An evaluator's note on an objective.
    Note {
        who: String,
        objective: String,
        text: String,
    },
    /// End the exercise (the hot wash follows).
    End,
}

/// Loads an answers file and checks it against the exercise it is for: each decision names a
/// step of the scenario's playbook, each note one of its objectives, and it opens no more
/// modules than the scenario has.
pub fn load(path: &Path, scenario: &super::load::LoadedScenario) -> Result<Answers, DocumentError> {
    let schema = serde_json::to_value(schemars::schema_for!(Answers)).expect("schema serializes");
    let document = document::load::<Answers>(path, "answers file", &schema)?;
    let mut problems = Vec::new();
    let mut last = Duration::ZERO;
    for (i, timed) in document.value.actions.iter().enumerate() {
        let pointer = format!("/actions/{i}/at");
        match parse_duration(&timed.at) {
            None => problems.push(Problem::new(
                format!(
                    "actions[{i}].at: `{}` is not a duration (e.g. 30s, 5m)",
                    timed.at
                ),
                document.span(&pointer),
            )),
            Some(at) if at < last => problems.push(Problem::new(
                format!(
                    "actions[{i}].at: {} comes before the action above it",
                    timed.at
                ),
                document.span(&pointer),
            )),
            Some(at) => last = at,
        }
    }
    let steps: Vec<&str> = scenario
        .playbook
        .playbook
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    let objectives: Vec<&str> = scenario
        .scenario
        .spec
        .objectives
        .iter()
        .map(|o| o.id.as_str())
        .collect();
    let modules = scenario.scenario.spec.modules.len();
    // The first module opens by itself; each `next` opens one more, and one past the last ends
    // the exercise.
    let mut opened = 1;
    for (i, timed) in document.value.actions.iter().enumerate() {
        let unknown = |field: &str, value: &str, known: &[&str], what: &str| {
            let mut problem = Problem::new(
                format!(
                    "actions[{i}].{field}: `{value}` is not {what} (it has: {})",
                    known.join(", ")
                ),
                document.span(&format!("/actions/{i}/{field}")),
            );
            if let Some(close) = crate::diagnostics::did_you_mean(value, known.iter().copied()) {
                problem = problem.help(format!("did you mean `{close}`?"));
            }
            problem
        };
        match &timed.action {
            Action::Decide { step, .. } if !steps.contains(&step.as_str()) => problems.push(
                unknown("step", step, &steps, "a step of the scenario's playbook"),
            ),
            Action::Note { objective, .. } if !objectives.contains(&objective.as_str()) => problems
                .push(unknown(
                    "objective",
                    objective,
                    &objectives,
                    "an objective of the scenario",
                )),
            Action::Next => {
                opened += 1;
                if opened > modules + 1 {
                    problems.push(Problem::new(
                        format!("actions[{i}]: `next` past the end: the scenario has {modules} module(s), and the exercise ended at the `next` before"),
                        document.span(&format!("/actions/{i}")),
                    ));
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(document.value)
    } else {
        Err(document.invalid(problems))
    }
}

/// Plays the answers through the session, printing what a terminal would show.
pub fn play(session: &mut Session, answers: &Answers, say: &mut dyn FnMut(&str)) {
    let show = |lines: Vec<String>, say: &mut dyn FnMut(&str)| {
        for line in lines {
            say(&line);
        }
    };
    show(session.next_module(Duration::ZERO).unwrap_or_default(), say);
    let mut now = Duration::ZERO;
    for timed in &answers.actions {
        now = parse_duration(&timed.at).unwrap_or(now);
        show(session.tick(now), say);
        match &timed.action {
            Action::Next => match session.next_module(now) {
                Some(lines) => show(lines, say),
                None => break,
            },
            Action::Inject => show(session.inject_now(now), say),
            Action::Pause => session.paused = true,
            Action::Resume => {
                session.paused = false;
                show(session.tick(now), say);
            }
            Action::Decide { who, step, why } => show(session.decide(now, who, step, why), say),
            Action::Note {
                who,
                objective,
                text,
            } => show(session.note(now, objective, who, text), say),
            Action::End => break,
        }
    }
    session.end(now);
    let questions = session.loaded.scenario.spec.hotwash.clone();
    for (i, question) in questions.iter().enumerate() {
        let answer = answers
            .hotwash
            .get(i)
            .cloned()
            .unwrap_or_else(|| "(no answer)".into());
        say(&format!("hot wash: {question} {answer}"));
        session.hotwash.push((question.clone(), answer));
    }
}
