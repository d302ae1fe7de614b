//! The `Kubelet` actor: registers the Node, renews its Lease, keeps node status current, and
//! watches the pods bound to this node (fieldSelector `spec.nodeName`), handing each to its
//! own worker task. After the first full list it removes what belongs to pods that are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;
use tracing::{info, warn};

use super::registration::{self, HostInfo};
use super::worker::{PodUpdate, PodWorker};
use super::{NodeConfig, NodeContext};

pub struct Kubelet {
    ctx: Arc<NodeContext>,
    host: HostInfo,
    cfg: NodeConfig,
    workers: BTreeMap<String, watch::Sender<PodUpdate>>,
    /// UIDs seen during a (re)list, to find pods deleted while the watch was down.
    listing: Option<BTreeSet<String>>,
}

impl Kubelet {
    pub fn new(ctx: Arc<NodeContext>, host: HostInfo, cfg: NodeConfig) -> Self {
        Kubelet {
            ctx,
            host,
            cfg,
            workers: BTreeMap::new(),
            listing: None,
        }
    }

    fn dispatch(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(tx) = self.workers.get(&uid).filter(|tx| !tx.is_closed()) {
            tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let worker = PodWorker::new(self.ctx.clone(), &pod);
        actix::spawn(worker.run(rx));
        self.workers.insert(uid, tx);
    }

    fn gone(&mut self, uid: &str) {
        if let Some(tx) = self.workers.remove(uid) {
            tx.send_replace(None);
        }
    }

    /// After a full list: pods this node remembers (on disk or in memory) that the API no
    /// longer has are stopped and removed.
    fn collect_orphans(&mut self, live: &BTreeSet<String>) {
        let stale: Vec<String> = self
            .workers
            .keys()
            .filter(|u| !live.contains(*u))
            .cloned()
            .collect();
        for uid in stale {
            self.gone(&uid);
        }
        let mut orphans: BTreeSet<String> =
            self.ctx.dirs.records().into_iter().map(|r| r.uid).collect();
        orphans.extend(self.ctx.sandboxes.known());
        for uid in orphans
            .into_iter()
            .filter(|u| !live.contains(u) && !self.workers.contains_key(u))
        {
            info!(uid = %uid, "removing what is left of a deleted pod");
            let rec = self.ctx.dirs.read_record(&uid).unwrap_or_default();
            let mut pod = Pod::default();
            pod.metadata.uid = Some(uid.clone());
            pod.metadata.name = Some(rec.name);
            pod.metadata.namespace = Some(rec.namespace);
            let (_tx, rx) = watch::channel(None);
            actix::spawn(PodWorker::new(self.ctx.clone(), &pod).run(rx));
        }
    }

    fn heartbeat(&self, ctx: &mut Context<Self>) {
        let (client, name, secs) = (
            self.ctx.client.clone(),
            self.host.name.clone(),
            self.cfg.lease_duration_seconds,
        );
        ctx.spawn(
            async move {
                if let Err(e) = registration::renew_lease(&client, &name, secs).await {
                    warn!(error = %e, "lease renewal failed");
                }
            }
            .into_actor(self),
        );
    }

    /// Registers (first time) and writes node status; takes the pod CIDR when assigned.
    fn report_node(&self, ctx: &mut Context<Self>) {
        let node_ctx = self.ctx.clone();
        let host = self.host.clone();
        let pod_cidr = self.cfg.pod_cidr.clone();
        ctx.spawn(
            async move {
                let node = match registration::register(&node_ctx.client, &host, &pod_cidr).await {
                    Ok(n) => n,
                    Err(e) => {
                        warn!(error = %e, "node registration failed");
                        return;
                    }
                };
                if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    if let Err(e) = node_ctx.sandboxes.set_pod_cidr(cidr).await {
                        warn!(error = %e, cidr, "cannot set up the pod network");
                    }
                }
                let ready = node_ctx.sandboxes.subnet().is_some();
                let images = node_ctx.images.list();
                let written =
                    registration::update_status(&node_ctx.client, &host, ready, &images).await;
                if let Err(e) = written {
                    warn!(error = %e, "node status update failed");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Kubelet {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(node = %self.host.name, address = %self.host.address, "node agent started");
        self.report_node(ctx);
        self.heartbeat(ctx);
        ctx.run_interval(
            Duration::from_secs(self.cfg.lease_renew_seconds.max(1)),
            |a, ctx| a.heartbeat(ctx),
        );
        ctx.run_interval(
            Duration::from_secs(self.cfg.status_update_seconds.max(1)),
            |a, ctx| a.report_node(ctx),
        );
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.host.name));
        ctx.add_stream(watcher(api, cfg).default_backoff());
    }
}

impl StreamHandler<Result<watcher::Event<Pod>, watcher::Error>> for Kubelet {
    fn handle(&mut self, item: Result<watcher::Event<Pod>, watcher::Error>, _: &mut Context<Self>) {
        match item {
            Ok(watcher::Event::Init) => self.listing = Some(BTreeSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (self.listing.as_mut(), pod.metadata.uid.as_ref())
                {
                    seen.insert(uid.clone());
                }
                self.dispatch(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(live) = self.listing.take() {
                    self.collect_orphans(&live);
                }
            }
            Ok(watcher::Event::Apply(pod)) => self.dispatch(pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.gone(uid);
                }
            }
            Err(e) => warn!(error = %e, "pod watch failed; retrying"),
        }
    }

    // The watch stream never ends on its own; if it does, the agent cannot work.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        warn!("pod watch ended");
        ctx.stop();
    }
}
