//! Escaping for every sink a person or a program reads: the terminal (control characters and
//! bidirectional overrides shown escaped, never interpreted), JSON made inert on a terminal, and
//! one escape per report format (Markdown, XML, HTML, JSON string content). Hostile text from
//! the cluster or an alert passes through here before anyone sees it.

/// Makes text from a playbook or the cluster safe to print on a terminal: control characters
/// (ANSI escapes included) and bidirectional overrides (which make text read backwards on
/// screen) are shown escaped, never interpreted.
pub fn sanitize(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else if needs_escape(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// JSON text made inert on a terminal too: serde escapes control characters already; the
/// bidirectional overrides it leaves raw (they can only occur inside strings) become `\uXXXX`
/// escapes, the same value once parsed.
pub fn inert_json(json: String) -> String {
    if !json.chars().any(is_bidi_override) {
        return json;
    }
    json.chars()
        .map(|c| {
            if is_bidi_override(c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Characters that reorder the text around them on screen ("Trojan Source").
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_override(c)
}

/// The text without control characters (but line breaks and tabs) and without bidirectional
/// overrides: neither has a place in a report, and either can disguise what it shows.
fn without_controls(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t') && !is_bidi_override(*c))
}

/// Markdown: punctuation that would start markup is backslash-escaped; a line break inside a
/// table cell would end the row, so it becomes a space.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in without_controls(text) {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Each character `entity` names becomes that entity; control characters are dropped.
fn escape_entities(text: &str, entity: fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in without_controls(text) {
        match entity(c) {
            Some(replacement) => out.push_str(replacement),
            None => out.push(c),
        }
    }
    out
}

/// XML 1.0: the five escapes, and no control characters (XML cannot carry them at all).
pub fn escape_xml(text: &str) -> String {
    escape_entities(text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&apos;"),
        _ => None,
    })
}

/// HTML text and attribute values: the five escapes (`'` too, so single-quoted attributes are
/// safe), and no control characters.
pub fn escape_html(text: &str) -> String {
    escape_entities(text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        _ => None,
    })
}

/// JSON string content (a webhook body): the template writes the quotes, this escapes what
/// goes between them. Control characters other than line breaks and tabs are dropped: a
/// receiver may well print the text on a terminal.
pub fn escape_json(text: &str) -> String {
    let clean: String = without_controls(text).collect();
    let quoted = serde_json::to_string(&clean).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(sanitize("exe.\u{202e}txt"), "exe.\\u{202e}txt");
        assert_eq!(sanitize("plain"), "plain");
        let json = inert_json(serde_json::to_string("a\u{202e}b").unwrap());
        assert_eq!(json, "\"a\\u202eb\"");
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), "a\u{202e}b");
    }

    #[test]
    fn each_format_escapes_its_own_markup_and_drops_terminal_escapes() {
        let hostile = "<script>alert('x')</script> \u{1b}[31m{{x}} | \"q\"";
        let html = escape_html(hostile);
        assert!(!html.contains('<') && !html.contains('\u{1b}') && html.contains("&#39;x&#39;"));
        let md = escape_markdown(hostile);
        assert!(md.contains("\\<script\\>") && md.contains("\\|") && !md.contains('\u{1b}'));
        let json = escape_json(hostile);
        let parsed: String = serde_json::from_str(&format!("\"{json}\"")).unwrap();
        assert_eq!(parsed, hostile.replace('\u{1b}', ""));
    }
}
