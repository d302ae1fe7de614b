//! The StatefulSet controller: pods `NAME-0..N-1` with stable identities (hostname, subdomain
//! of the governing service, one PersistentVolumeClaim per template and ordinal, kept across
//! pod replacement and scale-down), created in order with each Ready before the next
//! (OrderedReady) or all at once (Parallel), deleted in reverse; RollingUpdate from the
//! highest ordinal down to the partition, or OnDelete; ControllerRevisions; status for
//! `kubectl rollout status`.

mod claims;
mod identity;
mod status;
mod sync;

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use kube::ResourceExt;

use super::claim::orphan_owners;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;

pub struct StatefulSetController {
    shared: Arc<Shared>,
}

impl StatefulSetController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(StatefulSetController { shared })
    }

    /// Keys: StatefulSet changes, and pod changes mapped to their controlling set.
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let sets = self
            .shared
            .statefulsets
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        let pods = self.shared.pods.changes().flat_map(move |c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == "StatefulSet")
                .map(|o| key(c.obj.namespace().as_deref(), &o.name));
            let keys = match owner {
                Some(k) => vec![k],
                None if c.deleted => Vec::new(),
                None => {
                    let sets = me.shared.statefulsets.store.state();
                    orphan_owners(&sets, &c.obj.metadata, |s| {
                        s.spec.as_ref().map(|s| &s.selector)
                    })
                }
            };
            futures_util::stream::iter(keys)
        });
        vec![sets.boxed_local(), pods.boxed_local()]
    }
}

impl Reconciler for StatefulSetController {
    fn name(&self) -> &'static str {
        "statefulset"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .statefulsets
            .store
            .state()
            .iter()
            .map(|s| key(s.namespace().as_deref(), &s.name_any()))
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self.shared, &key).await })
    }
}
