//! The LoadBalancer controller (leader-only): every `type: LoadBalancer` Service gets an
//! address from `services.load_balancer_pool` in `status.loadBalancer.ingress`, never one
//! another service holds; a service that stops being a LoadBalancer gives its address back.
//! The service proxy of one node answers for the address on the underlay (ARP).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::runtime::{key, split, ReconcileError, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

pub struct LoadBalancerController {
    shared: Arc<Shared>,
    pool: Vec<Ipv4Addr>,
    /// Service key -> address given by this term, until the cache shows it.
    pending: RefCell<BTreeMap<String, Ipv4Addr>>,
}

/// The pool addresses in a service's status.
pub fn held(svc: &Service) -> Vec<Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn is_lb(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && svc.metadata.deletion_timestamp.is_none()
}

impl LoadBalancerController {
    pub fn new(shared: Arc<Shared>, pool: Vec<Ipv4Addr>) -> Rc<Self> {
        Rc::new(LoadBalancerController {
            shared,
            pool,
            pending: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        vec![self
            .shared
            .services
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()))
            .boxed_local()]
    }

    /// A requested `spec.loadBalancerIP` if it is in the pool and free, else the first free.
    fn allocate(&self, k: &str, requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let mut pending = self.pending.borrow_mut();
        if let Some(ip) = pending.get(k) {
            return Some(*ip);
        }
        let mut used: BTreeSet<Ipv4Addr> = self
            .shared
            .services
            .store
            .state()
            .iter()
            .filter(|s| is_lb(s))
            .flat_map(|s| held(s))
            .collect();
        used.extend(pending.values().copied());
        let ip = match requested {
            Some(r) => Some(r).filter(|r| self.pool.contains(r) && !used.contains(r)),
            None => self.pool.iter().copied().find(|ip| !used.contains(ip)),
        }?;
        pending.insert(k.to_string(), ip);
        Some(ip)
    }

    async fn set_status(
        &self,
        svc: &Service,
        ingress: serde_json::Value,
    ) -> Result<(), ReconcileError> {
        let ns = svc.namespace().unwrap_or_default();
        let api: Api<Service> = Api::namespaced(self.shared.client.clone(), &ns);
        // resourceVersion: a compare-and-set against a concurrent change of the service.
        let patch = json!({
            "metadata": {"resourceVersion": svc.resource_version()},
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        api.patch_status(
            &svc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(|_| ())
        .map_err(ReconcileError::Api)
    }
}

impl Reconciler for LoadBalancerController {
    fn name(&self) -> &'static str {
        "loadbalancer"
    }

    fn keys(&self) -> Vec<String> {
        self.shared.service_keys()
    }

    fn reconcile(self: Rc<Self>, k: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let (ns, name) = split(&k);
            let Some(svc) = self
                .shared
                .services
                .store
                .get(&obj_ref::<Service>(ns, name))
            else {
                self.pending.borrow_mut().remove(&k);
                return Ok(None);
            };
            let have = held(&svc);
            if !is_lb(&svc) {
                self.pending.borrow_mut().remove(&k);
                if !have.is_empty() && svc.metadata.deletion_timestamp.is_none() {
                    self.set_status(&svc, json!(null)).await?;
                }
                return Ok(None);
            }
            if !have.is_empty() {
                self.pending.borrow_mut().remove(&k);
                return Ok(None);
            }
            let requested = svc
                .spec
                .as_ref()
                .and_then(|s| s.load_balancer_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            let Some(ip) = self.allocate(&k, requested) else {
                let why = match requested {
                    Some(r) => {
                        format!("requested loadBalancerIP {r} is not a free address of the pool")
                    }
                    None => "no free address in services.load_balancer_pool".to_string(),
                };
                self.shared
                    .recorder
                    .record(svc.as_ref(), true, "AllocationFailed", why);
                return Ok(Some(Duration::from_secs(30)));
            };
            if let Err(e) = self
                .set_status(&svc, json!([{"ip": ip.to_string(), "ipMode": "VIP"}]))
                .await
            {
                self.pending.borrow_mut().remove(&k);
                return Err(e);
            }
            info!(service = %k, %ip, "load balancer address assigned");
            self.shared.recorder.record(
                svc.as_ref(),
                false,
                "IPAllocated",
                format!("Assigned IP {ip}"),
            );
            Ok(None)
        })
    }
}
