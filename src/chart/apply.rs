//! Creating, replacing and deleting a chart's objects through the API, as dynamic objects
//! whose resource (plural, scope) comes from discovery.

use std::collections::HashMap;
use std::fmt;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::discovery::Scope;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, info};

use super::manifest::Manifest;
use super::ChartError;

/// Marks every object a release applied, so that another release (or a hand-made object of
/// the same name) is never silently taken over; Helm's `meta.helm.sh/release-*`.
pub const RELEASE_NAME_ANNOTATION: &str = "skiff.io/release-name";
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "skiff.io/release-namespace";

/// An applied object, as the release record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

pub struct Applier {
    client: Client,
    /// (apiVersion, kind) -> resource and whether it is namespaced; one discovery request
    /// per group-version and kind.
    resources: HashMap<(String, String), Option<(ApiResource, bool)>>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier {
            client,
            resources: HashMap::new(),
        }
    }

    /// The resource serving `kind` in `api_version`; `None` when the server has no such kind.
    async fn resource(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>, ChartError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.resources.get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => Some((ar, caps.scope == Scope::Namespaced)),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(kube::Error::Discovery(_)) => None,
            Err(e) => {
                return Err(ChartError::kube(
                    format!("discovery of {api_version} {kind}"),
                    e,
                ))
            }
        };
        self.resources.insert(key, found.clone());
        Ok(found)
    }

    fn api(&self, ar: &ApiResource, namespace: &str) -> Api<DynamicObject> {
        if namespace.is_empty() {
            Api::all_with(self.client.clone(), ar)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, ar)
        }
    }

    /// Where a manifest goes: its own namespace, else the release's; none if cluster-scoped.
    pub async fn locate(
        &mut self,
        m: &Manifest,
        release_ns: &str,
    ) -> Result<ObjectRef, ChartError> {
        let Some((_, namespaced)) = self.resource(m.api_version(), m.kind()).await? else {
            return Err(ChartError::Manifest {
                file: m.source.clone(),
                msg: format!("the server has no kind {} in {}", m.kind(), m.api_version()),
            });
        };
        let namespace = if namespaced {
            m.object["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(release_ns)
                .to_string()
        } else {
            String::new()
        };
        Ok(ObjectRef {
            api_version: m.api_version().to_string(),
            kind: m.kind().to_string(),
            namespace,
            name: m.name().to_string(),
        })
    }

    /// Creates the object, or updates the existing one with a JSON merge patch that sets
    /// everything the chart declares and removes what the previous revision declared and
    /// this one does not (`previous`: that revision's manifest of the object). Fields only
    /// the server or controllers set (a Service's cluster IP, a Job's selector) are left
    /// alone, which a whole-object replace would not do; this is Helm 3's three-way merge
    /// minus strategic list merging.
    pub async fn apply(
        &mut self,
        m: &Manifest,
        previous: Option<&Value>,
        release: &str,
        release_ns: &str,
    ) -> Result<ObjectRef, ChartError> {
        let target = self.locate(m, release_ns).await?;
        let Some((ar, _)) = self.resource(&target.api_version, &target.kind).await? else {
            return Err(ChartError::Ownership(format!("{target}: kind not served")));
        };
        let api = self.api(&ar, &target.namespace);
        let mut desired = m.object.clone();
        let meta = &mut desired["metadata"];
        if target.namespace.is_empty() {
            if let Some(meta) = meta.as_object_mut() {
                meta.remove("namespace");
            }
        } else {
            meta["namespace"] = Value::from(target.namespace.clone());
        }
        if !meta["annotations"].is_object() {
            meta["annotations"] = Value::Object(Default::default());
        }
        meta["annotations"][RELEASE_NAME_ANNOTATION] = Value::from(release);
        meta["annotations"][RELEASE_NAMESPACE_ANNOTATION] = Value::from(release_ns);
        let what = target.to_string();
        let existing = api
            .get_opt(&target.name)
            .await
            .map_err(|e| ChartError::kube(format!("get {what}"), e))?;
        let result = match existing {
            None => {
                let obj: DynamicObject =
                    serde_json::from_value(desired).map_err(|e| ChartError::Manifest {
                        file: m.source.clone(),
                        msg: e.to_string(),
                    })?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .map(|_| "created")
            }
            Some(current) => {
                check_owner(&current, &what, release, release_ns)?;
                let patch = merge_patch(previous.unwrap_or(&Value::Null), &desired);
                api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| "configured")
            }
        };
        match result {
            Ok(verb) => {
                info!(object = %what, "{verb}");
                Ok(target)
            }
            Err(e) => Err(ChartError::kube(format!("apply {what}"), e)),
        }
    }

    /// Deletes the object (children in the background, as Helm does); gone already is fine.
    pub async fn delete(&mut self, r: &ObjectRef) -> Result<(), ChartError> {
        let Some((ar, _)) = self.resource(&r.api_version, &r.kind).await? else {
            debug!(object = %r, "kind no longer served; nothing to delete");
            return Ok(());
        };
        match self
            .api(&ar, &r.namespace)
            .delete(&r.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {
                info!(object = %r, "deleted");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ChartError::kube(format!("delete {r}"), e)),
        }
    }
}

fn check_owner(
    current: &DynamicObject,
    what: &str,
    release: &str,
    release_ns: &str,
) -> Result<(), ChartError> {
    let ann = current.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    if get(RELEASE_NAME_ANNOTATION) == Some(release)
        && get(RELEASE_NAMESPACE_ANNOTATION) == Some(release_ns)
    {
        return Ok(());
    }
    Err(ChartError::Ownership(format!(
        "{what} already exists and is not managed by release {release:?} in {release_ns:?}"
    )))
}

/// The JSON merge patch (RFC 7386) from `old` to `new`: `new`'s fields, and a null for
/// every map key `old` had and `new` dropped. Lists are replaced whole.
fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out: serde_json::Map<String, Value> = n
                .iter()
                .map(|(k, v)| {
                    let v = match o.get(k) {
                        Some(ov) => merge_patch(ov, v),
                        None => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_new_and_nulls_dropped_fields() {
        let old = json!({"spec": {"replicas": 3, "paused": false, "template": {"x": [1, 2]}}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let new = json!({"spec": {"replicas": 5, "template": {"x": [3]}}, "metadata": {"labels": {"a": "1"}}});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"spec": {"replicas": 5, "paused": null, "template": {"x": [3]}}, "metadata": {"labels": {"a": "1", "b": null}}})
        );
        assert_eq!(merge_patch(&Value::Null, &new), new);
    }
}
