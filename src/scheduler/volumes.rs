//! Pods with PersistentVolumeClaims (upstream's VolumeBinding plugin, simplified): a missing
//! claim or an unbound claim of an Immediate class keeps the pod pending; a bound claim's
//! volume node affinity limits the nodes; claims of a WaitForFirstConsumer class are
//! annotated with the chosen node before the pod is bound, for the provisioner.

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeClaim, Pod,
};
use kube::ResourceExt;

use crate::controllers::obj_ref;
use crate::controllers::volumes::{waits_for_consumer, SELECTED_NODE};
use crate::controllers::Shared;

#[derive(Debug, Default)]
pub struct Needs {
    /// Every one must match the node (volume node affinities).
    pub node_affinity: Vec<NodeSelector>,
    /// Claims to annotate with the chosen node.
    pub provision: Vec<String>,
}

/// What the pod's claims require, or why it cannot be scheduled yet.
pub fn needs(shared: &Shared, pod: &Pod) -> Result<Needs, String> {
    let ns = pod.namespace();
    let mut out = Needs::default();
    let claims = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref());
    for c in claims {
        let Some(claim) = shared.claims.store.get(&obj_ref::<PersistentVolumeClaim>(
            ns.as_deref(),
            &c.claim_name,
        )) else {
            return Err(format!(
                "persistentvolumeclaim \"{}\" not found",
                c.claim_name
            ));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "persistentvolumeclaim \"{}\" is being deleted",
                c.claim_name
            ));
        }
        let spec = claim.spec.clone().unwrap_or_default();
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => {
                let pv = shared
                    .volumes
                    .store
                    .get(&obj_ref::<PersistentVolume>(None, v))
                    .ok_or_else(|| format!("persistentvolume \"{v}\" not found"))?;
                if let Some(req) = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.clone())
                {
                    out.node_affinity.push(req);
                }
            }
            None => {
                let class = spec.storage_class_name.unwrap_or_default();
                let delayed = waits_for_consumer(shared, &class);
                if !delayed {
                    return Err("pod has unbound immediate PersistentVolumeClaims".into());
                }
                match claim.annotations().get(SELECTED_NODE) {
                    // Chosen before (provisioning under way): that node again.
                    Some(node) => out.node_affinity.push(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_fields: Some(vec![NodeSelectorRequirement {
                                key: "metadata.name".into(),
                                operator: "In".into(),
                                values: Some(vec![node.clone()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                    None => out.provision.push(claim.name_any()),
                }
            }
        }
    }
    Ok(out)
}
