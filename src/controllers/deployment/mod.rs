//! The Deployment controller (upstream's deployment_controller, in the same pieces): one
//! ReplicaSet per pod template, rolled out by RollingUpdate or Recreate, scaled
//! proportionally mid-rollout, history trimmed, status and conditions for `rollout status`.

mod progress;
mod recreate;
mod replicasets;
mod rolling;
mod scale;
mod sync;

pub(crate) use replicasets::template_hash;

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::claim::orphan_owners;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

pub struct DeploymentController {
    shared: Arc<Shared>,
}

impl DeploymentController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(DeploymentController { shared })
    }

    fn owner_of_rs(&self, rs: &ReplicaSet) -> Option<String> {
        controller_of(&rs.metadata)
            .filter(|o| o.kind == "Deployment")
            .map(|o| key(rs.namespace().as_deref(), &o.name))
    }

    /// Deployment changes; ReplicaSet changes and pod changes (for Recreate), mapped to
    /// the owning Deployment.
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let ds = self
            .shared
            .deployments
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        let rss = self.shared.replicasets.changes().flat_map(move |c| {
            let keys = match me.owner_of_rs(&c.obj) {
                Some(k) => vec![k],
                None if c.deleted => Vec::new(),
                None => {
                    let ds = me.shared.deployments.store.state();
                    orphan_owners(&ds, &c.obj.metadata, |d| {
                        d.spec.as_ref().map(|s| &s.selector)
                    })
                }
            };
            futures_util::stream::iter(keys)
        });
        let me = self.clone();
        let pods = self.shared.pods.changes().filter_map(move |c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == "ReplicaSet")
                .and_then(|o| {
                    me.shared.replicasets.store.get(&obj_ref::<ReplicaSet>(
                        c.obj.namespace().as_deref(),
                        &o.name,
                    ))
                })
                .and_then(|rs| me.owner_of_rs(&rs));
            futures_util::future::ready(owner)
        });
        vec![ds.boxed_local(), rss.boxed_local(), pods.boxed_local()]
    }
}

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .deployments
            .store
            .state()
            .iter()
            .map(|d: &Arc<Deployment>| key(d.namespace().as_deref(), &d.name_any()))
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self, &key).await })
    }
}
