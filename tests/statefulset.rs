//! The StatefulSet controller against three `skiff server` processes and simulated nodes:
//! ordered creation (each pod Ready before the next, seen through a watch), claims per
//! ordinal kept through scale-down and reused, reverse-order deletion, a partitioned rolling
//! update that `kubectl rollout status` follows, Parallel creation and ControllerRevisions.

#[path = "common/fake_nodes.rs"]
mod fake_nodes;
#[path = "common/poll.rs"]
#[allow(dead_code)]
mod poll;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use poll::until;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_nodes::FakeNodes;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use servers::Servers;

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What a watch saw, in order: `created web-0`, `ready web-0`, `deleting web-2`, `gone web-2`.
fn journal(client: Client, ns: &str) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let out = log.clone();
    let api: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = events.next().await {
            let mut log = out.lock().expect("lock");
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let name = p.name_any();
                    let state = seen.entry(name.clone()).or_insert_with(|| {
                        log.push(format!("created {name}"));
                        (false, false)
                    });
                    if ready(&p) && !state.0 {
                        state.0 = true;
                        log.push(format!("ready {name}"));
                    }
                    if p.metadata.deletion_timestamp.is_some() && !state.1 {
                        state.1 = true;
                        log.push(format!("deleting {name}"));
                    }
                }
                watcher::Event::Delete(p) => {
                    seen.remove(&p.name_any());
                    log.push(format!("gone {}", p.name_any()));
                }
                _ => {}
            }
        }
    });
    log
}

fn position(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|e| e == entry)
        .unwrap_or_else(|| panic!("{entry:?} not in {log:?}"))
}

fn set(name: &str, replicas: i32, policy: &str, image: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "containers": [{"name": "c", "image": image}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}],
        }
    }))
    .expect("statefulset")
}

async fn pods_of(client: &Client, ns: &str, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods")
        .items
}

async fn ready_names(client: &Client, ns: &str, app: &str) -> Vec<String> {
    let mut names: Vec<String> = pods_of(client, ns, app)
        .await
        .iter()
        .filter(|p| ready(p))
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_keep_their_claims_and_roll_from_the_top() {
    let servers =
        tokio::task::block_in_place(|| Servers::start(3, "[controllers]\nresync_seconds = 5\n"));
    let client = servers.client(1);
    let nodes = FakeNodes::start(client.clone()).await;
    for n in ["node-a", "node-b", "node-c"] {
        nodes.add(n, "4", &[], json!([])).await;
    }
    let ns = "default";
    let log = journal(client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.create(
        &PostParams::default(),
        &set("web", 3, "OrderedReady", "busybox:1"),
    )
    .await
    .expect("create");
    until(Duration::from_secs(60), "3 ready pods", || async {
        ready_names(&client, ns, "web").await == ["web-0", "web-1", "web-2"]
    })
    .await;
    {
        // Each pod is created only once its predecessor is Ready.
        let log = log.lock().expect("lock").clone();
        for i in 1..3 {
            assert!(
                position(&log, &format!("ready web-{}", i - 1))
                    < position(&log, &format!("created web-{i}")),
                "{log:?}"
            );
        }
    }
    let pod = pods_of(&client, ns, "web")
        .await
        .into_iter()
        .find(|p| p.name_any() == "web-1")
        .expect("web-1");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let uids = || async {
        let mut v: Vec<(String, String)> = claims
            .list(&ListParams::default())
            .await
            .expect("claims")
            .items
            .iter()
            .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    let before = uids().await;
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);

    // Scale to 1: web-2 goes before web-1 starts going; the claims stay.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale down");
    until(Duration::from_secs(60), "1 pod", || async {
        pods_of(&client, ns, "web").await.len() == 1
    })
    .await;
    {
        let log = log.lock().expect("lock").clone();
        assert!(
            position(&log, "gone web-2") < position(&log, "deleting web-1"),
            "{log:?}"
        );
    }
    assert_eq!(uids().await, before, "claims kept on scale-down");

    // Back to 3: the same claims.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scale up");
    until(Duration::from_secs(60), "3 ready pods again", || async {
        ready_names(&client, ns, "web").await.len() == 3
    })
    .await;
    assert_eq!(uids().await, before, "claims reused");

    // A rolling update with partition 1: web-2 then web-1 move to the new image, web-0 stays.
    let patch = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("update");
    let (ok, text) = tokio::task::block_in_place(|| {
        servers.kubectl(&["rollout", "status", "sts/web", "--timeout=90s"])
    });
    assert!(
        ok && text.contains("partitioned roll out complete"),
        "{text}"
    );
    let images: BTreeMap<String, String> = pods_of(&client, ns, "web")
        .await
        .iter()
        .map(|p| {
            let image = p.spec.as_ref().and_then(|s| s.containers[0].image.clone());
            (p.name_any(), image.unwrap_or_default())
        })
        .collect();
    assert_eq!(images["web-0"], "busybox:1");
    assert_eq!(images["web-1"], "busybox:2");
    assert_eq!(images["web-2"], "busybox:2");
    {
        let log = log.lock().expect("lock").clone();
        let last = |e: &str| log.iter().rposition(|x| x == e).expect(e);
        assert!(
            last("gone web-2") < last("gone web-1"),
            "highest ordinal first: {log:?}"
        );
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let owned = revisions
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("revisions")
        .items;
    assert_eq!(owned.len(), 2, "one revision per template");
    let status = sets.get("web").await.expect("get").status.expect("status");
    assert_eq!(status.updated_replicas, Some(2));
    assert_ne!(status.current_revision, status.update_revision);

    // Partition 0 completes it: currentRevision catches up.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .expect("unpartition");
    let (ok, text) = tokio::task::block_in_place(|| {
        servers.kubectl(&["rollout", "status", "sts/web", "--timeout=90s"])
    });
    assert!(ok, "{text}");
    let status = sets.get("web").await.expect("get").status.expect("status");
    assert_eq!(status.current_revision, status.update_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sets_create_every_pod_at_once() {
    let servers =
        tokio::task::block_in_place(|| Servers::start(1, "[controllers]\nresync_seconds = 5\n"));
    let client = servers.client(0);
    let nodes = FakeNodes::start(client.clone()).await;
    // One node, down: pods are scheduled but never become Ready.
    nodes.add("node-a", "4", &[], json!([])).await;
    nodes.set_down("node-a");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &set("par", 3, "Parallel", "busybox:1"),
    )
    .await
    .expect("create");
    until(
        Duration::from_secs(30),
        "3 pods without waiting for readiness",
        || async { pods_of(&client, "default", "par").await.len() == 3 },
    )
    .await;
    assert!(ready_names(&client, "default", "par").await.is_empty());
}
