//! Reads as data. An action declares what it needs to read ([`Read`]); the executor performs
//! the reads through the cluster it plans against (the overlay, so earlier steps' writes are
//! seen) and records what they found in [`Observed`]; the action then decides from plain
//! values. A decision that needs a read not made yet says so ([`Missing`]) and is asked again
//! once it is made, as a Skyframe function is restarted when a dependency is missing: the reads
//! an action declares are, by construction, the reads its decision uses.

use serde_json::Value;

use super::object::{ObjectRef, Selector};
use super::{Cluster, ClusterError, kinds};

/// One thing an action reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// One object by reference (that it does not exist is an answer).
    Get(ObjectRef),
    /// The objects of a kind in one namespace (or all) that a selector matches.
    List {
        kind: &'static str,
        namespace: Option<String>,
        selector: Selector,
    },
    /// The pods bound to a node.
    PodsOnNode(String),
    /// Whether the API server serves a kind (a CRD or an optional API).
    Serves(&'static str),
    /// Public keys from files (cosign keys named by a playbook).
    KeyFiles(Vec<String>),
    /// An image resolved to its digest and its cosign signature checked against keys
    /// (`(name, PEM)`), through a registry (its credentials from a docker config).
    Signature {
        image: String,
        keys: Vec<(String, String)>,
        registry_config: Option<String>,
    },
    /// What the API server answers to creating this object with dryRun=All: a probe of
    /// admission, which stores nothing.
    Probe(Value),
    /// Whether the API server still authenticates a token (TokenReview).
    TokenReview(Token),
    /// What an identity with its groups may do (a SubjectAccessReview per permission).
    SubjectAccess {
        user: super::UserInfo,
        checks: Vec<super::Access>,
    },
    /// An evidence bundle on the local disk, re-hashed against its manifest (answered by the
    /// executor, which owns the evidence store).
    Bundle(String),
}

/// A bearer token, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// Keys as `(name, PEM)`, or why a file is not one.
pub type KeyFiles = Result<Vec<(String, String)>, String>;

/// What a read found.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Object(Option<Value>),
    Objects(Vec<Value>),
    Served(bool),
    /// The keys as `(name, PEM)`, or why a file is not a key.
    Keys(KeyFiles),
    /// The digest and the key that verified it, or why the image is refused.
    Signature(Result<Signed, String>),
    /// Why the API server refused the probe (`None`: it would have created it).
    Refusal(Option<String>),
    /// Whether the token is still authenticated.
    Authenticated(bool),
    /// The verdict on each permission asked about, in order.
    Access(Vec<super::AccessVerdict>),
    /// The bundle's check (as its JSON), or why it could not be checked.
    Bundle(Result<Value, String>),
}

/// An image whose signature held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub digest: String,
    /// The name of the key that verified it.
    pub key: String,
}

/// The reads a decision needs before it can be made.
#[derive(Clone, Debug, PartialEq)]
pub struct Missing(pub Vec<Read>);

/// Everything read so far for one decision. Object reads are indexed by reference (a step over
/// hundreds of pods reads each of them); the few other reads are kept in a list.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    simulated: bool,
    objects: std::collections::HashMap<ObjectRef, Option<Value>>,
    answers: Vec<(Read, Answer)>,
}

impl Observed {
    /// Nothing read yet. `simulated`: the cluster is a snapshot, where no controller, scheduler
    /// or registry runs.
    pub fn new(simulated: bool) -> Self {
        Observed {
            simulated,
            ..Observed::default()
        }
    }

    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// Records what a read found (the executor's, and a test's, way in).
    pub fn record(&mut self, read: Read, answer: Answer) {
        match (read, answer) {
            (Read::Get(r), Answer::Object(object)) => {
                self.objects.insert(r, object);
            }
            (read, answer) => {
                self.answers.retain(|(r, _)| *r != read);
                self.answers.push((read, answer));
            }
        }
    }

    pub fn has(&self, read: &Read) -> bool {
        match read {
            Read::Get(r) => self.objects.contains_key(r),
            read => self.answers.iter().any(|(r, _)| r == read),
        }
    }

    fn answer(&self, read: Read) -> Result<&Answer, Missing> {
        self.answers
            .iter()
            .find(|(r, _)| *r == read)
            .map(|(_, a)| a)
            .ok_or_else(|| Missing(vec![read]))
    }

    /// One object as it is (`None`: it does not exist).
    pub fn get(&self, r: &ObjectRef) -> Result<Option<&Value>, Missing> {
        self.objects
            .get(r)
            .map(Option::as_ref)
            .ok_or_else(|| Missing(vec![Read::Get(r.clone())]))
    }

    /// Several objects at once: every one not read yet is asked for in one round.
    pub fn get_all(&self, refs: &[ObjectRef]) -> Result<Vec<Option<&Value>>, Missing> {
        let missing: Vec<Read> = refs
            .iter()
            .filter(|r| !self.objects.contains_key(*r))
            .map(|r| Read::Get(r.clone()))
            .collect();
        if !missing.is_empty() {
            return Err(Missing(missing));
        }
        refs.iter().map(|r| self.get(r)).collect()
    }

    /// The objects of `kind` in `namespace` (or all) matching `selector`.
    pub fn list(
        &self,
        kind: &'static str,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<&[Value], Missing> {
        let read = Read::List {
            kind,
            namespace: namespace.map(str::to_string),
            selector: selector.clone(),
        };
        match self.answer(read)? {
            Answer::Objects(objects) => Ok(objects),
            other => unreachable!("a list answered with {other:?}"),
        }
    }

    /// Every list read so far: its kind, namespace, selector and what it found.
    pub fn lists(&self) -> impl Iterator<Item = (&'static str, Option<&str>, &Selector, &[Value])> {
        self.answers
            .iter()
            .filter_map(|(read, answer)| match (read, answer) {
                (
                    Read::List {
                        kind,
                        namespace,
                        selector,
                    },
                    Answer::Objects(objects),
                ) => Some((*kind, namespace.as_deref(), selector, objects.as_slice())),
                _ => None,
            })
    }

    /// The pods bound to `node`.
    pub fn pods_on_node(&self, node: &str) -> Result<&[Value], Missing> {
        match self.answer(Read::PodsOnNode(node.to_string()))? {
            Answer::Objects(objects) => Ok(objects),
            other => unreachable!("pods on a node answered with {other:?}"),
        }
    }

    /// Whether the API server serves `kind`.
    pub fn serves(&self, kind: &'static str) -> Result<bool, Missing> {
        match self.answer(Read::Serves(kind))? {
            Answer::Served(served) => Ok(*served),
            other => unreachable!("a served kind answered with {other:?}"),
        }
    }

    /// The keys in `paths`, as `(name, PEM)`.
    pub fn key_files(&self, paths: &[String]) -> Result<&KeyFiles, Missing> {
        match self.answer(Read::KeyFiles(paths.to_vec()))? {
            Answer::Keys(keys) => Ok(keys),
            other => unreachable!("key files answered with {other:?}"),
        }
    }

    /// Whether `image` is signed by one of `keys`.
    pub fn signature(
        &self,
        image: &str,
        keys: &[(String, String)],
        registry_config: Option<&str>,
    ) -> Result<&Result<Signed, String>, Missing> {
        let read = Read::Signature {
            image: image.to_string(),
            keys: keys.to_vec(),
            registry_config: registry_config.map(str::to_string),
        };
        match self.answer(read)? {
            Answer::Signature(signed) => Ok(signed),
            other => unreachable!("a signature answered with {other:?}"),
        }
    }

    /// Why the API server refuses to create `object` (`None`: it would create it).
    pub fn probe(&self, object: &Value) -> Result<Option<&str>, Missing> {
        match self.answer(Read::Probe(object.clone()))? {
            Answer::Refusal(refusal) => Ok(refusal.as_deref()),
            other => unreachable!("a probe answered with {other:?}"),
        }
    }

    /// Whether the API server still authenticates `token`.
    pub fn authenticated(&self, token: &str) -> Result<bool, Missing> {
        match self.answer(Read::TokenReview(Token(token.to_string())))? {
            Answer::Authenticated(yes) => Ok(*yes),
            other => unreachable!("a token review answered with {other:?}"),
        }
    }

    /// What `user` may do of `checks`, in their order.
    pub fn subject_access(
        &self,
        user: &super::UserInfo,
        checks: &[super::Access],
    ) -> Result<&[super::AccessVerdict], Missing> {
        let read = Read::SubjectAccess {
            user: user.clone(),
            checks: checks.to_vec(),
        };
        match self.answer(read)? {
            Answer::Access(verdicts) => Ok(verdicts),
            other => unreachable!("an access review answered with {other:?}"),
        }
    }

    /// An evidence bundle's check, as JSON.
    pub fn bundle(&self, path: &str) -> Result<&Result<Value, String>, Missing> {
        match self.answer(Read::Bundle(path.to_string()))? {
            Answer::Bundle(check) => Ok(check),
            other => unreachable!("a bundle answered with {other:?}"),
        }
    }

    /// Performs `reads` against `cluster` and records what each found. The object reads of
    /// one round go together (a list per namespace and kind where there are many); `local`
    /// answers what is not the cluster's to answer (an evidence bundle).
    pub async fn perform(
        &mut self,
        cluster: &dyn Cluster,
        local: &(dyn Fn(&Read) -> Option<Answer> + Sync),
        reads: Vec<Read>,
    ) -> Result<(), ClusterError> {
        let gets: Vec<ObjectRef> = reads
            .iter()
            .filter_map(|read| match read {
                Read::Get(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        if !gets.is_empty() {
            let found = super::read::read_many(cluster, &gets).await?;
            for r in gets {
                // A reference asked twice in one round is answered by the same read.
                let object = found.get(&r).cloned().flatten();
                self.record(Read::Get(r), Answer::Object(object));
            }
        }
        for read in reads {
            let answer = match &read {
                Read::Get(_) => continue,
                Read::List {
                    kind,
                    namespace,
                    selector,
                } => Answer::Objects(
                    cluster
                        .list(known(kind), namespace.as_deref(), selector)
                        .await?,
                ),
                Read::PodsOnNode(node) => Answer::Objects(cluster.pods_on_node(node).await?),
                Read::Serves(kind) => Answer::Served(cluster.serves(known(kind)).await?),
                Read::KeyFiles(paths) => Answer::Keys(key_files(paths)),
                Read::Signature {
                    image,
                    keys,
                    registry_config,
                } => Answer::Signature(signature(image, keys, registry_config.as_deref()).await),
                Read::Probe(object) => Answer::Refusal(
                    match cluster.create(object, super::WriteMode::DryRun).await {
                        Ok(_) => None,
                        Err(e) => Some(e.to_string()),
                    },
                ),
                Read::TokenReview(token) => {
                    Answer::Authenticated(cluster.review_token(&token.0).await?.authenticated)
                }
                Read::SubjectAccess { user, checks } => {
                    Answer::Access(cluster.review_subject_access(user, checks).await?)
                }
                Read::Bundle(_) => match local(&read) {
                    Some(answer) => answer,
                    None => Answer::Bundle(Err("no evidence store here".into())),
                },
            };
            self.record(read, answer);
        }
        Ok(())
    }
}

fn known(kind: &'static str) -> &'static kinds::Kind {
    kinds::lookup(kind).expect("reads name known kinds")
}

fn key_files(paths: &[String]) -> KeyFiles {
    paths
        .iter()
        .map(|path| {
            let key = crate::registry::cosign::Key::from_file(std::path::Path::new(path))?;
            Ok((key.name, key.pem))
        })
        .collect()
}

/// Resolves the image and checks its signature; every failure is a refusal of the image.
async fn signature(
    image: &str,
    keys: &[(String, String)],
    registry_config: Option<&str>,
) -> Result<Signed, String> {
    use crate::registry::{ImageRef, Registry, cosign};
    let reference = ImageRef::parse(image).map_err(|e| e.to_string())?;
    let keys: Vec<cosign::Key> = keys
        .iter()
        .map(|(name, pem)| cosign::Key::from_pem(name, pem))
        .collect::<Result<_, _>>()?;
    let registry =
        Registry::new(registry_config.map(std::path::Path::new)).map_err(|e| e.to_string())?;
    let digest = registry
        .resolve(&reference)
        .await
        .map_err(|e| e.to_string())?;
    let verified = cosign::verify(&registry, &reference, &digest, &keys)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Signed {
        digest,
        key: verified.key,
    })
}

/// An error a decision returns, which can say it needs reads first.
pub trait Needing: From<ClusterError> {
    /// The reads it needs, when that is why it stopped.
    fn needed(&self) -> Option<&[Read]>;
    /// A decision that asks again for reads it was given: a bug, said plainly.
    fn asks_again(reads: Vec<Read>) -> Self;
}

/// Runs `decision` over what is read from `cluster`, making each round of reads it asks for,
/// until it decides (or fails for another reason).
pub async fn decide<T, E: Needing>(
    cluster: &dyn Cluster,
    decision: impl Fn(&Observed) -> Result<T, E>,
) -> Result<T, E> {
    decide_with(cluster, &|_| None, decision).await
}

/// [`decide`], with `local` answering the reads that are not the cluster's (the executor's
/// evidence store).
pub async fn decide_with<T, E: Needing>(
    cluster: &dyn Cluster,
    local: &(dyn Fn(&Read) -> Option<Answer> + Sync),
    decision: impl Fn(&Observed) -> Result<T, E>,
) -> Result<T, E> {
    decide_observed(cluster, local, decision)
        .await
        .map(|(decided, _)| decided)
}

/// [`decide_with`], returning what was read for the decision too (a plan keeps the
/// collections it was decided from).
pub async fn decide_observed<T, E: Needing>(
    cluster: &dyn Cluster,
    local: &(dyn Fn(&Read) -> Option<Answer> + Sync),
    decision: impl Fn(&Observed) -> Result<T, E>,
) -> Result<(T, Observed), E> {
    let mut seen = Observed::new(cluster.info().kind == "simulated");
    loop {
        let reads = match decision(&seen) {
            Err(e) => match e.needed() {
                Some(reads) => reads.to_vec(),
                None => return Err(e),
            },
            Ok(decided) => return Ok((decided, seen)),
        };
        if reads.iter().all(|read| seen.has(read)) {
            return Err(E::asks_again(reads));
        }
        seen.perform(cluster, local, reads).await?;
    }
}
