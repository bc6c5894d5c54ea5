//! Everything that turns executor events into something a person or a program reads.

pub mod incident;
pub mod progress;
pub mod summary;
pub mod templates;

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

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::sanitize("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(super::sanitize("exe.\u{202e}txt"), "exe.\\u{202e}txt");
        assert_eq!(super::sanitize("plain"), "plain");
        let json = super::inert_json(serde_json::to_string("a\u{202e}b").unwrap());
        assert_eq!(json, "\"a\\u202eb\"");
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), "a\u{202e}b");
    }
}
