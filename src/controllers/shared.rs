//! What the controllers of one leadership term share: the API client and the informers.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::Client;

use super::runtime::{Informer, Recorder};

pub struct Shared {
    pub client: Client,
    pub pods: Arc<Informer<Pod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub replication_controllers: Arc<Informer<ReplicationController>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub nodes: Arc<Informer<Node>>,
    pub services: Arc<Informer<Service>>,
    pub leases: Arc<Informer<Lease>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub jobs: Arc<Informer<Job>>,
    pub cronjobs: Arc<Informer<CronJob>>,
    pub claims: Arc<Informer<PersistentVolumeClaim>>,
    pub volumes: Arc<Informer<PersistentVolume>>,
    pub storage_classes: Arc<Informer<StorageClass>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub service_accounts: Arc<Informer<ServiceAccount>>,
    /// Only the `kube-root-ca.crt` ConfigMaps (the root CA publisher's).
    pub root_ca_config_maps: Arc<Informer<ConfigMap>>,
    pub recorder: Recorder,
}

impl Shared {
    pub fn start(client: Client) -> Arc<Self> {
        Arc::new(Shared {
            pods: Informer::start(Api::all(client.clone())),
            replicasets: Informer::start(Api::all(client.clone())),
            replication_controllers: Informer::start(Api::all(client.clone())),
            deployments: Informer::start(Api::all(client.clone())),
            nodes: Informer::start(Api::all(client.clone())),
            services: Informer::start(Api::all(client.clone())),
            leases: Informer::start(Api::namespaced(client.clone(), "kube-node-lease")),
            daemonsets: Informer::start(Api::all(client.clone())),
            statefulsets: Informer::start(Api::all(client.clone())),
            revisions: Informer::start(Api::all(client.clone())),
            jobs: Informer::start(Api::all(client.clone())),
            cronjobs: Informer::start(Api::all(client.clone())),
            claims: Informer::start(Api::all(client.clone())),
            volumes: Informer::start(Api::all(client.clone())),
            storage_classes: Informer::start(Api::all(client.clone())),
            namespaces: Informer::start(Api::all(client.clone())),
            service_accounts: Informer::start(Api::all(client.clone())),
            root_ca_config_maps: Informer::start_with(
                Api::all(client.clone()),
                kube::runtime::watcher::Config::default().fields(&format!(
                    "metadata.name={}",
                    crate::api::serviceaccounts::ROOT_CA_CONFIG_MAP
                )),
            ),
            recorder: Recorder::new(client.clone(), "skiff-controller-manager"),
            client,
        })
    }

    /// `namespace/name` of the cached services (the keys of service controllers).
    pub fn service_keys(&self) -> Vec<String> {
        self.services
            .store
            .state()
            .iter()
            .map(|s| {
                super::runtime::key(
                    s.metadata.namespace.as_deref(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Cached pods in `ns` (what a controller claims from).
    pub fn pods_in(&self, ns: Option<&str>) -> Vec<Arc<Pod>> {
        self.pods
            .store
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == ns)
            .collect()
    }

    /// Names of the cached nodes (the keys of node controllers).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .store
            .state()
            .iter()
            .map(|n| kube::ResourceExt::name_any(n.as_ref()))
            .collect()
    }

    /// Waits until every informer has listed once: controllers must not act on a partial view.
    pub async fn ready(&self) {
        let _ = self.pods.store.wait_until_ready().await;
        let _ = self.replicasets.store.wait_until_ready().await;
        let _ = self.replication_controllers.store.wait_until_ready().await;
        let _ = self.deployments.store.wait_until_ready().await;
        let _ = self.nodes.store.wait_until_ready().await;
        let _ = self.services.store.wait_until_ready().await;
        let _ = self.leases.store.wait_until_ready().await;
        let _ = self.daemonsets.store.wait_until_ready().await;
        let _ = self.statefulsets.store.wait_until_ready().await;
        let _ = self.revisions.store.wait_until_ready().await;
        let _ = self.jobs.store.wait_until_ready().await;
        let _ = self.cronjobs.store.wait_until_ready().await;
        let _ = self.claims.store.wait_until_ready().await;
        let _ = self.volumes.store.wait_until_ready().await;
        let _ = self.storage_classes.store.wait_until_ready().await;
        let _ = self.namespaces.store.wait_until_ready().await;
        let _ = self.service_accounts.store.wait_until_ready().await;
        let _ = self.root_ca_config_maps.store.wait_until_ready().await;
    }
}

pub fn obj_ref<K: kube::Resource>(ns: Option<&str>, name: &str) -> ObjectRef<K>
where
    K::DynamicType: Default,
{
    let r = ObjectRef::new(name);
    match ns {
        Some(ns) => r.within(ns),
        None => r,
    }
}
