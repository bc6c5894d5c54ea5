//! A YAML document as a tree of nodes that remember where they came from.
//!
//! Every later stage (schema checks, reference checks, rendering) walks this tree, so every
//! error can name the exact `file:line:col` of the value it is about.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::source::{Source, Span};

/// One YAML value and the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub span: Span,
}

/// The value of a [`Node`]; mappings keep their key order and each key's own span.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Node {
    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Int(_) => "integer",
            NodeValue::Float(_) => "number",
            NodeValue::Str(_) => "string",
            NodeValue::Seq(_) => "list",
            NodeValue::Map(_) => "mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            NodeValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The node at a JSON-pointer-like path (`/steps/2/id`), if there is one.
    pub fn pointer(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for segment in path.split('/').skip(1) {
            node = match &node.value {
                NodeValue::Map(_) => node.get(segment)?,
                NodeValue::Seq(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The plain JSON value, dropping places.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A node tree for a JSON value, every node carrying `span`.
    pub fn from_json(value: &serde_json::Value, span: Span) -> Node {
        use serde_json::Value;
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeValue::Int(i),
                None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeValue::Str(s.clone()),
            Value::Array(items) => {
                NodeValue::Seq(items.iter().map(|v| Node::from_json(v, span)).collect())
            }
            Value::Object(map) => NodeValue::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                span,
                            },
                            Node::from_json(v, span),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, span }
    }
}

/// Limits that keep hostile input (alias bombs, deep nesting, huge files) bounded in time and
/// memory. Parsing stops at the first limit reached, with a located error.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_aliases: usize,
    pub max_documents: usize,
}

impl Limits {
    /// Playbooks are small, reviewed files.
    pub const PLAYBOOK: Limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 48,
        max_nodes: 50_000,
        max_aliases: 200,
        max_documents: 1,
    };
    /// Snapshots of a cluster can be large, but are still read whole into memory.
    pub const SNAPSHOT: Limits = Limits {
        max_bytes: 256 << 20,
        max_depth: 64,
        max_nodes: 5_000_000,
        max_aliases: 1_000,
        max_documents: 100_000,
    };

    fn options(&self) -> serde_saphyr::Options {
        // Both structs are non-exhaustive: start from the defaults and tighten.
        let mut budget = serde_saphyr::Budget::default();
        budget.max_depth = self.max_depth;
        budget.max_nodes = self.max_nodes;
        budget.max_aliases = self.max_aliases;
        budget.max_anchors = self.max_aliases.max(1);
        budget.max_documents = self.max_documents;
        budget.max_total_scalar_bytes = self.max_bytes;
        budget.max_events = self.max_nodes.saturating_mul(4);
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        options
    }
}

/// Why a text could not be read as YAML.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file is larger than the limit for its kind.
    #[error("{name} is larger than the limit of {limit} bytes")]
    TooLarge { name: String, limit: usize },
    /// The bytes are not UTF-8.
    #[error("{name}:{line}:{column}: not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        name: String,
        offset: usize,
        line: usize,
        column: usize,
    },
    /// The YAML parser (or one of its limits) rejected the text.
    #[error("{message}")]
    Yaml { message: String, span: Option<Span> },
}

/// Checks size and UTF-8 before any parsing, so the parser only ever sees bounded, valid text.
pub fn text_from_bytes(name: &str, bytes: Vec<u8>, limits: Limits) -> Result<String, ParseError> {
    if bytes.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            name: name.to_string(),
            limit: limits.max_bytes,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..offset]).unwrap_or_default();
        let source = Source::new(name, valid);
        let (line, column) = source.line_col(offset);
        ParseError::NotUtf8 {
            name: name.to_string(),
            offset,
            line,
            column,
        }
    })
}

/// Parses one YAML document into a node tree.
pub fn parse_document(source: &Source, limits: Limits) -> Result<Node, ParseError> {
    if source.text().len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            name: source.name().to_string(),
            limit: limits.max_bytes,
        });
    }
    let raw: Spanned<RawNode> =
        serde_saphyr::from_str_with_options(source.text(), limits.options())
            .map_err(|e| yaml_error(source, &e))?;
    Ok(convert(raw, source))
}

/// Parses every document of a multi-document YAML stream; empty documents are skipped.
pub fn parse_documents(source: &Source, limits: Limits) -> Result<Vec<Node>, ParseError> {
    if source.text().len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            name: source.name().to_string(),
            limit: limits.max_bytes,
        });
    }
    let docs: Vec<Spanned<RawNode>> =
        serde_saphyr::from_multiple_with_options(source.text(), limits.options())
            .map_err(|e| yaml_error(source, &e))?;
    Ok(docs.into_iter().map(|d| convert(d, source)).collect())
}

/// Parses every document of a multi-document YAML stream straight into JSON values, each with the
/// span of its document: for bulk data (snapshots) where errors name an object, not a field, and
/// a span per node would cost more than the parse itself.
///
/// Documents are independent in YAML (no alias crosses a `---`), so a large stream is cut at its
/// document markers into one run of documents per core and the runs are parsed side by side.
/// Any error re-parses the whole text in one piece, so its position and message are exactly those
/// of a single parse.
pub fn parse_document_values(
    source: &Source,
    limits: Limits,
) -> Result<Vec<(Span, serde_json::Value)>, ParseError> {
    if source.text().len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            name: source.name().to_string(),
            limit: limits.max_bytes,
        });
    }
    let text = source.text();
    if let Some(documents) = json_documents(source) {
        return Ok(documents);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let runs = document_runs(text, cores);
    // Each run gets its share of the node budget; the whole-text parse gets all of it.
    let parse_run = |&(start, end): &(usize, usize)| {
        let mut run_limits = limits;
        run_limits.max_nodes = limits.max_nodes * (end - start) / text.len().max(1);
        serde_saphyr::from_multiple_with_options::<Spanned<serde_json::Value>>(
            &text[start..end],
            run_limits.options(),
        )
        .map(|docs| {
            docs.into_iter()
                .map(|d| (location_span(source, &d.referenced, start), d.value))
                .collect::<Vec<_>>()
        })
    };
    let parsed: Vec<_> = if runs.len() == 1 {
        vec![parse_run(&runs[0])]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .iter()
                .map(|run| scope.spawn(move || parse_run(run)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a parse thread does not panic"))
                .collect()
        })
    };
    let mut documents = Vec::new();
    for run in parsed {
        match run {
            Ok(docs) => documents.extend(docs),
            Err(_) => return parse_run(&(0, text.len())).map_err(|e| yaml_error(source, &e)),
        }
    }
    Ok(documents)
}

/// A stream of JSON documents (`kubectl get -o json`, `contain snapshot -o json`) read by the JSON
/// parser, an order of magnitude faster than YAML's. JSON is YAML, so anything this declines
/// (including invalid JSON) goes to the YAML parser, whose errors are the ones reported.
fn json_documents(source: &Source) -> Option<Vec<(Span, serde_json::Value)>> {
    let text = source.text();
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let mut documents = Vec::new();
    let mut start = 0;
    while let Some(value) = stream.next() {
        let value = value.ok()?;
        let end = stream.byte_offset();
        let skipped = text[start..end].len() - text[start..end].trim_start().len();
        documents.push((
            source.span_at(start + skipped, end - start - skipped),
            value,
        ));
        start = end;
    }
    Some(documents)
}

/// Cuts `text` into at most `count` runs of whole documents of about equal size, each starting at
/// a `---` line (the first at 0). Streams with directives (`%YAML`, `%TAG`), which bind to the
/// document after them, and small streams are one run.
fn document_runs(text: &str, count: usize) -> Vec<(usize, usize)> {
    const SMALL: usize = 256 << 10;
    if count <= 1 || text.len() < SMALL || text.starts_with('%') || text.contains("\n%") {
        return vec![(0, text.len())];
    }
    let target = text.len() / count;
    let mut cuts = vec![0];
    let mut next = target;
    for (offset, _) in text.match_indices("\n---") {
        let line = offset + 1;
        let after = text.as_bytes().get(line + 3).copied();
        let is_marker = matches!(after, None | Some(b' ' | b'\t' | b'\n' | b'\r'));
        if is_marker && line >= next {
            cuts.push(line);
            next = line + target;
        }
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

fn yaml_error(source: &Source, err: &serde_saphyr::Error) -> ParseError {
    let span = err.location().map(|loc| location_span(source, &loc, 0));
    // The library's own rendering repeats a snippet; keep the first line, the message itself.
    let rendered = err.to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    ParseError::Yaml { message, span }
}

fn location_span(source: &Source, loc: &serde_saphyr::Location, base: usize) -> Span {
    let span = loc.span();
    match span.byte_offset() {
        Some(offset) => {
            let offset = base + offset as usize;
            let len = span.byte_len().unwrap_or(0) as usize;
            source.span_at(offset.min(source.text().len()), len)
        }
        // No byte offset from the parser: find the line and column in the text, so the caret
        // stands where the error is, not at 1:1.
        None => {
            let base_line = source.line_col(base).0 - 1;
            let (line, column) = (base_line + loc.line() as usize, loc.column() as usize);
            Span {
                offset: source.offset_at(line, column),
                len: 0,
                line,
                column,
            }
        }
    }
}

fn convert(raw: Spanned<RawNode>, source: &Source) -> Node {
    let span = location_span(source, &raw.referenced, 0);
    let value = match raw.value {
        RawNode::Null => NodeValue::Null,
        RawNode::Bool(b) => NodeValue::Bool(b),
        RawNode::Int(i) => NodeValue::Int(i),
        RawNode::Float(f) => NodeValue::Float(f),
        RawNode::Str(s) => NodeValue::Str(s),
        RawNode::Seq(items) => {
            NodeValue::Seq(items.into_iter().map(|n| convert(n, source)).collect())
        }
        RawNode::Map(entries) => NodeValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        span: location_span(source, &k.referenced, 0),
                        name: k.value,
                    };
                    (key, convert(v, source))
                })
                .collect(),
        ),
    };
    Node { value, span }
}

/// The shape serde-saphyr fills in; children are wrapped in `Spanned` to learn their place.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .or(Ok(RawNode::Float(v as f64)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<RawNode, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries: Vec<(Spanned<String>, Spanned<RawNode>)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if entries.iter().any(|(k, _)| k.value == key.value) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.value)));
            }
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream large enough to be parsed in several runs.
    fn big_stream(objects: usize) -> String {
        (0..objects)
            .map(|i| format!("---\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: |\n    ---\n    v{i}\n"))
            .collect()
    }

    #[test]
    fn runs_cut_only_at_document_markers() {
        let text = big_stream(20_000);
        let runs = document_runs(&text, 4);
        assert_eq!(runs.len(), 4, "{runs:?}");
        assert_eq!((runs[0].0, runs[3].1), (0, text.len()));
        for pair in runs.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
            assert!(text[pair[1].0..].starts_with("---\n"));
        }
        assert_eq!(document_runs("%YAML 1.2\n---\na: 1\n", 4), vec![(0, 19)]);
    }

    #[test]
    fn parallel_parse_matches_one_parse() {
        let text = big_stream(20_000);
        let source = Source::new("s.yaml", text.as_str());
        let parsed = parse_document_values(&source, Limits::SNAPSHOT).unwrap();
        let whole: Vec<serde_json::Value> =
            serde_saphyr::from_multiple_with_options(&text, Limits::SNAPSHOT.options()).unwrap();
        assert_eq!(parsed.len(), 20_000);
        assert!(parsed.iter().map(|(_, v)| v).eq(whole.iter()));
        let (span, last) = parsed.last().unwrap();
        assert_eq!(last["data"]["k"], "---\nv19999\n");
        assert_eq!(
            span.line,
            19_999 * 8 + 2,
            "a document's span is its own, not its run's"
        );
    }

    #[test]
    fn json_streams_take_the_json_parser_and_keep_document_places() {
        let text = "{\"kind\": \"A\"}\n\n{\"kind\": \"B\",\n \"n\": 1}\n";
        let parsed = parse_document_values(&Source::new("s.json", text), Limits::SNAPSHOT).unwrap();
        let kinds: Vec<_> = parsed.iter().map(|(_, v)| v["kind"].clone()).collect();
        assert_eq!(kinds, ["A", "B"]);
        assert_eq!((parsed[1].0.line, parsed[1].0.column), (3, 1));
        // Not JSON after all (a YAML flow mapping with a plain scalar): the YAML parser reads it.
        let yaml = "{kind: A}\n";
        let parsed = parse_document_values(&Source::new("s.yaml", yaml), Limits::SNAPSHOT).unwrap();
        assert_eq!(parsed[0].1["kind"], "A");
    }

    #[test]
    fn an_error_late_in_a_large_stream_is_placed_exactly() {
        let mut text = big_stream(20_000);
        text.push_str("---\nkind: ConfigMap\nmetadata: {name: [unclosed\n");
        let source = Source::new("s.yaml", text.as_str());
        let Err(ParseError::Yaml {
            span: Some(span), ..
        }) = parse_document_values(&source, Limits::SNAPSHOT)
        else {
            panic!("the broken document is an error");
        };
        assert!(span.line > 20_000 * 8, "line {}", span.line);
    }

    fn parse(text: &str) -> Node {
        parse_document(&Source::new("t.yaml", text), Limits::PLAYBOOK).expect("parses")
    }

    #[test]
    fn keys_and_values_keep_their_places() {
        let node = parse("a: 1\nsteps:\n  - id: x\n    action: pod.delete\n");
        let action = node.pointer("/steps/0/action").unwrap();
        assert_eq!(action.as_str(), Some("pod.delete"));
        assert_eq!((action.span.line, action.span.column), (4, 13));
        let (key, _) = &node.as_map().unwrap()[1];
        assert_eq!(
            (key.name.as_str(), key.span.line, key.span.column),
            ("steps", 2, 1)
        );
    }

    #[test]
    fn scalars_keep_their_types() {
        let node = parse("i: 3\nf: 1.5\nb: true\nn: null\ns: '3'\n");
        let types: Vec<_> = node
            .as_map()
            .unwrap()
            .iter()
            .map(|(_, v)| v.type_name())
            .collect();
        assert_eq!(types, ["integer", "number", "boolean", "null", "string"]);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err =
            parse_document(&Source::new("t.yaml", "a: 1\na: 2\n"), Limits::PLAYBOOK).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let err =
            text_from_bytes("t.yaml", b"a: 1\nb: \xff\n".to_vec(), Limits::PLAYBOOK).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yaml:2:4: not valid UTF-8 (byte offset 8)"
        );
    }
}
