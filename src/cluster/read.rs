//! Reading many objects at once, as a step over hundreds of pods must (its stale check and its
//! verification re-read every object it writes): one list per namespace and kind where the
//! step names several objects there, a GET for the rest, several requests in flight.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde_json::Value;

use super::object::{self, ObjectRef, Selector};
use super::{BoxFuture, Cluster, ClusterError, kinds};

/// From this many objects of one kind in one namespace, one list is cheaper than their GETs.
const LIST_FROM: usize = 8;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;

/// Each object as it is now (`None`: it does not exist).
pub async fn read_many(
    cluster: &dyn Cluster,
    refs: &[ObjectRef],
) -> Result<HashMap<ObjectRef, Option<Value>>, ClusterError> {
    let mut groups: BTreeMap<(&str, Option<&str>), Vec<&ObjectRef>> = BTreeMap::new();
    for r in refs {
        groups
            .entry((r.kind.as_str(), r.namespace.as_deref()))
            .or_default()
            .push(r);
    }
    type Found = Result<Vec<(ObjectRef, Option<Value>)>, ClusterError>;
    let mut reads: Vec<BoxFuture<'_, Found>> = Vec::new();
    for ((kind, namespace), members) in groups {
        match kinds::lookup(kind) {
            Some(kind) if members.len() >= LIST_FROM => {
                reads.push(Box::pin(async move {
                    let listed = cluster.list(kind, namespace, &Selector::default()).await?;
                    let mut by_name: HashMap<String, Value> = listed
                        .into_iter()
                        .filter_map(|o| Some((object::name(&o)?.to_string(), o)))
                        .collect();
                    Ok(members
                        .into_iter()
                        .map(|r| (r.clone(), by_name.remove(&r.name)))
                        .collect())
                }));
            }
            _ => {
                for r in members {
                    reads.push(Box::pin(async move {
                        Ok(vec![(r.clone(), cluster.get(r).await?)])
                    }));
                }
            }
        }
    }
    let mut found = HashMap::with_capacity(refs.len());
    let mut pending = futures::stream::iter(reads).buffer_unordered(IN_FLIGHT);
    while let Some(read) = pending.next().await {
        found.extend(read?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::sim::SimCluster;
    use crate::source::Source;

    #[tokio::test]
    async fn many_objects_come_back_by_list_and_few_by_get() {
        let mut text = String::from("kind: Namespace\nmetadata: {name: a}\n");
        for i in 0..10 {
            text.push_str(&format!(
                "---\nkind: Pod\nmetadata: {{name: p{i}, namespace: a}}\n"
            ));
        }
        text.push_str("---\nkind: Namespace\nmetadata: {name: b}\n---\nkind: Pod\nmetadata: {name: q, namespace: b}\n");
        let sim = SimCluster::load(&Source::new("s.yaml", text)).unwrap();
        let mut refs: Vec<ObjectRef> = (0..10)
            .map(|i| ObjectRef::new("Pod", Some("a"), &format!("p{i}")))
            .collect();
        refs.push(ObjectRef::new("Pod", Some("a"), "gone"));
        refs.push(ObjectRef::new("Pod", Some("b"), "q"));
        let found = read_many(&sim, &refs).await.unwrap();
        assert_eq!(found.len(), 12);
        assert!(found[&refs[3]].is_some());
        assert!(found[&refs[10]].is_none(), "an absent object reads as None");
        assert_eq!(object::name(found[&refs[11]].as_ref().unwrap()), Some("q"));
    }
}
