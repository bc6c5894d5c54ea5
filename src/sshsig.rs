//! Evidence manifests signed so that stock tools verify them: OpenSSH's SSHSIG format
//! (`ssh-keygen -Y sign` / `-Y verify`, PROTOCOL.sshsig) with an ECDSA P-256 key
//! (`ecdsa-sha2-nistp256`) and SHA-512 message hashing. A responder verifies a bundle with
//!
//! ```text
//! ssh-keygen -Y verify -f allowed_signers -I <identity> -n contain-evidence \
//!   -s manifest.json.sig < manifest.json
//! ```
//!
//! and `contain evidence verify` checks the same signature itself.

use std::path::Path;

use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256, Sha512};

/// The SSHSIG namespace of evidence signatures: a signature made for anything else never
/// verifies as one.
pub const NAMESPACE: &str = "contain-evidence";
const MAGIC: &[u8] = b"SSHSIG";
const KEY_TYPE: &str = "ecdsa-sha2-nistp256";
const CURVE: &str = "nistp256";
const HASH: &str = "sha512";
const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

#[derive(Debug, thiserror::Error)]
pub enum SigError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    #[error("the signature does not match the manifest (altered, or signed for another file)")]
    Mismatch,
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An SSH mpint: big-endian, no leading zeros, a zero byte first when the top bit is set.
fn put_mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let trimmed: &[u8] = {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        &bytes[start..]
    };
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(trimmed);
    put_string(out, &value);
}

/// The SSH wire form of a P-256 public key.
fn key_blob(key: &VerifyingKey) -> Vec<u8> {
    let mut blob = Vec::new();
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_string(&mut blob, CURVE.as_bytes());
    put_string(&mut blob, key.to_encoded_point(false).as_bytes());
    blob
}

/// `SHA256:…`, as `ssh-keygen -l` prints a key's fingerprint.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key_blob(key));
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The key as an OpenSSH public-key line (`ecdsa-sha2-nistp256 AAAA… comment`).
pub fn public_line(key: &VerifyingKey, comment: &str) -> String {
    format!(
        "{KEY_TYPE} {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(key_blob(key))
    )
}

/// What is actually signed: the SSHSIG preamble, the namespace, and the message's hash.
fn signed_data(message: &[u8]) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    put_string(&mut data, NAMESPACE.as_bytes());
    put_string(&mut data, b"");
    put_string(&mut data, HASH.as_bytes());
    put_string(&mut data, &Sha512::digest(message));
    data
}

/// Reads a PKCS#8 PEM P-256 private key (`ssh-keygen -t ecdsa -b 256 -m PKCS8`, or
/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
pub fn read_key(path: &Path) -> Result<SigningKey, SigError> {
    let key_error = |message: String| SigError::Key {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        key_error(format!(
            "not a PKCS#8 PEM P-256 private key ({e}); make one with `ssh-keygen -t ecdsa -b 256 -m PKCS8`"
        ))
    })
}

/// The armored SSH signature of `message`.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    let signature: Signature = key.sign(&signed_data(message));
    let (r, s) = signature.split_bytes();
    let mut inner = Vec::new();
    put_mpint(&mut inner, &r);
    put_mpint(&mut inner, &s);
    let mut sig_blob = Vec::new();
    put_string(&mut sig_blob, KEY_TYPE.as_bytes());
    put_string(&mut sig_blob, &inner);
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut blob, &key_blob(key.verifying_key()));
    put_string(&mut blob, NAMESPACE.as_bytes());
    put_string(&mut blob, b"");
    put_string(&mut blob, HASH.as_bytes());
    put_string(&mut blob, &sig_blob);
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    let mut armored = format!("{BEGIN}\n");
    for chunk in encoded.as_bytes().chunks(70) {
        armored.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        armored.push('\n');
    }
    armored.push_str(END);
    armored.push('\n');
    armored
}

/// Reads SSH wire strings one after another.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Result<&'a [u8], SigError> {
        let short = || SigError::Malformed("truncated".into());
        let len = self.0.get(..4).ok_or_else(short)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let value = self.0.get(4..4 + len).ok_or_else(short)?;
        self.0 = &self.0[4 + len..];
        Ok(value)
    }
}

/// Checks an armored SSH signature of `message` made in the evidence namespace; the signer's
/// key when it holds.
pub fn verify(armored: &str, message: &[u8]) -> Result<VerifyingKey, SigError> {
    let body: String = armored
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != BEGIN)
        .skip(1)
        .take_while(|l| *l != END)
        .collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| SigError::Malformed(e.to_string()))?;
    let rest = blob
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix(&1u32.to_be_bytes()[..]))
        .ok_or_else(|| SigError::Malformed("no SSHSIG v1 preamble".into()))?;
    let mut wire = Wire(rest);
    let key = wire.string()?;
    let namespace = wire.string()?;
    let _reserved = wire.string()?;
    let hash = wire.string()?;
    let signature = wire.string()?;
    if namespace != NAMESPACE.as_bytes() {
        return Err(SigError::Malformed(format!(
            "signed for namespace `{}`, not `{NAMESPACE}`",
            String::from_utf8_lossy(namespace)
        )));
    }
    if hash != HASH.as_bytes() {
        return Err(SigError::Malformed(format!(
            "hash `{}`, not {HASH}",
            String::from_utf8_lossy(hash)
        )));
    }
    let mut key_wire = Wire(key);
    if key_wire.string()? != KEY_TYPE.as_bytes() || key_wire.string()? != CURVE.as_bytes() {
        return Err(SigError::Malformed(format!("not an {KEY_TYPE} key")));
    }
    let public = VerifyingKey::from_sec1_bytes(key_wire.string()?)
        .map_err(|e| SigError::Malformed(format!("public key: {e}")))?;
    let mut sig_wire = Wire(signature);
    if sig_wire.string()? != KEY_TYPE.as_bytes() {
        return Err(SigError::Malformed(format!("not an {KEY_TYPE} signature")));
    }
    let mut numbers = Wire(sig_wire.string()?);
    let scalar = |bytes: &[u8]| -> Result<[u8; 32], SigError> {
        let bytes = bytes.strip_prefix(&[0u8]).unwrap_or(bytes);
        let mut out = [0u8; 32];
        if bytes.len() > 32 {
            return Err(SigError::Malformed("scalar too long".into()));
        }
        out[32 - bytes.len()..].copy_from_slice(bytes);
        Ok(out)
    };
    let (r, s) = (scalar(numbers.string()?)?, scalar(numbers.string()?)?);
    let signature = Signature::from_scalars(r, s)
        .map_err(|e| SigError::Malformed(format!("signature: {e}")))?;
    public
        .verify(&signed_data(message), &signature)
        .map_err(|_| SigError::Mismatch)?;
    Ok(public)
}

/// Reads the OpenSSH public keys in `path` (one per line, `authorized_keys` style); P-256 keys
/// only, others are skipped.
pub fn read_public_keys(path: &Path) -> Result<Vec<VerifyingKey>, SigError> {
    let text = std::fs::read_to_string(path).map_err(|e| SigError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut keys = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(position) = fields.clone().position(|f| f == KEY_TYPE) else {
            continue;
        };
        let Some(encoded) = fields.nth(position + 1) else {
            continue;
        };
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        let mut wire = Wire(&blob);
        if wire.string().ok() == Some(KEY_TYPE.as_bytes())
            && wire.string().ok() == Some(CURVE.as_bytes())
            && let Ok(point) = wire.string()
            && let Ok(key) = VerifyingKey::from_sec1_bytes(point)
        {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(SigError::Key {
            path: path.display().to_string(),
            message: format!("holds no {KEY_TYPE} public key"),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let armored = sign(&key, b"manifest bytes");
        assert!(armored.starts_with(BEGIN) && armored.trim_end().ends_with(END));
        let signer = verify(&armored, b"manifest bytes").unwrap();
        assert_eq!(fingerprint(&signer), fingerprint(key.verifying_key()));
        assert!(matches!(
            verify(&armored, b"manifest bytez"),
            Err(SigError::Mismatch)
        ));
        assert!(matches!(
            verify("not a signature", b"x"),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn mpints_are_minimal_and_positive() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0, 0x80, 1]);
        assert_eq!(out, [0, 0, 0, 3, 0, 0x80, 1]);
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0x7f]);
        assert_eq!(out, [0, 0, 0, 1, 0x7f]);
    }
}
