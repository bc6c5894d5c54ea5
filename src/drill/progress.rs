//! The drill's progress on the terminal: a spinner per phase and wait (indicatif), or plain
//! timestamped lines when standard error is not a terminal (a CronJob's log).

use crate::cmd::ui;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    spinner: Option<ProgressBar>,
    animated: bool,
}

impl Progress {
    pub fn new(no_progress: bool) -> Self {
        Progress {
            spinner: None,
            animated: !no_progress && ui::stderr_is_terminal(),
        }
    }

    /// A phase starts (or a wait inside one).
    pub fn phase(&mut self, phase: &str, what: &str) {
        // The phase before stays on screen with its time: the drill's history, as it went.
        self.settle();
        let line = format!("{phase:<9} {}", crate::escape::sanitize(what));
        if self.animated {
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner.set_message(line);
            self.spinner = Some(spinner);
        } else {
            ui::err_line(&format!(
                "drill: {} {line}",
                jiff::Timestamp::now().strftime("%H:%M:%S")
            ));
        }
    }

    /// A line of result under the current phase.
    pub fn note(&mut self, text: &str) {
        let text = crate::escape::sanitize(text);
        match &self.spinner {
            Some(spinner) => spinner.println(format!("          {text}")),
            None => ui::err_line(&format!("drill:          {text}")),
        }
    }

    /// Stops the spinner and leaves its line: for a phase whose own output follows (the
    /// containment run and its rollback print their plans and summaries).
    pub fn settle(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish();
        }
    }

    pub fn finish(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
