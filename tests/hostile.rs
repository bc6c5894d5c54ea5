//! Hostile input ends in a clear error, never a panic, a hang or unbounded memory.

use contain::playbook::load::{LoadError, load_bytes};

fn rejected(bytes: Vec<u8>) -> String {
    match load_bytes("hostile.yaml", bytes) {
        Err(LoadError::Invalid(report)) => report.render(false),
        Err(other) => other.to_string(),
        Ok(_) => panic!("hostile input was accepted"),
    }
}

#[test]
fn alias_bomb_is_rejected() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        text.push_str(&format!(
            "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            p = (b'a' + i - 1) as char
        ));
    }
    let message = rejected(text.into_bytes());
    // Stopped by the parser's budget while expanding, not later by the schema.
    assert!(
        message.contains("hostile.yaml:") && message.contains("budget breached"),
        "{message}"
    );
}

#[test]
fn deep_nesting_is_rejected() {
    let depth = 50_000;
    let text = format!("steps: {}{}", "[".repeat(depth), "]".repeat(depth));
    let message = rejected(text.into_bytes());
    assert!(
        message.contains("hostile.yaml:1:") && message.contains("recursion limit exceeded"),
        "the error is located and names the limit: {message}"
    );
}

#[test]
fn huge_files_are_rejected_before_parsing() {
    let text = format!("metadata:\n  description: \"{}\"\n", "x".repeat(2 << 20));
    let message = rejected(text.into_bytes());
    assert!(
        message.contains("is larger than the limit of 1048576 bytes"),
        "{message}"
    );
}

#[test]
fn invalid_utf8_is_located() {
    let message = rejected(b"apiVersion: contain/v1\nkind: \xff\xfe\n".to_vec());
    assert!(
        message.contains("hostile.yaml:2:7: not valid UTF-8"),
        "{message}"
    );
}

#[test]
fn wrong_shapes_do_not_panic() {
    for text in [
        "",
        "~",
        "[]",
        "42",
        "steps: 3",
        "apiVersion: [1]",
        "steps: [{id: {a: b}}]",
        "---\n---\n",
        "a: !!binary aGVsbG8=",
    ] {
        let _ = load_bytes("hostile.yaml", text.as_bytes().to_vec());
    }
}
