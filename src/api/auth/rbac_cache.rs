//! The RBAC objects in memory: an immutable `RbacSnapshot` swapped whole whenever the
//! Roles, ClusterRoles, RoleBindings or ClusterRoleBindings in the store change. Requests
//! only ever take the current snapshot (never wait for the store); until the first list
//! arrives it is empty, so nothing is allowed that the stored data would not allow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tracing::{debug, warn};

use super::rbac::{RbacSnapshot, GROUP};
use crate::store::{Consistency, Event, EventKind, StoreClient, StoreError};

/// The store prefixes of the four RBAC kinds (all under this group's prefix).
pub const KINDS: &[&str] = &[
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];

fn group_prefix() -> String {
    format!("/registry/{GROUP}/")
}

fn is_rbac_key(key: &str) -> bool {
    let prefix = group_prefix();
    key.strip_prefix(&prefix)
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(plural, _)| KINDS.contains(&plural))
}

/// Pause before listing again after the store failed.
const RETRY: Duration = Duration::from_millis(500);

struct Inner {
    snapshot: RwLock<Arc<RbacSnapshot>>,
    synced: AtomicBool,
}

/// Cheap to clone; every clone sees the same snapshot.
#[derive(Clone)]
pub struct RbacCache {
    inner: Arc<Inner>,
}

impl Default for RbacCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RbacCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacCache")
            .field("synced", &self.synced())
            .finish()
    }
}

impl RbacCache {
    /// An empty, unsynced cache (allows nothing until `start` has listed the store).
    pub fn new() -> Self {
        RbacCache {
            inner: Arc::new(Inner {
                snapshot: RwLock::new(Arc::new(RbacSnapshot::default())),
                synced: AtomicBool::new(false),
            }),
        }
    }

    /// The current snapshot; never waits for the store.
    pub fn snapshot(&self) -> Arc<RbacSnapshot> {
        match self.inner.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the snapshot reflects a full list of the store (and the watch since).
    pub fn synced(&self) -> bool {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// Replaces the snapshot (the watch loop; tests).
    pub fn publish(&self, snap: RbacSnapshot) {
        let snap = Arc::new(snap);
        match self.inner.snapshot.write() {
            Ok(mut s) => *s = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }

    /// Keeps the snapshot current from `store`: a list of the RBAC kinds, then a watch from
    /// the list's revision; an expired or ended watch lists again. Runs on the current
    /// actix/tokio runtime until the process ends.
    pub fn start(&self, store: StoreClient) {
        let cache = self.clone();
        actix::spawn(async move { cache.run(store).await });
    }

    async fn run(self, store: StoreClient) {
        loop {
            match self.list_and_watch(&store).await {
                Ok(()) => debug!("RBAC watch ended; listing again"),
                Err(StoreError::Expired { .. }) => debug!("RBAC watch expired; listing again"),
                Err(e) => {
                    if self.synced() {
                        warn!("RBAC cache: {e}; listing again");
                    } else {
                        debug!("RBAC cache not synced yet: {e}");
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn list_and_watch(&self, store: &StoreClient) -> Result<(), StoreError> {
        let page = store
            .list(&group_prefix(), None, 0, Consistency::Linearizable)
            .await?;
        let mut objects: BTreeMap<String, Value> = BTreeMap::new();
        for kv in page.kvs {
            if !is_rbac_key(&kv.key) {
                continue;
            }
            match serde_json::from_slice::<Value>(&kv.value) {
                Ok(v) => {
                    objects.insert(kv.key, v);
                }
                Err(e) => warn!(key = %kv.key, "RBAC cache: stored object is corrupt: {e}"),
            }
        }
        self.publish(RbacSnapshot::from_objects(objects.values()));
        self.inner.synced.store(true, Ordering::Release);
        let mut rx = store
            .watch(&group_prefix(), Some(page.revision))
            .await?
            .into_inner();
        while let Some(first) = rx.recv().await {
            apply(&mut objects, first);
            // Everything already queued goes into the same rebuild.
            loop {
                match rx.try_recv() {
                    Ok(e) => apply(&mut objects, e),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.publish(RbacSnapshot::from_objects(objects.values()));
                        return Ok(());
                    }
                }
            }
            self.publish(RbacSnapshot::from_objects(objects.values()));
        }
        Ok(())
    }
}

fn apply(objects: &mut BTreeMap<String, Value>, e: Event) {
    if !is_rbac_key(&e.kv.key) {
        return;
    }
    match e.kind {
        EventKind::Delete => {
            objects.remove(&e.kv.key);
        }
        EventKind::Put => match serde_json::from_slice::<Value>(&e.kv.value) {
            Ok(v) => {
                objects.insert(e.kv.key, v);
            }
            Err(err) => {
                warn!(key = %e.kv.key, "RBAC cache: stored object is corrupt: {err}");
                objects.remove(&e.kv.key);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_four_kinds_only() {
        assert!(is_rbac_key(
            "/registry/rbac.authorization.k8s.io/clusterroles/admin"
        ));
        assert!(is_rbac_key(
            "/registry/rbac.authorization.k8s.io/rolebindings/ns/x"
        ));
        assert!(!is_rbac_key(
            "/registry/rbac.authorization.k8s.io/widgets/x"
        ));
        assert!(!is_rbac_key("/registry/pods/ns/x"));
    }

    #[test]
    fn starts_empty_and_unsynced() {
        let c = RbacCache::new();
        assert!(!c.synced());
        assert!(c.snapshot().is_empty());
        let objs = [serde_json::json!({"kind": "ClusterRole", "metadata": {"name": "x"}})];
        c.clone().publish(RbacSnapshot::from_objects(&objs));
        assert!(!c.snapshot().is_empty());
    }
}
