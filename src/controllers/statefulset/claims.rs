//! The claims of one ordinal, from `volumeClaimTemplates`: created before the pod, never
//! deleted by scale-down or pod replacement unless `persistentVolumeClaimRetentionPolicy`
//! says Delete (then owned by the set or the condemned pod, and collected with it).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::identity::claim_name;
use crate::controllers::obj_ref;
use crate::controllers::pods::owner_ref;
use crate::controllers::runtime::ReconcileError;
use crate::controllers::Shared;

fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// A non-controller owner reference (claims are only collected with their owner).
fn owned_by(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        controller: None,
        ..owner_ref(api_version, kind, meta)
    }
}

/// The set's claim templates with the names of their claims for `ordinal`.
fn templates(set: &StatefulSet, ordinal: i32) -> Vec<(&PersistentVolumeClaim, String)> {
    set.spec
        .iter()
        .flat_map(|s| s.volume_claim_templates.iter().flatten())
        .map(|t| {
            let template = t.metadata.name.as_deref().unwrap_or_default();
            (t, claim_name(template, &set.name_any(), ordinal))
        })
        .collect()
}

/// Creates the missing claims of `ordinal`.
pub async fn ensure(
    shared: &Shared,
    set: &StatefulSet,
    ordinal: i32,
) -> Result<(), ReconcileError> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
    let (when_deleted, _) = policy(set);
    let selector = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    for (t, name) in templates(set, ordinal) {
        if shared
            .claims
            .store
            .get(&obj_ref(Some(&ns), &name))
            .is_some()
        {
            continue;
        }
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.extend(selector.clone());
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                owner_references: when_deleted
                    .then(|| vec![owned_by("apps/v1", "StatefulSet", &set.metadata)]),
                ..Default::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => shared.recorder.record(
                set,
                false,
                "SuccessfulCreate",
                format!(
                    "create Claim {name} Pod {}-{ordinal} in StatefulSet {} success",
                    set.name_any(),
                    set.name_any()
                ),
            ),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// With `whenScaled: Delete`, a condemned pod's claims become its dependents before it goes.
pub async fn release_with(
    shared: &Shared,
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
) -> Result<(), ReconcileError> {
    if !policy(set).1 {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
    let mut owners = vec![owned_by("v1", "Pod", &pod.metadata)];
    if policy(set).0 {
        owners.push(owned_by("apps/v1", "StatefulSet", &set.metadata));
    }
    for (_, name) in templates(set, ordinal) {
        let patch = json!({"metadata": {"ownerReferences": owners}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
