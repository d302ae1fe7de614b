//! The `OverlayAgent` actor: watches Nodes through the API, publishes this node's backend
//! data as annotations, and keeps the datapath equal to what the node set implies: at
//! start, after every relevant change, and on a periodic full resync (which also repairs
//! whatever a crashed run or an operator left behind).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tracing::{info, warn};

use crate::config::OverlayConfig;
use crate::datapath::Datapath;
use crate::lease::{self, Peer};
use crate::metrics::OverlayMetrics;
use crate::underlay::Underlay;
use crate::OverlayError;

/// Wait after a failed datapath set-up or sync before trying again; doubled per further
/// failure of the sync, up to the resync period.
const RETRY: Duration = Duration::from_secs(2);

pub struct OverlayAgent {
    client: Client,
    node_name: String,
    cfg: OverlayConfig,
    cluster: Ipv4Net,
    underlay: Underlay,
    metrics: OverlayMetrics,
    dp: Option<Rc<Datapath>>,
    nodes: Store<Node>,
    writer: Option<reflector::store::Writer<Node>>,
    running: bool,
    /// A sync asked for while one ran (`true`: a full one).
    pending: Option<bool>,
    /// What the last successful sync programmed.
    last: Option<(Ipv4Net, Vec<Peer>)>,
    /// What the running sync tries to program.
    attempt: Option<(Ipv4Net, Vec<Peer>)>,
    /// Syncs failed in a row.
    failures: u32,
}

#[derive(Message)]
#[rtype(result = "()")]
struct NodeEvent;

impl OverlayAgent {
    pub fn new(
        client: Client,
        node_name: String,
        cfg: OverlayConfig,
        cluster: Ipv4Net,
        underlay: Underlay,
        metrics: OverlayMetrics,
    ) -> Self {
        let (nodes, writer) = reflector::store();
        OverlayAgent {
            client,
            node_name,
            cfg,
            cluster,
            underlay,
            metrics,
            dp: None,
            nodes,
            writer: Some(writer),
            running: false,
            pending: None,
            last: None,
            attempt: None,
            failures: 0,
        }
    }

    fn init(&mut self, ctx: &mut Context<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let (name, cfg, cluster, underlay, metrics) = (
            self.node_name.clone(),
            self.cfg.clone(),
            self.cluster,
            self.underlay.clone(),
            self.metrics.clone(),
        );
        let fut = async move {
            // The VTEP MAC published by an earlier run, so peers' entries stay valid.
            let published = api.get_opt(&name).await.ok().flatten().and_then(|n| {
                lease::peer(&n)
                    .filter(|p| p.backend == cfg.backend)
                    .and_then(|p| p.vxlan.map(|v| v.vtep_mac))
            });
            Datapath::create(&cfg, cluster, underlay, published, metrics).await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(dp) => {
                info!(backend = dp.kind.as_str(), underlay = %act.underlay.name, "overlay datapath ready");
                act.dp = Some(Rc::new(dp));
                act.request_sync(true, ctx);
            }
            Err(e) => {
                warn!("overlay datapath: {e}; retrying");
                ctx.run_later(RETRY, |act, ctx| act.init(ctx));
            }
        }));
    }

    /// The annotations this node should carry, if they are not on it yet.
    fn missing_annotations(
        &self,
        dp: &Datapath,
        own: Option<&Node>,
    ) -> Option<BTreeMap<String, String>> {
        let want = lease::annotations(dp.kind, dp.public_ip(), dp.vxlan_data());
        let have = own?.metadata.annotations.clone().unwrap_or_default();
        want.iter()
            .any(|(k, v)| have.get(k) != Some(v))
            .then_some(want)
    }

    fn request_sync(&mut self, full: bool, ctx: &mut Context<Self>) {
        let Some(dp) = self.dp.clone() else { return };
        if self.running {
            self.pending = Some(self.pending.unwrap_or(false) || full);
            return;
        }
        let nodes = self.nodes.state();
        let own = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(&self.node_name));
        let publish = self.missing_annotations(&dp, own.map(|n| n.as_ref()));
        let own_subnet = own.and_then(|n| lease::pod_cidr(n)).map(|s| s.trunc());
        let mut peers: Vec<Peer> = nodes
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(&self.node_name))
            .filter_map(|n| lease::peer(n))
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let unchanged = own_subnet.is_some_and(|s| self.last.as_ref() == Some(&(s, peers.clone())));
        if publish.is_none() && (own_subnet.is_none() || (unchanged && !full)) {
            return;
        }
        self.running = true;
        self.attempt = own_subnet.map(|s| (s, peers.clone()));
        let api: Api<Node> = Api::all(self.client.clone());
        let name = self.node_name.clone();
        let metrics = self.metrics.clone();
        let fut = async move {
            if let Some(a) = publish {
                let patch = json!({"metadata": {"annotations": a}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            let Some(own) = own_subnet else {
                return Ok(None);
            };
            let started = Instant::now();
            let n = dp.sync(own, &peers, full).await?;
            metrics
                .sync_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.peers.set(n as i64);
            Ok::<_, OverlayError>(Some((own, peers)))
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.running = false;
            match res {
                Ok(done) => {
                    act.failures = 0;
                    if done.is_some() {
                        act.last = done;
                    }
                }
                Err(e) => {
                    act.metrics.sync_errors.inc();
                    // Events that change nothing wait for the retry instead of failing again.
                    act.last = act.attempt.take();
                    let wait = RETRY
                        .saturating_mul(1 << act.failures.min(8))
                        .min(Duration::from_secs(act.cfg.resync_seconds.max(2)));
                    act.failures += 1;
                    warn!("overlay sync: {e}; retrying in {wait:?}");
                    ctx.run_later(wait, |act, ctx| act.request_sync(true, ctx));
                }
            }
            if let Some(full) = act.pending.take() {
                act.request_sync(full, ctx);
            }
        }));
    }
}

impl Actor for OverlayAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.init(ctx);
        if let Some(writer) = self.writer.take() {
            let api: Api<Node> = Api::all(self.client.clone());
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .map(|_| NodeEvent);
            ctx.add_stream(events);
        }
        let every = Duration::from_secs(self.cfg.resync_seconds.max(1));
        ctx.run_interval(every, |act, ctx| act.request_sync(true, ctx));
    }
}

impl StreamHandler<NodeEvent> for OverlayAgent {
    fn handle(&mut self, _: NodeEvent, ctx: &mut Context<Self>) {
        self.request_sync(false, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        warn!("overlay: the node watch ended");
    }
}
