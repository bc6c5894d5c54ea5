//! Evidence manifests signed so that stock tools verify them: OpenSSH's SSHSIG format
//! (`ssh-keygen -Y sign` / `-Y verify`, PROTOCOL.sshsig) with an ECDSA P-256 key
//! (`ecdsa-sha2-nistp256`) and SHA-512 message hashing, through the `ssh-key` crate. A
//! responder verifies a bundle with
//!
//! ```text
//! ssh-keygen -Y verify -f allowed_signers -I <identity> -n contain-evidence \
//!   -s manifest.json.sig < manifest.json
//! ```
//!
//! and `contain evidence verify` checks the same signature itself.

use std::path::Path;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use ssh_key::private::{EcdsaKeypair, EcdsaPrivateKey};
use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace of evidence signatures: a signature made for anything else never
/// verifies as one.
pub const NAMESPACE: &str = "contain-evidence";
/// The message hash every evidence signature uses (what `ssh-keygen -Y sign` uses too).
const HASH: HashAlg = HashAlg::Sha512;

#[derive(Debug, thiserror::Error)]
pub enum SigError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    #[error("the signature does not match the manifest (altered, or signed for another file)")]
    Mismatch,
}

/// The key in SSH's own form.
fn public_key(key: &VerifyingKey, comment: &str) -> PublicKey {
    PublicKey::new(KeyData::Ecdsa(EcdsaPublicKey::from(key)), comment)
}

/// `SHA256:…`, as `ssh-keygen -l` prints a key's fingerprint.
pub fn fingerprint(key: &VerifyingKey) -> String {
    public_key(key, "").fingerprint(HashAlg::Sha256).to_string()
}

/// The key as an OpenSSH public-key line (`ecdsa-sha2-nistp256 AAAA… comment`).
pub fn public_line(key: &VerifyingKey, comment: &str) -> String {
    public_key(key, comment)
        .to_openssh()
        .unwrap_or_else(|e| format!("# cannot encode the key: {e}"))
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
pub fn sign(key: &SigningKey, message: &[u8]) -> Result<String, SigError> {
    let keypair = EcdsaKeypair::NistP256 {
        public: key.verifying_key().to_encoded_point(false),
        private: EcdsaPrivateKey::from(p256::SecretKey::from(key)),
    };
    PrivateKey::from(keypair)
        .sign(NAMESPACE, HASH, message)
        .and_then(|signature| signature.to_pem(LineEnding::LF))
        .map_err(|e| SigError::Malformed(format!("cannot sign: {e}")))
}

/// Checks an armored SSH signature of `message` made in the evidence namespace; the signer's
/// key when it holds.
pub fn verify(armored: &str, message: &[u8]) -> Result<VerifyingKey, SigError> {
    let signature =
        SshSig::from_pem(armored.trim()).map_err(|e| SigError::Malformed(e.to_string()))?;
    if signature.namespace() != NAMESPACE {
        return Err(SigError::Malformed(format!(
            "signed for namespace `{}`, not `{NAMESPACE}`",
            signature.namespace()
        )));
    }
    if signature.hash_alg() != HASH {
        return Err(SigError::Malformed(format!(
            "hash `{}`, not {HASH}",
            signature.hash_alg()
        )));
    }
    let KeyData::Ecdsa(public @ EcdsaPublicKey::NistP256(_)) = signature.public_key() else {
        return Err(SigError::Malformed("not an ecdsa-sha2-nistp256 key".into()));
    };
    let key = VerifyingKey::try_from(public)
        .map_err(|e| SigError::Malformed(format!("public key: {e}")))?;
    public_key(&key, "")
        .verify(NAMESPACE, message, &signature)
        .map_err(|_| SigError::Mismatch)?;
    Ok(key)
}

/// Reads the OpenSSH public keys in `path` (one per line, `authorized_keys` style, options
/// before the key allowed); P-256 keys only, others are skipped.
pub fn read_public_keys(path: &Path) -> Result<Vec<VerifyingKey>, SigError> {
    let text = std::fs::read_to_string(path).map_err(|e| SigError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let keys: Vec<VerifyingKey> = text
        .lines()
        .filter_map(|line| {
            // The key starts at its type, wherever options or a principal put it.
            let start = line.find("ecdsa-sha2-nistp256 ")?;
            match PublicKey::from_openssh(&line[start..]).ok()?.key_data() {
                KeyData::Ecdsa(public @ EcdsaPublicKey::NistP256(_)) => {
                    VerifyingKey::try_from(public).ok()
                }
                _ => None,
            }
        })
        .collect();
    if keys.is_empty() {
        return Err(SigError::Key {
            path: path.display().to_string(),
            message: "holds no ecdsa-sha2-nistp256 public key".into(),
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
        let armored = sign(&key, b"manifest bytes").unwrap();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"));
        assert!(armored.trim_end().ends_with("-----END SSH SIGNATURE-----"));
        let signer = verify(&armored, b"manifest bytes").unwrap();
        assert_eq!(fingerprint(&signer), fingerprint(key.verifying_key()));
        assert!(fingerprint(&signer).starts_with("SHA256:"));
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
    fn a_signature_for_another_namespace_is_refused() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let keypair = EcdsaKeypair::NistP256 {
            public: key.verifying_key().to_encoded_point(false),
            private: EcdsaPrivateKey::from(p256::SecretKey::from(&key)),
        };
        let other = PrivateKey::from(keypair)
            .sign("git", HASH, b"m")
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        let refused = verify(&other, b"m").unwrap_err().to_string();
        assert!(refused.contains("namespace `git`"), "{refused}");
    }

    #[test]
    fn public_keys_read_back_from_their_openssh_lines() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed");
        let line = public_line(key.verifying_key(), "responder");
        std::fs::write(
            &path,
            format!("# a comment\nresponder@ir {line}\nssh-ed25519 AAAA other\n"),
        )
        .unwrap();
        let keys = read_public_keys(&path).unwrap();
        assert_eq!(keys, [*key.verifying_key()]);
        std::fs::write(&path, "ssh-ed25519 AAAA other\n").unwrap();
        assert!(read_public_keys(&path).is_err());
    }
}
