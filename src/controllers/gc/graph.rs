//! The object graph the garbage collector works on: the metadata of every object of every
//! kind the API lists, watches and deletes (from metadata-only watches, `as=
//! PartialObjectMetadata`), indexed by uid and by owner. Kinds are discovered at start and
//! again every `REDISCOVER`, so kinds added later are followed too.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How often kinds are discovered again.
const REDISCOVER: Duration = Duration::from_secs(30);

/// A kind the collector follows.
#[derive(Clone, Debug)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource.group, self.resource.version, self.resource.plural
        )
    }
}

/// One object: which kind, where, and what the collector needs of its metadata.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Rc<Kind>,
    pub meta: ObjectMeta,
}

impl Entry {
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    pub fn owners(&self) -> &[OwnerReference] {
        self.meta.owner_references.as_deref().unwrap_or(&[])
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.meta.finalizers.iter().flatten().any(|x| x == f)
    }

    pub fn deleting(&self) -> bool {
        self.meta.deletion_timestamp.is_some()
    }
}

/// What changed: the uids to look at again.
pub type Changes = mpsc::UnboundedReceiver<String>;

/// The changes as a stream.
pub fn stream(rx: Changes) -> impl futures_util::Stream<Item = String> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
}

#[derive(Default)]
struct State {
    by_uid: HashMap<String, Entry>,
    /// owner uid -> dependent uids.
    dependents: HashMap<String, HashSet<String>>,
    /// (apiVersion, kind) -> kind, for owner references.
    kinds: HashMap<(String, String), Rc<Kind>>,
    watched: HashSet<String>,
}

pub struct Graph {
    client: Client,
    state: RefCell<State>,
    tx: mpsc::UnboundedSender<String>,
}

impl Graph {
    /// Starts discovery and the watches on the current (actix) runtime.
    pub fn start(client: Client) -> (Rc<Self>, Changes) {
        let (tx, rx) = mpsc::unbounded_channel();
        let g = Rc::new(Graph {
            client,
            state: RefCell::new(State::default()),
            tx,
        });
        let me = g.clone();
        actix::spawn(async move {
            loop {
                if let Err(e) = me.discover().await {
                    warn!("garbage collector: discovery: {e}");
                }
                tokio::time::sleep(REDISCOVER).await;
            }
        });
        (g, rx)
    }

    async fn discover(self: &Rc<Self>) -> Result<(), kube::Error> {
        let discovery = Discovery::new(self.client.clone()).run().await?;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let followed = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| caps.supports_operation(v));
                if !followed {
                    continue;
                }
                let kind = Rc::new(Kind {
                    namespaced: matches!(caps.scope, Scope::Namespaced),
                    resource: ar,
                });
                let new = {
                    let mut st = self.state.borrow_mut();
                    let key = (
                        kind.resource.api_version.clone(),
                        kind.resource.kind.clone(),
                    );
                    st.kinds.insert(key, kind.clone());
                    st.watched.insert(kind.id())
                };
                if new {
                    self.watch(kind);
                }
            }
        }
        Ok(())
    }

    fn watch(self: &Rc<Self>, kind: Rc<Kind>) {
        let me = self.clone();
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &kind.resource);
        actix::spawn(async move {
            let events = watcher(api, watcher::Config::default()).default_backoff();
            let mut events = std::pin::pin!(events);
            let mut relisted: Option<HashSet<String>> = None;
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Apply(o)) => me.apply(&kind, o.metadata),
                    Ok(watcher::Event::Delete(o)) => me.remove(o.metadata.uid.as_deref()),
                    Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
                    Ok(watcher::Event::InitApply(o)) => {
                        if let (Some(seen), Some(uid)) = (relisted.as_mut(), &o.metadata.uid) {
                            seen.insert(uid.clone());
                        }
                        me.apply(&kind, o.metadata);
                    }
                    Ok(watcher::Event::InitDone) => {
                        // Objects of this kind the relist did not return are gone.
                        let seen = relisted.take().unwrap_or_default();
                        let gone: Vec<String> = me
                            .state
                            .borrow()
                            .by_uid
                            .iter()
                            .filter(|(uid, e)| e.kind.id() == kind.id() && !seen.contains(*uid))
                            .map(|(uid, _)| uid.clone())
                            .collect();
                        for uid in gone {
                            me.remove(Some(&uid));
                        }
                    }
                    Err(e) => debug!(kind = %kind.id(), "garbage collector watch: {e}"),
                }
            }
        });
    }

    fn apply(&self, kind: &Rc<Kind>, meta: ObjectMeta) {
        let Some(uid) = meta.uid.clone() else {
            return;
        };
        let entry = Entry {
            kind: kind.clone(),
            meta,
        };
        let mut touched = vec![uid.clone()];
        touched.extend(entry.owners().iter().map(|o| o.uid.clone()));
        let mut st = self.state.borrow_mut();
        if let Some(old) = st.by_uid.get(&uid).cloned() {
            for o in old.owners() {
                if let Some(d) = st.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
            }
        }
        for o in entry.owners() {
            st.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        st.by_uid.insert(uid, entry);
        drop(st);
        for t in touched {
            let _ = self.tx.send(t);
        }
    }

    fn remove(&self, uid: Option<&str>) {
        let Some(uid) = uid else {
            return;
        };
        let mut st = self.state.borrow_mut();
        let Some(old) = st.by_uid.remove(uid) else {
            return;
        };
        for o in old.owners() {
            if let Some(d) = st.dependents.get_mut(&o.uid) {
                d.remove(uid);
            }
        }
        // Its dependents may be orphans now; its owners may wait for it (foreground).
        let mut touched: Vec<String> = st
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        touched.extend(old.owners().iter().map(|o| o.uid.clone()));
        drop(st);
        for t in touched {
            let _ = self.tx.send(t);
        }
    }

    pub fn get(&self, uid: &str) -> Option<Entry> {
        self.state.borrow().by_uid.get(uid).cloned()
    }

    /// The objects holding an owner reference to `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Entry> {
        let st = self.state.borrow();
        st.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| st.by_uid.get(d).cloned())
            .collect()
    }

    /// The kind an owner reference names, if the API serves it.
    pub fn kind_of(&self, o: &OwnerReference) -> Option<Rc<Kind>> {
        let st = self.state.borrow();
        st.kinds
            .get(&(o.api_version.clone(), o.kind.clone()))
            .cloned()
    }

    /// Every object that has owners or is being deleted (the resync).
    pub fn candidates(&self) -> Vec<String> {
        self.state
            .borrow()
            .by_uid
            .iter()
            .filter(|(_, e)| !e.owners().is_empty() || e.deleting())
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    pub fn api(&self, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &kind.resource)
        } else {
            Api::all_with(self.client.clone(), &kind.resource)
        }
    }
}
