//! Durations as playbooks, drills and the command line write them: `30s`, `5m`, `1h30m`, `250ms`.

/// The longest duration anything accepts (a timeout, a wait, a window): 30 days. One bound
/// for playbooks, drills and the command line alike.
pub const MAX: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The pattern of a duration in the schemas.
pub const PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Parses `30s`, `5m`, `1h30m`, `250ms`; `None` for anything else, or for more than [`MAX`].
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (millis, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(std::time::Duration::from_millis(n.checked_mul(millis)?))?;
        rest = &rest[len..];
    }
    (total <= MAX).then_some(total)
}

/// Why `text` is not a duration anything accepts, if it is not.
pub fn problem(text: &str) -> Option<String> {
    if parse_duration(text).is_some() {
        return None;
    }
    let shaped = regex::Regex::new(PATTERN).is_ok_and(|p| p.is_match(text));
    Some(if shaped {
        format!("`{text}` is longer than the longest duration allowed (30 days: 720h)")
    } else {
        format!("`{text}` is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("m"), None);
    }
}
