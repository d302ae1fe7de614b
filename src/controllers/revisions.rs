//! ControllerRevisions of a DaemonSet or StatefulSet, as upstream keeps them: one per distinct
//! pod template, named `<owner>-<hash>`, holding the patch that restores the template (what
//! `kubectl rollout undo` applies), numbered so the current one is the newest; old ones pruned
//! to revisionHistoryLimit unless pods still run them.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::ResourceExt;
use serde_json::{json, Value};
use tracing::info;

use super::pods::{controlled_by, owner_ref};
use super::runtime::ReconcileError;
use super::shared::Shared;

/// Label on revisions and pods: which revision they were made from.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The owner of a revision history.
pub struct Owner<'a> {
    /// `DaemonSet` or `StatefulSet` (group `apps/v1`).
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    pub template: &'a PodTemplateSpec,
    pub collisions: Option<i32>,
    pub history_limit: Option<i32>,
}

impl Owner<'_> {
    fn ns(&self) -> String {
        self.meta.namespace.clone().unwrap_or_default()
    }

    fn uid(&self) -> String {
        self.meta.uid.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.meta.name.clone().unwrap_or_default()
    }
}

/// Revisions are told apart as Deployments tell their ReplicaSets apart.
pub(crate) use super::deployment::template_hash;

/// `<owner>-<hash>`, the prefix cut so the name stays a valid object name.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The revision's data: a strategic-merge patch replacing the whole template.
pub fn template_patch(t: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
    if let Some(o) = template.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

pub fn hash_of(r: &ControllerRevision) -> String {
    r.labels().get(HASH_LABEL).cloned().unwrap_or_else(|| {
        let name = r.name_any();
        name.rsplit('-').next().unwrap_or_default().to_string()
    })
}

/// The template a revision restores.
pub fn template_of(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn matches(r: &ControllerRevision, want: &Value) -> bool {
    r.data.as_ref().is_some_and(|d| &d.0 == want)
}

pub struct History {
    pub current: Arc<ControllerRevision>,
    pub old: Vec<Arc<ControllerRevision>>,
}

/// The owner's revisions in the cache.
pub fn owned(shared: &Shared, owner: &Owner) -> Vec<Arc<ControllerRevision>> {
    let (ns, uid) = (owner.ns(), owner.uid());
    shared
        .revisions
        .store
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(&ns) && controlled_by(&r.metadata, &uid))
        .collect()
}

/// Finds or creates the revision of the current template and makes it the newest.
pub async fn construct(shared: &Shared, owner: &Owner<'_>) -> Result<History, ReconcileError> {
    let want = template_patch(owner.template);
    let (mut cur, old): (Vec<_>, Vec<_>) = owned(shared, owner)
        .into_iter()
        .partition(|r| matches(r, &want));
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let api: Api<ControllerRevision> = Api::namespaced(shared.client.clone(), &owner.ns());
    cur.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let current = match cur.split_first() {
        None => snapshot(shared, owner, next, &want).await?,
        Some((keep, dups)) => {
            for dup in dups {
                dedup(shared, owner, dup, keep).await?;
            }
            if keep.revision < next {
                // Rolled back to an old template: it becomes the newest revision.
                let mut up = (**keep).clone();
                up.revision = next;
                Arc::new(
                    api.replace(&keep.name_any(), &PostParams::default(), &up)
                        .await?,
                )
            } else {
                keep.clone()
            }
        }
    };
    Ok(History { current, old })
}

/// What pods carry in `HASH_LABEL`: the hash (DaemonSet) or the revision name (StatefulSet).
fn pod_label(kind: &str, r: &ControllerRevision) -> String {
    if kind == "StatefulSet" {
        r.name_any()
    } else {
        hash_of(r)
    }
}

/// Moves the pods of a duplicate revision to the kept one, then deletes the duplicate.
async fn dedup(
    shared: &Shared,
    owner: &Owner<'_>,
    dup: &ControllerRevision,
    keep: &ControllerRevision,
) -> Result<(), ReconcileError> {
    let (ns, uid) = (owner.ns(), owner.uid());
    let (from, to) = (pod_label(owner.kind, dup), pod_label(owner.kind, keep));
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let patch = Patch::Merge(json!({"metadata": {"labels": {HASH_LABEL: to}}}));
    for p in shared.pods.store.state() {
        if p.namespace().as_deref() == Some(&ns)
            && controlled_by(&p.metadata, &uid)
            && p.labels().get(HASH_LABEL) == Some(&from)
        {
            pods.patch(&p.name_any(), &PatchParams::default(), &patch)
                .await?;
        }
    }
    let api: Api<ControllerRevision> = Api::namespaced(shared.client.clone(), &ns);
    delete_ignoring_gone(&api, &dup.name_any()).await
}

async fn delete_ignoring_gone(
    api: &Api<ControllerRevision>,
    name: &str,
) -> Result<(), ReconcileError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn snapshot(
    shared: &Shared,
    owner: &Owner<'_>,
    revision: i64,
    want: &Value,
) -> Result<Arc<ControllerRevision>, ReconcileError> {
    let ns = owner.ns();
    let hash = template_hash(owner.template, owner.collisions);
    let name = revision_name(&owner.name(), &hash);
    let mut labels = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash);
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: owner.meta.annotations.clone(),
            owner_references: Some(vec![owner_ref("apps/v1", owner.kind, owner.meta)]),
            ..Default::default()
        },
        data: Some(RawExtension(want.clone())),
        revision,
    };
    let api: Api<ControllerRevision> = Api::namespaced(shared.client.clone(), &ns);
    match api.create(&PostParams::default(), &cr).await {
        Ok(r) => Ok(Arc::new(r)),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Made by an earlier reconcile the cache has not shown yet, or a hash collision.
            let existing = api.get(&name).await?;
            if controlled_by(&existing.metadata, &owner.uid()) && matches(&existing, want) {
                return Ok(Arc::new(existing));
            }
            let count = owner.collisions.unwrap_or(0).saturating_add(1);
            info!(owner = %owner.name(), "revision hash collision on {name}, collisionCount {count}");
            let gvk = GroupVersionKind::gvk("apps", "v1", owner.kind);
            let plural = format!("{}s", owner.kind.to_lowercase());
            let owners: Api<DynamicObject> = Api::namespaced_with(
                shared.client.clone(),
                &ns,
                &ApiResource::from_gvk_with_plural(&gvk, &plural),
            );
            owners
                .patch_status(
                    &owner.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": count}})),
                )
                .await?;
            Err(ReconcileError::Other(format!(
                "revision {name} exists with another template (hash collision)"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Names of old revisions to delete: the oldest beyond `limit`, never one a pod still runs
/// (`live`: the pods' `HASH_LABEL` values).
pub fn prunable(
    kind: &str,
    old: &[Arc<ControllerRevision>],
    limit: usize,
    live: &HashSet<String>,
) -> Vec<String> {
    let mut excess = old.len().saturating_sub(limit);
    let mut sorted: Vec<&Arc<ControllerRevision>> = old.iter().collect();
    sorted.sort_by_key(|r| r.revision);
    let mut out = Vec::new();
    for r in sorted {
        if excess == 0 {
            break;
        }
        if live.contains(&pod_label(kind, r)) {
            continue;
        }
        out.push(r.name_any());
        excess -= 1;
    }
    out
}

/// Deletes old revisions beyond the owner's revisionHistoryLimit (default 10).
pub async fn cleanup(
    shared: &Shared,
    owner: &Owner<'_>,
    old: &[Arc<ControllerRevision>],
    pods: &[Arc<Pod>],
) -> Result<(), ReconcileError> {
    let limit = owner.history_limit.unwrap_or(10).max(0) as usize;
    if old.len() <= limit {
        return Ok(());
    }
    let live: HashSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
        .collect();
    let api: Api<ControllerRevision> = Api::namespaced(shared.client.clone(), &owner.ns());
    for name in prunable(owner.kind, old, limit, &live) {
        delete_ignoring_gone(&api, &name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}))
        .expect("template")
    }

    #[test]
    fn hash_follows_template_and_collisions() {
        let (a, b) = (template("x:1"), template("x:2"));
        assert_eq!(
            template_hash(&a, None),
            template_hash(&template("x:1"), None)
        );
        assert_ne!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        let h = template_hash(&a, None);
        assert_eq!(revision_name("agent", &h), format!("agent-{h}"));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn patch_replaces_the_whole_template_and_restores_it() {
        let p = template_patch(&template("x:1"));
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["image"],
            "x:1"
        );
        assert_eq!(p.as_object().map(|o| o.len()), Some(1));
        let r = ControllerRevision {
            data: Some(RawExtension(p)),
            ..Default::default()
        };
        assert_eq!(template_of(&r), Some(template("x:1")));
    }

    #[test]
    fn pruning_keeps_live_and_newest() {
        let rev = |n: i64, hash: &str| {
            Arc::new(
                serde_json::from_value::<ControllerRevision>(json!({
                    "metadata": {"name": format!("agent-{hash}"), "labels": {HASH_LABEL: hash}},
                    "revision": n}))
                .expect("rev"),
            )
        };
        let old = vec![rev(3, "c"), rev(1, "a"), rev(2, "b"), rev(4, "d")];
        let live: HashSet<String> = ["a".to_string()].into();
        assert_eq!(
            prunable("DaemonSet", &old, 2, &live),
            ["agent-b", "agent-c"]
        );
        assert!(prunable("DaemonSet", &old, 4, &live).is_empty());
        // StatefulSet pods carry the revision's name.
        let live: HashSet<String> = ["agent-a".to_string()].into();
        assert_eq!(
            prunable("StatefulSet", &old, 2, &live),
            ["agent-b", "agent-c"]
        );
    }
}
