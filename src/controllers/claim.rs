//! ControllerRef adoption and release, as upstream's ControllerRefManager (ClaimPods,
//! ClaimReplicaSets): a controller owns the objects whose controller reference names it and
//! that its selector still matches; it adopts matching orphans and releases owned objects
//! whose labels no longer match. Both are patches that carry the object's uid, so an object
//! replaced under the same name is never touched.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::pods::{controller_of, labels, owner_ref, selects};
use super::runtime::{key, ReconcileError};

/// The controller claiming objects.
pub struct Owner<'a> {
    pub resource: ApiResource,
    pub meta: &'a ObjectMeta,
    pub selector: &'a LabelSelector,
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Owned,
    Adopt,
    Release,
    Ignore,
}

fn decide(owner: &Owner, meta: &ObjectMeta) -> Decision {
    let matches = selects(owner.selector, &labels(meta));
    let owner_deleting = owner.meta.deletion_timestamp.is_some();
    match controller_of(meta) {
        Some(r) if Some(&r.uid) != owner.meta.uid.as_ref() => Decision::Ignore,
        // An owner being deleted keeps what it has: its dependents go with it.
        Some(_) if matches || owner_deleting => Decision::Owned,
        Some(_) => Decision::Release,
        None if !matches || owner_deleting || meta.deletion_timestamp.is_some() => Decision::Ignore,
        None if meta.namespace != owner.meta.namespace => Decision::Ignore,
        None => Decision::Adopt,
    }
}

/// The objects of `candidates` the owner controls after adopting and releasing.
pub async fn claim<K>(
    client: &Client,
    owner: &Owner<'_>,
    candidates: Vec<Arc<K>>,
) -> Result<Vec<Arc<K>>, ReconcileError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.meta.namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let mut owned = Vec::new();
    let mut checked = false;
    for obj in candidates {
        let pp = PatchParams::default();
        let patch = match decide(owner, obj.meta()) {
            Decision::Owned => {
                owned.push(obj);
                continue;
            }
            Decision::Ignore => continue,
            Decision::Adopt => {
                if !checked {
                    can_adopt(client, owner).await?;
                    checked = true;
                }
                let r = owner_ref(
                    &owner.resource.api_version,
                    &owner.resource.kind,
                    owner.meta,
                );
                json!({"metadata": {"ownerReferences": [r], "uid": obj.uid()}})
            }
            Decision::Release => json!({"metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": owner.meta.uid}],
                "uid": obj.uid(),
            }}),
        };
        let adopting = patch["metadata"]["ownerReferences"][0]
            .get("$patch")
            .is_none();
        match api
            .patch(&obj.name_any(), &pp, &Patch::Strategic(patch))
            .await
        {
            Ok(updated) if adopting => owned.push(Arc::new(updated)),
            Ok(_) => {}
            // Gone, or replaced by an object of another uid: nothing to claim.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(owned)
}

/// Upstream's recheck before the first adoption: the owner read fresh from the API must be
/// the same object and not being deleted, or a stale cache would adopt for a dead owner.
async fn can_adopt(client: &Client, owner: &Owner<'_>) -> Result<(), ReconcileError> {
    let ns = owner.meta.namespace.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &owner.resource);
    let name = owner.meta.name.clone().unwrap_or_default();
    let fresh = api.get(&name).await?;
    let kind = &owner.resource.kind;
    if fresh.metadata.uid != owner.meta.uid {
        return Err(ReconcileError::Other(format!(
            "original {kind} {ns}/{name} is gone: got uid {:?}, wanted {:?}",
            fresh.metadata.uid, owner.meta.uid
        )));
    }
    if fresh.metadata.deletion_timestamp.is_some() {
        return Err(ReconcileError::Other(format!(
            "{kind} {ns}/{name} has just been deleted at {:?}",
            fresh.metadata.deletion_timestamp
        )));
    }
    Ok(())
}

/// Keys of the owners that may adopt an orphan: same namespace, selector matching its labels.
/// Objects with a controller, or being deleted, map to none.
pub fn orphan_owners<O: Resource>(
    owners: &[Arc<O>],
    orphan: &ObjectMeta,
    selector: impl Fn(&O) -> Option<&LabelSelector>,
) -> Vec<String> {
    if controller_of(orphan).is_some() || orphan.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let have = labels(orphan);
    owners
        .iter()
        .filter(|o| o.meta().namespace == orphan.namespace)
        .filter(|o| selector(o).is_some_and(|s| selects(s, &have)))
        .map(|o| key(o.meta().namespace.as_deref(), &o.name_any()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    fn meta(labels: &[(&str, &str)], controller: Option<&str>) -> ObjectMeta {
        let mut m: ObjectMeta = serde_json::from_value(json!({
            "name": "p", "namespace": "ns", "uid": "pod-uid",
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .expect("meta");
        if let Some(uid) = controller {
            m.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true
            })).expect("ref")]);
        }
        m
    }

    #[test]
    fn adopts_matching_orphans_and_releases_what_stops_matching() {
        let owner_meta: ObjectMeta =
            serde_json::from_value(json!({"name": "rs", "namespace": "ns", "uid": "rs-uid"}))
                .expect("meta");
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: None,
        };
        let owner = Owner {
            resource: ApiResource::erase::<ReplicaSet>(&()),
            meta: &owner_meta,
            selector: &selector,
        };
        let web = [("app", "web")];
        let db = [("app", "db")];
        assert_eq!(decide(&owner, &meta(&web, Some("rs-uid"))), Decision::Owned);
        assert_eq!(
            decide(&owner, &meta(&db, Some("rs-uid"))),
            Decision::Release
        );
        assert_eq!(decide(&owner, &meta(&web, None)), Decision::Adopt);
        assert_eq!(decide(&owner, &meta(&db, None)), Decision::Ignore);
        assert_eq!(decide(&owner, &meta(&web, Some("other"))), Decision::Ignore);
        let mut elsewhere = meta(&web, None);
        elsewhere.namespace = Some("other".into());
        assert_eq!(decide(&owner, &elsewhere), Decision::Ignore);

        let mut dying_meta = owner_meta.clone();
        dying_meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        let dying = Owner {
            meta: &dying_meta,
            ..owner
        };
        assert_eq!(decide(&dying, &meta(&db, Some("rs-uid"))), Decision::Owned);
        assert_eq!(decide(&dying, &meta(&web, None)), Decision::Ignore);
    }
}
