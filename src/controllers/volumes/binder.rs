//! Binding claims to volumes and releasing volumes whose claim is gone.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::class::{default_class, waits_for_consumer, SELECTED_NODE};
use crate::api::registry::core::persistentvolumeclaim::PROTECTION as CLAIM_PROTECTION;
use crate::controllers::runtime::{split, ReconcileResult};
use crate::controllers::shared::{obj_ref, Shared};
use crate::k8s::quantity::parse as quantity;

const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";

fn storage(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i64 {
    q.and_then(|q| quantity(&q.0, 1.0)).unwrap_or(0)
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claimed_by(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    v.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.namespace == c.namespace()
                && r.name.as_deref() == Some(&c.name_any())
                && r.uid.as_ref().is_none_or(|u| Some(u) == c.uid().as_ref())
        })
}

/// Could `v` serve `c`: Available, same class, large enough, every requested access mode.
fn matches(v: &PersistentVolume, c: &PersistentVolumeClaim, class: &str) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    let want = storage(
        cs.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    );
    let have = storage(vs.capacity.as_ref().and_then(|c| c.get("storage")));
    let modes = vs.access_modes.clone().unwrap_or_default();
    vs.claim_ref.is_none()
        && matches!(phase_of_volume(v), "" | "Available" | "Pending")
        && vs.storage_class_name.as_deref().unwrap_or("") == class
        && have >= want
        && cs.access_modes.iter().flatten().all(|m| modes.contains(m))
        && vs.volume_mode == cs.volume_mode
}

pub async fn sync_claim(shared: &Shared, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(claim) = shared
        .claims
        .store
        .get(&obj_ref::<PersistentVolumeClaim>(ns, name))
    else {
        return Ok(None);
    };
    let ns = ns.unwrap_or("default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), ns);
    if claim.metadata.deletion_timestamp.is_some() {
        return release_protection(shared, &claims, &claim).await;
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let Some(class) = spec.storage_class_name.clone() else {
        // Upstream's retroactive default class assignment.
        if let Some(default) = default_class(shared) {
            let patch = json!({"spec": {"storageClassName": default}});
            claims
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(None);
    };
    let volumes = shared.volumes.store.state();
    let chosen: Option<Arc<PersistentVolume>> = match spec.volume_name.as_deref() {
        Some(v) if !v.is_empty() => volumes.iter().find(|pv| pv.name_any() == v).cloned(),
        _ => volumes
            .iter()
            .find(|pv| claimed_by(pv, &claim))
            .cloned()
            .or_else(|| {
                // Static volumes; a WaitForFirstConsumer claim waits for its pod's node.
                if waits_for_consumer(shared, &class)
                    && !claim.annotations().contains_key(SELECTED_NODE)
                {
                    return None;
                }
                volumes
                    .iter()
                    .filter(|pv| matches(pv, &claim, &class))
                    .min_by_key(|pv| {
                        storage(
                            pv.spec
                                .as_ref()
                                .and_then(|s| s.capacity.as_ref())
                                .and_then(|c| c.get("storage")),
                        )
                    })
                    .cloned()
            }),
    };
    let Some(pv) = chosen else {
        if phase_of_claim(&claim) != "Pending" {
            let patch = json!({"status": {"phase": "Pending"}});
            claims
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(None);
    };
    bind(shared, &claim, &pv).await
}

/// A claim being deleted keeps its protection finalizer while a pod that has not finished
/// uses it (upstream's PVC protection controller).
async fn release_protection(
    shared: &Shared,
    claims: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
) -> ReconcileResult {
    let finalizers = claim.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == CLAIM_PROTECTION) {
        return Ok(None);
    }
    let name = claim.name_any();
    let in_use = shared.pods.store.state().iter().any(|p| {
        p.namespace() == claim.namespace()
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
            && p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .any(|c| c.claim_name == name)
    });
    if in_use {
        return Ok(None);
    }
    let left: Vec<String> = finalizers
        .into_iter()
        .filter(|f| f != CLAIM_PROTECTION)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": left, "resourceVersion": claim.resource_version(),
    }});
    match claims
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Claim reference on the volume, volume name on the claim, then both statuses Bound.
async fn bind(
    shared: &Shared,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> ReconcileResult {
    let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    let pv_name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(shared.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
    let pp = PatchParams::default();
    let has_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some());
    if !has_uid {
        let patch = json!({"spec": {"claimRef": {
            "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
            "uid": claim.uid(), "resourceVersion": claim.resource_version(),
        }}});
        volumes.patch(&pv_name, &pp, &Patch::Merge(&patch)).await?;
    }
    if phase_of_volume(pv) != "Bound" {
        let patch = json!({"status": {"phase": "Bound"}});
        volumes
            .patch_status(&pv_name, &pp, &Patch::Merge(&patch))
            .await?;
    }
    let named =
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str());
    if !named || !claim.annotations().contains_key(BIND_COMPLETED) {
        let patch = json!({
            "metadata": {"annotations": {BIND_COMPLETED: "yes"}},
            "spec": {"volumeName": pv_name},
        });
        claims.patch(&name, &pp, &Patch::Merge(&patch)).await?;
    }
    if phase_of_claim(claim) != "Bound" {
        let vs = pv.spec.clone().unwrap_or_default();
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": vs.access_modes,
            "capacity": vs.capacity,
        }});
        claims
            .patch_status(&name, &pp, &Patch::Merge(&patch))
            .await?;
        shared
            .recorder
            .record(claim, false, "Bound", format!("Bound to volume {pv_name}"));
    }
    Ok(None)
}

/// A volume without claim is Available; one whose claim is gone is Released (the node
/// provisioner deletes released local-path volumes under the Delete policy).
pub async fn sync_volume(shared: &Shared, name: &str) -> ReconcileResult {
    let Some(pv) = shared
        .volumes
        .store
        .get(&obj_ref::<PersistentVolume>(None, name))
    else {
        return Ok(None);
    };
    let phase = phase_of_volume(&pv);
    let want = match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        None => "Available",
        Some(r) => {
            let claim = shared.claims.store.get(&obj_ref::<PersistentVolumeClaim>(
                r.namespace.as_deref(),
                r.name.as_deref().unwrap_or_default(),
            ));
            let gone = match (&claim, &r.uid) {
                (None, _) => true,
                (Some(c), Some(uid)) => c.uid().as_ref() != Some(uid),
                (Some(_), None) => false,
            };
            if !gone {
                // Bound, or binding in progress: the claim's reconcile finishes it.
                return Ok(None);
            }
            "Released"
        }
    };
    if phase != want && phase != "Failed" {
        let api: Api<PersistentVolume> = Api::all(shared.client.clone());
        let patch = json!({"status": {"phase": want}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(None)
}
