//! The layering of `src/`: every module sits in one layer, and imports point down or sideways
//! only, never up and never in a circle (between modules, or between the files of one). [`LAYERS`] is the one table; the README's Layout
//! section shows it (checked here too), and a failure names the file and the import.
//!
//! Only `cluster/` may use the Kubernetes client (`kube`): everything else goes through the
//! `Cluster` seam, so every call is deadlined, retried and recorded the same way (k8s-openapi's
//! types are plain data, usable anywhere). Only `cmd/ui/` writes to the terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the ground up, each with its top-level modules and why they sit there.
pub const LAYERS: &[(&str, &[&str], &str)] = &[
    (
        "ground",
        &[
            "source",
            "diagnostics",
            "exit",
            "escape",
            "paths",
            "duration",
            "yaml",
            "document",
            "sshsig",
            "man",
        ],
        "text, places, problems, exit codes, escaping, defaults: no knowledge of Kubernetes",
    ),
    (
        "clients",
        &["cluster", "registry"],
        "the only talkers to the outside: the API server (and its simulation), OCI registries",
    ),
    (
        "data",
        &["plan", "outcome", "event"],
        "operations as data, the types that cross stages, the executor's events",
    ),
    (
        "records",
        &["journal", "evidence", "netpol", "rbac", "run_lock", "runs"],
        "durable stores and pure evaluators over cluster objects; a run's copy in the cluster",
    ),
    (
        "actions",
        &["action"],
        "one planner per action over observed objects",
    ),
    (
        "playbooks",
        &["playbook"],
        "load, validate and render playbooks",
    ),
    (
        "reports",
        &["report", "notify"],
        "what people and programs read: summaries, reports, notifications",
    ),
    (
        "engine",
        &["facts", "execute", "explain", "snapshot"],
        "plan against the overlay, preflight, apply, verify, roll back",
    ),
    (
        "commands",
        &["cli", "cmd"],
        "the command line and one file per command over a shared context and session",
    ),
    (
        "uses",
        &["drill", "exercise"],
        "drills and exercises, built on the session",
    ),
    ("entry", &["app", "main"], "dispatch and the binary"),
];

/// Crates only `cluster/` may use.
const CLIENT_CRATES: &[&str] = &["kube"];

/// The macros and handles that write to the terminal.
const PRINTERS: &[&str] = &[
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "std::io::stdout()",
    "std::io::stderr()",
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`action/node.rs` → `action`).
fn top_module(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// The code without comments, string and char literals, so a path in a doc comment or a
/// message is not taken for an import.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(text.len(), |n| i + n + 2);
            out.extend(text[i..end].chars().filter(|c| *c == '\n'));
            i = end;
        } else if let Some(raw) = raw_string_len(rest) {
            out.extend(text[i..i + raw].chars().filter(|c| *c == '\n'));
            i += raw;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                if bytes[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).unwrap();
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`) at the start of `rest`.
fn raw_string_len(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix('r').or_else(|| rest.strip_prefix("br"))?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(rest.len() - body.len() + end + close.len())
}

/// The length of a char literal (`'a'`, `'\n'`, `'\u{1b}'`) at the start of `rest`; `None` for a
/// lifetime.
fn char_literal_len(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices().skip(1);
    let (_, first) = chars.next()?;
    if first == '\\' {
        return rest[1..].find('\'').map(|n| n + 2).filter(|n| *n <= 12);
    }
    let (at, close) = chars.next()?;
    (close == '\'').then_some(at + 1)
}

/// Every `crate::NAME` a file refers to (in `use` lists too), with its line.
fn crate_references(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let after = &rest[at + "crate::".len()..];
            if !preceded {
                if let Some(list) = after.strip_prefix('{') {
                    for item in top_level_items(list) {
                        found.push((number + 1, item));
                    }
                } else {
                    found.push((number + 1, identifier(after)));
                }
            }
            rest = after;
        }
    }
    found.retain(|(_, name)| !name.is_empty());
    found
}

/// The first identifier of each item of a `{a, b::c, d::{e}}` list, up to its closing brace.
fn top_level_items(list: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_alphanumeric() || c == '_') => {
                items.push(identifier(&list[i..]));
                start = false;
            }
            _ => {}
        }
    }
    items
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Whether `code` uses crate `name` (a path starting with it, or a `use` of it).
fn uses_crate(code: &str, name: &str) -> Option<usize> {
    let pattern = format!("{name}::");
    for (number, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(&pattern) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if !preceded {
                return Some(number + 1);
            }
            rest = &rest[at + pattern.len()..];
        }
    }
    None
}

struct Tree {
    /// Module → its layer's index.
    layer: BTreeMap<String, usize>,
    /// (from, to) → the first file and line that imports `to` from `from`.
    edges: BTreeMap<(String, String), (String, usize)>,
    /// Files (relative to `src/`) with the code of each.
    files: Vec<(String, String, String)>,
}

fn read_tree() -> Tree {
    let root = src();
    let mut layer = BTreeMap::new();
    for (index, (_, modules, _)) in LAYERS.iter().enumerate() {
        for module in *modules {
            layer.insert(module.to_string(), index);
        }
    }
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    let mut files = Vec::new();
    let mut edges = BTreeMap::new();
    for path in paths {
        let relative = path.strip_prefix(&root).unwrap().to_path_buf();
        let module = top_module(&relative);
        let shown = format!("src/{}", relative.display());
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for (line, target) in crate_references(&code) {
            if target != module && layer.contains_key(&target) {
                edges
                    .entry((module.clone(), target))
                    .or_insert((shown.clone(), line));
            }
        }
        files.push((shown, module, code));
    }
    Tree {
        layer,
        edges,
        files,
    }
}

#[test]
fn every_module_has_a_layer() {
    let tree = read_tree();
    let unplaced: BTreeSet<&str> = tree
        .files
        .iter()
        .map(|(_, module, _)| module.as_str())
        .filter(|m| *m != "lib" && !tree.layer.contains_key(*m))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer in tests/layers.rs LAYERS: {unplaced:?}"
    );
}

#[test]
fn imports_point_down_or_sideways_only() {
    let tree = read_tree();
    let upward: Vec<String> = tree
        .edges
        .iter()
        .filter(|((from, to), _)| tree.layer[from] < tree.layer[to])
        .map(|((from, to), (file, line))| {
            format!(
                "{file}:{line}: `{from}` ({}) imports `crate::{to}` ({}), a layer above it",
                LAYERS[tree.layer[from]].0, LAYERS[tree.layer[to]].0
            )
        })
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn modules_import_each_other_in_no_cycle() {
    let tree = read_tree();
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in tree.edges.keys() {
        next.entry(from).or_default().push(to);
    }
    if let Some(cycle) = first_cycle(&next) {
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|hop| {
                let (file, line) = &tree.edges[&(hop[0].to_string(), hop[1].to_string())];
                format!("  {file}:{line}: `{}` imports `crate::{}`", hop[0], hop[1])
            })
            .collect();
        panic!(
            "an import cycle: {}\n{}",
            cycle.join(" → "),
            hops.join("\n")
        );
    }
}

/// The files of each directory module, and which siblings each refers to (`super::NAME`,
/// `crate::MODULE::NAME`); `mod.rs` declares its children and is left out.
fn sibling_imports(tree: &Tree) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> {
    let mut modules: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> = BTreeMap::new();
    let child = |file: &str| -> Option<(String, String)> {
        let rest = file.strip_prefix("src/")?;
        let mut parts = rest.split('/');
        let (module, name) = (parts.next()?, parts.next()?);
        (parts.next().is_none() && name != "mod.rs")
            .then(|| (module.to_string(), name.trim_end_matches(".rs").to_string()))
    };
    let children: BTreeSet<(String, String)> = tree
        .files
        .iter()
        .filter_map(|(file, _, _)| child(file))
        .collect();
    for (file, _, code) in &tree.files {
        let Some((module, name)) = child(file) else {
            continue;
        };
        let imports = modules
            .entry(module.clone())
            .or_default()
            .entry(name.clone())
            .or_default();
        let prefixes = ["super::".to_string(), format!("crate::{module}::")];
        for (number, line) in code.lines().enumerate() {
            for prefix in &prefixes {
                for (at, _) in line.match_indices(prefix.as_str()) {
                    let after = &line[at + prefix.len()..];
                    let names = match after.strip_prefix('{') {
                        Some(list) => top_level_items(list),
                        None => vec![identifier(after)],
                    };
                    for sibling in names {
                        if sibling != name && children.contains(&(module.clone(), sibling.clone()))
                        {
                            imports.entry(sibling).or_insert(number + 1);
                        }
                    }
                }
            }
        }
    }
    modules
}

#[test]
fn the_files_of_a_module_import_each_other_in_no_cycle() {
    let tree = read_tree();
    for (module, files) in sibling_imports(&tree) {
        let next: BTreeMap<&str, Vec<&str>> = files
            .iter()
            .map(|(file, imports)| (file.as_str(), imports.keys().map(String::as_str).collect()))
            .collect();
        if let Some(cycle) = first_cycle(&next) {
            let hops: Vec<String> = cycle
                .windows(2)
                .map(|hop| {
                    let line = files[hop[0]][hop[1]];
                    format!("  src/{module}/{}.rs:{line}: imports `{}`", hop[0], hop[1])
                })
                .collect();
            panic!(
                "the files of {module}/ import each other in a cycle: {}\n{}",
                cycle.join(" → "),
                hops.join("\n")
            );
        }
    }
}

/// The first cycle a depth-first search over `next` closes, as the path around it.
fn first_cycle<'a>(next: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for to in next.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(to, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    next.keys()
        .find_map(|node| visit(node, next, &mut Vec::new(), &mut done))
}

#[test]
fn only_cluster_uses_the_kubernetes_client() {
    let tree = read_tree();
    let mut offenders = Vec::new();
    for (file, module, code) in &tree.files {
        if module == "cluster" {
            continue;
        }
        let used = CLIENT_CRATES
            .iter()
            .find_map(|name| uses_crate(code, name).map(|line| (name, line)));
        if let Some((name, line)) = used {
            offenders.push(format!("{file}:{line}: uses `{name}` outside cluster/"));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// Files besides `cmd/ui/` that may print, and why.
const PRINTERS_ALLOWED: &[(&str, &str)] = &[(
    "src/execute/mod.rs",
    "the test-only failpoint says where it aborts, as the process dies: the crash tests read it",
)];

/// Actions are pure planners: they decide from what was read and never read themselves, so no
/// action file awaits, or names the `Cluster` seam (their test fixtures aside).
#[test]
fn actions_decide_from_what_was_read_and_read_nothing_themselves() {
    let tree = read_tree();
    let mut offenders = Vec::new();
    for (file, module, code) in &tree.files {
        if module != "action" || file == "src/action/fixture.rs" {
            continue;
        }
        for (number, line) in code.lines().enumerate() {
            for sign in [".await", "async fn", "dyn Cluster", "BoxFuture"] {
                if line.contains(sign) {
                    offenders.push(format!("{file}:{}: `{sign}` in an action", number + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn only_the_ui_prints() {
    let tree = read_tree();
    let mut offenders = Vec::new();
    for (file, _, code) in &tree.files {
        if file.starts_with("src/cmd/ui/")
            || file == "src/main.rs"
            || PRINTERS_ALLOWED.iter().any(|(allowed, _)| allowed == file)
        {
            continue;
        }
        for (number, line) in code.lines().enumerate() {
            if let Some(printer) = PRINTERS.iter().find(|p| {
                line.match_indices(*p).any(|(at, _)| {
                    !line[..at]
                        .chars()
                        .last()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            }) {
                offenders.push(format!(
                    "{file}:{}: `{printer}` outside cmd/ui/ (return the text, and show it there)",
                    number + 1
                ));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// The table as the README's Layout section shows it.
pub fn markdown_table() -> String {
    let mut out = String::from("| layer | modules | what lives there |\n|---|---|---|\n");
    for (index, (name, modules, why)) in LAYERS.iter().enumerate() {
        let modules: Vec<String> = modules.iter().map(|m| format!("`{m}`")).collect();
        out.push_str(&format!(
            "| {} {name} | {} | {why} |\n",
            index + 1,
            modules.join(", ")
        ));
    }
    out
}

#[test]
fn the_readme_shows_the_layers() {
    let readme = std::fs::read_to_string(src().with_file_name("README.md")).unwrap();
    assert!(
        readme.contains(&markdown_table()),
        "the README's Layout section must hold this table:\n{}",
        markdown_table()
    );
}

#[test]
fn the_checker_sees_imports_in_lists_and_ignores_comments_and_strings() {
    let code = code_only(
        "use crate::{cluster::Cluster, plan::{Op, StepPlan}};\n// crate::app in a comment\nlet s = \"crate::cmd\"; let c = '\"'; fn f<'a>(x: &'a str) { crate::journal::open(); }\n",
    );
    let names: Vec<String> = crate_references(&code)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["cluster", "plan", "journal"]);
    assert_eq!(uses_crate("use kube::Api;", "kube"), Some(1));
    assert_eq!(
        uses_crate("crate::cluster::kube::KubeCluster", "kube"),
        None
    );
}
