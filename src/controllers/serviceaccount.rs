//! Two per-namespace controllers of kube-controller-manager:
//!
//! - the ServiceAccount controller (`serviceaccount-controller`): every Active namespace has
//!   the ServiceAccount `default`; one deleted is created again;
//! - the root CA publisher (`root-ca-cert-publisher`): every namespace has the ConfigMap
//!   `kube-root-ca.crt` whose `ca.crt` is the cluster CA, which pods' projected token volumes
//!   mount next to the token; one changed or deleted is put back.
//!
//! Both are keyed by namespace name.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::ResourceExt;
use tracing::info;

use super::runtime::{ReconcileError, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};
use crate::api::serviceaccounts::{DEFAULT_ACCOUNT, ROOT_CA_CONFIG_MAP};

/// The annotation upstream's publisher puts on `kube-root-ca.crt`.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The namespace if it is Active (not being deleted).
fn active(shared: &Shared, name: &str) -> Option<Arc<Namespace>> {
    let ns = shared
        .namespaces
        .store
        .get(&obj_ref::<Namespace>(None, name))?;
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    (!terminating).then_some(ns)
}

/// Namespaces created or changed: both controllers check each again.
fn namespace_changes(shared: &Shared) -> impl futures_util::Stream<Item = String> {
    shared
        .namespaces
        .changes()
        .filter(|c| std::future::ready(!c.deleted))
        .map(|c| c.obj.name_any())
}

fn namespace_keys(shared: &Shared) -> Vec<String> {
    shared
        .namespaces
        .store
        .state()
        .iter()
        .map(|n| n.name_any())
        .collect()
}

/// A create that lost to the namespace going away, or to another writer, is done.
fn settled(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 404
                || s.code == 409
                || (s.code == 403 && s.message.contains("being terminated"))
        }
        _ => false,
    }
}

pub struct ServiceAccountController {
    shared: Arc<Shared>,
}

impl ServiceAccountController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(ServiceAccountController { shared })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let namespaces = namespace_changes(&self.shared);
        // Only a deleted `default` needs work.
        let accounts = self
            .shared
            .service_accounts
            .changes()
            .filter(|c| std::future::ready(c.deleted && c.obj.name_any() == DEFAULT_ACCOUNT))
            .filter_map(|c| std::future::ready(c.obj.namespace()));
        vec![namespaces.boxed_local(), accounts.boxed_local()]
    }
}

impl Reconciler for ServiceAccountController {
    fn name(&self) -> &'static str {
        "serviceaccount"
    }

    fn keys(&self) -> Vec<String> {
        namespace_keys(&self.shared)
    }

    fn reconcile(self: Rc<Self>, ns: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            if active(&self.shared, &ns).is_none() {
                return Ok(None);
            }
            let cached = self
                .shared
                .service_accounts
                .store
                .get(&obj_ref::<ServiceAccount>(Some(&ns), DEFAULT_ACCOUNT));
            if cached.is_some() {
                return Ok(None);
            }
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(DEFAULT_ACCOUNT.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &ns);
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {
                    info!(namespace = %ns, "created the default serviceaccount");
                    Ok(None)
                }
                Err(e) if settled(&e) => Ok(None),
                Err(e) => Err(ReconcileError::Api(e)),
            }
        })
    }
}

pub struct RootCaPublisher {
    shared: Arc<Shared>,
    /// The cluster CA certificate (PEM).
    ca_pem: String,
}

impl RootCaPublisher {
    pub fn new(shared: Arc<Shared>, ca_pem: String) -> Rc<Self> {
        Rc::new(RootCaPublisher { shared, ca_pem })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let namespaces = namespace_changes(&self.shared);
        // The informer sees only `kube-root-ca.crt`: any change of one is its namespace's.
        let maps = self
            .shared
            .root_ca_config_maps
            .changes()
            .filter_map(|c| std::future::ready(c.obj.namespace()));
        vec![namespaces.boxed_local(), maps.boxed_local()]
    }

    fn data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("ca.crt".to_string(), self.ca_pem.clone())])
    }
}

/// Whether the published ConfigMap is as it should be (upstream's check: the data and the
/// description annotation).
pub fn published(cm: &ConfigMap, data: &BTreeMap<String, String>) -> bool {
    cm.data.as_ref() == Some(data)
        && cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
            .is_some_and(|d| !d.is_empty())
}

impl Reconciler for RootCaPublisher {
    fn name(&self) -> &'static str {
        "root-ca-cert-publisher"
    }

    fn keys(&self) -> Vec<String> {
        namespace_keys(&self.shared)
    }

    fn reconcile(self: Rc<Self>, ns: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            if active(&self.shared, &ns).is_none() {
                return Ok(None);
            }
            let data = self.data();
            let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
            let cached = self
                .shared
                .root_ca_config_maps
                .store
                .get(&obj_ref::<ConfigMap>(Some(&ns), ROOT_CA_CONFIG_MAP));
            let result = match cached {
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(ROOT_CA_CONFIG_MAP.into()),
                            annotations: Some(BTreeMap::from([(
                                DESCRIPTION_ANNOTATION.to_string(),
                                DESCRIPTION.to_string(),
                            )])),
                            ..Default::default()
                        },
                        data: Some(data),
                        ..Default::default()
                    };
                    match api.create(&PostParams::default(), &cm).await {
                        // The cache is behind a create of ours (or someone else's): done.
                        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(None),
                        r => r.map(|_| ()),
                    }
                }
                Some(cm) if published(&cm, &data) => return Ok(None),
                Some(cm) => {
                    // An update based on the cached version: a conflict retries.
                    let mut cm = (*cm).clone();
                    cm.data = Some(data);
                    cm.binary_data = None;
                    cm.metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
                    api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm)
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => {
                    info!(namespace = %ns, "published {ROOT_CA_CONFIG_MAP}");
                    Ok(None)
                }
                // A create that lost to the namespace's deletion is done; a conflict with a
                // newer version retries (the informer shows it soon).
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(kube::Error::Api(s))
                    if s.code == 403 && s.message.contains("being terminated") =>
                {
                    Ok(None)
                }
                Err(e) => Err(ReconcileError::Api(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_needs_the_data_and_the_description() {
        let data = BTreeMap::from([("ca.crt".to_string(), "PEM".to_string())]);
        let mut cm = ConfigMap {
            data: Some(data.clone()),
            ..Default::default()
        };
        assert!(!published(&cm, &data), "no description");
        cm.metadata.annotations = Some(BTreeMap::from([(
            DESCRIPTION_ANNOTATION.to_string(),
            DESCRIPTION.to_string(),
        )]));
        assert!(published(&cm, &data));
        let other = BTreeMap::from([("ca.crt".to_string(), "OTHER".to_string())]);
        assert!(!published(&cm, &other));
        cm.data
            .as_mut()
            .map(|d| d.insert("extra".into(), "x".into()));
        assert!(!published(&cm, &data));
    }
}
