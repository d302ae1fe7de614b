//! The API server through kube-rs, against three real `skiff server` processes: CRUD of every
//! kind, optimistic concurrency, patches, selectors, pagination, watches (resume, 410, across
//! replicas) and bad input.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::Client;
use serde_json::{json, Value};
use servers::Servers;

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(3, ""))
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other}"),
    }
}

fn pod_template() -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// A minimal valid object of every served kind: (group, kind, plural, namespaced, body).
type Sample = (&'static str, &'static str, &'static str, bool, Value);

fn samples() -> Vec<Sample> {
    let sel = json!({"matchLabels": {"app": "x"}});
    let job_template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    vec![
        ("", "Namespace", "namespaces", false, json!({})),
        ("", "Node", "nodes", false, json!({"spec": {}})),
        (
            "",
            "Pod",
            "pods",
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        ),
        (
            "",
            "Service",
            "services",
            true,
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        ),
        (
            "",
            "Endpoints",
            "endpoints",
            true,
            json!({"subsets": [{"addresses": [{"ip": "10.244.1.2"}], "ports": [{"port": 80}]}]}),
        ),
        (
            "",
            "ConfigMap",
            "configmaps",
            true,
            json!({"data": {"k": "v"}}),
        ),
        (
            "",
            "Secret",
            "secrets",
            true,
            json!({"data": {"k": "dg=="}}),
        ),
        (
            "",
            "Event",
            "events",
            true,
            json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "crud"}, "reason": "Test", "message": "m", "type": "Normal"}),
        ),
        ("", "ServiceAccount", "serviceaccounts", true, json!({})),
        (
            "apps",
            "Deployment",
            "deployments",
            true,
            json!({"spec": {"selector": sel, "template": pod_template()}}),
        ),
        (
            "apps",
            "ReplicaSet",
            "replicasets",
            true,
            json!({"spec": {"selector": sel, "template": pod_template()}}),
        ),
        (
            "apps",
            "DaemonSet",
            "daemonsets",
            true,
            json!({"spec": {"selector": sel, "template": pod_template()}}),
        ),
        (
            "apps",
            "StatefulSet",
            "statefulsets",
            true,
            json!({"spec": {"selector": sel, "serviceName": "s", "template": pod_template()}}),
        ),
        (
            "apps",
            "ControllerRevision",
            "controllerrevisions",
            true,
            json!({"revision": 1, "data": {"a": 1}}),
        ),
        (
            "batch",
            "Job",
            "jobs",
            true,
            json!({"spec": {"template": job_template}}),
        ),
        (
            "batch",
            "CronJob",
            "cronjobs",
            true,
            json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            json!({"spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}),
        ),
        (
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            true,
            json!({"spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}}),
        ),
        (
            "networking.k8s.io",
            "IngressClass",
            "ingressclasses",
            false,
            json!({"spec": {"controller": "skiff.io/ingress"}}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            "endpointslices",
            true,
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.2"]}], "ports": [{"port": 80}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            "roles",
            true,
            json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            false,
            json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "u"}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "u"}]}),
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            "storageclasses",
            false,
            json!({"provisioner": "example.com/none"}),
        ),
        (
            "",
            "PersistentVolume",
            "persistentvolumes",
            false,
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv"}, "storageClassName": "none"}}),
        ),
        (
            "",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none", "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "",
            "PodTemplate",
            "podtemplates",
            true,
            json!({"template": pod_template()}),
        ),
        (
            "",
            "ReplicationController",
            "replicationcontrollers",
            true,
            json!({"spec": {"replicas": 0, "selector": {"app": "x"}, "template": pod_template()}}),
        ),
        (
            "storage.k8s.io",
            "CSIDriver",
            "csidrivers",
            false,
            json!({"spec": {}}),
        ),
        (
            "storage.k8s.io",
            "CSINode",
            "csinodes",
            false,
            json!({"spec": {"drivers": []}}),
        ),
        (
            "storage.k8s.io",
            "CSIStorageCapacity",
            "csistoragecapacities",
            true,
            json!({"storageClassName": "local-path", "capacity": "1Gi"}),
        ),
        (
            "storage.k8s.io",
            "VolumeAttachment",
            "volumeattachments",
            false,
            json!({"spec": {"attacher": "x", "nodeName": "n1", "source": {"persistentVolumeName": "pv"}}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_of_every_kind_with_conflicts_on_stale_updates() {
    let client = cluster().client(0);
    namespace(&client, "crud").await;
    // Every kind discovery lists with a list verb has a sample here.
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let sampled: Vec<&str> = samples().iter().map(|s| s.2).collect();
    let mut missing = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let listed = caps.supports_operation(kube::discovery::verbs::LIST);
            if listed && !sampled.contains(&ar.plural.as_str()) {
                missing.push(format!("{}.{}", ar.plural, ar.group));
            }
        }
    }
    assert!(missing.is_empty(), "no CRUD sample for {missing:?}");
    for (group, kind, plural, namespaced, body) in samples() {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), "crud", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let name = format!("crud-{}", kind.to_lowercase());
        let mut obj = body.clone();
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": name});
        let obj: DynamicObject = serde_json::from_value(obj).expect("object");

        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
        let uid = created.metadata.uid.clone().expect("uid");
        let rv1 = created
            .metadata
            .resource_version
            .clone()
            .expect("resourceVersion");
        assert!(
            created.metadata.creation_timestamp.is_some(),
            "{kind} creationTimestamp"
        );
        let again = api
            .create(&PostParams::default(), &obj)
            .await
            .expect_err("second create");
        assert_eq!(code(again), (409, "AlreadyExists".into()), "{kind}");

        let got = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("get {kind}: {e}"));
        assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()), "{kind}");

        // Controllers may write the object meanwhile (a ReplicaSet's status): read-modify-write
        // again on a conflict, as every client does.
        let mut replaced = None;
        let mut changed = got.clone();
        for _ in 0..10 {
            let mut fresh = api
                .get(&name)
                .await
                .unwrap_or_else(|e| panic!("get {kind}: {e}"));
            fresh.metadata.labels = Some([("step".to_string(), "replaced".to_string())].into());
            changed = fresh.clone();
            match api.replace(&name, &PostParams::default(), &fresh).await {
                Ok(r) => {
                    replaced = Some(r);
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => panic!("replace {kind}: {e}"),
            }
        }
        let replaced =
            replaced.unwrap_or_else(|| panic!("replace {kind}: conflicts on every attempt"));
        let rv2 = replaced.metadata.resource_version.clone().expect("rv");
        assert_ne!(rv1, rv2, "{kind}: a write changes resourceVersion");
        let stale = api
            .replace(&name, &PostParams::default(), &changed)
            .await
            .expect_err("stale replace");
        assert_eq!(code(stale), (409, "Conflict".into()), "{kind}");

        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("patch {kind}: {e}"));
        assert_eq!(
            patched
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("a"))
                .map(String::as_str),
            Some("b")
        );
        assert_eq!(
            patched
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("step"))
                .map(String::as_str),
            Some("replaced")
        );

        let listed = api
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list {kind}: {e}"));
        assert!(
            listed
                .items
                .iter()
                .any(|o| o.metadata.uid.as_deref() == Some(uid.as_str())),
            "{kind} listed"
        );

        if kind == "Namespace" {
            continue; // deleted below, it takes its content with it
        }
        api.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind}: {e}"));
        // Finalizers (a claim's protection) hold an object a little longer.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let gone = loop {
            match api.get(&name).await {
                Err(e) => break e,
                Ok(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(o) => panic!("{kind} still there: {o:?}"),
            }
        };
        assert_eq!(code(gone), (404, "NotFound".into()), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sets_defaults_and_generation_follows_spec_changes() {
    let client = cluster().client(1);
    namespace(&client, "defaults").await;
    let api: Api<Deployment> = Api::namespaced(client, "defaults");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template()}
    }))
    .expect("deployment");
    let created = api
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.and_then(|s| s.type_),
        Some("RollingUpdate".into())
    );
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    assert_eq!(
        scaled.metadata.generation,
        Some(2),
        "spec changes bump generation"
    );
    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 3}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status");
    assert_eq!(status.status.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        status.spec.and_then(|s| s.replicas),
        Some(3),
        "the status subresource ignores spec"
    );
    let scale = api.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_patch_types_apply() {
    let client = cluster().client(2);
    namespace(&client, "patches").await;
    let api: Api<Deployment> = Api::namespaced(client, "patches");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [
            {"name": "a", "image": "busybox:1", "env": [{"name": "E1", "value": "1"}]},
            {"name": "b", "image": "busybox:1"}
        ]}}}
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    let pp = PatchParams::default();

    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .expect("patch");
    let p = api
        .patch("p", &pp, &Patch::<()>::Json(json_patch))
        .await
        .expect("json patch");
    assert_eq!(p.spec.as_ref().and_then(|s| s.replicas), Some(4));

    let p = api
        .patch("p", &pp, &Patch::Merge(json!({"spec": {"paused": true}})))
        .await
        .expect("merge patch");
    assert_eq!(p.spec.as_ref().and_then(|s| s.paused), Some(true));

    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "busybox:2", "env": [{"name": "E2", "value": "2"}]}]}}}});
    let p = api
        .patch("p", &pp, &Patch::Strategic(smp))
        .await
        .expect("strategic patch");
    let cs = p
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .expect("containers");
    assert_eq!(cs.len(), 2, "containers merged by name, not replaced");
    assert_eq!(cs[0].image.as_deref(), Some("busybox:2"));
    let env: Vec<String> = cs[0].env.iter().flatten().map(|e| e.name.clone()).collect();
    assert_eq!(env, ["E1", "E2"]);

    let bad = api
        .patch("p", &pp, &Patch::Merge(json!({"spec": {"replicas": -1}})))
        .await
        .expect_err("invalid");
    assert_eq!(code(bad), (422, "Invalid".into()));

    let ssa = PatchParams::apply("test").force();
    let applied: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "y"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))
    .expect("deployment");
    let created = api
        .patch("ssa", &ssa, &Patch::Apply(&applied))
        .await
        .expect("apply creates");
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let mut more = applied.clone();
    if let Some(s) = more.spec.as_mut() {
        s.replicas = Some(5);
    }
    let updated = api
        .patch("ssa", &ssa, &Patch::Apply(&more))
        .await
        .expect("apply updates");
    assert_eq!(updated.spec.and_then(|s| s.replicas), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_and_pagination() {
    let client = cluster().client(0);
    namespace(&client, "select").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "select");
    for (name, env, tier) in [
        ("a", "prod", Some("web")),
        ("b", "prod", Some("db")),
        ("c", "dev", None),
        ("d", "test", Some("web")),
    ] {
        let mut labels = json!({"env": env});
        if let Some(t) = tier {
            labels["tier"] = json!(t);
        }
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    // Every namespace also gets the CA's config map (kube-root-ca.crt), as upstream.
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n != "kube-root-ca.crt")
            .collect::<Vec<_>>()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(cms.list(&q("env=prod")).await.expect("list")),
        ["a", "b"]
    );
    assert_eq!(
        names(
            cms.list(&q("env in (prod,dev),tier!=db"))
                .await
                .expect("list")
        ),
        ["a", "c"]
    );
    assert_eq!(names(cms.list(&q("!tier")).await.expect("list")), ["c"]);
    assert_eq!(
        names(cms.list(&q("tier,env notin (prod)")).await.expect("list")),
        ["d"]
    );
    let by_name = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(cms.list(&by_name).await.expect("list")), ["b"]);
    let unsupported = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .expect_err("unsupported field");
    assert_eq!(code(unsupported).0, 400);

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        let cont = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        seen.extend(names(page));
        match cont {
            Some(c) => lp = ListParams::default().limit(3).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(
        (pages, seen),
        (2, vec!["a".to_string(), "b".into(), "c".into(), "d".into()])
    );

    let pods: Api<Pod> = Api::namespaced(client, "select");
    for (name, node) in [("p1", "n1"), ("p2", "n2")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})).expect("pod");
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }
    let on_n2 = pods
        .list(&ListParams::default().fields("spec.nodeName=n2"))
        .await
        .expect("list");
    assert_eq!(on_n2.items.len(), 1);
    assert_eq!(on_n2.items[0].metadata.name.as_deref(), Some("p2"));
}

async fn next_event<K: Clone + for<'de> serde::Deserialize<'de> + std::fmt::Debug>(
    stream: &mut (impl futures_util::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> WatchEvent<K> {
    tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("an event within 10 s")
        .expect("watch stream")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_a_resource_version_and_sees_writes_of_other_replicas() {
    let servers = cluster();
    namespace(&servers.client(0), "watch").await;
    let writer: Api<ConfigMap> = Api::namespaced(servers.client(0), "watch");
    let watcher: Api<ConfigMap> = Api::namespaced(servers.client(2), "watch");
    let start = watcher
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("list rv");
    let mut stream = watcher
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();

    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "w1"}, "data": {"v": "1"}}))
            .expect("cm");
    writer
        .create(&PostParams::default(), &cm)
        .await
        .expect("create on replica 0");
    let added_rv = match next_event(&mut stream).await {
        WatchEvent::Added(c) => {
            assert_eq!(c.metadata.name.as_deref(), Some("w1"));
            c.metadata.resource_version.expect("rv")
        }
        other => panic!("expected ADDED, got {other:?}"),
    };
    writer
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .expect("update");
    writer
        .delete("w1", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Modified(_)
    ));
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));

    // Resuming from the ADDED event's version replays exactly what followed.
    let mut resumed = watcher
        .watch(&WatchParams::default(), &added_rv)
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut resumed).await {
        WatchEvent::Modified(c) => assert_eq!(
            c.data.and_then(|d| d.get("v").cloned()).as_deref(),
            Some("2")
        ),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut resumed).await,
        WatchEvent::Deleted(_)
    ));

    // Label selectors turn label changes into ADDED/DELETED for the watcher.
    let mut selected = watcher
        .watch(&WatchParams::default().labels("pick=yes"), &added_rv)
        .await
        .expect("watch")
        .boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w2"}})).expect("cm");
    writer
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    writer
        .patch(
            "w2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pick": "yes"}}})),
        )
        .await
        .expect("label");
    writer
        .patch(
            "w2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pick": "no"}}})),
        )
        .await
        .expect("relabel");
    assert!(matches!(
        next_event(&mut selected).await,
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        next_event(&mut selected).await,
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_too_old_resource_version_is_410_expired() {
    let small = Servers::start(3, "[store]\nwatch_history = 20\n");
    let client = small.client(0);
    namespace(&client, "old").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "old");
    let first = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    for i in 0..40 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let err = cms
        .watch(&WatchParams::default(), &first)
        .await
        .err()
        .expect("too old");
    assert_eq!(code(err), (410, "Expired".into()));

    // A continue token whose snapshot left the history: 410 with a token that goes on at the
    // current state, as upstream's inconsistent continuation.
    let page = cms
        .list(&ListParams::default().limit(10))
        .await
        .expect("page");
    let token = page.metadata.continue_.clone().expect("continue token");
    for i in 0..40 {
        cms.patch(
            &format!("c{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "x"}})),
        )
        .await
        .expect("patch");
    }
    let path = format!("/api/v1/namespaces/old/configmaps?limit=10&continue={token}");
    let (code, status) = small.get(0, &path);
    assert_eq!(
        (code, &status["reason"]),
        (410, &json!("Expired")),
        "{status}"
    );
    assert!(status["message"]
        .as_str()
        .is_some_and(|m| m.contains("too old to display a consistent list result")));
    let next = status
        .pointer("/metadata/continue")
        .and_then(Value::as_str)
        .expect("a token to go on with");
    let rest = cms
        .list(&ListParams::default().limit(100).continue_token(next))
        .await
        .expect("inconsistent continuation");
    assert!(!rest.items.is_empty());
    assert!(rest.items.iter().all(|c| c
        .data
        .as_ref()
        .and_then(|d| d.get("v"))
        .map(String::as_str)
        == Some("x")
        || c.metadata.name.as_deref() == Some("kube-root-ca.crt")));
}

/// Sends a raw request; returns (HTTP code, Status reason).
async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    match client.request_text(req).await {
        Ok(_) => (200, String::new()),
        Err(kube::Error::Api(s)) => (s.code, s.reason),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_writes_nothing() {
    let client = cluster().client(1);
    namespace(&client, "bad").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bad");
    let before = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version;
    let path = "/api/v1/namespaces/bad/configmaps";
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    /// (what, path, content type, body, expected code, expected reason)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            path,
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "malformed YAML",
            path,
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "wrong apiVersion",
            path,
            "application/json",
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "wrong kind",
            path,
            "application/json",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "unknown field, Strict",
            "/api/v1/namespaces/bad/configmaps?fieldValidation=Strict",
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dataa":{}}"#
                .to_vec(),
            400,
            "BadRequest",
        ),
        (
            "invalid name",
            path,
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "missing name",
            path,
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "oversized body",
            path,
            "application/json",
            big.into_bytes(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "unknown resource",
            "/api/v1/namespaces/bad/widgets",
            "application/json",
            b"{}".to_vec(),
            404,
            "NotFound",
        ),
        (
            "unknown patch type",
            "/api/v1/namespaces/bad/configmaps/none",
            "application/xml",
            b"<x/>".to_vec(),
            415,
            "UnsupportedMediaType",
        ),
        (
            "missing namespace",
            "/api/v1/namespaces/nowhere/configmaps",
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            404,
            "NotFound",
        ),
    ];
    for (what, path, ct, body, want_code, want_reason) in cases {
        let method = if what == "unknown patch type" {
            "PATCH"
        } else {
            "POST"
        };
        let got = raw(&client, method, path, ct, body).await;
        assert_eq!(got, (want_code, want_reason.to_string()), "{what}");
    }
    let after = cms.list(&ListParams::default()).await.expect("list");
    // Only the CA's config map that every namespace gets (kube-root-ca.crt).
    assert!(
        after
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt")),
        "nothing was written: {:?}",
        after.items
    );
    assert_eq!(after.metadata.resource_version.is_some(), before.is_some());
}

/// The names and resourceVersions of a list's config maps, the CA's aside.
fn versions(l: &kube::core::ObjectList<ConfigMap>) -> Vec<(String, String)> {
    l.items
        .iter()
        .filter(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt"))
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_list_reads_one_snapshot_while_writes_go_on() {
    const OBJECTS: usize = 5_000;
    const PAGE: u32 = 100;
    let client = cluster().client(1);
    namespace(&client, "paged").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "paged");
    futures_util::stream::iter(0..OBJECTS)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i:05}")}, "data": {"v": "0"}}),
                )
                .expect("cm");
                cms.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("create the objects");
    let state = cms.list(&ListParams::default()).await.expect("full list");
    let want = versions(&state);
    assert_eq!(want.len(), OBJECTS);

    // Pages of 100 with 10 writes after each (500 in all): updates, deletes and creates
    // of objects both before and after the page boundary.
    let mut pages = Vec::new();
    let mut lp = ListParams::default().limit(PAGE);
    let mut written = 0;
    let mut first_rv = None;
    loop {
        let page = cms.list(&lp).await.expect("page");
        if first_rv.is_none() {
            first_rv = page.metadata.resource_version.clone();
            assert_eq!(
                page.metadata.remaining_item_count,
                Some((OBJECTS + 1 - PAGE as usize) as i64),
                "remainingItemCount of the first page"
            );
        }
        assert_eq!(
            page.metadata.resource_version, first_rv,
            "every page carries the first page's resourceVersion"
        );
        pages.extend(versions(&page));
        let cont = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for _ in 0..10 {
            let i = (written * 97) % OBJECTS;
            let name = format!("cm-{i:05}");
            match written % 3 {
                0 => cms
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"v": "changed"}})),
                    )
                    .await
                    .map(|_| ()),
                1 => cms
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
                _ => {
                    let cm: ConfigMap = serde_json::from_value(
                        json!({"metadata": {"name": format!("new-{written:04}")}}),
                    )
                    .expect("cm");
                    cms.create(&PostParams::default(), &cm).await.map(|_| ())
                }
            }
            .or_else(|e| match e {
                kube::Error::Api(s) if s.code == 404 => Ok(()),
                e => Err(e),
            })
            .expect("write during paging");
            written += 1;
        }
        match cont {
            Some(c) => lp = ListParams::default().limit(PAGE).continue_token(&c),
            None => break,
        }
    }
    assert!(written >= 500, "{written} writes");
    assert_eq!(pages.len(), want.len(), "no duplicate, none missing");
    assert_eq!(pages, want, "the pages are the state at the first page");

    // The same snapshot on request, and a newer one refused as too new.
    let first_rv = first_rv.expect("rv");
    let exact = cms
        .list(
            &ListParams::default()
                .at(&first_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .expect("exact list");
    assert_eq!(versions(&exact), want);
    // A version the store has not reached: 504 Timeout, ResourceVersionTooLarge, as upstream
    // (asked without a client that retries 504s).
    let future = first_rv.parse::<u64>().expect("number") + 1_000_000;
    let (status, body) = cluster().get(
        1,
        &format!(
            "/api/v1/namespaces/paged/configmaps?resourceVersion={future}&resourceVersionMatch=NotOlderThan"
        ),
    );
    assert_eq!(
        (status, &body["reason"]),
        (504, &json!("Timeout")),
        "{body}"
    );
    assert_eq!(
        body.pointer("/details/causes/0/reason"),
        Some(&json!("ResourceVersionTooLarge"))
    );

    // Bad options and tokens are 4xx, never a dropped connection.
    for (query, want) in [
        ("continue=a%C3%A9a", (400, "BadRequest")),
        ("continue=%E2%82%AC%E2%82%AC%E2%82%AC", (400, "BadRequest")),
        ("limit=5&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NSwic3RhcnQiOiIuLi8uLi9zZWNyZXRzIn0", (400, "BadRequest")),
        ("resourceVersionMatch=Exact", (422, "Invalid")),
        ("resourceVersion=0&resourceVersionMatch=Exact", (422, "Invalid")),
        ("resourceVersion=1&resourceVersionMatch=Newest", (422, "Invalid")),
        ("sendInitialEvents=true", (422, "Invalid")),
    ] {
        let path = format!("/api/v1/namespaces/paged/configmaps?{query}");
        let got = raw(&client, "GET", &path, "application/json", Vec::new()).await;
        assert_eq!(got, (want.0, want.1.to_string()), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_sends_the_state_then_the_initial_events_end_bookmark() {
    let client = cluster().client(2);
    namespace(&client, "watchlist").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "watchlist");
    for name in ["one", "two"] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let mut stream = cms
        .watch(&WatchParams::default().initial_events(), "")
        .await
        .expect("watch-list")
        .boxed();
    let mut added = Vec::new();
    let end_rv = loop {
        match next_event(&mut stream).await {
            WatchEvent::Added(c) => added.extend(c.metadata.name),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true"),
                    "the first bookmark ends the initial events"
                );
                break b.metadata.resource_version;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    added.sort();
    assert_eq!(added, ["kube-root-ca.crt", "one", "two"]);
    // Changes after the state follow, newer than the bookmark.
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .expect("patch");
    match next_event(&mut stream).await {
        WatchEvent::Modified(c) => {
            let rv: u64 = c.metadata.resource_version.expect("rv").parse().expect("n");
            assert!(rv > end_rv.parse::<u64>().expect("bookmark rv"));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // kube-rs' streaming-list watcher (what client-go's WatchListClient does) gets its store.
    let cfg = kube::runtime::watcher::Config::default().streaming_lists();
    let mut w = kube::runtime::watcher(cms.clone(), cfg).boxed();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .expect("an event within 10 s")
            .expect("watcher")
            .expect("open");
        match ev {
            kube::runtime::watcher::Event::InitApply(c) => seen.extend(c.metadata.name),
            kube::runtime::watcher::Event::InitDone => break,
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, ["kube-root-ca.crt", "one", "two"]);
    // Option combinations upstream refuses.
    for query in [
        "watch=true&sendInitialEvents=true",
        "watch=true&resourceVersionMatch=NotOlderThan",
        "watch=true&sendInitialEvents=true&resourceVersionMatch=Exact",
    ] {
        let path = format!("/api/v1/namespaces/watchlist/configmaps?{query}");
        let got = raw(&client, "GET", &path, "application/json", Vec::new()).await;
        assert_eq!(got, (422, "Invalid".to_string()), "{query}");
    }
}

/// The 422 message of a refused write, or a panic naming what was allowed.
fn invalid<T: std::fmt::Debug>(what: &str, r: kube::Result<T>) -> String {
    match r {
        Err(kube::Error::Api(s)) if s.code == 422 && s.reason == "Invalid" => s.message,
        other => panic!("{what}: expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_may_not_change_what_upstream_fixes_at_creation() {
    let client = cluster().client(0);
    namespace(&client, "fixed").await;
    let pp = PostParams::default();
    let merge = |v: Value| Patch::Merge(v);
    let patch = PatchParams::default();
    let dyn_api = |group: &str, kind: &str, plural: &str| {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "fixed",
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    };
    let create = |api: &Api<DynamicObject>, body: Value| {
        let api = api.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(body).expect("object");
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create")
        }
    };
    let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});

    // Pods: the spec but images, deadlines and added tolerations.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "fixed");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
    )
    .expect("pod");
    pods.create(&pp, &p).await.expect("pod");
    // (A strategic merge, as `kubectl set image`: a JSON merge would replace the list and
    // drop the token mount the pod got on admission, which is a change upstream refuses.)
    pods.patch(
        "p",
        &patch,
        &Patch::Strategic(
            json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}),
        ),
    )
    .await
    .expect("an image may change");
    let msg = invalid(
        "pod volume",
        pods.patch(
            "p",
            &patch,
            &Patch::Strategic(json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}})),
        )
        .await,
    );
    assert!(msg.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{msg}");

    // Deployment, ReplicaSet, DaemonSet, Job selectors.
    for (group, kind, plural) in [
        ("apps", "Deployment", "deployments"),
        ("apps", "ReplicaSet", "replicasets"),
        ("apps", "DaemonSet", "daemonsets"),
    ] {
        let api = dyn_api(group, kind, plural);
        let body = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}});
        create(&api, body).await;
        let msg = invalid(
            kind,
            api.patch(
                "w",
                &patch,
                &merge(json!({"spec": {"selector": {"matchLabels": {"app": "b"}}, "template": {"metadata": {"labels": {"app": "b"}}}}})),
            )
            .await,
        );
        assert!(
            msg.contains(
                r#"spec.selector: Invalid value: {"matchLabels":{"app":"b"}}: field is immutable"#
            ),
            "{kind}: {msg}"
        );
    }

    // StatefulSet: only replicas, ordinals, template, strategy, history, retention, minReady.
    let sts = dyn_api("apps", "StatefulSet", "statefulsets");
    create(&sts, json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"serviceName": "s", "selector": {"matchLabels": {"app": "a"}}, "template": template}})).await;
    sts.patch("s", &patch, &merge(json!({"spec": {"replicas": 3}})))
        .await
        .expect("replicas change");
    let msg = invalid(
        "statefulset serviceName",
        sts.patch(
            "s",
            &patch,
            &merge(json!({"spec": {"serviceName": "other"}})),
        )
        .await,
    );
    assert!(msg.ends_with("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"), "{msg}");

    // Job: the template once created (not suspended).
    let jobs = dyn_api("batch", "Job", "jobs");
    create(&jobs, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})).await;
    let msg = invalid(
        "job template",
        jobs.patch(
            "j",
            &patch,
            &merge(json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}})),
        )
        .await,
    );
    assert!(
        msg.contains("spec.template: Invalid value: ") && msg.ends_with("field is immutable"),
        "{msg}"
    );

    // A claim's spec but its storage request (when bound).
    let claims = dyn_api("", "PersistentVolumeClaim", "persistentvolumeclaims");
    create(&claims, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {"storageClassName": "none", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).await;
    let msg = invalid(
        "claim access modes",
        claims
            .patch(
                "c",
                &patch,
                &merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
            )
            .await,
    );
    assert!(msg.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"), "{msg}");

    // Immutable ConfigMaps and Secrets; a Secret's type.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fixed");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": true}),
    )
    .expect("cm");
    cms.create(&pp, &cm).await.expect("immutable config map");
    let msg = invalid(
        "immutable data",
        cms.patch("frozen", &patch, &merge(json!({"data": {"a": "2"}})))
            .await,
    );
    assert_eq!(
        msg,
        "ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    cms.patch(
        "frozen",
        &patch,
        &merge(json!({"metadata": {"labels": {"still": "labels"}}})),
    )
    .await
    .expect("labels change");
    let secrets = dyn_api("", "Secret", "secrets");
    create(&secrets, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "stringData": {"a": "1"}, "immutable": true})).await;
    let msg = invalid(
        "secret",
        secrets
            .patch(
                "s",
                &patch,
                &merge(json!({"stringData": {"a": "2"}, "immutable": false})),
            )
            .await,
    );
    assert!(
        msg.contains("immutable: Forbidden: field is immutable when `immutable` is set")
            && msg.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{msg}"
    );
    let msg = invalid(
        "secret type",
        secrets
            .patch(
                "s",
                &patch,
                &merge(json!({"type": "kubernetes.io/basic-auth"})),
            )
            .await,
    );
    assert!(
        msg.contains(r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#),
        "{msg}"
    );

    // A Service's allocated address.
    let svcs = dyn_api("", "Service", "services");
    let svc = create(&svcs, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})).await;
    let ip = svc.data["spec"]["clusterIP"]
        .as_str()
        .expect("allocated")
        .to_string();
    let other = if ip.ends_with(".200") {
        "10.96.0.201"
    } else {
        "10.96.0.200"
    };
    let msg = invalid(
        "cluster IP",
        svcs.patch(
            "web",
            &patch,
            &merge(json!({"spec": {"clusterIP": other, "clusterIPs": [other]}})),
        )
        .await,
    );
    assert!(
        msg.contains(&format!(
            "spec.clusterIPs[0]: Invalid value: [\"{other}\"]: may not change once set"
        )),
        "{msg}"
    );
    // Metadata: the uid of a PUT body must be the stored one.
    let mut stale = cms.get("frozen").await.expect("get");
    stale.metadata.uid = Some("someone-else".into());
    let msg = invalid("uid", cms.replace("frozen", &pp, &stale).await);
    assert!(
        msg.contains(r#"metadata.uid: Invalid value: "someone-else": field is immutable"#),
        "{msg}"
    );
}
