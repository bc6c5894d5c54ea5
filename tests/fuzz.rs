//! Bounded fuzzing, in the test command: the playbook loader, the snapshot loader, the
//! handlebars report renderer and the evidence manifest reader are fed mutations of the corpus
//! in `tests/fuzz-corpus/` (byte flips, insertions of YAML, template and JSON tokens,
//! truncations, duplicated spans, deep nesting). None may panic; every refusal of a playbook or
//! a snapshot names its file and places each problem on a line.

use std::path::PathBuf;

use contain::cluster::sim::SimCluster;
use contain::source::Source;
use proptest::prelude::*;

use crate::harness::repo;

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(repo(&format!("tests/fuzz-corpus/{kind}")));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "a corpus in {}", dir.display());
    files
}

/// Pieces that reach parsers' corners: YAML anchors, tags, flow syntax, template delimiters,
/// JSON structure, control characters, invalid UTF-8.
const TOKENS: &[&[u8]] = &[
    b"{{",
    b"}}",
    b"{%",
    b"#",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"<<: *a",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"- ",
    b"\n",
    b"\t",
    b"'",
    b"\"",
    b"\\",
    b"---\n",
    b"...\n",
    b"? ",
    b"|\n",
    b">-\n",
    b"\x1b[31m",
    b"\xff\xfe",
    b"\0",
    b"null",
    b"~",
    b"1e309",
    b"-0",
    b"0x1F",
    b"\xe2\x80\xae",
    b"{{#each x}}",
    b"{{/each}}",
    b"{{> p}}",
    b"{{{x}}}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[",
];

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, token: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), 1usize..50).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if !bytes.is_empty() {
                    bytes[at % len] ^= 1 << bit;
                }
            }
            Mutation::Insert { at, token } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[token].iter().copied());
            }
            Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Duplicate { at, len: n } => {
                let start = at % (bytes.len() + 1);
                let end = (start + n).min(bytes.len());
                let span = bytes[start..end].to_vec();
                bytes.splice(start..start, span);
            }
            Mutation::Remove { at, len: n } => {
                let start = at % (bytes.len() + 1);
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
        }
    }
    bytes
}

fn case() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (any::<usize>(), prop::collection::vec(mutation(), 1..8))
}

/// Every problem of a refusal names the file and a line of it.
fn located(problems: &serde_json::Value, name: &str) -> Result<(), TestCaseError> {
    for problem in problems.as_array().unwrap() {
        prop_assert_eq!(problem["file"].as_str(), Some(name));
        prop_assert!(
            problem["line"].as_u64().is_some_and(|l| l >= 1),
            "unlocated: {}",
            problem
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_playbook_loader_never_panics_and_locates_every_problem((pick, mutations) in case()) {
        let seeds = corpus("playbooks");
        let (name, seed) = &seeds[pick % seeds.len()];
        let bytes = mutate(seed.clone(), &mutations);
        if let Err(contain::playbook::load::LoadError::Invalid(report)) =
            contain::playbook::load::load_bytes(name, bytes)
        {
            located(&report.to_json(), name)?;
        }
    }

    #[test]
    fn the_snapshot_loader_never_panics_and_locates_every_problem((pick, mutations) in case()) {
        let seeds = corpus("snapshots");
        let (name, seed) = &seeds[pick % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(seed.clone(), &mutations)).into_owned();
        if let Err(report) = SimCluster::load(&Source::new(name.clone(), text)) {
            located(&report.to_json(), name)?;
        }
    }

    #[test]
    fn the_report_renderer_never_panics((pick, mutations) in case()) {
        let seeds = corpus("templates");
        let (name, seed) = &seeds[pick % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(seed.clone(), &mutations)).into_owned();
        let view = serde_json::json!({"run": "r", "status": "done", "steps": [], "timeline": []});
        for escape in [
            contain::escape::escape_markdown as fn(&str) -> String,
            contain::escape::escape_html,
            contain::escape::escape_json,
        ] {
            // An error names the template; success or error, never a panic.
            if let Err(e) = contain::report::templates::render(escape, name, &text, &view) {
                prop_assert!(e.contains(name.as_str()), "{}", e);
            }
        }
    }

    #[test]
    fn the_manifest_reader_never_panics((pick, mutations) in case()) {
        let seeds = corpus("manifests");
        let (_, seed) = &seeds[pick % seeds.len()];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), mutate(seed.clone(), &mutations)).unwrap();
        match contain::evidence::verify(dir.path(), None) {
            Ok(check) => prop_assert!(!check.intact() || check.artifacts == 0, "a mutated manifest with artifacts on no disk cannot be intact"),
            Err(e) => prop_assert!(e.to_string().contains("manifest"), "{}", e),
        }
    }
}
