//! The DaemonSet controller (upstream's pkg/controller/daemon, in the same pieces): one pod
//! per eligible node, placed through node affinity and bound by the scheduler; a
//! ControllerRevision per template; RollingUpdate (maxUnavailable/maxSurge) or OnDelete;
//! status for `kubectl get ds` and `kubectl rollout status`.

mod actions;
mod backoff;
mod eligible;
mod manage;
mod rolling;
mod status;
mod sync;
mod template;
mod view;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::{ready, LocalBoxFuture};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::ResourceExt;

use super::claim::orphan_owners;
use super::expectations::Expectations;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;
use backoff::Backoff;

pub struct DaemonSetController {
    shared: Arc<Shared>,
    expectations: RefCell<Expectations>,
    backoff: RefCell<Backoff>,
    /// Last seen fingerprint of each node (see `eligible::node_fingerprint`).
    nodes_seen: RefCell<HashMap<String, String>>,
}

/// The key of the DaemonSet controlling an object, if one does.
fn owner_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    controller_of(meta)
        .filter(|o| o.kind == "DaemonSet")
        .map(|o| key(meta.namespace.as_deref(), &o.name))
}

impl DaemonSetController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(DaemonSetController {
            shared,
            expectations: RefCell::new(Expectations::default()),
            backoff: RefCell::new(Backoff::default()),
            nodes_seen: RefCell::default(),
        })
    }

    /// DaemonSet changes; pod and ControllerRevision changes mapped to their DaemonSet (pods
    /// lowering the expectations on the way); node changes that can matter fan out to every
    /// DaemonSet.
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let own = self
            .shared
            .daemonsets
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        let pods = self.shared.pods.changes().flat_map(move |c| {
            let owner = owner_key(&c.obj.metadata);
            if let (Some(k), Some(uid)) = (&owner, c.obj.uid()) {
                let gone = c.deleted || c.obj.metadata.deletion_timestamp.is_some();
                me.expectations.borrow_mut().observed(k, &uid, gone);
            }
            let keys = match owner {
                Some(k) => vec![k],
                None if c.deleted => Vec::new(),
                None => {
                    let sets = me.shared.daemonsets.store.state();
                    orphan_owners(&sets, &c.obj.metadata, |d| {
                        d.spec.as_ref().map(|s| &s.selector)
                    })
                }
            };
            futures_util::stream::iter(keys)
        });
        let revisions = self
            .shared
            .revisions
            .changes()
            .filter_map(|c| ready(owner_key(&c.obj.metadata)));
        let me = self.clone();
        let nodes = self
            .shared
            .nodes
            .changes()
            .filter_map(move |c| {
                let name = c.obj.name_any();
                let mut seen = me.nodes_seen.borrow_mut();
                let changed = if c.deleted {
                    seen.remove(&name);
                    true
                } else {
                    let print = eligible::node_fingerprint(&c.obj);
                    seen.insert(name, print.clone()).as_ref() != Some(&print)
                };
                ready(changed.then(|| me.keys()))
            })
            .flat_map(futures_util::stream::iter);
        vec![
            own.boxed_local(),
            pods.boxed_local(),
            revisions.boxed_local(),
            nodes.boxed_local(),
        ]
    }
}

impl Reconciler for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .daemonsets
            .store
            .state()
            .iter()
            .map(|o: &Arc<DaemonSet>| key(o.namespace().as_deref(), &o.name_any()))
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self, &key).await })
    }
}
