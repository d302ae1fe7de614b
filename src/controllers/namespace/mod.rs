//! The namespace controller (upstream's `namespace-controller`): a namespace being deleted
//! has its content deleted through the API, kind by kind as discovery lists them (so
//! finalizers and graceful pod deletion are honoured), its status conditions say what
//! remains, and once it is empty the `kubernetes` finalizer is removed through
//! `namespaces/{name}/finalize`, which lets the API server remove the namespace.

mod deletion;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ApiResource;
use kube::ResourceExt;

use super::runtime::{ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

/// The finalizer of namespaces in `spec.finalizers` this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// How long one discovery of the namespaced kinds is used.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

pub struct NamespaceController {
    shared: Arc<Shared>,
    /// The namespaced kinds that can be listed and deleted, and when they were discovered.
    kinds: RefCell<Option<(Instant, Rc<Vec<ApiResource>>)>>,
}

impl NamespaceController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(NamespaceController {
            shared,
            kinds: RefCell::new(None),
        })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let deleting = self
            .shared
            .namespaces
            .changes()
            .filter(|c| {
                std::future::ready(!c.deleted && c.obj.metadata.deletion_timestamp.is_some())
            })
            .map(|c| c.obj.name_any());
        vec![deleting.boxed_local()]
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.shared
            .namespaces
            .store
            .get(&obj_ref::<Namespace>(None, name))
    }
}

impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .namespaces
            .store
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .map(|n| n.name_any())
            .collect()
    }

    fn reconcile(self: Rc<Self>, name: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let Some(ns) = self.namespace(&name) else {
                return Ok(None);
            };
            let ours = ns
                .spec
                .as_ref()
                .and_then(|s| s.finalizers.as_ref())
                .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
            if ns.metadata.deletion_timestamp.is_none() || !ours {
                return Ok(None);
            }
            deletion::run(&self, &ns).await
        })
    }
}
