//! The ReplicaSet controller: as many active pods as `replicas`, owned and labelled, created in
//! slow-start batches and deleted in upstream's preference order; status from the pods. The
//! same logic keeps ReplicationControllers (seen as ReplicaSets whose selector is their
//! label map), as upstream's replication controller does.

mod status;
mod sync;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::ApiResource;
use kube::ResourceExt;

use super::claim::orphan_owners;
use super::expectations::Expectations;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

/// Which kind the controller keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    ReplicaSet,
    ReplicationController,
}

impl Flavor {
    pub fn api_version(self) -> &'static str {
        match self {
            Flavor::ReplicaSet => "apps/v1",
            Flavor::ReplicationController => "v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Flavor::ReplicaSet => "ReplicaSet",
            Flavor::ReplicationController => "ReplicationController",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Flavor::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
            Flavor::ReplicationController => ApiResource::erase::<ReplicationController>(&()),
        }
    }
}

/// A ReplicationController as a ReplicaSet: its label map is the selector's `matchLabels`.
fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let status = rc.status.clone();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: spec.selector,
                match_expressions: None,
            },
            template: spec.template,
        }),
        status: status.map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            ..Default::default()
        }),
    }
}

pub struct ReplicaSetController {
    shared: Arc<Shared>,
    expectations: RefCell<Expectations>,
    flavor: Flavor,
}

impl ReplicaSetController {
    pub fn new(shared: Arc<Shared>, flavor: Flavor) -> Rc<Self> {
        Rc::new(ReplicaSetController {
            shared,
            expectations: RefCell::new(Expectations::default()),
            flavor,
        })
    }

    /// The object of `namespace/name`, as a ReplicaSet.
    fn get(&self, ns: Option<&str>, name: &str) -> Option<Arc<ReplicaSet>> {
        match self.flavor {
            Flavor::ReplicaSet => self.shared.replicasets.store.get(&obj_ref(ns, name)),
            Flavor::ReplicationController => self
                .shared
                .replication_controllers
                .store
                .get(&obj_ref::<ReplicationController>(ns, name))
                .map(|rc| Arc::new(as_replica_set(&rc))),
        }
    }

    /// Keys of the sets that may adopt an orphan pod.
    fn orphan_owners(&self, pod: &ObjectMeta) -> Vec<String> {
        match self.flavor {
            Flavor::ReplicaSet => {
                let sets = self.shared.replicasets.store.state();
                orphan_owners(&sets, pod, |rs| rs.spec.as_ref().map(|s| &s.selector))
            }
            Flavor::ReplicationController => {
                let sets: Vec<_> = self
                    .shared
                    .replication_controllers
                    .store
                    .state()
                    .iter()
                    .map(|rc| Arc::new(as_replica_set(rc)))
                    .collect();
                orphan_owners(&sets, pod, |rs| rs.spec.as_ref().map(|s| &s.selector))
            }
        }
    }

    fn record(&self, rs: &ReplicaSet, warning: bool, reason: &str, message: String) {
        let kind = (self.flavor.api_version(), self.flavor.kind());
        self.shared
            .recorder
            .record_as(kind, &rs.metadata, warning, reason, message);
    }

    /// Keys to reconcile: ReplicaSet changes, and pod changes mapped to their controller
    /// (lowering the expectations of creations and deletions on the way).
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let own = match self.flavor {
            Flavor::ReplicaSet => self
                .shared
                .replicasets
                .changes()
                .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()))
                .boxed_local(),
            Flavor::ReplicationController => self
                .shared
                .replication_controllers
                .changes()
                .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()))
                .boxed_local(),
        };
        let me = self.clone();
        let kind = self.flavor.kind();
        let pods = self.shared.pods.changes().flat_map(move |c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == kind)
                .map(|o| key(c.obj.namespace().as_deref(), &o.name));
            if let (Some(k), Some(uid)) = (&owner, c.obj.uid()) {
                let gone = c.deleted || c.obj.metadata.deletion_timestamp.is_some();
                me.expectations.borrow_mut().observed(k, &uid, gone);
            }
            let keys = match owner {
                Some(k) => vec![k],
                None if c.deleted => Vec::new(),
                None => me.orphan_owners(&c.obj.metadata),
            };
            futures_util::stream::iter(keys)
        });
        vec![own, pods.boxed_local()]
    }
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::ReplicaSet => "replicaset",
            Flavor::ReplicationController => "replicationcontroller",
        }
    }

    fn keys(&self) -> Vec<String> {
        match self.flavor {
            Flavor::ReplicaSet => self
                .shared
                .replicasets
                .store
                .state()
                .iter()
                .map(|rs| key(rs.namespace().as_deref(), &rs.name_any()))
                .collect(),
            Flavor::ReplicationController => self
                .shared
                .replication_controllers
                .store
                .state()
                .iter()
                .map(|rc| key(rc.namespace().as_deref(), &rc.name_any()))
                .collect(),
        }
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self, &key).await })
    }
}
