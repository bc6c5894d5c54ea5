//! Located problems, collected rather than returned one at a time, and rendered with miette
//! (file:line:col, the source line and a caret under the offending text).

use std::fmt::Write as _;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic};

use crate::source::{Source, Span};

/// One thing wrong with an input, at one place.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Problem {
    pub message: String,
    #[serde(skip)]
    pub span: Option<Span>,
    /// Text under the caret.
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>, span: Option<Span>) -> Self {
        Problem {
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All the problems found in one source, in the order of their place.
#[derive(Clone, Debug)]
pub struct Report {
    pub source: Source,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn new(source: Source, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.span.map_or((0, 0), |s| (s.offset, s.len)));
        problems.dedup();
        Report { source, problems }
    }

    /// `file:line:col` of a problem, or just the file when it has no place.
    pub fn location(&self, problem: &Problem) -> String {
        match problem.span {
            Some(span) if span.line > 0 => {
                format!("{}:{}:{}", self.source.name(), span.line, span.column)
            }
            _ => self.source.name().to_string(),
        }
    }

    /// Renders every problem; `color` only on a terminal.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        let mut out = String::new();
        for problem in &self.problems {
            let mut diagnostic =
                MietteDiagnostic::new(format!("{}: {}", self.location(problem), problem.message));
            if let Some(help) = &problem.help {
                diagnostic = diagnostic.with_help(help.clone());
            }
            if let Some(span) = problem.span.filter(|s| s.line > 0) {
                diagnostic =
                    diagnostic.with_label(LabeledSpan::new_with_span(problem.label.clone(), span));
            }
            let report = miette::Report::new(diagnostic).with_source_code(self.source.named());
            if handler.render_report(&mut out, report.as_ref()).is_err() {
                let _ = writeln!(out, "{}: {}", self.location(problem), problem.message);
            }
        }
        let _ = writeln!(
            out,
            "{} problem{} in {}",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            self.source.name()
        );
        out
    }

    /// The problems as data, for `-o json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": self.source.name(),
                        "line": p.span.map(|s| s.line),
                        "column": p.span.map(|s| s.column),
                        "message": p.message,
                        "label": p.label,
                        "help": p.help,
                    })
                })
                .collect(),
        )
    }
}

/// The closest candidate to a misspelt name, for "did you mean" hints.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("pod.delet", ["pod.delete", "wait"]),
            Some("pod.delete")
        );
        assert_eq!(did_you_mean("zzz", ["pod.delete", "wait"]), None);
    }
}
