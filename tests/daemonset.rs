//! The DaemonSet controller against three `skiff server` processes with simulated nodes:
//! one pod per eligible node (taints, nodeSelector, nodes joining), rolling updates within
//! maxUnavailable checked by `kubectl rollout status`, history and undo through
//! ControllerRevisions, and OnDelete.

#[path = "common/fake_nodes.rs"]
mod fake_nodes;
#[path = "common/poll.rs"]
#[allow(dead_code)]
mod poll;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use poll::until;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_nodes::FakeNodes;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use servers::Servers;

struct Env {
    servers: Servers,
    client: Client,
    nodes: FakeNodes,
}

async fn env(ns: &str, nodes: &[&str]) -> Env {
    let config = "[controllers]\nresync_seconds = 5\n";
    let servers = tokio::task::block_in_place(|| Servers::start(3, config));
    let client = servers.client(1);
    let fake = FakeNodes::start(client.clone()).await;
    for name in nodes {
        fake.add(name, "4", &[], json!([])).await;
    }
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    Env {
        servers,
        client,
        nodes: fake,
    }
}

impl Env {
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        self.servers.kubectl(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.kubectl(args);
        assert!(ok, "kubectl {}: {text}", args.join(" "));
        text
    }

    async fn create_ds(&self, ns: &str, name: &str, image: &str, extra_spec: Value) {
        let mut ds = json!({"metadata": {"name": name}, "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}});
        merge(&mut ds["spec"], extra_spec);
        let ds: DaemonSet = serde_json::from_value(ds).expect("ds");
        Api::<DaemonSet>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &ds)
            .await
            .expect("create ds");
    }

    async fn ds(&self, ns: &str, name: &str) -> DaemonSet {
        Api::<DaemonSet>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .expect("ds")
    }

    /// Live pods of the DaemonSet `app`, by the node they are bound to.
    async fn pods_by_node(&self, ns: &str, app: &str) -> BTreeMap<String, Vec<Pod>> {
        let lp = ListParams::default().labels(&format!("app={app}"));
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .expect("pods")
            .items;
        let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for p in pods.into_iter().filter(live) {
            out.entry(node_of(&p)).or_default().push(p);
        }
        out
    }

    /// Waits until `app` runs exactly one ready pod on each of `nodes` and nowhere else.
    async fn wait_for_nodes(&self, ns: &str, app: &str, nodes: &[&str]) {
        let want: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
        until(
            Duration::from_secs(30),
            &format!("{app} on {want:?}"),
            || async {
                let by = self.pods_by_node(ns, app).await;
                by.keys().cloned().collect::<BTreeSet<_>>() == want
                    && by.values().all(|ps| ps.len() == 1 && ready(&ps[0]))
            },
        )
        .await;
    }

    async fn images(&self, ns: &str, app: &str) -> BTreeSet<String> {
        self.pods_by_node(ns, app)
            .await
            .values()
            .flatten()
            .filter_map(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
            })
            .collect()
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

fn live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watches the pods of a namespace and records the most nodes (of `nodes`) seen at once
/// without a live ready pod.
fn track_unavailable(
    client: Client,
    ns: &str,
    nodes: usize,
) -> (Arc<Mutex<usize>>, tokio::task::JoinHandle<()>) {
    let worst = Arc::new(Mutex::new(0usize));
    let out = worst.clone();
    let api: Api<Pod> = Api::namespaced(client, ns);
    let handle = tokio::spawn(async move {
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        let mut listed = false;
        while let Some(Ok(ev)) = events.next().await {
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    pods.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.name_any());
                }
                watcher::Event::InitDone => listed = true,
                watcher::Event::Init => continue,
            }
            if !listed {
                continue;
            }
            let up: BTreeSet<String> = pods
                .values()
                .filter(|p| live(p) && ready(p))
                .map(node_of)
                .collect();
            let mut w = out.lock().expect("lock");
            *w = (*w).max(nodes.saturating_sub(up.len()));
        }
    });
    (worst, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node() {
    let e = env("place", &["w1", "w2", "w3"]).await;
    e.create_ds("place", "agent", "busybox:1.36", json!({}))
        .await;
    e.create_ds(
        "place",
        "edge",
        "busybox:1.36",
        json!({"template": {"metadata": {"labels": {"app": "edge"}},
            "spec": {"nodeSelector": {"role": "edge"}, "containers": [{"name": "c", "image": "busybox:1.36"}]}}}),
    )
    .await;
    e.wait_for_nodes("place", "agent", &["w1", "w2", "w3"])
        .await;

    e.nodes.add("w4", "4", &[], json!([])).await;
    e.wait_for_nodes("place", "agent", &["w1", "w2", "w3", "w4"])
        .await;

    // A node tainted NoSchedule gets no pod; the edge node added after it gets both
    // DaemonSets' pods, so by then the tainted node has been seen.
    e.nodes
        .add(
            "w5",
            "4",
            &[],
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        )
        .await;
    e.nodes.add("w6", "4", &[("role", "edge")], json!([])).await;
    e.wait_for_nodes("place", "agent", &["w1", "w2", "w3", "w4", "w6"])
        .await;
    e.wait_for_nodes("place", "edge", &["w6"]).await;
    until(Duration::from_secs(30), "status counts", || async {
        let s = e.ds("place", "agent").await.status.unwrap_or_default();
        s.desired_number_scheduled == 5
            && s.current_number_scheduled == 5
            && s.number_ready == 5
            && s.number_available == Some(5)
            && s.updated_number_scheduled == Some(5)
            && s.number_misscheduled == 0
    })
    .await;
    let table = e.ok(&["get", "ds", "-n", "place"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(7).collect::<Vec<_>>()
                == ["edge", "1", "1", "1", "1", "1", "role=edge"]),
        "{table}"
    );

    // Pods carry the revision hash and are placed through node affinity.
    let by = e.pods_by_node("place", "agent").await;
    let pod = &by["w1"][0];
    let hash = pod
        .labels()
        .get("controller-revision-hash")
        .cloned()
        .expect("hash label");
    let revs = Api::<ControllerRevision>::namespaced(e.client.clone(), "place")
        .list(&ListParams::default().labels("app=agent"))
        .await
        .expect("revisions")
        .items;
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].name_any(), format!("agent-{hash}"));
    assert_eq!(revs[0].revision, 1);
    let terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| serde_json::to_value(&r.node_selector_terms).expect("json"))
        .expect("node affinity");
    assert_eq!(
        terms,
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w1"]}]}])
    );

    // A pod deleted by hand is replaced on its node.
    Api::<Pod>::namespaced(e.client.clone(), "place")
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
        .expect("delete pod");
    until(Duration::from_secs(30), "a replacement on w1", || async {
        let by = e.pods_by_node("place", "agent").await;
        by.get("w1")
            .is_some_and(|ps| ps.len() == 1 && ps[0].name_any() != pod.name_any() && ready(&ps[0]))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_history_and_undo() {
    let e = env("roll", &["w1", "w2", "w3"]).await;
    e.create_ds("roll", "agent", "busybox:1.35", json!({}))
        .await;
    e.wait_for_nodes("roll", "agent", &["w1", "w2", "w3"]).await;
    let out = e.ok(&[
        "rollout",
        "status",
        "ds/agent",
        "-n",
        "roll",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");

    let (worst, watch) = track_unavailable(e.client.clone(), "roll", 3);
    e.ok(&["set", "image", "ds/agent", "c=busybox:1.36", "-n", "roll"]);
    let out = e.ok(&[
        "rollout",
        "status",
        "ds/agent",
        "-n",
        "roll",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    e.wait_for_nodes("roll", "agent", &["w1", "w2", "w3"]).await;
    assert_eq!(
        e.images("roll", "agent").await,
        BTreeSet::from(["busybox:1.36".to_string()])
    );
    watch.abort();
    let worst = *worst.lock().expect("lock");
    assert!(
        worst == 1,
        "{worst} nodes were unavailable at once (maxUnavailable 1)"
    );

    let history = e.ok(&["rollout", "history", "ds/agent", "-n", "roll"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    e.ok(&["rollout", "undo", "ds/agent", "-n", "roll"]);
    let out = e.ok(&[
        "rollout",
        "status",
        "ds/agent",
        "-n",
        "roll",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    until(Duration::from_secs(30), "the old image back", || async {
        e.images("roll", "agent").await == BTreeSet::from(["busybox:1.35".to_string()])
    })
    .await;
    let history = e.ok(&["rollout", "history", "ds/agent", "-n", "roll"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(
        revisions,
        ["2", "3"],
        "undo makes revision 1 the newest: {history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods() {
    let e = env("od", &["w1", "w2"]).await;
    e.create_ds(
        "od",
        "agent",
        "busybox:1.35",
        json!({"updateStrategy": {"type": "OnDelete"}}),
    )
    .await;
    e.wait_for_nodes("od", "agent", &["w1", "w2"]).await;
    e.ok(&["set", "image", "ds/agent", "c=busybox:1.36", "-n", "od"]);
    // The controller has seen the change once the new revision exists and the status says
    // none of the pods is up to date.
    until(
        Duration::from_secs(30),
        "the new revision observed",
        || async {
            let ds = e.ds("od", "agent").await;
            let s = ds.status.clone().unwrap_or_default();
            let revs = Api::<ControllerRevision>::namespaced(e.client.clone(), "od")
                .list(&ListParams::default())
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            revs == 2
                && s.observed_generation == ds.metadata.generation
                && s.updated_number_scheduled == Some(0)
        },
    )
    .await;
    assert_eq!(
        e.images("od", "agent").await,
        BTreeSet::from(["busybox:1.35".to_string()])
    );

    let old = e.pods_by_node("od", "agent").await["w1"][0].name_any();
    Api::<Pod>::namespaced(e.client.clone(), "od")
        .delete(&old, &DeleteParams::default())
        .await
        .expect("delete");
    until(Duration::from_secs(30), "w1 updated", || async {
        let by = e.pods_by_node("od", "agent").await;
        let image = |n: &str| {
            by.get(n)
                .and_then(|ps| ps.first())
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.containers[0].image.clone())
        };
        image("w1").as_deref() == Some("busybox:1.36")
            && image("w2").as_deref() == Some("busybox:1.35")
    })
    .await;
    until(Duration::from_secs(30), "status: one updated", || async {
        let s = e.ds("od", "agent").await.status.unwrap_or_default();
        s.updated_number_scheduled == Some(1) && s.number_available == Some(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_rollout_keeps_every_node_available() {
    let e = env("surge", &["w1", "w2", "w3"]).await;
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}});
    e.create_ds("surge", "agent", "busybox:1.35", strategy)
        .await;
    e.wait_for_nodes("surge", "agent", &["w1", "w2", "w3"])
        .await;
    let (worst, watch) = track_unavailable(e.client.clone(), "surge", 3);
    e.ok(&["set", "image", "ds/agent", "c=busybox:1.36", "-n", "surge"]);
    let out = e.ok(&[
        "rollout",
        "status",
        "ds/agent",
        "-n",
        "surge",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    e.wait_for_nodes("surge", "agent", &["w1", "w2", "w3"])
        .await;
    assert_eq!(
        e.images("surge", "agent").await,
        BTreeSet::from(["busybox:1.36".to_string()])
    );
    watch.abort();
    let worst = *worst.lock().expect("lock");
    assert_eq!(
        worst, 0,
        "with maxSurge the new pod is up before the old goes"
    );
}
