//! The release record: one ConfigMap `skiff-release-NAME` in the release's namespace,
//! labelled `owner=skiff,name=NAME,version=N,status=S` (Helm 3 keeps one Secret per
//! revision; one record updated in place is enough without rollback). It holds what
//! upgrade and uninstall need: the applied objects and the manifest that produced them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apply::ObjectRef;
use super::ChartError;

pub const RELEASE_OWNER: &str = "skiff";
const DATA_KEY: &str = "release.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub revision: u64,
    /// `pending-install`, `pending-upgrade`, `deployed` or `failed`, as Helm names them.
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    #[serde(default)]
    pub app_version: String,
    /// RFC 3339.
    pub updated: String,
    /// The values given on the command line (`-f`, `--set`), as Helm's `get values`.
    #[serde(default)]
    pub values: Value,
    /// The values the templates saw (chart defaults included).
    #[serde(default)]
    pub computed_values: Value,
    /// What was applied, in install order; upgrade deletes those no longer rendered,
    /// uninstall deletes them all.
    pub objects: Vec<ObjectRef>,
    /// The rendered manifest of this revision, as `chart template` prints it.
    #[serde(default)]
    pub manifest: String,
}

pub fn record_name(release: &str) -> String {
    format!("skiff-release-{release}")
}

fn api(client: &Client, namespace: &str) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), namespace)
}

fn to_config_map(r: &Release, resource_version: Option<String>) -> Result<ConfigMap, ChartError> {
    let json = serde_json::to_string_pretty(r).map_err(|e| ChartError::ReleaseRecord {
        name: r.name.clone(),
        msg: e.to_string(),
    })?;
    let labels = BTreeMap::from([
        ("owner".to_string(), RELEASE_OWNER.to_string()),
        ("name".to_string(), r.name.clone()),
        ("version".to_string(), r.revision.to_string()),
        ("status".to_string(), r.status.clone()),
    ]);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(record_name(&r.name));
    cm.metadata.namespace = Some(r.namespace.clone());
    cm.metadata.labels = Some(labels);
    cm.metadata.resource_version = resource_version;
    cm.data = Some(BTreeMap::from([(DATA_KEY.to_string(), json)]));
    Ok(cm)
}

fn from_config_map(name: &str, cm: &ConfigMap) -> Result<Release, ChartError> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .ok_or_else(|| ChartError::ReleaseRecord {
            name: name.to_string(),
            msg: format!("no {DATA_KEY}"),
        })?;
    serde_json::from_str(text).map_err(|e| ChartError::ReleaseRecord {
        name: name.to_string(),
        msg: e.to_string(),
    })
}

/// The release and its record's resourceVersion, if the release exists.
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<(Release, Option<String>)>, ChartError> {
    let found = api(client, namespace)
        .get_opt(&record_name(name))
        .await
        .map_err(|e| ChartError::kube(format!("get release {name}"), e))?;
    match found {
        None => Ok(None),
        Some(cm) => Ok(Some((
            from_config_map(name, &cm)?,
            cm.metadata.resource_version.clone(),
        ))),
    }
}

/// Creates the record; the create is what reserves the name, so a concurrent install of
/// the same name fails here rather than applying twice.
pub async fn create(client: &Client, r: &Release) -> Result<Option<String>, ChartError> {
    match api(client, &r.namespace)
        .create(&PostParams::default(), &to_config_map(r, None)?)
        .await
    {
        Ok(cm) => Ok(cm.metadata.resource_version),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(ChartError::ReleaseInUse(r.name.clone())),
        Err(e) => Err(ChartError::kube(format!("record release {}", r.name), e)),
    }
}

/// Replaces the record; `resource_version` makes a concurrent upgrade fail instead of
/// overwriting the other's record.
pub async fn save(
    client: &Client,
    r: &Release,
    resource_version: Option<String>,
) -> Result<Option<String>, ChartError> {
    api(client, &r.namespace)
        .replace(
            &record_name(&r.name),
            &PostParams::default(),
            &to_config_map(r, resource_version)?,
        )
        .await
        .map(|cm| cm.metadata.resource_version)
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => ChartError::ReleaseRecord {
                name: r.name.clone(),
                msg: "changed by another operation in progress".into(),
            },
            e => ChartError::kube(format!("record release {}", r.name), e),
        })
}

pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), ChartError> {
    match api(client, namespace)
        .delete(&record_name(name), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ChartError::kube(format!("delete release record {name}"), e)),
    }
}

/// Releases in `namespace`, or in every namespace for `None`, sorted by namespace and name.
pub async fn list(client: &Client, namespace: Option<&str>) -> Result<Vec<Release>, ChartError> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => api(client, ns),
        None => Api::all(client.clone()),
    };
    let lp = ListParams::default().labels(&format!("owner={RELEASE_OWNER}"));
    let cms = api
        .list(&lp)
        .await
        .map_err(|e| ChartError::kube("list releases", e))?;
    let mut out = Vec::new();
    for cm in &cms.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        // A damaged record is reported by name rather than hiding the others.
        match from_config_map(&name, cm) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}
