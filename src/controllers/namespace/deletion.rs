//! Deleting a namespace's content and reporting it as upstream's conditions do.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::ResourceExt;
use serde_json::{json, Value};
use tracing::info;

use super::{NamespaceController, DISCOVERY_TTL, FINALIZER};
use crate::controllers::runtime::{ReconcileError, ReconcileResult};

/// What a pass over the namespace's kinds found.
#[derive(Default)]
struct Remaining {
    /// resource (`pods.`, `deployments.apps`) -> objects left.
    counts: BTreeMap<String, usize>,
    /// finalizer -> objects holding it.
    finalizers: BTreeMap<String, usize>,
    errors: Vec<String>,
    /// The longest grace period of a pod still going away.
    grace: i64,
}

/// The namespaced kinds the API lists and deletes (discovered, cached for a while).
async fn kinds(c: &NamespaceController) -> Result<Rc<Vec<ApiResource>>, kube::Error> {
    if let Some((at, kinds)) = c.kinds.borrow().as_ref() {
        if at.elapsed() < DISCOVERY_TTL {
            return Ok(kinds.clone());
        }
    }
    let discovery = Discovery::new(c.shared.client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let namespaced = matches!(caps.scope, Scope::Namespaced);
            if namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
            {
                out.push(ar);
            }
        }
    }
    let out = Rc::new(out);
    *c.kinds.borrow_mut() = Some((Instant::now(), out.clone()));
    Ok(out)
}

fn resource_name(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

async fn delete_content(c: &NamespaceController, ns: &str, kinds: &[ApiResource]) -> Remaining {
    let mut left = Remaining::default();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(c.shared.client.clone(), ns, ar);
        let objects = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                left.errors.push(format!("{}: {e}", resource_name(ar)));
                continue;
            }
        };
        if objects.is_empty() {
            continue;
        }
        for o in objects
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
        {
            match api.delete(&o.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => left
                    .errors
                    .push(format!("{} {}: {e}", resource_name(ar), o.name_any())),
            }
        }
        // What is still there after the deletes (finalizers, graceful pods).
        let after = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                left.errors.push(format!("{}: {e}", resource_name(ar)));
                continue;
            }
        };
        if after.is_empty() {
            continue;
        }
        left.counts.insert(resource_name(ar), after.len());
        for o in &after {
            for f in o.finalizers() {
                *left.finalizers.entry(f.clone()).or_default() += 1;
            }
            let grace = o.metadata.deletion_grace_period_seconds.unwrap_or(0);
            left.grace = left.grace.max(grace);
        }
    }
    left
}

fn condition(kind: &str, failed: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind,
        "status": if failed { "True" } else { "False" },
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// Upstream's five namespace deletion conditions for what `left` says.
fn conditions(discovery_error: Option<&str>, left: &Remaining, old: &[Value]) -> Vec<Value> {
    let now = crate::api_time_now();
    let counts: Vec<String> = left
        .counts
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let finalizers: Vec<String> = left
        .finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    let fresh = vec![
        match discovery_error {
            Some(e) => condition(
                "NamespaceDeletionDiscoveryFailure",
                true,
                "DiscoveryFailed",
                &format!("Discovery failed for some groups: {e}"),
                &now,
            ),
            None => condition(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered",
                &now,
            ),
        },
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
            &now,
        ),
        if left.errors.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
                &now,
            )
        } else {
            condition(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                &format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    left.errors.len(),
                    left.errors.join(", ")
                ),
                &now,
            )
        },
        if counts.is_empty() {
            condition(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed",
                &now,
            )
        } else {
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                &format!("Some resources are remaining: {}", counts.join(", ")),
                &now,
            )
        },
        if finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
                &now,
            )
        } else {
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                &format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizers.join(", ")
                ),
                &now,
            )
        },
    ];
    // A condition that did not change keeps its transition time.
    fresh
        .into_iter()
        .map(|mut c| {
            let same = old.iter().find(|o| {
                o["type"] == c["type"] && o["status"] == c["status"] && o["message"] == c["message"]
            });
            if let Some(t) = same.and_then(|o| o.get("lastTransitionTime")) {
                c["lastTransitionTime"] = t.clone();
            }
            c
        })
        .collect()
}

pub async fn run(c: &NamespaceController, ns: &Namespace) -> ReconcileResult {
    let name = ns.name_any();
    let api: Api<Namespace> = Api::all(c.shared.client.clone());
    let (discovery_error, left) = match kinds(c).await {
        Ok(kinds) => (None, delete_content(c, &name, &kinds).await),
        Err(e) => (Some(e.to_string()), Remaining::default()),
    };
    let old: Vec<Value> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let conds = conditions(discovery_error.as_deref(), &left, &old);
    if conds != old {
        let patch = json!({"status": {"phase": "Terminating", "conditions": conds}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(ReconcileError::Api(e)),
        }
    }
    if discovery_error.is_some() || !left.errors.is_empty() {
        return Err(ReconcileError::Other(format!(
            "namespace {name}: content not deleted yet"
        )));
    }
    if !left.counts.is_empty() {
        // Pods go once their node agents stopped them; look again then (at least soon).
        let wait = Duration::from_secs(left.grace.clamp(1, 15) as u64);
        return Ok(Some(wait));
    }
    let mut finalized = ns.clone();
    if let Some(f) = finalized.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            info!(namespace = %name, "namespace emptied and finalized");
            Ok(None)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Some(Duration::from_millis(100))),
        Err(e) => Err(ReconcileError::Api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains_as_upstream() {
        let mut left = Remaining::default();
        left.counts.insert("pods.".into(), 2);
        left.finalizers
            .insert("kubernetes.io/pvc-protection".into(), 1);
        let c = conditions(None, &left, &[]);
        let by = |t: &str| {
            c.iter()
                .find(|c| c["type"] == t)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(by("NamespaceContentRemaining")["status"], "True");
        assert_eq!(
            by("NamespaceContentRemaining")["message"],
            "Some resources are remaining: pods. has 2 resource instances"
        );
        assert_eq!(
            by("NamespaceFinalizersRemaining")["message"],
            "Some content in the namespace has finalizers remaining: kubernetes.io/pvc-protection in 1 resource instances"
        );
        assert_eq!(by("NamespaceDeletionDiscoveryFailure")["status"], "False");
        let again = conditions(None, &left, &c);
        assert_eq!(again, c, "unchanged conditions keep their transition times");
        let empty = conditions(None, &Remaining::default(), &c);
        assert_eq!(
            empty
                .iter()
                .find(|c| c["type"] == "NamespaceContentRemaining")
                .map(|c| c["reason"].clone()),
            Some(json!("ContentRemoved"))
        );
    }
}
