//! Informers: a kube-rs watcher over the API feeding a reflector store (the cache every
//! reconcile reads) and a broadcast of changes (what controllers turn into work-queue keys).

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// An object seen added, changed or deleted.
#[derive(Clone, Debug)]
pub struct Change<K> {
    pub obj: Arc<K>,
    pub deleted: bool,
}

pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: std::hash::Hash + Eq,
{
    pub store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
}

/// Changes buffered per subscriber; one that lags further relies on resync.
const CHANGE_BUFFER: usize = 65_536;

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// Starts watching `api` on the current (actix) runtime.
    pub fn start(api: Api<K>) -> Arc<Self> {
        Self::start_with(api, watcher::Config::default())
    }

    /// Starts watching `api` with `config` (label or field selectors).
    pub fn start_with(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let (tx, _) = broadcast::channel(CHANGE_BUFFER);
        let sender = tx.clone();
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        actix::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let change = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => Change {
                        obj: Arc::new(o),
                        deleted: false,
                    },
                    Ok(watcher::Event::Delete(o)) => Change {
                        obj: Arc::new(o),
                        deleted: true,
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!("informer watch error (retrying): {e}");
                        continue;
                    }
                };
                let _ = sender.send(change);
            }
        });
        Arc::new(Informer { store, tx })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.tx.subscribe()
    }

    /// Changes as a stream (lagged receivers skip ahead; resync covers what they missed).
    pub fn changes(&self) -> impl futures_util::Stream<Item = Change<K>> + 'static {
        futures_util::stream::unfold(self.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(c) => return Some((c, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}
