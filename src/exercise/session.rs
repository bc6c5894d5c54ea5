//! One exercise as it runs: which module is open, which injects were given and when (on the
//! exercise clock, which stops while paused), the decisions (who, what, when, why, and the
//! chosen step's plan against the snapshot), evaluator notes and the hot wash. The terminal and
//! the scripted answers drive the same session; it only says what to show.

use std::time::Duration;

use super::load::LoadedScenario;
use super::spec::Inject;
use crate::duration::parse_duration;
use crate::plan::RunPlan;

/// An inject as given.
#[derive(Clone, Debug)]
pub struct Given {
    pub module: usize,
    pub index: usize,
    pub at: Duration,
    /// Given before its time by the facilitator.
    pub early: bool,
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub at: Duration,
    pub who: String,
    pub step: String,
    pub why: String,
    /// The inject it answers: the latest one given that expects this step, else the latest.
    pub inject: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Note {
    pub at: Duration,
    pub objective: String,
    pub who: String,
    pub text: String,
}

pub struct Session<'a> {
    pub loaded: &'a LoadedScenario,
    /// The playbook planned against the snapshot (or the cluster, read-only).
    pub plan: RunPlan,
    /// Where the plan was made (`snapshot cluster.yaml`).
    pub against: String,
    pub module: Option<usize>,
    opened_at: Duration,
    pub paused: bool,
    pub given: Vec<Given>,
    pub decisions: Vec<Decision>,
    pub notes: Vec<Note>,
    pub hotwash: Vec<(String, String)>,
    pub ended_at: Option<Duration>,
    /// Ended by Ctrl-C before its last module.
    pub interrupted: bool,
}

/// `m:ss` on the exercise clock.
pub fn clock(at: Duration) -> String {
    let s = at.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

impl<'a> Session<'a> {
    pub fn new(loaded: &'a LoadedScenario, plan: RunPlan, against: String) -> Self {
        Session {
            loaded,
            plan,
            against,
            module: None,
            opened_at: Duration::ZERO,
            paused: false,
            given: Vec::new(),
            decisions: Vec::new(),
            notes: Vec::new(),
            hotwash: Vec::new(),
            ended_at: None,
            interrupted: false,
        }
    }

    fn inject(&self, module: usize, index: usize) -> &Inject {
        &self.loaded.scenario.spec.modules[module].injects[index]
    }

    fn inject_at(inject: &Inject) -> Duration {
        parse_duration(&inject.at).unwrap_or_default()
    }

    /// Opens the next module (the first at the start); `None` once there is none left.
    pub fn next_module(&mut self, now: Duration) -> Option<Vec<String>> {
        let next = self.module.map_or(0, |m| m + 1);
        let module = self.loaded.scenario.spec.modules.get(next)?;
        self.module = Some(next);
        self.opened_at = now;
        let mut say = vec![
            String::new(),
            format!(
                "== module {} of {}: {} ({})",
                next + 1,
                self.loaded.scenario.spec.modules.len(),
                module.title,
                clock(now)
            ),
        ];
        say.extend(module.narrative.trim_end().lines().map(str::to_string));
        say.extend(self.tick(now));
        Some(say)
    }

    /// Gives every inject of the open module whose time has come (none while paused).
    pub fn tick(&mut self, now: Duration) -> Vec<String> {
        let Some(module) = self.module else {
            return Vec::new();
        };
        if self.paused {
            return Vec::new();
        }
        let mut say = Vec::new();
        let count = self.loaded.scenario.spec.modules[module].injects.len();
        for index in 0..count {
            // Given at its time: a script's clock jumps from action to action.
            let due = self.opened_at + Self::inject_at(self.inject(module, index));
            if due <= now && !self.was_given(module, index) {
                say.extend(self.give(module, index, due, false));
            }
        }
        say
    }

    fn was_given(&self, module: usize, index: usize) -> bool {
        self.given
            .iter()
            .any(|g| g.module == module && g.index == index)
    }

    fn give(&mut self, module: usize, index: usize, now: Duration, early: bool) -> Vec<String> {
        self.given.push(Given {
            module,
            index,
            at: now,
            early,
        });
        let inject = self.inject(module, index);
        let mut say = vec![format!(
            "-- inject {} ({}{}): {}",
            inject.id,
            clock(now),
            if early { ", given early" } else { "" },
            inject.text.trim_end().replace('\n', " ")
        )];
        for question in &inject.questions {
            say.push(format!("   ? {question}"));
        }
        say
    }

    /// The facilitator gives the open module's next inject now.
    pub fn inject_now(&mut self, now: Duration) -> Vec<String> {
        let Some(module) = self.module else {
            return vec!["no module is open yet".into()];
        };
        let count = self.loaded.scenario.spec.modules[module].injects.len();
        match (0..count).find(|&i| !self.was_given(module, i)) {
            Some(index) => self.give(module, index, now, true),
            None => {
                vec!["every inject of this module was given; `next` opens the next module".into()]
            }
        }
    }

    /// Records a decision and shows the chosen step's plan.
    pub fn decide(&mut self, now: Duration, who: &str, step: &str, why: &str) -> Vec<String> {
        let steps: Vec<&str> = self
            .loaded
            .playbook
            .playbook
            .steps
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        if !steps.contains(&step) {
            let hint = crate::diagnostics::did_you_mean(step, steps.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return vec![format!(
                "the playbook has no step `{step}`{hint} (its steps: {})",
                steps.join(", ")
            )];
        }
        let answering = self
            .given
            .iter()
            .rev()
            .find(|g| {
                self.inject(g.module, g.index)
                    .expect
                    .iter()
                    .any(|e| e.step == step)
            })
            .or(self.given.last())
            .map(|g| self.inject(g.module, g.index).id.clone());
        self.decisions.push(Decision {
            at: now,
            who: who.to_string(),
            step: step.to_string(),
            why: why.to_string(),
            inject: answering.clone(),
        });
        let mut say = vec![format!(
            "decision at {}: {who} chose step {step}{}",
            clock(now),
            answering
                .map(|i| format!(" (answering {i})"))
                .unwrap_or_default()
        )];
        say.push(format!("its plan against {}:", self.against));
        say.extend(self.step_plan(step).lines().map(|l| format!("  {l}")));
        say
    }

    /// The plan of one playbook step (all of its parts), as `contain plan` shows it.
    fn step_plan(&self, step: &str) -> String {
        let mut text = String::new();
        for planned in self.plan.steps.iter().filter(|p| p.playbook_step() == step) {
            match &planned.state {
                crate::plan::run::PlannedState::Planned { plan, .. } => {
                    text.push_str(&crate::plan::display::render_step(plan, false));
                }
                crate::plan::run::PlannedState::Skipped { reason } => {
                    text.push_str(&format!(
                        "{}: would be skipped: {reason}\n",
                        planned.label()
                    ));
                }
                crate::plan::run::PlannedState::Unplannable { error } => {
                    text.push_str(&format!(
                        "{}: cannot be planned: {error}\n",
                        planned.label()
                    ));
                }
            }
        }
        if text.is_empty() {
            text.push_str("(the plan stopped before this step)\n");
        }
        text
    }

    /// A step's plan, line by line (for the report).
    pub fn step_plan_text(&self, step: &str) -> Vec<String> {
        self.step_plan(step)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// An evaluator's note on an objective.
    pub fn note(&mut self, now: Duration, objective: &str, who: &str, text: &str) -> Vec<String> {
        let objectives: Vec<&str> = self
            .loaded
            .scenario
            .spec
            .objectives
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        if !objectives.contains(&objective) {
            return vec![format!(
                "no objective `{objective}` (the objectives: {})",
                objectives.join(", ")
            )];
        }
        self.notes.push(Note {
            at: now,
            objective: objective.to_string(),
            who: who.to_string(),
            text: text.to_string(),
        });
        vec![format!(
            "note on {objective} by {who} recorded ({})",
            clock(now)
        )]
    }

    pub fn end(&mut self, now: Duration) {
        self.ended_at = Some(now);
    }

    /// Where the exercise stands, in a few lines.
    pub fn status(&self, now: Duration) -> Vec<String> {
        let module = self
            .module
            .map(|m| self.loaded.scenario.spec.modules[m].title.clone())
            .unwrap_or_else(|| "not started".into());
        vec![format!(
            "{} · module: {module} · {} inject(s) given · {} decision(s) · {} note(s){}",
            clock(now),
            self.given.len(),
            self.decisions.len(),
            self.notes.len(),
            if self.paused { " · PAUSED" } else { "" }
        )]
    }
}
