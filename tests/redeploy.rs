//! Clean redeploys against a real local registry (Debian's docker-registry, started by the test
//! command) and the real control plane. The tests push an image and cosign-format signatures
//! they make themselves, then check that only a valid signature for the exact digest lets a
//! redeploy through, and that every refusal leaves the workload untouched.

use base64::Engine;
use contain::cluster::Cluster;
use contain::cluster::object::{self, ObjectRef};
use contain::registry::{ImageRef, Registry, cosign};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};

use crate::harness::{Contain, Live, playbook_file};
use crate::live::{self, Namespace};

fn registry_address() -> String {
    let address =
        std::env::var("CONTAIN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:25000".into());
    let up = std::net::TcpStream::connect(&address).is_ok();
    assert!(
        up,
        "the signed-image tests need the test registry on {address}: run `scripts/test` (or `scripts/registry up`)"
    );
    address
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

fn key_file(key: &SigningKey) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        key.verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap(),
    )
    .unwrap();
    file
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes a small image under `tag` and returns its digest.
async fn push_image(registry: &Registry, image: &ImageRef, tag: &str) -> String {
    let config = registry
        .push_blob(
            image,
            format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\"}}").as_bytes(),
        )
        .await
        .unwrap();
    let layer = registry
        .push_blob(image, format!("layer of {image}:{tag}").as_bytes())
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 0},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 0}]
    });
    registry
        .push_manifest(
            image,
            tag,
            OCI_MANIFEST,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap()
}

/// Pushes a signature for `digest` the way cosign stores it: `payload` signed by `key`, but the
/// blob uploaded is `uploaded` (normally the payload itself; a tampered one to test that).
async fn push_signature(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &SigningKey,
    payload: &[u8],
    uploaded: &[u8],
) {
    let signature: Signature = key.sign(payload);
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let config = registry.push_blob(image, b"{}").await.unwrap();
    let blob = registry.push_blob(image, uploaded).await.unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": cosign::PAYLOAD_MEDIA_TYPE, "digest": blob, "size": uploaded.len(),
                    "annotations": {cosign::SIGNATURE_ANNOTATION: encoded}}]
    });
    registry
        .push_manifest(
            image,
            &cosign::signature_tag(digest),
            OCI_MANIFEST,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();
}

fn payload_for(image: &ImageRef, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&cosign::payload(
        &format!("{}/{}", image.registry, image.repository),
        digest,
    ))
    .unwrap()
}

const REDEPLOY: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: redeploy-test}
params:
  namespace: {type: string, required: true}
  image: {type: string, required: true}
  key: {type: string, required: true}
steps:
  - id: redeploy
    action: workload.redeploy
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with:
      containers: [{name: web, image: "{{ params.image }}"}]
      keys: ["{{ params.key }}"]
      rollout_timeout: 90s
    evidence: {waived: test workload}
"#;

struct Run {
    live: Live,
    playbook: tempfile::NamedTempFile,
}

impl Run {
    fn new() -> Self {
        Run {
            live: Live::new(),
            playbook: playbook_file(REDEPLOY),
        }
    }

    fn contain(&self) -> Contain {
        self.live.contain()
    }

    fn redeploy(
        &self,
        namespace: &str,
        image: &str,
        key: &std::path::Path,
    ) -> crate::harness::Outcome {
        self.contain()
            .args(["run", "--yes", &self.playbook.path().display().to_string()])
            .args([
                "--set",
                &format!("namespace={namespace}"),
                "--set",
                &format!("image={image}"),
                "--set",
                &format!("key={}", key.display()),
            ])
            .run()
    }
}

async fn image_of(
    cluster: &contain::cluster::kube::KubeCluster,
    namespace: &str,
) -> (Value, String) {
    let deploy = cluster
        .get(&ObjectRef::new("Deployment", Some(namespace), "web"))
        .await
        .unwrap()
        .unwrap();
    let image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    (deploy, image)
}

#[tokio::test]
async fn a_verified_redeploy_completes_its_rollout_and_rolls_back() {
    let address = registry_address();
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "redeploy").await;
    live::deployment(&cluster, &ns.name, "web", 2).await;
    let (_, original) = image_of(&cluster, &ns.name).await;
    let registry = Registry::new(None).unwrap();
    let image = ImageRef::parse(&format!("{address}/{}/app:v2", ns.name)).unwrap();
    let digest = push_image(&registry, &image, "v2").await;
    let key = signing_key(7);
    let payload = payload_for(&image, &digest);
    push_signature(&registry, &image, &digest, &key, &payload, &payload).await;
    let key_path = key_file(&key);

    let verified = Contain::new()
        .args([
            "verify-image",
            &image.to_string(),
            "--key",
            &key_path.path().display().to_string(),
        ])
        .run();
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains(&digest), "{}", verified.stdout);

    let run = Run::new();
    let out = run.redeploy(&ns.name, &image.to_string(), key_path.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let pinned = image.pinned(&digest);
    assert!(
        out.stdout
            .contains(&format!("\"{original}\" → \"{pinned}\"")),
        "the plan shows old → new: {}",
        out.stdout
    );
    let (deploy, now) = image_of(&cluster, &ns.name).await;
    assert_eq!(now, pinned);
    assert!(
        contain::action::rollout::status(&deploy).0,
        "the rollout completed: {}",
        deploy["status"]
    );
    let pods = live::running_pods(&cluster, &ns.name, "web", 2).await;
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == json!(pinned)),
        "every pod runs the pinned image"
    );

    let runs = run
        .contain()
        .args(["-o", "json", "journal", "ls"])
        .run()
        .json();
    let run_id = runs[0]["run"].as_str().unwrap().to_string();
    let rolled = run.contain().args(["rollback", "--yes", &run_id]).run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);
    let (deploy, restored) = image_of(&cluster, &ns.name).await;
    assert_eq!(restored, original, "the previous pod template is back");
    assert!(contain::action::rollout::status(&deploy).0);
}

#[tokio::test]
async fn bad_images_are_refused_and_nothing_is_written() {
    let address = registry_address();
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "refuse").await;
    live::deployment(&cluster, &ns.name, "web", 1).await;
    let registry = Registry::new(None).unwrap();
    let trusted = signing_key(7);
    let key_path = key_file(&trusted);
    let repo = |name: &str| ImageRef::parse(&format!("{address}/{}/{name}:v1", ns.name)).unwrap();

    // Unsigned.
    let unsigned = repo("unsigned");
    push_image(&registry, &unsigned, "v1").await;
    // Signed, by a key that is not configured.
    let wrong_key = repo("wrong-key");
    let digest = push_image(&registry, &wrong_key, "v1").await;
    let payload = payload_for(&wrong_key, &digest);
    push_signature(
        &registry,
        &wrong_key,
        &digest,
        &signing_key(9),
        &payload,
        &payload,
    )
    .await;
    // A payload altered after signing.
    let tampered = repo("tampered");
    let digest = push_image(&registry, &tampered, "v1").await;
    let payload = payload_for(&tampered, &digest);
    let altered = String::from_utf8(payload.clone())
        .unwrap()
        .replace("\"optional\":null", "\"optional\":{\"by\":\"attacker\"}")
        .into_bytes();
    push_signature(&registry, &tampered, &digest, &trusted, &payload, &altered).await;
    // A valid signature, but over a payload for another digest.
    let elsewhere = repo("elsewhere");
    let digest = push_image(&registry, &elsewhere, "v1").await;
    let other = push_image(&registry, &elsewhere, "v0").await;
    let payload = payload_for(&elsewhere, &other);
    push_signature(&registry, &elsewhere, &digest, &trusted, &payload, &payload).await;
    // A registry nobody listens on.
    let unreachable = format!("127.0.0.1:1/{}/app:v1", ns.name);

    let cases = [
        (unsigned.to_string(), "is not signed"),
        (
            wrong_key.to_string(),
            "does not verify with any configured key",
        ),
        (
            tampered.to_string(),
            "does not verify with any configured key",
        ),
        (elsewhere.to_string(), "for another image"),
        (unreachable.clone(), "is unreachable"),
    ];
    let (before, _) = image_of(&cluster, &ns.name).await;
    for (image, reason) in cases {
        let run = Run::new();
        let out = run.redeploy(&ns.name, &image, key_path.path());
        // Refused while planning, before the first write of the run.
        assert_eq!(out.code, 5, "{image}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .contains("cannot be planned, so nothing is written"),
            "{image}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(reason),
            "{image}: expected `{reason}` in:\n{}",
            out.stdout
        );
        let (after, _) = image_of(&cluster, &ns.name).await;
        assert_eq!(
            object::resource_version(&after),
            object::resource_version(&before),
            "{image}: the Deployment was written"
        );
        let check = Contain::new()
            .args([
                "verify-image",
                &image,
                "--key",
                &key_path.path().display().to_string(),
            ])
            .run();
        let expected = if image == unreachable { 4 } else { 6 };
        assert_eq!(
            check.code, expected,
            "verify-image {image}: {}",
            check.stderr
        );
    }
}
