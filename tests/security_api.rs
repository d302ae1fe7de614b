//! Attacks through the API with a real server, each refused as upstream refuses it: a node's
//! credential relabelling or untainting itself, moving its addresses or kubelet port, taking
//! other nodes' volumes or publishing foreign Ingress addresses; server-side apply creating
//! with only `patch`; a Service's `externalIPs` capturing any address.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use servers::Servers;
use skiff::pki::client::{Access, Identity};
use skiff::pki::KeyedCert;

/// The 403 message of a refused request (panics if it was not refused with 403).
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(e)) if e.code == 403 => e.message,
        other => panic!("expected 403, got {other:?}"),
    }
}

fn node_client(s: &Servers) -> kube::Client {
    // The server's own node credential: CN=system:node:n1, O=system:nodes.
    let pki = s.data_dir(0).join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("pki file");
    Access {
        url: s.url(0),
        ca_pem: read("ca.crt"),
        identity: Identity::Cert(KeyedCert {
            cert: read("node.crt"),
            key: read("node.key"),
        }),
    }
    .kube_client()
    .expect("node client")
}

fn local_pv(name: &str, node: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "local-path", "hostPath": {"path": format!("/var/lib/pv/{name}")},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    }))
    .expect("pv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_to_its_labels_taints_addresses_volumes_and_ingress_addresses() {
    let s = tokio::task::block_in_place(|| Servers::start(1, "[controllers]\nenabled = false\n"));
    let admin = s.client(0);
    let nodes: Api<Node> = Api::all(admin.clone());
    let n1: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                 "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
    }))
    .expect("node");
    nodes.create(&PostParams::default(), &n1).await.expect("n1");
    let node = node_client(&s);
    let as_node: Api<Node> = Api::all(node.clone());
    let merge = |v: Value| Patch::Merge(v);
    let pp = PatchParams::default();

    // Labels: upstream's kubelet labels and any outside kubernetes.io are fine.
    as_node
        .patch(
            "n1",
            &pp,
            &merge(json!({"metadata": {"labels": {
            "topology.kubernetes.io/zone": "a", "example.com/rack": "r1"}}})),
        )
        .await
        .expect("a node sets kubelet labels");
    let msg = refused(
        as_node
            .patch(
                "n1",
                &pp,
                &merge(json!({"metadata": {"labels": {
                "node-restriction.kubernetes.io/pci-dss": "true"}}})),
            )
            .await,
    );
    assert_eq!(
        msg,
        "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify labels: node-restriction.kubernetes.io/pci-dss"
    );
    let msg = refused(
        as_node
            .patch(
                "n1",
                &pp,
                &merge(json!({"metadata": {"labels": {
                "node-role.kubernetes.io/control-plane": null}}})),
            )
            .await,
    );
    assert!(
        msg.ends_with("is not allowed to modify labels: node-role.kubernetes.io/control-plane"),
        "{msg}"
    );
    // Taints: removing the one that keeps workloads off it is refused.
    let msg = refused(
        as_node
            .patch("n1", &pp, &merge(json!({"spec": {"taints": null}})))
            .await,
    );
    assert!(
        msg.ends_with("node \"n1\" is not allowed to modify taints"),
        "{msg}"
    );
    // podCIDR is fixed once set (for everyone).
    let moved = as_node
        .patch(
            "n1",
            &pp,
            &merge(json!({"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}})),
        )
        .await;
    assert!(
        matches!(moved, Err(kube::Error::Api(ref e)) if e.code == 422),
        "{moved:?}"
    );
    // Addresses and the kubelet port: set once by registration, then fixed.
    let status = |addr: &str, port: u16| {
        merge(json!({"status": {
            "addresses": [{"type": "InternalIP", "address": addr}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
    };
    as_node
        .patch_status("n1", &pp, &status("127.0.0.1", 10250))
        .await
        .expect("first status report");
    let msg = refused(
        as_node
            .patch_status("n1", &pp, &status("10.0.0.99", 10250))
            .await,
    );
    assert!(
        msg.ends_with("is not allowed to modify its addresses"),
        "{msg}"
    );
    let msg = refused(
        as_node
            .patch_status("n1", &pp, &status("127.0.0.1", 6443))
            .await,
    );
    assert!(
        msg.ends_with("is not allowed to modify its kubelet endpoint"),
        "{msg}"
    );
    let n1 = nodes.get("n1").await.expect("n1");
    let labels = n1.metadata.labels.unwrap_or_default();
    assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
    assert!(!labels.contains_key("node-restriction.kubernetes.io/pci-dss"));
    assert_eq!(n1.spec.and_then(|s| s.taints).map(|t| t.len()), Some(1));

    // Volumes: only those whose affinity selects this node alone.
    let pvs: Api<PersistentVolume> = Api::all(admin.clone());
    let as_node_pvs: Api<PersistentVolume> = Api::all(node.clone());
    as_node_pvs
        .create(&PostParams::default(), &local_pv("mine", "n1"))
        .await
        .expect("its own local volume");
    let msg = refused(
        as_node_pvs
            .create(&PostParams::default(), &local_pv("theirs", "n2"))
            .await,
    );
    assert!(
        msg.contains("may only create persistent volumes whose node affinity selects it alone"),
        "{msg}"
    );
    pvs.create(&PostParams::default(), &local_pv("other", "n2"))
        .await
        .expect("admin creates n2's volume");
    refused(as_node_pvs.delete("other", &DeleteParams::default()).await);
    refused(
        as_node_pvs
            .patch(
                "other",
                &pp,
                &merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}})),
            )
            .await,
    );
    // Its own volume it may change.
    let moved = as_node_pvs
        .patch(
            "mine",
            &pp,
            &merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await;
    assert!(moved.is_ok(), "{moved:?}");
    assert!(pvs.get_opt("other").await.expect("get").is_some());

    // Ingress status: only addresses of registered nodes.
    let ingresses: Api<Ingress> = Api::namespaced(admin.clone(), "default");
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
    }))
    .expect("ingress");
    ingresses
        .create(&PostParams::default(), &ing)
        .await
        .expect("ingress");
    let as_node_ing: Api<Ingress> = Api::namespaced(node, "default");
    let lb = |ip: &str| merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}));
    as_node_ing
        .patch_status("web", &pp, &lb("127.0.0.1"))
        .await
        .expect("a node's address");
    let msg = refused(
        as_node_ing
            .patch_status("web", &pp, &lb("203.0.113.7"))
            .await,
    );
    assert!(
        msg.contains("may only publish the addresses of registered nodes"),
        "{msg}"
    );
}

#[test]
fn apply_creates_only_with_create_permission_and_external_ips_are_refused() {
    let s = Servers::start(1, "");
    let ok = |args: &[&str]| {
        let (good, out) = s.kubectl(args);
        assert!(good, "kubectl {args:?}: {out}");
        out
    };
    ok(&["create", "namespace", "app"]);
    ok(&["create", "serviceaccount", "patcher", "-n", "app"]);
    ok(&[
        "create",
        "role",
        "patch-cm",
        "--verb=get,patch",
        "--resource=configmaps",
        "-n",
        "app",
    ]);
    ok(&[
        "create",
        "rolebinding",
        "patcher",
        "--role=patch-cm",
        "--serviceaccount=app:patcher",
        "-n",
        "app",
    ]);
    let token = ok(&["create", "token", "patcher", "-n", "app"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: app}\ndata: {a: b}\n")
        .expect("write");
    let cm = cm.display().to_string();
    let apply = [
        "--token",
        token.trim(),
        "apply",
        "--server-side",
        "-f",
        cm.as_str(),
    ];
    let (created, out) = s.kubectl(&apply);
    assert!(!created, "{out}");
    assert!(
        out.contains(
            "cannot create resource \"configmaps\" in API group \"\" in the namespace \"app\""
        ),
        "{out}"
    );
    let (_, out) = s.kubectl(&["get", "configmap", "settings", "-n", "app"]);
    assert!(out.contains("NotFound"), "{out}");
    // Once it exists, patch is what applying takes.
    ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "app",
        "--from-literal=a=c",
    ]);
    ok(&apply);

    // externalIPs: refused for everyone, even the admin (DenyServiceExternalIPs).
    let svc = dir.path().join("svc.yaml");
    std::fs::write(
        &svc,
        "apiVersion: v1\nkind: Service\nmetadata: {name: grab, namespace: app}\nspec:\n  ports: [{port: 6443}]\n  externalIPs: [127.0.0.1]\n",
    )
    .expect("write");
    let (created, out) = s.kubectl(&["apply", "-f", &svc.display().to_string()]);
    assert!(!created, "{out}");
    assert!(
        out.contains(
            "services \"grab\" is forbidden: Use of external IPs is denied by admission control"
        ),
        "{out}"
    );
}
