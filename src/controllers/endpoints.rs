//! The endpoints controller: for each Service with a selector, the Endpoints (ready
//! `addresses`, `notReadyAddresses`) and an EndpointSlice of its matching pods, with named
//! target ports resolved against each pod's container ports.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::pods::{is_ready, owner_ref};
use super::runtime::{key, split, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

pub struct EndpointsController {
    shared: Arc<Shared>,
}

impl EndpointsController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(EndpointsController { shared })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let svcs = self
            .shared
            .services
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        // A pod change concerns every Service of its namespace that selects it (and those
        // that did before: the resync catches label changes that leave a selection).
        let pods = self.shared.pods.changes().flat_map(move |c| {
            let ns = c.obj.namespace();
            let labels = c.obj.labels().clone();
            let keys: Vec<String> = me
                .shared
                .services
                .store
                .state()
                .iter()
                .filter(|s| s.namespace() == ns && selects(s, &labels))
                .map(|s| key(ns.as_deref(), &s.name_any()))
                .collect();
            futures_util::stream::iter(keys)
        });
        vec![svcs.boxed_local(), pods.boxed_local()]
    }

    fn api(&self, ns: &str, kind: &str) -> Api<DynamicObject> {
        let (group, plural) = if kind == "Endpoints" {
            ("", "endpoints")
        } else {
            ("discovery.k8s.io", "endpointslices")
        };
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
        Api::namespaced_with(self.shared.client.clone(), ns, &ar)
    }

    /// Creates or replaces `kind/name` so that its `fields` are as given.
    async fn put(&self, ns: &str, kind: &str, name: &str, body: Value) -> Result<(), kube::Error> {
        let api = self.api(ns, kind);
        let fields: Vec<&str> = if kind == "Endpoints" {
            vec!["subsets"]
        } else {
            vec!["addressType", "endpoints", "ports"]
        };
        let obj: DynamicObject = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        match api.get(name).await {
            Ok(current) => {
                let same = fields
                    .iter()
                    .all(|f| current.data.get(f) == obj.data.get(f));
                if same {
                    return Ok(());
                }
                let mut next = obj;
                next.metadata.resource_version = current.metadata.resource_version;
                api.replace(name, &PostParams::default(), &next).await?;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                api.create(&PostParams::default(), &obj).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn remove(&self, ns: &str, name: &str) -> Result<(), kube::Error> {
        for kind in ["Endpoints", "EndpointSlice"] {
            match self
                .api(ns, kind)
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Ready addresses, not-ready addresses and the ports they share: one Endpoints subset.
#[derive(Default)]
struct Subset {
    ready: Vec<Value>,
    not_ready: Vec<Value>,
    ports: Vec<Value>,
}

fn selects(svc: &Service, labels: &BTreeMap<String, String>) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The pod port a service port targets: a number, or a named container port.
fn resolve(p: &ServicePort, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &p.target_port {
        None => Some(p.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .map(|cp| cp.container_port),
    }
}

impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn keys(&self) -> Vec<String> {
        self.shared.service_keys()
    }

    fn reconcile(self: Rc<Self>, k: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let (ns, name) = split(&k);
            let ns_s = ns.unwrap_or("default").to_string();
            let Some(svc) = self
                .shared
                .services
                .store
                .get(&obj_ref::<Service>(ns, name))
            else {
                self.remove(&ns_s, name).await?;
                return Ok(None);
            };
            let spec = svc.spec.clone().unwrap_or_default();
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                return Ok(None);
            }
            let ports = spec.ports.clone().unwrap_or_default();
            let mut pods: Vec<Arc<Pod>> = self
                .shared
                .pods
                .store
                .state()
                .into_iter()
                .filter(|p| p.namespace().as_deref() == ns && selects(&svc, p.labels()))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_deref())
                        .is_some_and(|ip| !ip.is_empty())
                })
                .collect();
            pods.sort_by_key(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()));
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);

            // Endpoints: one subset per distinct set of resolved ports.
            let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
            let mut slice_endpoints = Vec::new();
            let mut slice_ports: Option<Vec<Value>> = None;
            for p in &pods {
                let resolved: Vec<Value> = ports
                    .iter()
                    .filter_map(|sp| {
                        resolve(sp, p).map(|port| {
                            let mut v = json!({"port": port, "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".into())});
                            if let Some(n) = sp.name.as_ref().filter(|n| !n.is_empty()) {
                                v["name"] = json!(n);
                            }
                            v
                        })
                    })
                    .collect();
                let ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default();
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                let target = json!({"kind": "Pod", "name": p.name_any(), "namespace": p.namespace(), "uid": p.uid()});
                let address = json!({"ip": ip, "nodeName": node, "targetRef": target});
                let ready = is_ready(p) || publish_not_ready;
                let entry = subsets
                    .entry(serde_json::to_string(&resolved).unwrap_or_default())
                    .or_insert_with(|| Subset {
                        ports: resolved.clone(),
                        ..Default::default()
                    });
                if ready {
                    entry.ready.push(address);
                } else {
                    entry.not_ready.push(address);
                }
                // A slice's port always has a name ("" when unnamed), as upstream writes
                // it: kubectl describe dereferences it.
                slice_ports.get_or_insert_with(|| {
                    resolved
                        .iter()
                        .map(|p| {
                            let mut p = p.clone();
                            if p.get("name").is_none() {
                                p["name"] = json!("");
                            }
                            p
                        })
                        .collect()
                });
                slice_endpoints.push(json!({
                    "addresses": [ip], "nodeName": node, "targetRef": target,
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                }));
            }
            let subsets: Vec<Value> = subsets
                .into_values()
                .map(|sub| {
                    let mut s = json!({"ports": sub.ports});
                    if !sub.ready.is_empty() {
                        s["addresses"] = json!(sub.ready);
                    }
                    if !sub.not_ready.is_empty() {
                        s["notReadyAddresses"] = json!(sub.not_ready);
                    }
                    s
                })
                .collect();
            let labels = svc.labels().clone();
            let endpoints = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns_s, "labels": labels},
                "subsets": subsets,
            });
            self.put(&ns_s, "Endpoints", name, endpoints).await?;
            let mut slice_labels = labels.clone();
            slice_labels.insert("kubernetes.io/service-name".into(), name.to_string());
            slice_labels.insert(
                "endpointslice.kubernetes.io/managed-by".into(),
                "endpointslice-controller.k8s.io".into(),
            );
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": ns_s, "labels": slice_labels,
                    "ownerReferences": [owner_ref("v1", "Service", &svc.metadata)]},
                "addressType": "IPv4",
                "endpoints": slice_endpoints,
                "ports": slice_ports.unwrap_or_default(),
            });
            self.put(&ns_s, "EndpointSlice", name, slice).await?;
            Ok(None)
        })
    }
}
