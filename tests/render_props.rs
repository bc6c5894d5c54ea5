//! Param values and cluster data are data: whatever they contain comes out literally.

use contain::playbook::render::{Renderer, Scope};
use proptest::prelude::*;
use serde_json::json;

fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "\n",
        "\u{1b}[31m",
        "params.x",
        "'",
        "\"",
        "\\",
        "x",
        " ",
        "é",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn param_values_are_never_evaluated(value in hostile_text()) {
        let mut scope = Scope::default();
        scope.params.insert("x".into(), json!(value));
        let out = Renderer::new(&scope).render_str("f", "{{ params.x }}").unwrap();
        prop_assert_eq!(out, value);
    }

    #[test]
    fn cluster_data_is_never_evaluated(value in hostile_text()) {
        let mut scope = Scope::default();
        scope.facts.insert("pod".into(), json!({"metadata": {"labels": {"note": value}}}));
        let out = Renderer::new(&scope).render_str("f", "[{{ facts.pod.metadata.labels.note }}]").unwrap();
        prop_assert_eq!(out, format!("[{value}]"));
    }
}
