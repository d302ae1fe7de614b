//! One StatefulSet reconcile, upstream's order: revisions; replace finished pods; create
//! missing ordinals (claims first), in order and each Ready before the next unless Parallel;
//! delete ordinals beyond `replicas` from the highest; then roll pods at or above the
//! partition to the update revision, highest first, one at a time; status last.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, ApiResource, DeleteParams, PostParams};
use kube::ResourceExt;

use super::identity::{ordinal, pod_for, start};
use super::{claims, status};
use crate::controllers::claim;
use crate::controllers::pods::{controlled_by, is_ready};
use crate::controllers::revisions::{self, Owner, HASH_LABEL};
use crate::controllers::runtime::{split, ReconcileError, ReconcileResult};
use crate::controllers::shared::{obj_ref, Shared};

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Running, Ready and not going away: the next ordinal may start.
pub fn healthy(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && phase(p) == "Running" && is_ready(p)
}

pub fn revision_of(p: &Pod) -> Option<&String> {
    p.metadata.labels.as_ref()?.get(HASH_LABEL)
}

/// What this pass works from.
pub struct Plan {
    pub replicas: i32,
    pub first: i32,
    pub ordered: bool,
    pub partition: i32,
    pub rolling: bool,
    pub update: (String, PodTemplateSpec),
    pub current: (String, PodTemplateSpec),
}

pub async fn sync(shared: &Shared, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(set) = shared
        .statefulsets
        .store
        .get(&obj_ref::<StatefulSet>(ns, name))
    else {
        return Ok(None);
    };
    let spec = set.spec.clone().unwrap_or_default();
    // Only pods named as members of the set are adopted (upstream's isMemberOf filter).
    let uid = set.uid().unwrap_or_default();
    let candidates = shared
        .pods_in(ns)
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid) || ordinal(name, &p.name_any()).is_some())
        .collect();
    let claimer = claim::Owner {
        resource: ApiResource::erase::<StatefulSet>(&()),
        meta: &set.metadata,
        selector: &spec.selector,
    };
    let pods = claim::claim(&shared.client, &claimer, candidates).await?;
    let owner = Owner {
        kind: "StatefulSet",
        meta: &set.metadata,
        template: &spec.template,
        collisions: set.status.as_ref().and_then(|s| s.collision_count),
        history_limit: spec.revision_history_limit,
    };
    let history = revisions::construct(shared, &owner).await?;
    let update = (history.current.name_any(), spec.template.clone());
    // The current revision: what the status says, while that revision still exists.
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .and_then(|name| history.old.iter().find(|r| r.name_any() == name).cloned())
        .and_then(|r| Some((r.name_any(), revisions::template_of(&r)?)))
        .unwrap_or_else(|| update.clone());
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let plan = Plan {
        replicas: spec.replicas.unwrap_or(1).max(0),
        first: start(&set),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        partition: strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0),
        rolling: strategy.type_.as_deref() != Some("OnDelete"),
        update,
        current,
    };
    if set.metadata.deletion_timestamp.is_none() {
        manage(shared, &set, &plan, &pods).await?;
    }
    revisions::cleanup(shared, &owner, &history.old, &pods).await?;
    status::update(shared, &set, &plan, &pods).await
}

async fn manage(
    shared: &Shared,
    set: &StatefulSet,
    plan: &Plan,
    pods: &[Arc<Pod>],
) -> Result<(), ReconcileError> {
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &set.namespace().unwrap_or_default());
    let name = set.name_any();
    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut strays = Vec::new();
    for p in pods {
        match ordinal(&name, &p.name_any()) {
            Some(o) => {
                by_ordinal.insert(o, p.clone());
            }
            None => strays.push(p.clone()),
        }
    }
    let wanted = plan.first..plan.first + plan.replicas;
    // Finished pods are deleted and made again (with their claims, on their volumes' node).
    for (o, p) in &by_ordinal {
        if matches!(phase(p), "Failed" | "Succeeded") && p.metadata.deletion_timestamp.is_none() {
            delete(shared, set, &api, p, *o).await?;
            if plan.ordered {
                return Ok(());
            }
        }
    }
    // Missing ordinals, lowest first.
    for o in wanted.clone() {
        match by_ordinal.get(&o) {
            None => {
                claims::ensure(shared, set, o).await?;
                let (rev, template) = if plan.rolling && o < plan.partition {
                    &plan.current
                } else {
                    &plan.update
                };
                let pod = pod_for(set, template, rev, o);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => shared.recorder.record(
                        set,
                        false,
                        "SuccessfulCreate",
                        format!(
                            "create Pod {} in StatefulSet {name} successful",
                            pod.name_any()
                        ),
                    ),
                    // Still terminating under the same name: the next pass makes it.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        shared.recorder.record(
                            set,
                            true,
                            "FailedCreate",
                            format!(
                                "create Pod {} in StatefulSet {name} failed error: {e}",
                                pod.name_any()
                            ),
                        );
                        return Err(e.into());
                    }
                }
                if plan.ordered {
                    return Ok(());
                }
            }
            Some(p) if plan.ordered && !healthy(p) => return Ok(()),
            Some(_) => {}
        }
    }
    // Ordinals beyond replicas (and strays), highest first; OrderedReady got here only with
    // every wanted pod healthy, and takes one at a time.
    let mut condemned: Vec<(i32, Arc<Pod>)> = by_ordinal
        .iter()
        .filter(|(o, _)| !wanted.contains(o))
        .map(|(o, p)| (*o, p.clone()))
        .collect();
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    for p in &strays {
        if p.metadata.deletion_timestamp.is_none() {
            delete(shared, set, &api, p, -1).await?;
        }
    }
    for (o, p) in &condemned {
        if p.metadata.deletion_timestamp.is_some() {
            if plan.ordered {
                return Ok(());
            }
            continue;
        }
        delete(shared, set, &api, p, *o).await?;
        if plan.ordered {
            return Ok(());
        }
    }
    // Rolling update: only when every wanted pod is healthy; highest ordinal first.
    if !plan.rolling
        || wanted
            .clone()
            .any(|o| !by_ordinal.get(&o).is_some_and(|p| healthy(p)))
    {
        return Ok(());
    }
    for o in wanted.rev().filter(|o| *o >= plan.partition) {
        if let Some(p) = by_ordinal.get(&o) {
            if revision_of(p) != Some(&plan.update.0) {
                delete(shared, set, &api, p, o).await?;
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn delete(
    shared: &Shared,
    set: &StatefulSet,
    api: &Api<Pod>,
    p: &Pod,
    ordinal: i32,
) -> Result<(), ReconcileError> {
    let wanted = ordinal >= start(set)
        && ordinal < start(set) + set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if !wanted && ordinal >= 0 {
        claims::release_with(shared, set, p, ordinal).await?;
    }
    match api.delete(&p.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            shared.recorder.record(
                set,
                false,
                "SuccessfulDelete",
                format!(
                    "delete Pod {} in StatefulSet {} successful",
                    p.name_any(),
                    set.name_any()
                ),
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
