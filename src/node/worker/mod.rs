//! One pod on this node: a task that owns the pod's sandbox and containers and reconciles
//! them against the latest Pod it was sent, level-triggered: every pass reads where things
//! are (runc, exit records), acts, and reports the status if it changed.

mod container;
mod env;
mod http_probe;
mod lifecycle;
mod mounts;
pub mod probes;
mod security;
mod status;
mod volumes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use container::ContainerState;

use super::sandbox::EtcFiles;
use super::{NodeContext, PodRecord};

/// Longest wait between passes; probes and back-offs wake the worker earlier.
const MAX_IDLE: Duration = Duration::from_secs(2);

/// What the agent sends a worker: the latest Pod, or `None` once it is gone from the API.
pub type PodUpdate = Option<Pod>;

pub struct PodWorker {
    ctx: Arc<NodeContext>,
    uid: String,
    namespace: String,
    name: String,
    record: PodRecord,
    pod_ip: Option<String>,
    sandbox_ready: bool,
    volumes: Option<BTreeMap<String, volumes::Prepared>>,
    /// Projected ServiceAccount tokens in those volumes, refreshed before they expire.
    tokens: volumes::Tokens,
    etc: Option<EtcFiles>,
    containers: BTreeMap<String, ContainerState>,
    start_time: String,
    reported: Option<Value>,
    /// When the agent first saw the pod (pod start latency).
    seen: Instant,
    start_recorded: bool,
    /// Sandbox or volume problem shown on waiting containers.
    setup_error: Option<String>,
}

impl PodWorker {
    pub fn new(ctx: Arc<NodeContext>, pod: &Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let record = ctx.dirs.read_record(&uid).unwrap_or_else(|_| PodRecord {
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
            containers: BTreeMap::new(),
        });
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(crate::api_time_now);
        PodWorker {
            ctx,
            uid,
            namespace,
            name,
            record,
            pod_ip: None,
            sandbox_ready: false,
            volumes: None,
            tokens: volumes::Tokens::default(),
            etc: None,
            containers: BTreeMap::new(),
            start_time,
            reported: None,
            seen: Instant::now(),
            start_recorded: false,
            setup_error: None,
        }
    }

    /// Runs until the pod is deleted (then everything is torn down) or the agent stops
    /// (then containers are left running for the next agent to adopt).
    pub async fn run(mut self, mut rx: watch::Receiver<PodUpdate>) {
        self.adopt().await;
        loop {
            let update = rx.borrow_and_update().clone();
            let Some(pod) = update else {
                // Gone from the API without a graceful deletion: stop at once.
                self.terminate(0).await;
                self.cleanup().await;
                self.forget_usage();
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or(pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30);
                self.terminate(grace).await;
                self.cleanup().await;
                self.forget_usage();
                self.remove_from_api().await;
                return;
            }
            let wake = self.sync(&pod).await;
            self.report(&pod).await;
            let idle = wake
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(MAX_IDLE)
                .clamp(Duration::from_millis(50), MAX_IDLE);
            self.publish_usage();
            let sleep = tokio::time::sleep(idle);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            debug!(pod = %self.name, "agent stopping; containers keep running");
                            return;
                        }
                        // Our own status writes come back as events: only a deletion or a
                        // spec change needs a pass before the timer.
                        let relevant = match &*rx.borrow() {
                            None => true,
                            Some(p) => p.metadata.deletion_timestamp.is_some() || p.spec != pod.spec,
                        };
                        if relevant {
                            break;
                        }
                    }
                    _ = &mut sleep => break,
                }
            }
        }
    }

    /// Running containers for the metrics collector.
    /// (container name, runc id) of the running containers.
    fn running_ids(&self) -> Vec<(String, String)> {
        self.containers
            .iter()
            .filter(|(_, s)| s.running())
            .filter_map(|(n, s)| Some((n.clone(), s.id.clone()?)))
            .collect()
    }

    fn publish_usage(&self) {
        let containers = self.running_ids();
        if let Ok(mut table) = self.ctx.metrics.usage.lock() {
            table.insert(
                self.uid.clone(),
                super::metrics::PodUsage {
                    namespace: self.namespace.clone(),
                    pod: self.name.clone(),
                    containers,
                },
            );
        }
    }

    fn forget_usage(&self) {
        if let Ok(mut table) = self.ctx.metrics.usage.lock() {
            table.remove(&self.uid);
        }
    }

    fn save_record(&self) {
        if let Err(e) = self.ctx.dirs.write_record(&self.record) {
            warn!(pod = %self.name, error = %e, "cannot save pod record");
        }
    }

    /// Patches the pod's status when it differs from the last one written.
    async fn report(&mut self, pod: &Pod) {
        let status = self.status(pod);
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({ "metadata": { "uid": self.uid }, "status": status });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                if !self.start_recorded && status["phase"] == "Running" {
                    self.start_recorded = true;
                    self.ctx
                        .metrics
                        .pod_start
                        .observe(self.seen.elapsed().as_secs_f64());
                }
                self.reported = Some(status);
            }
            Err(e) => debug!(pod = %self.name, error = %e, "status update failed; retrying"),
        }
    }

    /// Final removal once everything on the node is gone (the API waited for this).
    async fn remove_from_api(&self) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        // A few tries: if all fail, the pod stays marked and the next agent start (or a
        // new event for it) finishes the job.
        for attempt in 0..5u32 {
            match api.delete(&self.name, &dp).await {
                Ok(_) => {
                    info!(pod = %format!("{}/{}", self.namespace, self.name), "pod deleted");
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => warn!(pod = %self.name, error = %e, attempt, "final delete failed"),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
}
