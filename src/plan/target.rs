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
    /// Every namespace: `namespace` is then unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// Pods running an image with this digest (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl ResolvedTarget {
    /// Whether an object (a pod, when the target names an image) is one the target selects
    /// beyond its name, namespace and labels.
    pub fn admits(&self, object: &serde_json::Value) -> bool {
        match &self.image {
            Some(digest) => runs_image(object, digest),
            None => true,
        }
    }
}

/// Whether any container of a pod (init and ephemeral included) runs the image with `digest`:
/// by the digest in its image reference, or the image ID the kubelet reports.
pub fn runs_image(pod: &serde_json::Value, digest: &str) -> bool {
    let suffix = format!("@{digest}");
    let spec_images = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str());
    let running = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|list| pod["status"][list].as_array().into_iter().flatten())
    .filter_map(|c| c["imageID"].as_str());
    spec_images
        .chain(running)
        .any(|image| image.ends_with(&suffix) || image == digest)
}

/// The digest an `image:` names: `sha256:<64 hex>` alone or at the end of a reference.
pub fn parse_digest(image: &str) -> Option<String> {
    let digest = image.rsplit_once('@').map_or(image, |(_, d)| d);
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| digest.to_string())
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
        let ns = match (&self.namespace, self.all_namespaces) {
            (Some(n), _) => format!("{n}/"),
            (None, true) => "*/".to_string(),
            (None, false) => String::new(),
        };
        let image = self
            .image
            .as_deref()
            .map(|d| format!(" running {d}"))
            .unwrap_or_default();
        match (&self.name, &self.selector) {
            (Some(name), _) => write!(f, "{} {ns}{name}", self.kind.kind),
            (None, Some(sel)) => write!(f, "{} {ns}[{}]{image}", self.kind.kind, sel.to_query()),
            (None, None) if image.is_empty() => write!(f, "every {} {ns}", self.kind.kind),
            (None, None) => write!(f, "{} {ns}*{image}", self.kind.kind),
        }
    }
}
