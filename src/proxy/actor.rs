//! The `ServiceProxy` actor: Services, EndpointSlices and Nodes from watches, one debounced
//! sync after changes (render the table, apply it in one transaction when it differs, hold
//! this node's LoadBalancer addresses), and a periodic full sync that re-applies everything.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::Client;
use tokio::sync::{watch, Mutex};
use tracing::warn;

use crate::reflect::{self, StoreChanged};

use super::announce::{self, Announcer};
use super::metrics::ProxyMetrics;
use super::model::{self, NodeView};
use super::render;
use super::{ProxyConfig, ProxyError};

/// The last nft transaction this proxy applied (the whole table, or the changed part), for
/// tests and the benchmark.
#[derive(Clone, Default)]
pub struct Applied {
    pub at: Option<Instant>,
    pub text: Arc<String>,
}

struct Watches {
    services: reflector::store::Writer<Service>,
    slices: reflector::store::Writer<EndpointSlice>,
    nodes: reflector::store::Writer<Node>,
}

pub struct ServiceProxy {
    client: Client,
    cfg: ProxyConfig,
    node: NodeView,
    cluster: Option<Ipv4Net>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    watches: Option<Watches>,
    /// Initial lists done, per watch: until then a sync would drop live rules.
    listed: [bool; 3],
    scheduled: bool,
    running: bool,
    /// A sync asked for while one ran (`true`: a full one).
    pending: Option<bool>,
    /// What the table holds (after the last successful sync); `None`: write it whole.
    last: Option<(Arc<Vec<model::PortRule>>, render::Counts)>,
    metrics: ProxyMetrics,
    applied: watch::Sender<Applied>,
    announcer: Option<Arc<Mutex<Announcer>>>,
    lb_pool: Vec<Ipv4Addr>,
    /// After a failed sync, changes wait for the retry instead of failing again at once.
    backoff: bool,
}

impl ServiceProxy {
    pub fn new(
        client: Client,
        cfg: ProxyConfig,
        node: NodeView,
        cluster: Option<Ipv4Net>,
        lb_pool: Vec<Ipv4Addr>,
        metrics: ProxyMetrics,
    ) -> Self {
        let (services, s) = reflector::store();
        let (slices, e) = reflector::store();
        let (nodes, n) = reflector::store();
        ServiceProxy {
            client,
            cfg,
            node,
            cluster,
            services,
            slices,
            nodes,
            watches: Some(Watches {
                services: s,
                slices: e,
                nodes: n,
            }),
            listed: [false; 3],
            scheduled: false,
            running: false,
            pending: None,
            last: None,
            metrics,
            applied: watch::channel(Applied::default()).0,
            announcer: None,
            lb_pool,
            backoff: false,
        }
    }

    /// Follows every applied table.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    /// Pool addresses this node should hold: those of LoadBalancer services it owns.
    fn wanted_lb(&self) -> BTreeSet<Ipv4Addr> {
        let mut ready: Vec<String> = self
            .nodes
            .state()
            .iter()
            .filter(|n| crate::controllers::pods::node_ready(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        ready.sort();
        self.services
            .state()
            .iter()
            .flat_map(|s| crate::controllers::loadbalancer_ips(s))
            .filter(|ip| self.lb_pool.contains(ip))
            .filter(|ip| announce::owner(*ip, &ready) == Some(self.node.name.as_str()))
            .collect()
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.scheduled {
            return;
        }
        self.scheduled = true;
        ctx.run_later(Duration::from_millis(self.cfg.min_sync_ms), |act, ctx| {
            act.scheduled = false;
            act.sync(false, ctx);
        });
    }

    fn sync(&mut self, full: bool, ctx: &mut Context<Self>) {
        if self.listed.contains(&false) || self.backoff {
            return;
        }
        if self.running {
            self.pending = Some(self.pending.unwrap_or(false) || full);
            return;
        }
        let started = Instant::now();
        let rules = Arc::new(model::build(
            &self.services.state(),
            &self.slices.state(),
            &self.node,
        ));
        // Only what changed, in one transaction; the whole table at start, after a failure
        // and periodically (which also repairs changes made behind the proxy's back).
        let (text, counts) = match (&self.last, full) {
            (Some((old, was)), false) => match render::delta(old, &rules, self.cluster, *was) {
                Some((t, c)) => (Some(t), Some(c)),
                None => (None, None),
            },
            _ => {
                let (t, c) = render::ruleset(&rules, self.cluster);
                (Some(t), Some(c))
            }
        };
        let changed = text.is_some();
        let want_lb = self.wanted_lb();
        self.running = true;
        let text = Arc::new(text.unwrap_or_default());
        let apply = changed.then(|| text.clone());
        let announcer = self.announcer.clone();
        let fut = async move {
            if let Some(t) = apply {
                tokio::task::spawn_blocking(move || overlay::masq::apply(&t))
                    .await
                    .map_err(|e| ProxyError::Nft(e.to_string()))?
                    .map_err(|e| ProxyError::Nft(e.to_string()))?;
            }
            let held = match announcer {
                Some(a) => Some(a.lock().await.reconcile(&want_lb).await?),
                None => None,
            };
            Ok::<_, ProxyError>(held)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.running = false;
            match res {
                Ok(held) => {
                    if let Some(counts) = &counts {
                        act.metrics
                            .sync_duration
                            .observe(started.elapsed().as_secs_f64());
                        act.metrics.services.set(counts.services as i64);
                        act.metrics.endpoints.set(counts.endpoints as i64);
                        act.metrics.rules.set(counts.rules as i64);
                    }
                    if let Some(h) = held {
                        act.metrics.lb_addresses.set(h as i64);
                    }
                    if changed {
                        act.last = counts.map(|c| (rules, c));
                        act.applied.send_modify(|a| {
                            a.at = Some(Instant::now());
                            a.text = text;
                        });
                    }
                }
                Err(e) => {
                    act.metrics.sync_errors.inc();
                    act.last = None;
                    act.backoff = true;
                    warn!("service proxy sync: {e}; retrying in 1 s");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| {
                        act.backoff = false;
                        act.sync(true, ctx);
                    });
                }
            }
            if let Some(full) = act.pending.take() {
                act.sync(full, ctx);
            }
        }));
    }
}

impl Actor for ServiceProxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(w) = self.watches.take() {
            ctx.add_stream(reflect::changes(&self.client, w.services, 0));
            ctx.add_stream(reflect::changes(&self.client, w.slices, 1));
            ctx.add_stream(reflect::changes(&self.client, w.nodes, 2));
        }
        if !self.lb_pool.is_empty() {
            let (ip, pool) = (self.node.ip, self.lb_pool.clone());
            ctx.spawn(
                Announcer::new(ip, pool)
                    .into_actor(self)
                    .map(|res, act, ctx| match res {
                        Ok(a) => {
                            act.announcer = Some(Arc::new(Mutex::new(a)));
                            act.schedule(ctx);
                        }
                        Err(e) => warn!("load balancer addresses will not be announced: {e}"),
                    }),
            );
        }
        let every = Duration::from_secs(self.cfg.full_sync_seconds.max(1));
        ctx.run_interval(every, |act, ctx| act.sync(true, ctx));
    }
}

impl StreamHandler<StoreChanged> for ServiceProxy {
    fn handle(&mut self, c: StoreChanged, ctx: &mut Context<Self>) {
        if c.listed {
            self.listed[c.watch] = true;
        }
        self.schedule(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        warn!("service proxy: a watch ended");
    }
}
