//! Claims placed on this node by the scheduler get a directory and a PersistentVolume.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::View;
use crate::controllers::volumes::{
    LOCAL_PATH_NODE, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE,
};
use crate::node::NodeError;

/// The volume's name, as upstream provisioners name them.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

/// Claims of a local-path class placed here and not provisioned yet.
fn wanted(view: &View) -> Vec<(std::sync::Arc<PersistentVolumeClaim>, String)> {
    let classes = view.classes.state();
    view.claims
        .state()
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| c.annotations().get(SELECTED_NODE) == Some(&view.node))
        .filter(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_none_or(str::is_empty)
        })
        .filter_map(|c| {
            let class = c.spec.as_ref()?.storage_class_name.clone()?;
            let sc = classes.iter().find(|s| s.name_any() == class)?;
            (sc.provisioner == LOCAL_PATH_PROVISIONER).then(|| {
                let policy = sc.reclaim_policy.clone().unwrap_or_else(|| "Delete".into());
                (c, policy)
            })
        })
        .filter(|(c, _)| {
            let name = volume_name(c);
            !view.volumes.state().iter().any(|v| v.name_any() == name)
        })
        .collect()
}

pub async fn run(view: &View) -> Result<(), NodeError> {
    let api: Api<PersistentVolume> = Api::all(view.client.clone());
    for (claim, policy) in wanted(view) {
        let name = volume_name(&claim);
        let ns = claim.namespace().unwrap_or_default();
        let dir = view.root.join(format!("{name}_{ns}_{}", claim.name_any()));
        std::fs::create_dir_all(&dir)?;
        // Any container user may write, as local-path volumes upstream.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let spec = claim.spec.clone().unwrap_or_default();
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map_or_else(|| "1Gi".to_string(), |q| q.0.clone());
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {
                PROVISIONED_BY: LOCAL_PATH_PROVISIONER,
                LOCAL_PATH_NODE: view.node,
            }},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": policy,
                "storageClassName": spec.storage_class_name,
                "volumeMode": "Filesystem",
                "hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [view.node]}
                ]}]}},
                "claimRef": {
                    "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                    "namespace": ns, "name": claim.name_any(), "uid": claim.uid(),
                },
            },
        }))?;
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                info!(volume = %name, claim = %format!("{ns}/{}", claim.name_any()), "provisioned")
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
