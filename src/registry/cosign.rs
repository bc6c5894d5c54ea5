//! Cosign keyed signatures, as `cosign sign --key` stores them: a manifest under the tag
//! `sha256-<hex>.sig` whose layers are simple-signing payloads, each annotated with a base64
//! ECDSA P-256 signature over the payload's exact bytes. A signature counts only when it
//! verifies with a configured key *and* its payload names exactly the image's digest.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

use super::client::{Registry, RegistryError};
use super::reference::ImageRef;

/// The annotation holding a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's media type.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The only `critical.type` a container image signature may have.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// A public key and where it came from.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub pem: String,
    key: VerifyingKey,
}

impl Key {
    /// Parses an ECDSA P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, String> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| format!("{name} is not an ECDSA P-256 public key in PEM: {e}"))?;
        Ok(Key {
            name: name.to_string(),
            pem: pem.trim().to_string(),
            key,
        })
    }

    /// Reads a key file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
        Key::from_pem(&path.display().to_string(), &pem)
    }
}

/// The tag under which cosign stores the signatures of a digest.
pub fn signature_tag(digest: &str) -> String {
    digest.replace(':', "-") + ".sig"
}

/// The simple-signing payload cosign signs for an image digest.
pub fn payload(repository: &str, digest: &str) -> Value {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE
        },
        "optional": null
    })
}

/// A verified image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub image: String,
    pub digest: String,
    /// The key that verified it.
    pub key: String,
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{image} ({digest}) is not signed: no {tag} in the registry")]
    Unsigned {
        image: String,
        digest: String,
        tag: String,
    },
    #[error("{image} ({digest}) has no valid signature: {}", reasons.join("; "))]
    Invalid {
        image: String,
        digest: String,
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Checks one signature layer; `Ok(key name)` when it is valid for `digest`.
fn check_layer(
    layer: &Value,
    payload_bytes: &[u8],
    digest: &str,
    keys: &[Key],
) -> Result<String, String> {
    let encoded = layer
        .pointer(&format!(
            "/annotations/{}",
            SIGNATURE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .ok_or("a signature layer without a signature annotation")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    let signature = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|e| format!("the signature is not an ECDSA signature: {e}"))?;
    let key = keys
        .iter()
        .find(|k| k.key.verify(payload_bytes, &signature).is_ok())
        .ok_or("the signature does not verify with any configured key (wrong key, or the payload was altered)")?;
    let payload: Value = serde_json::from_slice(payload_bytes)
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    let signed_digest = payload
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if signed_digest != digest {
        return Err(format!(
            "a valid signature, but for another image: its payload names {signed_digest}"
        ));
    }
    let kind = payload
        .pointer("/critical/type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != SIGNATURE_TYPE {
        return Err(format!(
            "the payload's critical.type is `{kind}`, not `{SIGNATURE_TYPE}`"
        ));
    }
    Ok(key.name.clone())
}

/// Verifies that `digest` of `image` carries a valid cosign signature by one of `keys`.
pub async fn verify(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    keys: &[Key],
) -> Result<Verified, SignatureError> {
    let name = format!("{}/{}", image.registry, image.repository);
    let tag = signature_tag(digest);
    let Some((bytes, _)) = registry.manifest(image, &tag).await? else {
        return Err(SignatureError::Unsigned {
            image: name,
            digest: digest.to_string(),
            tag,
        });
    };
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Invalid(format!("{name}:{tag}: {e}")))?;
    let mut reasons = Vec::new();
    for layer in manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(layer_digest) = layer.get("digest").and_then(Value::as_str) else {
            reasons.push("a layer without a digest".into());
            continue;
        };
        // The blob is checked against its digest on the way: a swapped payload fails here.
        let payload_bytes = match registry.blob(image, layer_digest).await {
            Ok(bytes) => bytes,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        match check_layer(layer, &payload_bytes, digest, keys) {
            Ok(key) => {
                return Ok(Verified {
                    image: image.pinned(digest),
                    digest: digest.to_string(),
                    key,
                });
            }
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        reasons.push("the signature manifest has no layers".into());
    }
    Err(SignatureError::Invalid {
        image: name,
        digest: digest.to_string(),
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn key(seed: u8) -> (SigningKey, Key) {
        let signing = SigningKey::from_bytes(&[seed; 32].into()).unwrap();
        let pem = signing
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        (signing, Key::from_pem("test", &pem).unwrap())
    }

    fn layer(signing: &SigningKey, payload: &[u8]) -> Value {
        let signature: Signature = signing.sign(payload);
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
        serde_json::json!({"annotations": {SIGNATURE_ANNOTATION: encoded}})
    }

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn a_valid_signature_for_this_digest_passes() {
        let (signing, key) = key(7);
        let payload = serde_json::to_vec(&payload("r/app", DIGEST)).unwrap();
        assert_eq!(
            check_layer(&layer(&signing, &payload), &payload, DIGEST, &[key]),
            Ok("test".into())
        );
    }

    #[test]
    fn the_wrong_key_a_tampered_payload_and_another_digest_fail() {
        let (signing, key) = key(7);
        let (_, other) = key_pair_other();
        let payload = serde_json::to_vec(&payload("r/app", DIGEST)).unwrap();
        let signed = layer(&signing, &payload);
        assert!(
            check_layer(&signed, &payload, DIGEST, &[other])
                .unwrap_err()
                .contains("any configured key")
        );
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        assert!(check_layer(&signed, &tampered, DIGEST, std::slice::from_ref(&key)).is_err());
        let elsewhere = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        assert!(
            check_layer(&signed, &payload, elsewhere, &[key])
                .unwrap_err()
                .contains("for another image")
        );
    }

    fn key_pair_other() -> (SigningKey, Key) {
        key(9)
    }
}
