//! Released local-path volumes of this node under the Delete policy: directory, then object.

use std::path::Path;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use tracing::{info, warn};

use super::View;
use crate::controllers::volumes::LOCAL_PATH_NODE;
use crate::node::NodeError;

fn released_here(view: &View, v: &PersistentVolume) -> Option<String> {
    let spec = v.spec.as_ref()?;
    let phase = v.status.as_ref()?.phase.as_deref()?;
    (v.annotations().get(LOCAL_PATH_NODE) == Some(&view.node)
        && phase == "Released"
        && spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete"))
    .then(|| spec.host_path.as_ref().map(|h| h.path.clone()))
    .flatten()
}

pub async fn run(view: &View) -> Result<(), NodeError> {
    let api: Api<PersistentVolume> = Api::all(view.client.clone());
    for v in view.volumes.state() {
        let Some(path) = released_here(view, &v) else {
            continue;
        };
        // Only ever a directory this provisioner made.
        let path = Path::new(&path);
        if path.parent() != Some(view.root.as_path()) {
            warn!(volume = %v.name_any(), "not deleting {}: outside {}", path.display(), view.root.display());
            continue;
        }
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match api.delete(&v.name_any(), &DeleteParams::default()).await {
            Ok(_) => info!(volume = %v.name_any(), "deleted released volume"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
