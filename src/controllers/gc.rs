//! The garbage collector: dependents whose owners are gone are deleted (Background), an owner
//! deleted in the foreground (`foregroundDeletion` finalizer) goes after its dependents, an
//! owner deleted with `orphan` leaves them without the reference.

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::runtime::{Informer, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// The kinds the collector follows: owners and dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    Job,
    CronJob,
    Pod,
    PersistentVolumeClaim,
}

const KINDS: [Kind; 9] = [
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::DaemonSet,
    Kind::StatefulSet,
    Kind::ControllerRevision,
    Kind::Job,
    Kind::CronJob,
    Kind::Pod,
    Kind::PersistentVolumeClaim,
];

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.name() == s)
    }

    fn name(self) -> &'static str {
        self.names().0
    }

    /// (kind, group, plural)
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Deployment => ("Deployment", "apps", "deployments"),
            Kind::ReplicaSet => ("ReplicaSet", "apps", "replicasets"),
            Kind::DaemonSet => ("DaemonSet", "apps", "daemonsets"),
            Kind::StatefulSet => ("StatefulSet", "apps", "statefulsets"),
            Kind::ControllerRevision => ("ControllerRevision", "apps", "controllerrevisions"),
            Kind::Job => ("Job", "batch", "jobs"),
            Kind::CronJob => ("CronJob", "batch", "cronjobs"),
            Kind::Pod => ("Pod", "", "pods"),
            Kind::PersistentVolumeClaim => ("PersistentVolumeClaim", "", "persistentvolumeclaims"),
        }
    }

    fn resource(self) -> ApiResource {
        let (kind, g, plural) = self.names();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, "v1", kind), plural)
    }
}

fn key(kind: Kind, ns: &str, name: &str) -> String {
    format!("{}/{ns}/{name}", kind.name())
}

/// The cached object's metadata.
fn cached<K>(informer: &Informer<K>, ns: &str, name: &str) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    informer
        .store
        .get(&obj_ref(Some(ns), name))
        .map(|o| o.meta().clone())
}

fn every<K>(informer: &Informer<K>, kind: Kind) -> impl Iterator<Item = (Kind, ObjectMeta)>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    informer
        .store
        .state()
        .into_iter()
        .map(move |o| (kind, o.meta().clone()))
}

pub struct GarbageCollector {
    shared: Arc<Shared>,
}

impl GarbageCollector {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(GarbageCollector { shared })
    }

    fn meta(&self, kind: Kind, ns: &str, name: &str) -> Option<ObjectMeta> {
        let s = &self.shared;
        match kind {
            Kind::Deployment => cached(&s.deployments, ns, name),
            Kind::ReplicaSet => cached(&s.replicasets, ns, name),
            Kind::DaemonSet => cached(&s.daemonsets, ns, name),
            Kind::StatefulSet => cached(&s.statefulsets, ns, name),
            Kind::ControllerRevision => cached(&s.revisions, ns, name),
            Kind::Job => cached(&s.jobs, ns, name),
            Kind::CronJob => cached(&s.cronjobs, ns, name),
            Kind::Pod => cached(&s.pods, ns, name),
            Kind::PersistentVolumeClaim => cached(&s.claims, ns, name),
        }
    }

    fn all(&self) -> Vec<(Kind, ObjectMeta)> {
        let s = &self.shared;
        every(&s.deployments, Kind::Deployment)
            .chain(every(&s.replicasets, Kind::ReplicaSet))
            .chain(every(&s.daemonsets, Kind::DaemonSet))
            .chain(every(&s.statefulsets, Kind::StatefulSet))
            .chain(every(&s.revisions, Kind::ControllerRevision))
            .chain(every(&s.jobs, Kind::Job))
            .chain(every(&s.cronjobs, Kind::CronJob))
            .chain(every(&s.pods, Kind::Pod))
            .chain(every(&s.claims, Kind::PersistentVolumeClaim))
            .collect()
    }

    /// Objects holding a reference to `uid`.
    fn dependents(&self, uid: &str) -> Vec<(Kind, ObjectMeta)> {
        self.all()
            .into_iter()
            .filter(|(_, m)| m.owner_references.iter().flatten().any(|o| o.uid == uid))
            .collect()
    }

    fn api(&self, kind: Kind, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.shared.client.clone(), ns, &kind.resource())
    }

    /// Whether the owner still exists with that uid, asking the API when the cache says no
    /// (the cache may lag behind a new owner).
    async fn owner_exists(&self, ns: &str, o: &OwnerReference) -> Result<bool, kube::Error> {
        let Some(kind) = Kind::parse(&o.kind) else {
            return Ok(true);
        };
        if self
            .meta(kind, ns, &o.name)
            .is_some_and(|m| m.uid.as_deref() == Some(o.uid.as_str()))
        {
            return Ok(true);
        }
        match self.api(kind, ns).get(&o.name).await {
            Ok(live) => Ok(live.metadata.uid.as_deref() == Some(o.uid.as_str())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        policy: PropagationPolicy,
    ) -> Result<(), kube::Error> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        match self.api(kind, ns).delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_refs(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        refs: Vec<OwnerReference>,
    ) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {"ownerReferences": refs}});
        match self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn drop_finalizer(
        &self,
        kind: Kind,
        ns: &str,
        m: &ObjectMeta,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        let left: Vec<String> = m
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        let patch =
            json!({"metadata": {"finalizers": left, "resourceVersion": m.resource_version}});
        match self
            .api(kind, ns)
            .patch(
                &m.name.clone().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn collect(&self, kind: Kind, ns: &str, name: &str) -> ReconcileResult {
        let Some(m) = self.meta(kind, ns, name) else {
            return Ok(None);
        };
        let uid = m.uid.clone().unwrap_or_default();
        let finalizers: Vec<String> = m.finalizers.clone().unwrap_or_default();
        let deleting = m.deletion_timestamp.is_some();

        // As an owner being deleted.
        if deleting && finalizers.iter().any(|f| f == ORPHAN) {
            for (dk, dm) in self.dependents(&uid) {
                let refs: Vec<OwnerReference> = dm
                    .owner_references
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o.uid != uid)
                    .collect();
                self.set_refs(dk, ns, &dm.name.clone().unwrap_or_default(), refs)
                    .await?;
            }
            self.drop_finalizer(kind, ns, &m, ORPHAN).await?;
            return Ok(None);
        }
        if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
            let deps = self.dependents(&uid);
            if deps.is_empty() {
                info!(
                    kind = kind.name(),
                    namespace = ns,
                    name,
                    "foreground deletion: dependents gone"
                );
                self.drop_finalizer(kind, ns, &m, FOREGROUND).await?;
                return Ok(None);
            }
            for (dk, dm) in deps
                .iter()
                .filter(|(_, dm)| dm.deletion_timestamp.is_none())
            {
                self.delete(
                    *dk,
                    ns,
                    &dm.name.clone().unwrap_or_default(),
                    PropagationPolicy::Foreground,
                )
                .await?;
            }
            // Dependents that finish deleting requeue this owner through their events.
            return Ok(Some(std::time::Duration::from_secs(5)));
        }

        // As a dependent.
        let refs = m.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(None);
        }
        let mut alive = Vec::new();
        let mut foreground_owner = false;
        for o in &refs {
            if self.owner_exists(ns, o).await? {
                let owner_meta = Kind::parse(&o.kind).and_then(|k| self.meta(k, ns, &o.name));
                foreground_owner |= owner_meta.is_some_and(|om| {
                    om.deletion_timestamp.is_some()
                        && om.finalizers.iter().flatten().any(|f| f == FOREGROUND)
                });
                alive.push(o.clone());
            }
        }
        if alive.is_empty() {
            if !deleting {
                self.delete(kind, ns, name, PropagationPolicy::Background)
                    .await?;
            }
        } else if foreground_owner && !deleting {
            self.delete(kind, ns, name, PropagationPolicy::Foreground)
                .await?;
        } else if alive.len() < refs.len() {
            self.set_refs(kind, ns, name, alive).await?;
        }
        Ok(None)
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        fn changes<K>(
            me: &Rc<GarbageCollector>,
            informer: &Informer<K>,
            kind: Kind,
        ) -> futures_util::stream::LocalBoxStream<'static, String>
        where
            K: Resource<DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            let me = me.clone();
            informer
                .changes()
                .flat_map(move |c| {
                    let ns = c.obj.namespace().unwrap_or_default();
                    let mut keys = vec![key(kind, &ns, &c.obj.name_any())];
                    if c.deleted {
                        // Its dependents may now be orphans.
                        let uid = c.obj.uid().unwrap_or_default();
                        keys.extend(me.dependents(&uid).into_iter().map(|(k, m)| {
                            key(
                                k,
                                m.namespace.as_deref().unwrap_or(""),
                                m.name.as_deref().unwrap_or(""),
                            )
                        }));
                    }
                    // An owner being deleted in the foreground waits for this dependent.
                    for o in c.obj.meta().owner_references.iter().flatten() {
                        if let Some(k) = Kind::parse(&o.kind) {
                            keys.push(key(k, &ns, &o.name));
                        }
                    }
                    futures_util::stream::iter(keys)
                })
                .boxed_local()
        }
        let s = &self.shared;
        vec![
            changes(self, &s.deployments, Kind::Deployment),
            changes(self, &s.replicasets, Kind::ReplicaSet),
            changes(self, &s.daemonsets, Kind::DaemonSet),
            changes(self, &s.statefulsets, Kind::StatefulSet),
            changes(self, &s.revisions, Kind::ControllerRevision),
            changes(self, &s.jobs, Kind::Job),
            changes(self, &s.cronjobs, Kind::CronJob),
            changes(self, &s.pods, Kind::Pod),
            changes(self, &s.claims, Kind::PersistentVolumeClaim),
        ]
    }
}

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }

    fn keys(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|(_, m)| {
                m.owner_references.as_ref().is_some_and(|r| !r.is_empty())
                    || m.deletion_timestamp.is_some()
            })
            .map(|(k, m)| {
                key(
                    k,
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let mut parts = key.splitn(3, '/');
            let (Some(kind), Some(ns), Some(name)) = (
                parts.next().and_then(Kind::parse),
                parts.next(),
                parts.next(),
            ) else {
                return Ok(None);
            };
            self.collect(kind, ns, name).await
        })
    }
}
