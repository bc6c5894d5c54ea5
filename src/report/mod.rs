//! Everything that turns executor events into something a person or a program reads.

pub mod incident;
pub mod progress;
pub mod summary;
pub mod templates;

/// Makes text from a playbook or the cluster safe to print on a terminal: control characters
/// (ANSI escapes included) are shown escaped, never interpreted.
pub fn sanitize(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::sanitize("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(super::sanitize("plain"), "plain");
    }
}
