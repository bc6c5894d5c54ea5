//! Evidence bundles with a chain of custody. Each artifact is streamed to disk and hashed on
//! the way (no second pass, memory bounded whatever its size); a step's `manifest.json` lists
//! every artifact with its sha256, size, the API path it came from, when and by whom it was
//! collected; the manifest's own sha256 goes into the journal. `contain evidence verify`
//! re-hashes a bundle and names every artifact that changed, vanished or appeared.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

/// The manifest's file name inside a step's bundle directory.
pub const MANIFEST: &str = "manifest.json";
/// Its SSH signature, beside it, when a signing key is configured.
pub const SIGNATURE: &str = "manifest.json.sig";

/// One collected artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path inside the bundle, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// The API path (or API call) it came from.
    pub source: String,
    pub collected_at: String,
    /// `captured`, or what happened instead (`not supported by this cluster`, an exec error…);
    /// such outcomes are evidence too and are recorded in the artifact itself.
    pub outcome: String,
}

/// Who collected a bundle, where and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub run_id: String,
    pub step: String,
    pub cluster_id: String,
    pub collector: String,
    pub sealed_at: String,
    pub artifacts: Vec<Artifact>,
}

/// Where a run's evidence goes and whom it is attributed to.
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    pub root: PathBuf,
    pub cluster_id: String,
    pub collector: String,
    /// A PKCS#8 PEM P-256 key: each manifest is then signed (`manifest.json.sig`, SSHSIG).
    pub signing_key: Option<PathBuf>,
}

impl EvidenceConfig {
    /// The bundle directory of one step.
    pub fn step_dir(&self, run_id: &str, step: &str) -> PathBuf {
        self.root.join(run_id).join(step)
    }
}

/// An `AsyncWrite` that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The sha256 (hex) and size of everything written.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.size)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..n]);
                this.size += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Refuses artifact paths that could leave the bundle.
pub fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Writes the manifest of a step's bundle and returns its sha256; with a signing key, also its
/// SSH signature (`manifest.json.sig`), and the signer's fingerprint.
pub fn seal(
    dir: &Path,
    manifest: &Manifest,
    signing_key: Option<&Path>,
) -> std::io::Result<(String, Option<String>)> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(manifest).expect("manifests serialize");
    let path = dir.join(MANIFEST);
    std::fs::write(&path, &bytes)?;
    std::fs::File::open(&path)?.sync_all()?;
    let signer = match signing_key {
        Some(key_path) => {
            let key = crate::sshsig::read_key(key_path)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let signature = dir.join(SIGNATURE);
            let armored = crate::sshsig::sign(&key, &bytes)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            std::fs::write(&signature, armored)?;
            std::fs::File::open(&signature)?.sync_all()?;
            Some(crate::sshsig::fingerprint(key.verifying_key()))
        }
        None => None,
    };
    Ok((hex::encode(Sha256::digest(&bytes)), signer))
}

/// What `verify` found in one bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BundleCheck {
    pub dir: String,
    pub manifest_sha256: String,
    pub artifacts: usize,
    pub changed: Vec<String>,
    pub vanished: Vec<String>,
    pub appeared: Vec<String>,
    /// The manifest's signature, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureCheck>,
}

/// What the manifest's signature says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignatureCheck {
    /// `SHA256:…` of the key that signed it, when the signature holds.
    pub signer: Option<String>,
    /// The signature holds, and (with trusted keys given) its key is one of them.
    pub valid: bool,
    pub detail: String,
}

impl BundleCheck {
    pub fn intact(&self) -> bool {
        self.changed.is_empty()
            && self.vanished.is_empty()
            && self.appeared.is_empty()
            && self.signature.as_ref().is_none_or(|s| s.valid)
    }
}

/// Checks a bundle's manifest signature against the manifest, and its key against `trusted`
/// (when given). A bundle with no signature has `None`, unless keys are required.
fn check_signature(
    dir: &Path,
    trusted: Option<&[p256::ecdsa::VerifyingKey]>,
) -> Option<SignatureCheck> {
    let armored = match std::fs::read_to_string(dir.join(SIGNATURE)) {
        Ok(armored) => armored,
        Err(_) if trusted.is_some() => {
            return Some(SignatureCheck {
                signer: None,
                valid: false,
                detail: "NOT SIGNED, and a trusted key was given".into(),
            });
        }
        Err(_) => return None,
    };
    let manifest = std::fs::read(dir.join(MANIFEST)).unwrap_or_default();
    Some(match crate::sshsig::verify(&armored, &manifest) {
        Err(e) => SignatureCheck {
            signer: None,
            valid: false,
            detail: format!("INVALID: {e}"),
        },
        Ok(key) => {
            let signer = crate::sshsig::fingerprint(&key);
            match trusted {
                Some(keys) if !keys.contains(&key) => SignatureCheck {
                    detail: format!("signed by {signer}, which is NOT a trusted key"),
                    signer: Some(signer),
                    valid: false,
                },
                Some(_) => SignatureCheck {
                    detail: format!("signed by {signer}, a trusted key"),
                    signer: Some(signer),
                    valid: true,
                },
                None => SignatureCheck {
                    detail: format!(
                        "signed by {signer} (no trusted key given: the signer is not checked)"
                    ),
                    signer: Some(signer),
                    valid: true,
                },
            }
        }
    })
}

/// Why a bundle could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {message}")]
    Manifest { path: String, message: String },
    #[error("{0} holds no manifest.json, neither itself nor in any subdirectory")]
    NoBundle(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a bundle's manifest and its sha256.
pub fn read_manifest(dir: &Path) -> Result<(Manifest, String), EvidenceError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let manifest = serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Manifest {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((manifest, hex::encode(Sha256::digest(&bytes))))
}

/// Re-hashes every file of a bundle (streaming, bounded memory) against its manifest, and
/// checks the manifest's signature (against `trusted` keys, when given).
pub fn verify(
    dir: &Path,
    trusted: Option<&[p256::ecdsa::VerifyingKey]>,
) -> Result<BundleCheck, EvidenceError> {
    let (manifest, manifest_sha256) = read_manifest(dir)?;
    let mut check = BundleCheck {
        dir: dir.display().to_string(),
        manifest_sha256,
        artifacts: manifest.artifacts.len(),
        ..BundleCheck::default()
    };
    let mut listed = std::collections::BTreeSet::new();
    for artifact in &manifest.artifacts {
        listed.insert(artifact.path.clone());
        if !safe_relative(&artifact.path) {
            check
                .changed
                .push(format!("{} (a path outside the bundle)", artifact.path));
            continue;
        }
        let path = dir.join(&artifact.path);
        match hash_file(&path) {
            Ok((sha, size)) if sha == artifact.sha256 && size == artifact.size => {}
            Ok(_) => check.changed.push(artifact.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                check.vanished.push(artifact.path.clone())
            }
            Err(e) => return Err(io(&path)(e)),
        }
    }
    for file in files_under(dir).map_err(io(dir))? {
        if file != MANIFEST && file != SIGNATURE && !listed.contains(&file) {
            check.appeared.push(file);
        }
    }
    check.signature = check_signature(dir, trusted);
    Ok(check)
}

/// Every bundle at or below `dir` (a step's bundle, a run's, or the whole evidence root).
pub fn bundles(dir: &Path) -> Result<Vec<PathBuf>, EvidenceError> {
    if dir.join(MANIFEST).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(io(&current))? {
            let path = entry.map_err(io(&current))?.path();
            if path.is_dir() {
                if path.join(MANIFEST).is_file() {
                    found.push(path);
                } else {
                    pending.push(path);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(EvidenceError::NoBundle(dir.display().to_string()));
    }
    Ok(found)
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Every file below `dir`, as `/`-separated relative paths.
fn files_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(
                    relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Packs a bundle directory into `<dir>.tar.gz` and writes `<dir>.tar.gz.sha256` beside it.
pub fn archive(dir: &Path) -> std::io::Result<(PathBuf, String)> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let target = dir.with_file_name(format!("{name}.tar.gz"));
    {
        let file = std::fs::File::create(&target)?;
        let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut builder = tar::Builder::new(encoder);
        builder.append_dir_all(&name, dir)?;
        builder.into_inner()?.finish()?.sync_all()?;
    }
    let (sha, _) = hash_file(&target)?;
    std::fs::write(
        target.with_file_name(format!("{name}.tar.gz.sha256")),
        format!("{sha}  {name}.tar.gz\n"),
    )?;
    Ok((target, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run").join("capture");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("pod.json"), b"{\"kind\":\"Pod\"}").unwrap();
        std::fs::write(dir.join("logs/app.log"), b"line 1\nline 2\n").unwrap();
        let artifact = |path: &str| {
            let (sha256, size) = hash_file(&dir.join(path)).unwrap();
            Artifact {
                path: path.into(),
                sha256,
                size,
                source: "/api/v1".into(),
                collected_at: "now".into(),
                outcome: "captured".into(),
            }
        };
        let manifest = Manifest {
            format: 1,
            run_id: "r".into(),
            step: "capture".into(),
            cluster_id: "c".into(),
            collector: "me".into(),
            sealed_at: "now".into(),
            artifacts: vec![artifact("pod.json"), artifact("logs/app.log")],
        };
        seal(&dir, &manifest, None).unwrap();
        (root, dir)
    }

    #[test]
    fn an_intact_bundle_verifies() {
        let (_root, dir) = bundle();
        let check = verify(&dir, None).unwrap();
        assert!(check.intact(), "{check:?}");
        assert_eq!(check.artifacts, 2);
    }

    #[test]
    fn one_edited_byte_is_named() {
        let (_root, dir) = bundle();
        let mut bytes = std::fs::read(dir.join("logs/app.log")).unwrap();
        bytes[3] ^= 1;
        std::fs::write(dir.join("logs/app.log"), bytes).unwrap();
        assert_eq!(verify(&dir, None).unwrap().changed, ["logs/app.log"]);
    }

    #[test]
    fn vanished_and_appeared_files_are_named() {
        let (_root, dir) = bundle();
        std::fs::remove_file(dir.join("pod.json")).unwrap();
        std::fs::write(dir.join("planted.txt"), b"x").unwrap();
        let check = verify(&dir, None).unwrap();
        assert_eq!(
            (check.vanished, check.appeared),
            (
                vec!["pod.json".to_string()],
                vec!["planted.txt".to_string()]
            )
        );
    }

    #[test]
    fn archives_carry_their_hash() {
        let (_root, dir) = bundle();
        let (path, sha) = archive(&dir).unwrap();
        let recorded =
            std::fs::read_to_string(path.with_file_name("capture.tar.gz.sha256")).unwrap();
        assert!(recorded.starts_with(&sha));
        assert_eq!(hash_file(&path).unwrap().0, sha);
    }

    #[test]
    fn paths_cannot_leave_the_bundle() {
        assert!(safe_relative("a/b.log"));
        assert!(!safe_relative("../x") && !safe_relative("/etc/passwd") && !safe_relative("a//b"));
    }
}
