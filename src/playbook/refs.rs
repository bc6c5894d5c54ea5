//! Finds the variables a template or a `when:` expression reads, with their offsets, so that
//! validation can name an undefined param, fact or step output at its exact place.

/// One variable read, e.g. `steps.capture.outputs.bundle` at byte 3 of its string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub root: String,
    pub segments: Vec<String>,
    pub offset: usize,
    pub len: usize,
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "endif",
    "for",
    "endfor",
    "set",
    "set_global",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
    "raw",
    "endraw",
    "filter",
    "endfilter",
    "break",
    "continue",
    "with",
    "endwith",
    "as",
];

/// The variables read by the `{{ … }}` and `{% … %}` blocks of a template string.
pub fn in_template(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut locals = Vec::new();
    let mut rest = 0;
    while let Some(start) = find_open(&text[rest..]).map(|i| i + rest) {
        let close = if text[start..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let body_start = start + 2;
        let end = text[body_start..]
            .find(close)
            .map_or(text.len(), |i| i + body_start);
        scan(&text[body_start..end], body_start, &mut locals, &mut out);
        rest = (end + 2).min(text.len());
        if rest >= text.len() {
            break;
        }
    }
    out
}

/// The variables read by an expression (a `when:`).
pub fn in_expression(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    scan(text, 0, &mut Vec::new(), &mut out);
    out
}

fn find_open(text: &str) -> Option<usize> {
    match (text.find("{{"), text.find("{%")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A `["key"]` or `['key']` subscript at `at`: the key and the offset after the `]`.
fn bracketed_key(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    let quote = *bytes.get(at + 1)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let start = at + 2;
    let len = bytes[start..].iter().position(|&b| b == quote)?;
    let close = start + len + 1;
    (bytes.get(close) == Some(&b']')).then(|| {
        (
            String::from_utf8_lossy(&bytes[start..start + len]).into_owned(),
            close + 1,
        )
    })
}

/// A `[0]` subscript at `at`: the index and the offset after the `]`.
fn bracketed_index(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    let len = bytes[at + 1..].iter().position(|b| !b.is_ascii_digit())?;
    let close = at + 1 + len;
    (len > 0 && bytes.get(close) == Some(&b']')).then(|| {
        (
            String::from_utf8_lossy(&bytes[at + 1..close]).into_owned(),
            close + 1,
        )
    })
}

/// The `]` that closes the `[` at `at`, nested brackets and string literals skipped.
fn matching_bracket(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Tokenizes an expression just enough to tell variables from filters, tests, functions,
/// keyword arguments, string literals and loop variables.
fn scan(body: &str, base: usize, locals: &mut Vec<String>, out: &mut Vec<Reference>) {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut previous: Option<String> = None;
    let mut binding = false;
    // After `is` (and an optional `not`) comes a test name, not a variable.
    let mut testing = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            previous = Some("literal".into());
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            previous = Some("literal".into());
            continue;
        }
        if !is_ident_start(c) {
            if !c.is_ascii_whitespace() {
                previous = Some((c as char).to_string());
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let word = &body[start..i];
        let mut segments = Vec::new();
        let mut end = i;
        loop {
            let mut j = end;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if j < bytes.len()
                && bytes[j] == b'.'
                && j + 1 < bytes.len()
                && is_ident_start(bytes[j + 1])
            {
                let s = j + 1;
                let mut k = s;
                while k < bytes.len() && is_ident(bytes[k]) {
                    k += 1;
                }
                segments.push(body[s..k].to_string());
                end = k;
            } else if let Some((key, k)) = bracketed_key(bytes, j) {
                // `steps["scale-down"]`: how a key that is not an identifier (a step id with a
                // hyphen) is read.
                segments.push(key);
                end = k;
            } else if let Some((index, k)) = bracketed_index(bytes, j) {
                // `containers[0].name`: a list index, then the path goes on.
                segments.push(index);
                end = k;
            } else if bytes.get(j) == Some(&b'[')
                && let Some(close) = matching_bracket(bytes, j)
            {
                // `containers[params.i].name`: the subscript is an expression of its own; the
                // path goes on after it (its segments are not known before rendering).
                scan(&body[j + 1..close], base + j + 1, locals, out);
                end = close + 1;
                while end < bytes.len() && bytes[end] == b'.' {
                    end += 1;
                    while end < bytes.len() && is_ident(bytes[end]) {
                        end += 1;
                    }
                }
                break;
            } else {
                break;
            }
        }
        i = end;
        let mut next = i;
        while next < bytes.len() && bytes[next] == b' ' {
            next += 1;
        }
        let next_char = bytes.get(next).copied();
        let next_is_assign = next_char == Some(b'=') && bytes.get(next + 1) != Some(&b'=');
        let is_name_of_filter_or_test =
            previous.as_deref() == Some("|") || testing && word != "not";
        let is_keyword = KEYWORDS.contains(&word);
        if word == "for" || word == "set" || word == "set_global" {
            binding = true;
        } else if word == "in" || next_is_assign && binding {
            if next_is_assign && binding && !is_keyword {
                locals.push(word.to_string());
            }
            binding = false;
        } else if binding && !is_keyword {
            locals.push(word.to_string());
        } else if !is_keyword
            && !is_name_of_filter_or_test
            && next_char != Some(b'(')
            && !next_is_assign
            && !locals.iter().any(|l| l == word)
        {
            out.push(Reference {
                root: word.to_string(),
                segments,
                offset: base + start,
                len: end - start,
            });
        }
        if word == "is" {
            testing = true;
        } else if word != "not" {
            testing = false;
        }
        previous = Some(word.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(refs: &[Reference]) -> Vec<String> {
        refs.iter()
            .map(|r| {
                std::iter::once(r.root.clone())
                    .chain(r.segments.clone())
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect()
    }

    #[test]
    fn finds_variables_not_filters_or_literals() {
        let refs = in_template(
            "pod {{ params.pod | default(value='x') | upper }} in {{ facts.pod.metadata.namespace }}",
        );
        assert_eq!(roots(&refs), ["params.pod", "facts.pod.metadata.namespace"]);
        assert_eq!(refs[0].offset, 7);
        assert_eq!(refs[0].len, "params.pod".len());
    }

    #[test]
    fn expressions_and_tests() {
        let refs = in_expression(
            "params.force and steps.scale.outputs.count > 0 and facts.sa is defined and 'params.x' != run.mode",
        );
        assert_eq!(
            roots(&refs),
            [
                "params.force",
                "steps.scale.outputs.count",
                "facts.sa",
                "run.mode"
            ]
        );
    }

    #[test]
    fn loop_variables_are_local() {
        let refs = in_template("{% for p in steps.a.outputs.objects %}{{ p }}{% endfor %}");
        assert_eq!(roots(&refs), ["steps.a.outputs.objects"]);
    }

    #[test]
    fn list_indexes_and_computed_subscripts_continue_the_path() {
        let refs = in_template("{{ facts.pod.spec.containers[0].name }}");
        assert_eq!(refs.len(), 1, "{refs:?}");
        assert_eq!(refs[0].segments, ["pod", "spec", "containers", "0", "name"]);
        let refs = in_template("{{ facts.pod.spec.containers[params.i].name | upper }}");
        assert_eq!(roots(&refs), ["params.i", "facts.pod.spec.containers"]);
    }

    #[test]
    fn bracketed_keys_are_segments() {
        let refs = in_template("{{ steps['scale-down'].outputs.previous_replicas }}");
        assert_eq!(roots(&refs), ["steps.scale-down.outputs.previous_replicas"]);
        let refs = in_expression("steps[\"scale-down\"].status == 'done'");
        assert_eq!(roots(&refs), ["steps.scale-down.status"]);
    }

    #[test]
    fn unknown_roots_are_reported() {
        assert_eq!(roots(&in_template("{{ param.pod }}")), ["param.pod"]);
    }
}
