//! ReplicaSets of a Deployment: finding them, the template hash, creating the new one, and
//! the revision and replica annotations.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::{
    DeploymentController, DESIRED_REPLICAS, HASH_LABEL, MAX_REPLICAS, REVISION, REVISION_HISTORY,
};
use crate::controllers::claim::{claim, Owner};
use crate::controllers::pods::{controlled_by, owner_ref};
use crate::controllers::runtime::ReconcileError;

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSets this Deployment controls after adopting matching orphans and releasing
/// those its selector no longer matches.
pub async fn claimed(
    c: &DeploymentController,
    d: &Deployment,
) -> Result<Vec<Arc<ReplicaSet>>, ReconcileError> {
    let ns = d.namespace();
    let candidates = c
        .shared
        .replicasets
        .store
        .state()
        .into_iter()
        .filter(|rs| rs.namespace() == ns)
        .collect();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let owner = Owner {
        resource: ApiResource::erase::<Deployment>(&()),
        meta: &d.metadata,
        selector: &selector,
    };
    claim(&c.shared.client, &owner, candidates).await
}

/// The ReplicaSets this Deployment controls, as cached.
pub fn owned(c: &DeploymentController, d: &Deployment) -> Vec<Arc<ReplicaSet>> {
    let uid = d.uid().unwrap_or_default();
    let ns = d.namespace();
    c.shared
        .replicasets
        .store
        .state()
        .into_iter()
        .filter(|rs| rs.namespace() == ns && controlled_by(&rs.metadata, &uid))
        .collect()
}

/// The template without the pod-template-hash label: what identifies a rollout revision.
fn canonical(t: &PodTemplateSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
                m.remove("labels");
            }
        }
    }
    if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
        if m.is_empty() {
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
            }
        }
    }
    v
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// The ReplicaSet running the Deployment's current template (the oldest if several).
pub fn find_new(d: &Deployment, rss: &[Arc<ReplicaSet>]) -> Option<Arc<ReplicaSet>> {
    let want = canonical(&template(d));
    let mut matching: Vec<&Arc<ReplicaSet>> = rss
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| canonical(t) == want)
        })
        .collect();
    matching.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    matching.first().map(|rs| (*rs).clone())
}

/// Upstream's SafeEncodeString alphabet (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a of the canonical template (and the collision count), encoded like upstream.
pub fn template_hash(t: &PodTemplateSpec, collisions: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(canonical(t).to_string().as_bytes());
    if let Some(c) = collisions {
        feed(c.to_string().as_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

pub fn max_surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    super::rolling::max_surge_and_unavailable(d)
}

/// The annotations a ReplicaSet of `d` carries at `revision`.
fn rs_annotations(
    d: &Deployment,
    revision: i64,
    old: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, _) = max_surge_and_unavailable(d);
    a.insert(REVISION.into(), revision.to_string());
    a.insert(DESIRED_REPLICAS.into(), want.to_string());
    a.insert(MAX_REPLICAS.into(), (want + surge).to_string());
    if let Some(old) = old {
        let prev = old.get(REVISION).cloned().unwrap_or_default();
        if !prev.is_empty() && prev != revision.to_string() {
            let mut history: Vec<String> = old
                .get(REVISION_HISTORY)
                .map(|h| {
                    h.split(',')
                        .map(String::from)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            history.push(prev);
            a.insert(REVISION_HISTORY.into(), history.join(","));
        } else if let Some(h) = old.get(REVISION_HISTORY) {
            a.insert(REVISION_HISTORY.into(), h.clone());
        }
    }
    a
}

/// Creates the new ReplicaSet with `replicas`; `Ok(None)` on a hash collision (the
/// Deployment's collisionCount was raised; the next sync uses another name).
pub async fn create_new(
    c: &DeploymentController,
    d: &Deployment,
    revision: i64,
    replicas: i32,
) -> Result<Option<ReplicaSet>, ReconcileError> {
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let mut tmpl = template(d);
    let hash = template_hash(&tmpl, collisions);
    let tm = tmpl.metadata.get_or_insert_with(Default::default);
    tm.labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let labels = tm.labels.clone();
    let mut selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let spec = d.spec.clone().unwrap_or_default();
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels,
            annotations: Some(rs_annotations(d, revision, None)),
            owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &d.metadata)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(tmpl),
        }),
        status: None,
    };
    let api: Api<ReplicaSet> =
        Api::namespaced(c.shared.client.clone(), &d.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            c.shared.recorder.record(
                d,
                false,
                "ScalingReplicaSet",
                format!(
                    "Scaled up replica set {} from 0 to {replicas}",
                    created.name_any()
                ),
            );
            Ok(Some(created))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A ReplicaSet of that name with another template: a hash collision.
            let existing = api.get(&rs.name_any()).await?;
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| canonical(t) == canonical(&template(d)));
            if same && controlled_by(&existing.metadata, &d.uid().unwrap_or_default()) {
                return Ok(Some(existing));
            }
            let api_d: Api<Deployment> =
                Api::namespaced(c.shared.client.clone(), &d.namespace().unwrap_or_default());
            let next = collisions.unwrap_or(0) + 1;
            api_d
                .patch_status(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": next}})),
                )
                .await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `replicas` and the Deployment-derived annotations (revision, desired and max
/// replicas, copied annotations) on `rs` if they differ.
pub async fn update(
    c: &DeploymentController,
    d: &Deployment,
    rs: &ReplicaSet,
    replicas: i32,
    revision: i64,
) -> Result<bool, ReconcileError> {
    let want = rs_annotations(d, revision, rs.metadata.annotations.as_ref());
    let same_annotations = want.iter().all(|(k, v)| rs.annotations().get(k) == Some(v));
    if replicas == self::replicas(rs) && same_annotations {
        return Ok(false);
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(c.shared.client.clone(), &rs.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": want}, "spec": {"replicas": replicas}});
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    let old = self::replicas(rs);
    if old != replicas {
        let verb = if replicas > old { "up" } else { "down" };
        c.shared.recorder.record(
            d,
            false,
            "ScalingReplicaSet",
            format!(
                "Scaled {verb} replica set {} from {old} to {replicas}",
                rs.name_any()
            ),
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_its_own_label_and_follows_collisions() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).expect("t");
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert(HASH_LABEL.into(), "abc".into()));
        assert_eq!(template_hash(&t, None), template_hash(&labelled, None));
        assert_ne!(template_hash(&t, None), template_hash(&t, Some(1)));
        assert!(template_hash(&t, None)
            .bytes()
            .all(|b| ALPHABET.contains(&b)));
    }
}
