//! The ReplicaSet controller: as many active pods as `replicas`, owned and labelled, created in
//! slow-start batches and deleted in upstream's preference order; status from the pods.

mod status;
mod sync;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;

use super::expectations::Expectations;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;

pub struct ReplicaSetController {
    shared: Arc<Shared>,
    expectations: RefCell<Expectations>,
}

impl ReplicaSetController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(ReplicaSetController {
            shared,
            expectations: RefCell::new(Expectations::default()),
        })
    }

    /// Keys to reconcile: ReplicaSet changes, and pod changes mapped to their controller
    /// (lowering the expectations of creations and deletions on the way).
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let rs = self
            .shared
            .replicasets
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        let pods = self.shared.pods.changes().filter_map(move |c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == "ReplicaSet")
                .map(|o| key(c.obj.namespace().as_deref(), &o.name));
            if let (Some(k), Some(uid)) = (&owner, c.obj.uid()) {
                let gone = c.deleted || c.obj.metadata.deletion_timestamp.is_some();
                me.expectations.borrow_mut().observed(k, &uid, gone);
            }
            futures_util::future::ready(owner)
        });
        vec![rs.boxed_local(), pods.boxed_local()]
    }
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .replicasets
            .store
            .state()
            .iter()
            .map(|rs: &Arc<ReplicaSet>| key(rs.namespace().as_deref(), &rs.name_any()))
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self, &key).await })
    }
}
