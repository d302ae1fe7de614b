//! The scheduler actor: binds pending pods (no node, `schedulerName: default-scheduler`) to
//! nodes through `pods/binding`, one decision at a time over an incrementally kept cache,
//! with binds in flight concurrently. Pods that fit nowhere get PodScheduled=False
//! (Unschedulable) and are retried when nodes or pods change.

pub mod algorithm;
pub mod cache;
pub mod filter;
pub mod resources;
mod score;
mod volumes;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::{debug, info};

use crate::controllers::runtime::{key, split, Change, Recorder};
use crate::controllers::Shared;
use cache::{Cache, PodFacts};

/// Binds in flight at once.
const MAX_BINDING: usize = 128;
/// Decisions per actor turn before yielding to the mailbox.
const BATCH: usize = 256;
/// Unschedulable pods are tried again at least this often.
const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(15);

pub const SCHEDULER_NAME: &str = "default-scheduler";

enum Input {
    Pod(Change<Pod>),
    Node(Change<Node>),
}

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

#[derive(Message)]
#[rtype(result = "()")]
struct Bound {
    key: String,
    uid: String,
    node: String,
    result: Result<(), kube::Error>,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    recorder: Recorder,
    cache: Cache,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// Pods that fit nowhere, with the message last reported for them.
    unschedulable: HashMap<String, String>,
    binding: usize,
    tick_pending: bool,
}

/// Waiting for this scheduler: no node yet, ours, not being deleted, not finished.
pub fn is_pending(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    let ours = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n == SCHEDULER_NAME);
    let unbound = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    ours && unbound && crate::controllers::pods::is_active(p)
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Self {
        Scheduler {
            recorder: Recorder::new(shared.client.clone(), SCHEDULER_NAME),
            shared,
            cache: Cache::default(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            unschedulable: HashMap::new(),
            binding: 0,
            tick_pending: false,
        }
    }

    fn enqueue(&mut self, key: String, ctx: &mut Context<Self>) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
        self.kick(ctx);
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        if !self.tick_pending && !self.queue.is_empty() && self.binding < MAX_BINDING {
            self.tick_pending = true;
            ctx.notify(Tick);
        }
    }

    /// Something that could make room changed: try the unschedulable pods again.
    fn retry_unschedulable(&mut self, ctx: &mut Context<Self>) {
        let keys: Vec<String> = self.unschedulable.keys().cloned().collect();
        for k in keys {
            self.enqueue(k, ctx);
        }
    }

    fn on_pod(&mut self, c: Change<Pod>, ctx: &mut Context<Self>) {
        self.cache.pod_changed(&c.obj, c.deleted);
        let k = key(c.obj.namespace().as_deref(), &c.obj.name_any());
        if !c.deleted && is_pending(&c.obj) {
            self.enqueue(k, ctx);
        } else {
            self.unschedulable.remove(&k);
            if c.deleted {
                self.retry_unschedulable(ctx);
            }
        }
    }

    fn on_node(&mut self, c: Change<Node>, ctx: &mut Context<Self>) {
        if c.deleted {
            self.cache.remove_node(&c.obj.name_any());
        } else {
            self.cache.upsert_node(&c.obj);
        }
        self.retry_unschedulable(ctx);
    }

    fn schedule_batch(&mut self, ctx: &mut Context<Self>) {
        let mut done = 0;
        while done < BATCH && self.binding < MAX_BINDING {
            let Some(k) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&k);
            let (ns, name) = split(&k);
            let Some(pod) = self
                .shared
                .pods
                .store
                .get(&crate::controllers::obj_ref::<Pod>(ns, name))
            else {
                self.unschedulable.remove(&k);
                continue;
            };
            let uid = pod.uid().unwrap_or_default();
            if !is_pending(&pod) || self.cache.is_placed(&uid) {
                continue;
            }
            done += 1;
            let mut facts = PodFacts::of(&pod);
            let needs = match volumes::needs(&self.shared, &pod) {
                Ok(n) => n,
                Err(why) => {
                    self.report_unschedulable(&pod, k, why);
                    continue;
                }
            };
            facts.volume_nodes = needs.node_affinity;
            match algorithm::schedule(&mut self.cache, &pod, &facts) {
                Ok(node) => {
                    self.cache.assume(&uid, &node, facts);
                    self.unschedulable.remove(&k);
                    self.bind(ctx, &pod, k, uid, node, needs.provision);
                }
                Err(fit) => self.report_unschedulable(&pod, k, fit.to_string()),
            }
        }
        self.kick(ctx);
    }

    /// Binds the pod, after marking its WaitForFirstConsumer `claims` with the node.
    fn bind(
        &mut self,
        ctx: &mut Context<Self>,
        pod: &Pod,
        k: String,
        uid: String,
        node: String,
        claims: Vec<String>,
    ) {
        self.binding += 1;
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let claim_api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.shared.client.clone(), &ns);
        let body = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let addr = ctx.address();
        actix::spawn(async move {
            let mark = json!({"metadata": {"annotations": {
                crate::controllers::volumes::SELECTED_NODE: node,
            }}});
            for c in &claims {
                if let Err(e) = claim_api
                    .patch(c, &PatchParams::default(), &Patch::Merge(&mark))
                    .await
                {
                    // The pod stays pending; it is retried like a failed bind.
                    addr.do_send(Bound {
                        key: k,
                        uid,
                        node,
                        result: Err(e),
                    });
                    return;
                }
            }
            let result = api
                .create_subresource::<serde_json::Value, Status>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &body,
                )
                .await
                .map(|_| ());
            addr.do_send(Bound {
                key: k,
                uid,
                node,
                result,
            });
        });
    }

    fn report_unschedulable(&mut self, pod: &Pod, k: String, message: String) {
        if self.unschedulable.get(&k) == Some(&message) {
            return;
        }
        debug!(pod = %k, "unschedulable: {message}");
        self.unschedulable.insert(k, message.clone());
        self.recorder
            .record(pod, true, "FailedScheduling", message.clone());
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let name = pod.name_any();
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": crate::api_time_now(),
        }]}});
        actix::spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                debug!("reporting unschedulable pod {name}: {e}");
            }
        });
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for n in self.shared.nodes.store.state() {
            self.cache.upsert_node(&n);
        }
        for p in self.shared.pods.store.state() {
            self.cache.pod_changed(&p, false);
        }
        let pending: Vec<String> = self
            .shared
            .pods
            .store
            .state()
            .iter()
            .filter(|p| is_pending(p))
            .map(|p| key(p.namespace().as_deref(), &p.name_any()))
            .collect();
        ctx.add_stream(self.shared.pods.changes().map(Input::Pod));
        ctx.add_stream(self.shared.nodes.changes().map(Input::Node));
        for k in pending {
            self.enqueue(k, ctx);
        }
        ctx.run_interval(RETRY_UNSCHEDULABLE, |act, ctx| act.retry_unschedulable(ctx));
        info!(nodes = self.cache.len(), "scheduler started");
    }
}

impl StreamHandler<Input> for Scheduler {
    fn handle(&mut self, input: Input, ctx: &mut Context<Self>) {
        match input {
            Input::Pod(c) => self.on_pod(c, ctx),
            Input::Node(c) => self.on_node(c, ctx),
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<Tick> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.tick_pending = false;
        self.schedule_batch(ctx);
    }
}

impl Handler<Bound> for Scheduler {
    type Result = ();

    fn handle(&mut self, b: Bound, ctx: &mut Context<Self>) {
        self.binding -= 1;
        match b.result {
            Ok(()) => {
                let (ns, name) = split(&b.key);
                if let Some(pod) = self
                    .shared
                    .pods
                    .store
                    .get(&crate::controllers::obj_ref::<Pod>(ns, name))
                {
                    let msg = format!("Successfully assigned {} to {}", b.key, b.node);
                    self.recorder.record(pod.as_ref(), false, "Scheduled", msg);
                }
            }
            Err(e) => {
                self.cache.remove(&b.uid);
                let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 404);
                if !conflict {
                    debug!(pod = %b.key, "binding failed, retrying: {e}");
                    let k = b.key.clone();
                    ctx.run_later(Duration::from_secs(1), move |act, ctx| act.enqueue(k, ctx));
                }
            }
        }
        self.kick(ctx);
    }
}
