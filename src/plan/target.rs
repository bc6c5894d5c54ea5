//! A step's target after rendering: the kind resolved, names validated. It is part of the
//! approved plan, so a resumed run verifies the same objects the plan named.

use serde::{Deserialize, Serialize};

use crate::cluster::{Kind, Selector, kinds};

/// A step's target after rendering: names validated, kind known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedTarget {
    #[serde(serialize_with = "kind_name", deserialize_with = "kind_by_name")]
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub selector: Option<Selector>,
}

fn kind_name<S: serde::Serializer>(kind: &&'static Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.kind)
}

fn kind_by_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static Kind, D::Error> {
    let name = String::deserialize(d)?;
    kinds::lookup(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown kind `{name}`")))
}

impl std::fmt::Display for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        match (&self.name, &self.selector) {
            (Some(name), _) => write!(f, "{} {ns}{name}", self.kind.kind),
            (None, Some(sel)) => write!(f, "{} {ns}[{}]", self.kind.kind, sel.to_query()),
            (None, None) => write!(f, "every {} {ns}", self.kind.kind),
        }
    }
}
