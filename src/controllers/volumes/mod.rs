//! The persistent volume controller (upstream's PV controller, simplified): claims without a
//! class get the default StorageClass, claims are bound to the volume provisioned for them or
//! to the smallest matching Available volume, volumes whose claim is gone are Released. The
//! built-in `local-path` StorageClass is ensured here; its provisioner runs on the nodes
//! (`crate::node::storage`), which create the directory and the PersistentVolume.

mod binder;
mod class;

pub use class::{
    waits_for_consumer, LOCAL_PATH_CLASS, LOCAL_PATH_NODE, LOCAL_PATH_PROVISIONER, PROVISIONED_BY,
    SELECTED_NODE,
};

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use kube::ResourceExt;

use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;

/// Keys: `claim/NS/NAME` and `volume/NAME`.
const CLAIM: &str = "claim/";
const VOLUME: &str = "volume/";

pub struct VolumeController {
    shared: Arc<Shared>,
}

impl VolumeController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(VolumeController { shared })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        // A claim change concerns the claim and its volume (Released once the claim goes).
        let claims = self.shared.claims.changes().flat_map(|c| {
            let mut keys = vec![format!(
                "{CLAIM}{}",
                key(c.obj.namespace().as_deref(), &c.obj.name_any())
            )];
            if let Some(v) = c.obj.spec.as_ref().and_then(|s| s.volume_name.as_ref()) {
                keys.push(format!("{VOLUME}{v}"));
            }
            futures_util::stream::iter(keys)
        });
        // A volume change concerns the volume and the claim it names.
        let volumes = self.shared.volumes.changes().flat_map(|c| {
            let mut keys = vec![format!("{VOLUME}{}", c.obj.name_any())];
            if let Some(r) = c.obj.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                if let (Some(ns), Some(name)) = (&r.namespace, &r.name) {
                    keys.push(format!("{CLAIM}{}", key(Some(ns), name)));
                }
            }
            futures_util::stream::iter(keys)
        });
        // A new default class gives waiting claims one.
        let me = self.clone();
        let classes = self
            .shared
            .storage_classes
            .changes()
            .flat_map(move |_| futures_util::stream::iter(me.claim_keys()));
        // A pod that goes may release a claim being deleted.
        let pods = self.shared.pods.changes().flat_map(|c| {
            let ns = c.obj.namespace();
            let keys: Vec<String> = c
                .obj
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|pvc| format!("{CLAIM}{}", key(ns.as_deref(), &pvc.claim_name)))
                .collect();
            futures_util::stream::iter(keys)
        });
        let ensure = futures_util::stream::once(async { String::from("ensure-class") });
        vec![
            claims.boxed_local(),
            pods.boxed_local(),
            volumes.boxed_local(),
            classes.boxed_local(),
            ensure.boxed_local(),
        ]
    }

    fn claim_keys(&self) -> Vec<String> {
        self.shared
            .claims
            .store
            .state()
            .iter()
            .map(|c| format!("{CLAIM}{}", key(c.namespace().as_deref(), &c.name_any())))
            .collect()
    }
}

impl Reconciler for VolumeController {
    fn name(&self) -> &'static str {
        "persistentvolume"
    }

    fn keys(&self) -> Vec<String> {
        let mut keys = self.claim_keys();
        keys.extend(
            self.shared
                .volumes
                .store
                .state()
                .iter()
                .map(|v| format!("{VOLUME}{}", v.name_any())),
        );
        keys.push("ensure-class".into());
        keys
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            if let Some(k) = key.strip_prefix(CLAIM) {
                binder::sync_claim(&self.shared, k).await
            } else if let Some(name) = key.strip_prefix(VOLUME) {
                binder::sync_volume(&self.shared, name).await
            } else {
                class::ensure_local_path(&self.shared).await
            }
        })
    }
}
