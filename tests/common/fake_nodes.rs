//! Stand-in node agents until the real one exists: registers nodes through the API, renews
//! their leases, marks pods bound to them Running and Ready (once), and finishes the graceful
//! deletion of their pods, as a kubelet would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

pub struct FakeNodes {
    client: Client,
    /// Nodes whose agent is "down": no lease renewals, pods left alone.
    down: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl FakeNodes {
    pub async fn start(client: Client) -> Self {
        let f = FakeNodes {
            client,
            down: Arc::default(),
            stop: Arc::default(),
        };
        f.spawn_pod_agent();
        f.spawn_leases();
        f
    }

    /// Registers a Ready node with `cpu` cores and `labels`.
    pub async fn add(
        &self,
        name: &str,
        cpu: &str,
        labels: &[(&str, &str)],
        taints: serde_json::Value,
    ) {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("kubernetes.io/hostname".into(), name.into());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": l},
            "spec": {"taints": taints},
            "status": {
                "capacity": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
                "addresses": [{"type": "InternalIP", "address": "10.90.0.1"}],
            }
        }))
        .expect("node");
        Api::<Node>::all(self.client.clone())
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        self.renew(name).await;
    }

    #[allow(dead_code)]
    pub fn set_down(&self, name: &str) {
        self.down.lock().expect("lock").push(name.to_string());
    }

    async fn renew(&self, name: &str) {
        renew(&self.client, name).await;
    }

    fn spawn_leases(&self) {
        let (client, down, stop) = (self.client.clone(), self.down.clone(), self.stop.clone());
        tokio::spawn(async move {
            // Bounded by the test's life: stops when the fixture is dropped.
            while !stop.load(Ordering::Relaxed) {
                let nodes = Api::<Node>::all(client.clone())
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                for n in nodes {
                    let name = n.name_any();
                    if !down.lock().expect("lock").contains(&name) {
                        renew(&client, &name).await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    fn spawn_pod_agent(&self) {
        let (client, down, stop) = (self.client.clone(), self.down.clone(), self.stop.clone());
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            let mut ip = 1u32;
            while let Some(ev) = events.next().await {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let pod = match ev {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                if node.is_empty() || down.lock().expect("lock").contains(&node) {
                    continue;
                }
                let api: Api<Pod> =
                    Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                // Started once; a finished pod (a test playing its exit) stays finished.
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Running" | "Succeeded" | "Failed")) {
                    continue;
                }
                ip += 1;
                let t = now();
                let names: Vec<String> = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .map(|c| c.name.clone())
                    .collect();
                let statuses: Vec<serde_json::Value> = names
                    .iter()
                    .map(|n| json!({"name": n, "ready": true, "restartCount": 0, "image": "busybox", "imageID": "", "state": {"running": {"startedAt": t}}}))
                    .collect();
                let patch = json!({"status": {
                    "phase": "Running",
                    "podIP": format!("10.244.{}.{}", ip / 250, ip % 250 + 2),
                    "startTime": t,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": t},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                    ],
                    "containerStatuses": statuses,
                }});
                let _ = api
                    .patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(patch),
                    )
                    .await;
            }
        });
    }
}

async fn renew(client: &Client, name: &str) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}});
    let pp = PatchParams::apply("fake-node").force();
    let _ = api.patch(name, &pp, &Patch::Apply(lease)).await;
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
