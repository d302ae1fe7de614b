//! The deployment flow against three `skiff server` processes: Deployment -> ReplicaSet ->
//! Pods -> scheduler -> nodes (played by a fixture until the node agent exists), scaling,
//! rolling updates within maxSurge/maxUnavailable, rollback, scheduling rules, cascading
//! deletion.

#[path = "common/fake_nodes.rs"]
mod fake_nodes;
#[path = "common/poll.rs"]
#[allow(dead_code)]
mod poll;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use poll::until;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_nodes::FakeNodes;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use servers::Servers;

struct Env {
    servers: Servers,
    client: Client,
    nodes: FakeNodes,
}

async fn env(nodes: &[(&str, &str)]) -> Env {
    env_with(nodes, "").await
}

async fn env_with(nodes: &[(&str, &str)], controllers: &str) -> Env {
    let config = format!("[controllers]\nresync_seconds = 5\n{controllers}");
    let servers = tokio::task::block_in_place(|| Servers::start(3, &config));
    let client = servers.client(1);
    let fake = FakeNodes::start(client.clone()).await;
    for (name, cpu) in nodes {
        fake.add(name, cpu, &[], json!([])).await;
    }
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

    /// `kubectl create deployment` and wait until it is rolled out.
    async fn deploy(&self, ns: &str, name: &str, image: &str, replicas: i32) {
        self.ok(&[
            "create",
            "deployment",
            name,
            &format!("--image={image}"),
            &format!("--replicas={replicas}"),
            "-n",
            ns,
        ]);
        until(Duration::from_secs(30), "rolled out", || {
            rolled_out(self, ns, name, replicas)
        })
        .await;
    }

    async fn namespace(&self, name: &str) {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }

    async fn pods(&self, ns: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("pods")
            .items
    }

    async fn replicasets(&self, ns: &str) -> Vec<ReplicaSet> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("rs")
            .items
    }

    async fn deployment(&self, ns: &str, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .expect("deployment")
    }
}

fn active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn rolled_out(e: &Env, ns: &str, name: &str, replicas: i32) -> bool {
    let d = e.deployment(ns, name).await;
    let s = d.status.unwrap_or_default();
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.replicas == Some(replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_one_replicaset_and_spreads_pods_over_nodes() {
    let e = env(&[("node-a", "4"), ("node-b", "4"), ("node-c", "4")]).await;
    e.namespace("flow").await;
    e.deploy("flow", "web", "busybox:1.36", 3).await;
    let out = e.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "flow",
        "--timeout=30s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(e.replicasets("flow").await.len(), 1);
    let pods = e.pods("flow").await;
    assert_eq!(pods.len(), 3);
    let nodes: HashSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "pods of one owner spread over the three nodes"
    );
    let described = e.ok(&["describe", "deploy", "web", "-n", "flow"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");

    e.ok(&["scale", "deploy/web", "--replicas=10", "-n", "flow"]);
    until(Duration::from_secs(30), "10 replicas", || {
        rolled_out(&e, "flow", "web", 10)
    })
    .await;
    let before: Vec<Pod> = e.pods("flow").await;
    e.ok(&["scale", "deploy/web", "--replicas=2", "-n", "flow"]);
    until(Duration::from_secs(30), "2 replicas", || {
        rolled_out(&e, "flow", "web", 2)
    })
    .await;
    until(Duration::from_secs(30), "2 pods left", || async {
        e.pods("flow").await.iter().filter(|p| active(p)).count() == 2
    })
    .await;
    // Upstream removes pods from the most crowded node first: none survives there.
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in before.iter().filter(|p| active(p)) {
        *per_node.entry(node(p)).or_default() += 1;
    }
    let max = per_node.values().copied().max().unwrap_or(0);
    let crowded: Vec<&String> = per_node
        .iter()
        .filter(|(_, n)| **n == max)
        .map(|(k, _)| k)
        .collect();
    let left: Vec<Pod> = e.pods("flow").await.into_iter().filter(active).collect();
    if crowded.len() == 1 {
        assert!(
            left.iter().all(|p| node(p) != *crowded[0]),
            "a pod survived on the most crowded node {}",
            crowded[0]
        );
    }

    // A ReplicationController is kept the same way; its selector defaults to the labels.
    e.namespace("legacy").await;
    let rc = e.servers.dir.path().join("rc.yaml");
    std::fs::write(
        &rc,
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: old}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {app: old}}\n    spec:\n      containers: [{name: c, image: busybox:1.36}]\n",
    )
    .expect("manifest");
    e.ok(&["apply", "-n", "legacy", "-f", rc.to_str().expect("utf-8")]);
    let running = |want: usize| {
        let e = &e;
        move || async move {
            let pods: Vec<Pod> = e.pods("legacy").await.into_iter().filter(active).collect();
            pods.len() == want
                && pods.iter().all(|p| {
                    p.metadata.owner_references.iter().flatten().any(|o| {
                        o.kind == "ReplicationController"
                            && o.name == "old"
                            && o.controller == Some(true)
                    })
                })
        }
    };
    until(
        Duration::from_secs(30),
        "2 pods of the ReplicationController",
        running(2),
    )
    .await;
    e.ok(&["scale", "rc/old", "--replicas=3", "-n", "legacy"]);
    until(
        Duration::from_secs(30),
        "3 pods after the scale",
        running(3),
    )
    .await;
    until(Duration::from_secs(30), "its status", || async {
        let (_, out) = e.kubectl(&[
            "get",
            "rc",
            "old",
            "-n",
            "legacy",
            "-o",
            "jsonpath={.spec.selector.app} {.status.readyReplicas}",
        ]);
        out == "old 3"
    })
    .await;

    // ControllerRef claims: a ReplicaSet adopts a matching orphan instead of creating a pod,
    // and releases a pod relabelled out of its selector (then replaces it).
    e.ok(&[
        "run",
        "stray",
        "--image=busybox:1.36",
        "--labels=app=stray",
        "-n",
        "legacy",
    ]);
    let pods: Api<Pod> = Api::namespaced(e.client.clone(), "legacy");
    until(Duration::from_secs(30), "the orphan scheduled", || async {
        pods.get("stray")
            .await
            .is_ok_and(|p| p.spec.and_then(|s| s.node_name).is_some())
    })
    .await;
    let rs = e.servers.dir.path().join("rs.yaml");
    std::fs::write(
        &rs,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: claimer}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: stray}}\n  template:\n    metadata: {labels: {app: stray}}\n    spec:\n      containers: [{name: c, image: busybox:1.36}]\n",
    )
    .expect("manifest");
    e.ok(&["apply", "-n", "legacy", "-f", rs.to_str().expect("utf-8")]);
    let uid = Api::<ReplicaSet>::namespaced(e.client.clone(), "legacy")
        .get("claimer")
        .await
        .expect("rs")
        .metadata
        .uid;
    let controller = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone())
    };
    until(Duration::from_secs(30), "the orphan adopted", || async {
        pods.get("stray").await.is_ok_and(|p| controller(&p) == uid)
    })
    .await;
    let selected = |sel: &str| {
        let pods = pods.clone();
        let sel = sel.to_string();
        async move {
            pods.list(&ListParams::default().labels(&sel))
                .await
                .expect("pods")
                .items
        }
    };
    let owned = selected("app=stray").await;
    assert_eq!(
        owned.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["stray"],
        "adoption made the pod the set would have created"
    );
    e.ok(&[
        "label",
        "pod",
        "stray",
        "app=free",
        "--overwrite",
        "-n",
        "legacy",
    ]);
    until(
        Duration::from_secs(30),
        "the relabelled pod released and replaced",
        || async {
            let released = pods
                .get("stray")
                .await
                .is_ok_and(|p| controller(&p).is_none());
            let replaced = selected("app=stray")
                .await
                .iter()
                .filter(|p| active(p) && controller(p) == uid)
                .count()
                == 1;
            released && replaced
        },
    )
    .await;
}

/// Watches the pods of a namespace and records the extremes of (active, ready) pods.
fn track(client: Client, ns: &str) -> (Arc<Mutex<(usize, usize)>>, tokio::task::JoinHandle<()>) {
    let extremes = Arc::new(Mutex::new((0usize, usize::MAX)));
    let out = extremes.clone();
    let api: Api<Pod> = Api::namespaced(client, ns);
    let handle = tokio::spawn(async move {
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = events.next().await {
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    pods.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.name_any());
                }
                _ => continue,
            }
            let total = pods.values().filter(|p| active(p)).count();
            let avail = pods.values().filter(|p| active(p) && ready(p)).count();
            let mut e = out.lock().expect("lock");
            e.0 = e.0.max(total);
            e.1 = e.1.min(avail);
        }
    });
    (extremes, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_respect_surge_and_unavailability_and_roll_back() {
    let e = env(&[("node-a", "8"), ("node-b", "8"), ("node-c", "8")]).await;
    e.namespace("roll").await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1.35"}]}}}
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(e.client.clone(), "roll")
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    until(Duration::from_secs(60), "10 available", || {
        rolled_out(&e, "roll", "web", 10)
    })
    .await;

    for (image, surge, unavailable) in [("busybox:1.36", 1, 0), ("busybox:1.37", 3, 2)] {
        if surge == 3 {
            e.ok(&["patch", "deploy/web", "-n", "roll", "--type=merge", "-p", r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}}}}"#]);
        }
        let (extremes, watch) = track(e.client.clone(), "roll");
        until(
            Duration::from_secs(10),
            "the watcher's initial list",
            || async { extremes.lock().expect("lock").0 >= 10 },
        )
        .await;
        *extremes.lock().expect("lock") = (0, usize::MAX);
        e.ok(&[
            "set",
            "image",
            "deploy/web",
            &format!("web={image}"),
            "-n",
            "roll",
        ]);
        until(Duration::from_secs(90), "the rollout", || async {
            if !rolled_out(&e, "roll", "web", 10).await {
                return false;
            }
            let rss = e.replicasets("roll").await;
            let image_of = |r: &ReplicaSet| {
                r.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .map(|s| s.containers[0].image.clone().unwrap_or_default())
            };
            rss.iter().all(|r| {
                let n = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                if image_of(r).as_deref() == Some(image) {
                    n == 10
                } else {
                    n == 0
                }
            })
        })
        .await;
        watch.abort();
        let (max_total, min_avail) = *extremes.lock().expect("lock");
        assert!(
            max_total <= (10 + surge) as usize,
            "{image}: {max_total} pods at once, surge {surge}"
        );
        assert!(
            min_avail >= (10 - unavailable) as usize,
            "{image}: only {min_avail} available, maxUnavailable {unavailable}"
        );
    }

    let history = e.ok(&["rollout", "history", "deploy/web", "-n", "roll"]);
    for rev in ["1", "2", "3"] {
        assert!(
            history.lines().any(|l| l.trim_start().starts_with(rev)),
            "revision {rev} in {history}"
        );
    }
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    };
    e.ok(&["rollout", "undo", "deploy/web", "-n", "roll"]);
    until(Duration::from_secs(60), "undo", || async {
        image(&e.deployment("roll", "web").await) == "busybox:1.36"
            && rolled_out(&e, "roll", "web", 10).await
    })
    .await;
    e.ok(&[
        "rollout",
        "undo",
        "deploy/web",
        "-n",
        "roll",
        "--to-revision=1",
    ]);
    until(Duration::from_secs(60), "undo to revision 1", || async {
        image(&e.deployment("roll", "web").await) == "busybox:1.35"
            && rolled_out(&e, "roll", "web", 10).await
    })
    .await;
    let out = e.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "roll",
        "--timeout=30s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");

    // Paused: a template change creates nothing; resumed: it rolls out.
    e.ok(&["rollout", "pause", "deploy/web", "-n", "roll"]);
    e.ok(&[
        "set",
        "image",
        "deploy/web",
        "web=busybox:1.38",
        "-n",
        "roll",
    ]);
    let rs_before = e.replicasets("roll").await.len();
    until(
        Duration::from_secs(10),
        "the paused deployment observed",
        || async {
            let d = e.deployment("roll", "web").await;
            d.status
                .is_some_and(|s| s.observed_generation >= d.metadata.generation)
        },
    )
    .await;
    assert_eq!(
        e.replicasets("roll").await.len(),
        rs_before,
        "no new ReplicaSet while paused"
    );
    e.ok(&["rollout", "resume", "deploy/web", "-n", "roll"]);
    until(Duration::from_secs(90), "resumed rollout", || async {
        image(&e.deployment("roll", "web").await) == "busybox:1.38"
            && rolled_out(&e, "roll", "web", 10).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_respects_resources_selectors_taints_and_cordon() {
    let e = env(&[("node-a", "2"), ("node-b", "2"), ("node-c", "2")]).await;
    let pods: Api<Pod> = Api::namespaced(e.client.clone(), "default");
    let pod = |name: &str, extra: serde_json::Value| -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let (Some(s), Some(x)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
    };
    let node_of = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
        }
    };

    let big = pod(
        "big",
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "64"}}}]}),
    );
    pods.create(&PostParams::default(), &big)
        .await
        .expect("create");
    until(Duration::from_secs(20), "Unschedulable", || async {
        let p = pods.get("big").await.expect("pod");
        p.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref().is_some_and(|m| {
                        m.starts_with("0/3 nodes are available: 3 Insufficient cpu.")
                    })
            })
        })
    })
    .await;
    e.nodes
        .add("node-big", "128", &[("disk", "ssd")], json!([]))
        .await;
    until(
        Duration::from_secs(20),
        "big scheduled on the big node",
        || async { node_of("big").await.as_deref() == Some("node-big") },
    )
    .await;

    pods.create(
        &PostParams::default(),
        &pod("picky", json!({"nodeSelector": {"disk": "ssd"}})),
    )
    .await
    .expect("create");
    until(Duration::from_secs(20), "selector", || async {
        node_of("picky").await.as_deref() == Some("node-big")
    })
    .await;

    e.nodes
        .add(
            "node-tainted",
            "64",
            &[("zone", "t")],
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        )
        .await;
    pods.create(
        &PostParams::default(),
        &pod("intolerant", json!({"nodeSelector": {"zone": "t"}})),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod("tolerant", json!({"nodeSelector": {"zone": "t"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]})),
    )
    .await
    .expect("create");
    until(Duration::from_secs(20), "tolerant scheduled", || async {
        node_of("tolerant").await.as_deref() == Some("node-tainted")
    })
    .await;
    until(Duration::from_secs(20), "intolerant reported", || async {
        pods.get("intolerant")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.message
                        .as_deref()
                        .is_some_and(|m| m.contains("untolerated taint {dedicated: db}"))
                })
            })
    })
    .await;
    assert_eq!(node_of("intolerant").await, None);

    e.ok(&["cordon", "node-a"]);
    e.ok(&["cordon", "node-b"]);
    e.ok(&["cordon", "node-big"]);
    e.ok(&["cordon", "node-tainted"]);
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("after-cordon-{i}"), json!({})),
        )
        .await
        .expect("create");
    }
    for i in 0..3 {
        let name: &'static str = Box::leak(format!("after-cordon-{i}").into_boxed_str());
        until(
            Duration::from_secs(20),
            "scheduled on the one schedulable node",
            || async { node_of(name).await.as_deref() == Some("node-c") },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_background_foreground_and_orphan() {
    let e = env(&[("node-a", "4"), ("node-b", "4"), ("node-c", "4")]).await;
    e.namespace("gc").await;
    for name in ["bg", "fg", "orphan"] {
        e.deploy("gc", name, "busybox", 2).await;
    }
    let owned_by = |pods: &[Pod], prefix: &str| {
        pods.iter()
            .filter(|p| p.name_any().starts_with(&format!("{prefix}-")))
            .count()
    };
    // Any kind may be owned: a ConfigMap owned by a Deployment and a Secret owned by that
    // ConfigMap go with it.
    let bg = e.deployment("gc", "bg").await;
    let cms: Api<ConfigMap> = Api::namespaced(e.client.clone(), "gc");
    let owner = |kind: &str, api_version: &str, name: &str, uid: Option<String>| json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid.unwrap_or_default()}]);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owned",
        "ownerReferences": owner("Deployment", "apps/v1", "bg", bg.metadata.uid.clone())}}))
    .expect("cm");
    let cm = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("owned config map");
    let secrets: Api<Secret> = Api::namespaced(e.client.clone(), "gc");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "owned-too",
        "ownerReferences": owner("ConfigMap", "v1", "owned", cm.metadata.uid.clone())}}))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("owned secret");
    e.ok(&["delete", "deploy", "bg", "-n", "gc", "--wait=false"]);
    e.ok(&["delete", "deploy", "fg", "-n", "gc", "--cascade=foreground"]);
    e.ok(&["delete", "deploy", "orphan", "-n", "gc", "--cascade=orphan"]);
    until(
        Duration::from_secs(30),
        "background and foreground dependents gone",
        || async {
            let pods = e.pods("gc").await;
            let rss = e.replicasets("gc").await;
            owned_by(&pods, "bg") == 0
                && owned_by(&pods, "fg") == 0
                && rss.iter().all(|r| r.name_any().starts_with("orphan-"))
        },
    )
    .await;
    let rss = e.replicasets("gc").await;
    assert_eq!(rss.len(), 1, "the orphaned ReplicaSet stays");
    assert!(
        rss[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty()),
        "and has no owner"
    );
    assert_eq!(owned_by(&e.pods("gc").await, "orphan"), 2, "with its pods");
    until(
        Duration::from_secs(30),
        "the owned ConfigMap and the Secret it owns collected",
        || async {
            cms.get_opt("owned").await.ok().flatten().is_none()
                && secrets.get_opt("owned-too").await.ok().flatten().is_none()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_empties_it_and_waits_for_finalizers() {
    let e = env(&[("node-a", "4")]).await;
    e.namespace("doomed").await;
    e.deploy("doomed", "web", "busybox", 2).await;
    e.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-n",
        "doomed",
    ]);
    let cms: Api<ConfigMap> = Api::namespaced(e.client.clone(), "doomed");
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &held)
        .await
        .expect("held");
    e.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let namespaces: Api<Namespace> = Api::all(e.client.clone());
    let condition = |ns: &Namespace, t: &str| {
        ns.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
    };
    until(
        Duration::from_secs(45),
        "everything but the finalized ConfigMap gone, and the conditions saying so",
        || async {
            let Ok(ns) = namespaces.get("doomed").await else {
                return false;
            };
            let pods = e.pods("doomed").await;
            let left = cms.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0);
            ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
                && pods.is_empty()
                && left == 1
                && condition(&ns, "NamespaceFinalizersRemaining").is_some_and(|(st, msg)| {
                    st == "True"
                        && msg == "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
                })
                && condition(&ns, "NamespaceContentRemaining").is_some_and(|(st, msg)| {
                    st == "True" && msg.contains("configmaps. has 1 resource instances")
                })
        },
    )
    .await;
    // New content is refused while it terminates.
    let (created, out) = e.kubectl(&["create", "configmap", "late", "-n", "doomed"]);
    assert!(!created && out.contains("being terminated"), "{out}");
    cms.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release the finalizer");
    until(Duration::from_secs(30), "the namespace gone", || async {
        namespaces.get_opt("doomed").await.ok().flatten().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_its_pods_replaced_elsewhere() {
    let e = env_with(
        &[("node-a", "4"), ("node-b", "4"), ("node-c", "4")],
        "node_monitor_grace_seconds = 3\ndefault_toleration_seconds = 2\n",
    )
    .await;
    e.namespace("loss").await;
    e.deploy("loss", "web", "busybox", 3).await;
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let victim = node(&e.pods("loss").await[0]);
    e.nodes.set_down(&victim);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(e.client.clone());
    until(Duration::from_secs(30), "NotReady and tainted", || async {
        let n = nodes.get(&victim).await.expect("node");
        let unknown = n.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Ready" && c.status == "Unknown")
        });
        let tainted = n.spec.and_then(|s| s.taints).is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
        });
        unknown && tainted
    })
    .await;
    let out = e.ok(&["get", "node", &victim]);
    assert!(out.contains("NotReady"), "{out}");
    until(
        Duration::from_secs(60),
        "replacements on the other nodes",
        || async {
            let pods = e.pods("loss").await;
            let running: Vec<&Pod> = pods.iter().filter(|p| active(p) && ready(p)).collect();
            running.len() == 3 && running.iter().all(|p| node(p) != victim)
        },
    )
    .await;
    let evicted = e
        .pods("loss")
        .await
        .into_iter()
        .filter(|p| node(p) == victim)
        .collect::<Vec<_>>();
    assert!(
        evicted
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "pods on the lost node are evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_follow_ready_pods_with_named_ports() {
    let e = env(&[("node-a", "4"), ("node-b", "4")]).await;
    e.namespace("svc").await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}}}
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(e.client.clone(), "svc")
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}
    }))
    .expect("service");
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(e.client.clone(), "svc")
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(e.client.clone(), "svc");
    until(
        Duration::from_secs(30),
        "two ready endpoints on port 8080",
        || async {
            let Ok(ep) = eps.get("web").await else {
                return false;
            };
            let subsets = ep.subsets.unwrap_or_default();
            subsets.len() == 1
                && subsets[0].addresses.as_ref().is_some_and(|a| a.len() == 2)
                && subsets[0].ports.as_ref().is_some_and(|p| {
                    p.len() == 1 && p[0].port == 8080 && p[0].name.as_deref() == Some("web")
                })
        },
    )
    .await;
    // The slice is written right after the Endpoints, so it may trail them briefly.
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(e.client.clone(), "svc");
    until(
        Duration::from_secs(10),
        "one EndpointSlice with both endpoints",
        || async {
            slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .is_ok_and(|l| l.items.len() == 1 && l.items[0].endpoints.len() == 2)
        },
    )
    .await;
    e.ok(&["scale", "deploy/web", "--replicas=0", "-n", "svc"]);
    until(Duration::from_secs(30), "no endpoints", || async {
        eps.get("web").await.is_ok_and(|ep| {
            ep.subsets
                .unwrap_or_default()
                .iter()
                .all(|s| s.addresses.as_ref().is_none_or(|a| a.is_empty()))
        })
    })
    .await;
    let described = e.ok(&["describe", "svc", "web", "-n", "svc"]);
    assert!(described.contains("Endpoints:"), "{described}");
}

/// The replica whose API reports `skiff_raft_is_leader 1`.
fn leader(s: &Servers) -> Option<usize> {
    s.leader()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_under_a_new_leader_without_duplicates() {
    let mut servers =
        tokio::task::block_in_place(|| Servers::start(3, "[controllers]\nresync_seconds = 5\n"));
    let mut old = None;
    until(Duration::from_secs(10), "a leader", || {
        old = leader(&servers);
        let found = old.is_some();
        async move { found }
    })
    .await;
    let old = old.expect("leader");
    let follower = (old + 1) % 3;
    let client = servers.client(follower);
    let nodes = FakeNodes::start(client.clone()).await;
    for n in ["node-a", "node-b", "node-c"] {
        nodes.add(n, "8", &[], json!([])).await;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "lead"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "lead");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1.35"}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let done = |image: &'static str| {
        let deployments = deployments.clone();
        async move {
            let Ok(d) = deployments.get("web").await else {
                return false;
            };
            let s = d.status.clone().unwrap_or_default();
            let img = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers[0].image.clone());
            img.as_deref() == Some(image)
                && s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(10)
                && s.available_replicas == Some(10)
                && s.replicas == Some(10)
        }
    };
    until(Duration::from_secs(60), "first rollout", || {
        done("busybox:1.35")
    })
    .await;

    let (extremes, watch) = track(client.clone(), "lead");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "lead");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}});
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
        .expect("update image");
    until(Duration::from_secs(60), "the rollout under way", || async {
        rss.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|r| {
                let img = r
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|s| s.containers[0].image.clone());
                img.as_deref() == Some("busybox:1.36")
                    && r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) >= 3
            })
        })
    })
    .await;
    tokio::task::block_in_place(|| servers.kill(old));
    until(
        Duration::from_secs(90),
        "the rollout finished by the new leader",
        || done("busybox:1.36"),
    )
    .await;
    watch.abort();
    let all = rss.list(&ListParams::default()).await.expect("rs").items;
    assert_eq!(
        all.len(),
        2,
        "one ReplicaSet per template, no duplicate: {:?}",
        all.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let (max_total, _) = *extremes.lock().expect("lock");
    assert!(max_total <= 11, "{max_total} pods at once with maxSurge 1");
    assert_ne!(leader(&servers), Some(old));
}
