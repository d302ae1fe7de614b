//! The `IngressController` actor: reflects Ingresses, IngressClasses, Services, EndpointSlices
//! and Nodes through the API, rebuilds the proxy's routing table after changes (coalesced over
//! `sync_delay_ms`) and keeps the load-balancer status of our Ingresses equal to the Ready
//! nodes' addresses (see `status` for which node writes).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::metrics::IngressMetrics;
use super::routes::{self, SERVICE_NAME_LABEL};
use super::table::RouteTable;
use super::{class, status, IngressConfig};

/// Wait before retrying failed status writes.
const STATUS_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ingress = 0,
    Class = 1,
    Service = 2,
    Slice = 3,
    Node = 4,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Changed {
    kind: Kind,
    /// A (re)list completed: the store holds the whole set.
    listed: bool,
}

struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
}

struct Writers {
    ingresses: Writer<Ingress>,
    classes: Writer<IngressClass>,
    services: Writer<Service>,
    slices: Writer<EndpointSlice>,
    nodes: Writer<Node>,
}

pub struct IngressController {
    client: Client,
    cfg: IngressConfig,
    node_name: String,
    metrics: IngressMetrics,
    stores: Stores,
    writers: Option<Writers>,
    /// Kinds whose first list has completed, by `Kind as usize`.
    listed: [bool; 5],
    routes: watch::Sender<Option<Arc<RouteTable>>>,
    last_warnings: Vec<String>,
    /// Work waiting for the coalescing delay: (rebuild routes, sync status).
    due: Option<(bool, bool)>,
    status_running: bool,
    status_pending: bool,
    /// Status written per Ingress (namespace, name): the resourceVersion it had and the
    /// addresses written, so a write not yet seen through the watch is not repeated.
    written: HashMap<(String, String), (Option<String>, Vec<String>)>,
    /// Tells the proxy to stop accepting when the actor stops.
    shutdown: watch::Sender<bool>,
}

impl IngressController {
    pub(super) fn new(
        client: Client,
        cfg: IngressConfig,
        node_name: String,
        metrics: IngressMetrics,
        routes: watch::Sender<Option<Arc<RouteTable>>>,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        let (ingresses, wi) = reflector::store();
        let (classes, wc) = reflector::store();
        let (services, ws) = reflector::store();
        let (slices, we) = reflector::store();
        let (nodes, wn) = reflector::store();
        IngressController {
            client,
            cfg,
            node_name,
            metrics,
            stores: Stores {
                ingresses,
                classes,
                services,
                slices,
                nodes,
            },
            writers: Some(Writers {
                ingresses: wi,
                classes: wc,
                services: ws,
                slices: we,
                nodes: wn,
            }),
            listed: [false; 5],
            routes,
            last_warnings: Vec::new(),
            due: None,
            status_running: false,
            status_pending: false,
            written: HashMap::new(),
            shutdown,
        }
    }

    fn is_listed(&self, kinds: &[Kind]) -> bool {
        kinds.iter().all(|k| self.listed[*k as usize])
    }

    fn schedule(&mut self, rebuild: bool, status: bool, ctx: &mut Context<Self>) {
        match &mut self.due {
            Some((r, s)) => {
                *r |= rebuild;
                *s |= status;
            }
            None => {
                self.due = Some((rebuild, status));
                let delay = Duration::from_millis(self.cfg.sync_delay_ms);
                ctx.run_later(delay, |act, ctx| {
                    let Some((rebuild, status)) = act.due.take() else {
                        return;
                    };
                    if rebuild {
                        act.rebuild();
                    }
                    if status {
                        act.sync_status(ctx);
                    }
                });
            }
        }
    }

    fn rebuild(&mut self) {
        if !self.is_listed(&[Kind::Ingress, Kind::Class, Kind::Service, Kind::Slice]) {
            return;
        }
        let ingresses = self.stores.ingresses.state();
        let classes = self.stores.classes.state();
        let services = self.stores.services.state();
        let slices = self.stores.slices.state();
        let table = routes::build(
            &self.cfg.class,
            &refs(&ingresses),
            &refs(&classes),
            &refs(&services),
            &refs(&slices),
        );
        self.metrics
            .routes
            .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
        if table.warnings != self.last_warnings {
            for w in &table.warnings {
                warn!("ingress: {w}");
            }
            self.last_warnings = table.warnings.clone();
        }
        debug!(routes = table.len(), "ingress routes rebuilt");
        self.routes.send_replace(Some(Arc::new(table)));
    }

    fn sync_status(&mut self, ctx: &mut Context<Self>) {
        if !self.is_listed(&[Kind::Ingress, Kind::Class, Kind::Node]) {
            return;
        }
        if self.status_running {
            self.status_pending = true;
            return;
        }
        let nodes = self.stores.nodes.state();
        let nodes = refs(&nodes);
        if !status::is_writer(&self.node_name, &nodes) {
            self.written.clear();
            return;
        }
        let addresses = status::node_addresses(&nodes);
        let classes = self.stores.classes.state();
        let default = class::is_default(&self.cfg.class, &refs(&classes));
        let ingresses = self.stores.ingresses.state();
        let mut todo = Vec::new();
        let mut seen = HashSet::new();
        for ing in ingresses
            .iter()
            .filter(|i| class::is_ours(i, &self.cfg.class, default))
        {
            let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
                continue;
            };
            let key = (ns.clone(), name.clone());
            seen.insert(key.clone());
            let rv = ing.metadata.resource_version.clone();
            let pending = (rv.clone(), addresses.clone());
            if status::current(ing) == addresses || self.written.get(&key) == Some(&pending) {
                continue;
            }
            todo.push((key, rv));
        }
        self.written.retain(|k, _| seen.contains(k));
        if todo.is_empty() {
            return;
        }
        self.status_running = true;
        let client = self.client.clone();
        let addrs = addresses.clone();
        let fut = async move {
            let mut done = Vec::new();
            for ((ns, name), rv) in todo {
                let r = status::write(client.clone(), &ns, &name, &addrs).await;
                done.push(((ns, name), rv, r));
            }
            done
        };
        ctx.spawn(fut.into_actor(self).map(move |done, act, ctx| {
            act.status_running = false;
            let mut failed = false;
            for ((ns, name), rv, r) in done {
                match r {
                    Ok(()) => {
                        info!(ingress = %format!("{ns}/{name}"), ?addresses, "ingress status written");
                        act.written.insert((ns, name), (rv, addresses.clone()));
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        warn!(ingress = %format!("{ns}/{name}"), "ingress status: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                ctx.run_later(STATUS_RETRY, |act, ctx| act.sync_status(ctx));
            }
            if std::mem::take(&mut act.status_pending) {
                act.sync_status(ctx);
            }
        }));
    }
}

fn refs<K>(v: &[Arc<K>]) -> Vec<&K> {
    v.iter().map(|a| a.as_ref()).collect()
}

/// A reflected watch of every `K`, as change notifications.
fn watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: Writer<K>,
    kind: Kind,
) -> impl Stream<Item = Changed>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    watcher(api, cfg)
        .default_backoff()
        .reflect(writer)
        .filter_map(move |ev| {
            let out = match ev {
                Ok(watcher::Event::InitDone) => Some(Changed { kind, listed: true }),
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(Changed {
                    kind,
                    listed: false,
                }),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                Err(e) => {
                    warn!(?kind, "ingress: watch: {e}");
                    None
                }
            };
            future::ready(out)
        })
}

impl Actor for IngressController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(w) = self.writers.take() {
            let c = &self.client;
            let all = watcher::Config::default;
            let slices = all().labels(SERVICE_NAME_LABEL);
            ctx.add_stream(watch(
                Api::all(c.clone()),
                all(),
                w.ingresses,
                Kind::Ingress,
            ));
            ctx.add_stream(watch(Api::all(c.clone()), all(), w.classes, Kind::Class));
            ctx.add_stream(watch(Api::all(c.clone()), all(), w.services, Kind::Service));
            ctx.add_stream(watch(Api::all(c.clone()), slices, w.slices, Kind::Slice));
            ctx.add_stream(watch(Api::all(c.clone()), all(), w.nodes, Kind::Node));
        }
        let every = Duration::from_secs(self.cfg.resync_seconds.max(1));
        ctx.run_interval(every, |act, ctx| act.sync_status(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // The accept loop ends; connections finish the request in flight.
        self.shutdown.send_replace(true);
        info!("ingress controller stopped");
    }
}

impl StreamHandler<Changed> for IngressController {
    fn handle(&mut self, ev: Changed, ctx: &mut Context<Self>) {
        if ev.listed {
            self.listed[ev.kind as usize] = true;
        }
        let rebuild = ev.kind != Kind::Node;
        let status = matches!(ev.kind, Kind::Ingress | Kind::Class | Kind::Node);
        self.schedule(rebuild, status, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Watchers retry forever; a stream ends only when the actor goes.
        warn!("ingress: a watch ended");
    }
}
