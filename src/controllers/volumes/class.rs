//! The built-in `local-path` StorageClass (default, WaitForFirstConsumer, Delete), as k3s
//! ships one, and the annotations the scheduler, the binder and the node provisioner share.

use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::controllers::runtime::{ReconcileError, ReconcileResult};
use crate::controllers::shared::Shared;

pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// Upstream's annotations: the node the scheduler picked for a WaitForFirstConsumer claim,
/// and who provisioned a volume.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node holding a local-path volume's directory (also in its node affinity).
pub const LOCAL_PATH_NODE: &str = "skiff.io/local-path-node";
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Creates the class unless one of that name exists (a user's edits are kept).
pub async fn ensure_local_path(shared: &Shared) -> ReconcileResult {
    let api: Api<StorageClass> = Api::all(shared.client.clone());
    if api.get_opt(LOCAL_PATH_CLASS).await?.is_some() {
        return Ok(None);
    }
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": LOCAL_PATH_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .map_err(|e| ReconcileError::Other(e.to_string()))?;
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The default class: annotated so; of several, the newest (as upstream).
pub fn default_class(shared: &Shared) -> Option<String> {
    shared
        .storage_classes
        .store
        .state()
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .is_some_and(|v| v == "true")
        })
        .max_by_key(|c| c.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .and_then(|c| c.metadata.name.clone())
}

/// Does the claim's class bind only once a pod using it is scheduled?
pub fn waits_for_consumer(shared: &Shared, class: &str) -> bool {
    shared
        .storage_classes
        .store
        .state()
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class))
        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}
