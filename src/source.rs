//! Source text kept beside everything parsed from it, so any error can point at `file:line:col`.

use std::fmt;
use std::sync::Arc;

/// A byte range in a [`Source`], with the 1-based line and column of its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
    pub line: usize,
    pub column: usize,
}

impl Span {
    /// The span of `len` bytes starting `delta` bytes into this one, for pointing inside a scalar.
    /// The line and column are only exact when the slice stays on the first line.
    pub fn narrow(self, delta: usize, len: usize) -> Span {
        Span {
            offset: self.offset + delta,
            len,
            line: self.line,
            column: self.column + delta,
        }
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.offset, span.len).into()
    }
}

/// A named text (a playbook file, a snapshot, a `--set` value) shared cheaply between diagnostics.
#[derive(Clone, Debug)]
pub struct Source {
    name: Arc<str>,
    text: Arc<str>,
    /// The byte offset where each line starts, built once on first use: every position's line
    /// and column is a binary search, never a rescan of the text (loading stays linear).
    lines: Arc<std::sync::OnceLock<Vec<usize>>>,
}

impl Source {
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
            lines: Arc::new(std::sync::OnceLock::new()),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// The byte offset of a 1-based line and column (columns in characters).
    pub fn offset_at(&self, line: usize, column: usize) -> usize {
        let starts = self.line_starts();
        let Some(&start) = starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let end = starts.get(line).copied().unwrap_or(self.text.len());
        self.text[start..end]
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(end, |(i, _)| start + i)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 1-based line and column of a byte offset, counting columns in characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let starts = self.line_starts();
        let line = starts.partition_point(|&start| start <= offset);
        let line_start = starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    /// A span covering `len` bytes at `offset`, with its line and column filled in.
    pub fn span_at(&self, offset: usize, len: usize) -> Span {
        let (line, column) = self.line_col(offset);
        Span {
            offset,
            len,
            line,
            column,
        }
    }

    /// The source as miette wants it for rendering snippets.
    pub fn named(&self) -> miette::NamedSource<String> {
        miette::NamedSource::new(&self.name, self.text.to_string())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The largest char boundary at or below `index` (a place to cut UTF-8 text).
pub fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let source = Source::new("x.yaml", "a: 1\nbé: 2\n");
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(5), (2, 1));
        // 'é' is two bytes: the ':' after it is the third character of line 2.
        assert_eq!(source.line_col(8), (2, 3));
    }
}
