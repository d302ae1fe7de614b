//! The garbage collector, for every kind with owner references: dependents whose owners are
//! gone are deleted (Background), an owner deleted in the foreground (`foregroundDeletion`
//! finalizer) goes after its dependents, an owner deleted with `orphan` leaves them without
//! the reference. It works on a graph of every object's metadata (`graph`), keyed by uid.

mod graph;

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use serde_json::json;
use tracing::info;

use super::runtime::{ReconcileResult, Reconciler};
use super::shared::Shared;
use graph::{Changes, Entry, Graph};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

pub struct GarbageCollector {
    graph: Rc<Graph>,
    changes: std::cell::RefCell<Option<Changes>>,
}

/// A delete or patch of an object that is already gone has nothing left to do.
fn gone_ok<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

impl GarbageCollector {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        let (graph, changes) = Graph::start(shared.client.clone());
        Rc::new(GarbageCollector {
            graph,
            changes: std::cell::RefCell::new(Some(changes)),
        })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        self.changes
            .borrow_mut()
            .take()
            .map(|c| vec![graph::stream(c).boxed_local()])
            .unwrap_or_default()
    }

    /// Whether the owner still exists with that uid, asking the API when the graph says no
    /// (it may lag behind a new owner). An owner of a kind the API does not serve counts as
    /// existing: the collector cannot tell.
    async fn owner_exists(
        &self,
        dependent: &Entry,
        o: &OwnerReference,
    ) -> Result<bool, kube::Error> {
        if self.graph.get(&o.uid).is_some() {
            return Ok(true);
        }
        let Some(kind) = self.graph.kind_of(o) else {
            return Ok(true);
        };
        match self
            .graph
            .api(&kind, dependent.namespace())
            .get(&o.name)
            .await
        {
            Ok(live) => Ok(live.metadata.uid.as_deref() == Some(o.uid.as_str())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, e: &Entry, policy: PropagationPolicy) -> Result<(), kube::Error> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        let api = self.graph.api(&e.kind, e.namespace());
        gone_ok(api.delete(e.name(), &dp).await)
    }

    async fn set_owners(&self, e: &Entry, refs: Vec<OwnerReference>) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {"ownerReferences": refs}});
        let api = self.graph.api(&e.kind, e.namespace());
        gone_ok(
            api.patch(e.name(), &PatchParams::default(), &Patch::Merge(patch))
                .await,
        )
    }

    async fn drop_finalizer(&self, e: &Entry, finalizer: &str) -> Result<(), kube::Error> {
        let left: Vec<String> = e
            .meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        let patch =
            json!({"metadata": {"finalizers": left, "resourceVersion": e.meta.resource_version}});
        let api = self.graph.api(&e.kind, e.namespace());
        gone_ok(
            api.patch(e.name(), &PatchParams::default(), &Patch::Merge(patch))
                .await,
        )
    }

    async fn collect(&self, uid: &str) -> ReconcileResult {
        let Some(e) = self.graph.get(uid) else {
            return Ok(None);
        };
        // As an owner being deleted.
        if e.deleting() && e.has_finalizer(ORPHAN) {
            for d in self.graph.dependents(uid) {
                let refs: Vec<OwnerReference> = d
                    .owners()
                    .iter()
                    .filter(|o| o.uid != uid)
                    .cloned()
                    .collect();
                self.set_owners(&d, refs).await?;
            }
            self.drop_finalizer(&e, ORPHAN).await?;
            return Ok(None);
        }
        if e.deleting() && e.has_finalizer(FOREGROUND) {
            let deps = self.graph.dependents(uid);
            if deps.is_empty() {
                info!(kind = %e.kind.resource.kind, namespace = e.namespace(), name = e.name(), "foreground deletion: dependents gone");
                self.drop_finalizer(&e, FOREGROUND).await?;
                return Ok(None);
            }
            for d in deps.iter().filter(|d| !d.deleting()) {
                self.delete(d, PropagationPolicy::Foreground).await?;
            }
            // Dependents that finish deleting requeue this owner through the graph.
            return Ok(Some(std::time::Duration::from_secs(5)));
        }
        // As a dependent.
        if e.owners().is_empty() {
            return Ok(None);
        }
        let mut alive = Vec::new();
        let mut foreground_owner = false;
        for o in e.owners() {
            if self.owner_exists(&e, o).await? {
                foreground_owner |= self
                    .graph
                    .get(&o.uid)
                    .is_some_and(|owner| owner.deleting() && owner.has_finalizer(FOREGROUND));
                alive.push(o.clone());
            }
        }
        if alive.is_empty() {
            if !e.deleting() {
                self.delete(&e, PropagationPolicy::Background).await?;
            }
        } else if foreground_owner && !e.deleting() {
            self.delete(&e, PropagationPolicy::Foreground).await?;
        } else if alive.len() < e.owners().len() {
            self.set_owners(&e, alive).await?;
        }
        Ok(None)
    }
}

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }

    fn keys(&self) -> Vec<String> {
        self.graph.candidates()
    }

    fn reconcile(self: Rc<Self>, uid: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { self.collect(&uid).await })
    }
}
