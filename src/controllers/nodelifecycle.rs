//! The node lifecycle controller: a node whose Lease is older than the grace period is
//! marked Ready=Unknown and tainted `node.kubernetes.io/unreachable` (NoSchedule and
//! NoExecute); pods on a NoExecute-tainted node that do not tolerate the taint (or tolerate
//! it only for `tolerationSeconds`) are evicted, so their controllers replace them elsewhere.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::runtime::{ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};
use crate::scheduler::filter::toleration_matches;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub struct NodeLifecycle {
    shared: Arc<Shared>,
    grace: Duration,
}

impl NodeLifecycle {
    pub fn new(shared: Arc<Shared>, grace: Duration) -> Rc<Self> {
        Rc::new(NodeLifecycle { shared, grace })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let nodes = self.shared.nodes.changes().map(|c| c.obj.name_any());
        let leases = self.shared.leases.changes().map(|c| c.obj.name_any());
        let pods = self.shared.pods.changes().filter_map(|c| {
            futures_util::future::ready(
                c.obj
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty()),
            )
        });
        vec![
            nodes.boxed_local(),
            leases.boxed_local(),
            pods.boxed_local(),
        ]
    }

    /// Seconds since the node's agent last renewed its lease (or registered).
    fn silence(&self, node: &Node) -> i64 {
        let lease = self
            .shared
            .leases
            .store
            .get(&obj_ref::<Lease>(Some("kube-node-lease"), &node.name_any()));
        let last = lease
            .and_then(|l| {
                l.spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| t.0)
            })
            .or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0));
        last.map_or(0, |t| jiff::Timestamp::now().as_second() - t.as_second())
    }

    async fn mark_unreachable(&self, node: &Node) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.shared.client.clone());
        let name = node.name_any();
        let now = crate::api_time_now();
        let mut taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !taints.iter().any(|t| t.key == UNREACHABLE) {
            for effect in ["NoSchedule", "NoExecute"] {
                taints.push(Taint {
                    key: UNREACHABLE.into(),
                    effect: effect.into(),
                    time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::now(),
                    )),
                    value: None,
                });
            }
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await?;
        }
        let ready_unknown = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "Unknown");
        if !ready_unknown {
            let patch = json!({"status": {"conditions": [{
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "lastTransitionTime": now, "lastHeartbeatTime": now,
            }]}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await?;
            info!(node = %name, "node stopped renewing its lease: NotReady, tainted unreachable");
            self.shared.recorder.record(
                node,
                false,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
        }
        Ok(())
    }

    /// The unreachable taints go once the node is Ready again.
    async fn clear_unreachable(&self, node: &Node) -> Result<(), kube::Error> {
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !taints.iter().any(|t| t.key == UNREACHABLE) {
            return Ok(());
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if ready {
            let left: Vec<Taint> = taints
                .into_iter()
                .filter(|t| t.key != UNREACHABLE)
                .collect();
            let api: Api<Node> = Api::all(self.shared.client.clone());
            api.patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": left}})),
            )
            .await?;
        }
        Ok(())
    }

    /// Evicts pods that do not tolerate the node's NoExecute taints (now, or once their
    /// tolerationSeconds ran out); returns when the next eviction is due.
    async fn evict(&self, node: &Node) -> Result<Option<Duration>, kube::Error> {
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            return Ok(None);
        }
        let name = node.name_any();
        let now = jiff::Timestamp::now().as_second();
        let mut next: Option<i64> = None;
        let pods: Vec<Arc<Pod>> = self
            .shared
            .pods
            .store
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
            })
            .collect();
        for p in pods {
            let tolerations = p
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            // The earliest moment any taint stops being tolerated.
            let mut evict_at: Option<i64> = None;
            for t in &taints {
                let added = t.time_added.as_ref().map_or(now, |x| x.0.as_second());
                let at = match tolerations.iter().find(|tol| toleration_matches(tol, t)) {
                    None => Some(added),
                    Some(tol) => tol.toleration_seconds.map(|s| added + s),
                };
                if let Some(at) = at {
                    evict_at = Some(evict_at.map_or(at, |e: i64| e.min(at)));
                }
            }
            let Some(at) = evict_at else { continue };
            if at > now {
                next = Some(next.map_or(at, |n: i64| n.min(at)));
                continue;
            }
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                &p.namespace().unwrap_or_default(),
            );
            match api.delete(&p.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    let msg = format!(
                        "Marking for deletion Pod {}/{}",
                        p.namespace().unwrap_or_default(),
                        p.name_any()
                    );
                    self.shared
                        .recorder
                        .record(p.as_ref(), false, "TaintManagerEviction", msg);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(next.map(|n| Duration::from_secs((n - now).max(1) as u64)))
    }
}

impl Reconciler for NodeLifecycle {
    fn name(&self) -> &'static str {
        "nodelifecycle"
    }

    fn keys(&self) -> Vec<String> {
        self.shared.node_names()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let Some(node) = self.shared.nodes.store.get(&obj_ref::<Node>(None, &key)) else {
                return Ok(None);
            };
            let silent = self.silence(&node);
            let grace = self.grace.as_secs() as i64;
            let mut requeue = None;
            if silent > grace {
                self.mark_unreachable(&node).await?;
            } else {
                self.clear_unreachable(&node).await?;
                requeue = Some(Duration::from_secs((grace - silent).max(0) as u64 + 1));
            }
            let evict = self.evict(&node).await?;
            Ok(match (requeue, evict) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
    }
}
