//! Secure by default, against real servers: anonymous requests get 401 except health and
//! version; a `view` user cannot write, nor impersonate, and `kubectl auth can-i` says so; a node's credentials
//! cannot change another node or a pod bound to another node, nor widen what it may read by
//! changing its own pod; servers of a cluster join with the token and a wrong token is
//! refused.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::process::Command;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use servers::{tls, Servers};
use skiff::pki::client::{Access, Identity};
use skiff::pki::KeyedCert;

/// Whether a request was refused with 403.
fn forbidden<T>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 403)
}

fn kubectl(servers: &Servers, args: &[&str]) -> (bool, String) {
    servers.kubectl(args)
}

#[test]
fn anonymous_requests_reach_only_health_and_version() {
    let s = Servers::start(1, "[controllers]\nenabled = false\n");
    let api = s.nodes[0].api;
    for path in [
        "/api/v1/pods",
        "/api/v1/namespaces/default/secrets",
        "/apis",
        "/metrics",
    ] {
        let (code, body) = tls::get(api, path, None).expect("answer");
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    }
    for path in ["/healthz", "/readyz", "/livez", "/version"] {
        assert_eq!(tls::get(api, path, None).map(|r| r.0), Some(200), "{path}");
    }
    // A token the cluster did not sign is 401 even on health.
    assert_eq!(
        tls::get(api, "/api/v1/pods", Some("forged.token.value")).map(|r| r.0),
        Some(401)
    );
    // The admin token works.
    assert_eq!(
        tls::get(api, "/api/v1/pods", Some(&s.admin_token())).map(|r| r.0),
        Some(200)
    );
    // Plain HTTP is not served.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok_and(|mut c| {
            use std::io::{Read, Write};
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = c.write_all(b"GET /api/v1/pods HTTP/1.0\r\n\r\n");
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            !String::from_utf8_lossy(&out).contains("\"kind\"")
        })
    );
}

#[test]
fn a_view_user_cannot_write_and_can_i_says_no() {
    let s = Servers::start(1, "[controllers]\nenabled = true\n");
    let ok = |args: &[&str]| {
        let (ok, out) = kubectl(&s, args);
        assert!(ok, "kubectl {args:?}: {out}");
        out
    };
    ok(&["create", "namespace", "sec"]);
    ok(&["create", "serviceaccount", "viewer", "-n", "sec"]);
    ok(&[
        "create",
        "rolebinding",
        "viewer-view",
        "--clusterrole=view",
        "--serviceaccount=sec:viewer",
        "-n",
        "sec",
    ]);
    let token = ok(&["create", "token", "viewer", "-n", "sec"]);
    let token = token.trim();
    let as_viewer = |args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        kubectl(&s, &all)
    };
    let (ok_get, out) = as_viewer(&["get", "pods", "-n", "sec"]);
    assert!(ok_get, "view may list pods: {out}");
    let (created, out) = as_viewer(&["create", "configmap", "x", "-n", "sec"]);
    assert!(!created, "{out}");
    assert!(
        out.contains("Forbidden") || out.contains("forbidden"),
        "{out}"
    );
    let (_, out) = as_viewer(&["auth", "can-i", "create", "pods", "-n", "sec"]);
    assert_eq!(out.trim(), "no", "{out}");
    let (_, out) = as_viewer(&["auth", "can-i", "list", "pods", "-n", "sec"]);
    assert_eq!(out.trim(), "yes", "{out}");
    // Nothing was written.
    let (_, out) = kubectl(&s, &["get", "configmap", "x", "-n", "sec"]);
    assert!(
        out.contains("NotFound") || out.contains("not found"),
        "{out}"
    );
    // Impersonation (`--as`) needs the impersonate verb: the viewer cannot become the
    // admin; the admin, who may, runs with the viewer's rights only.
    let (became, out) = as_viewer(&[
        "--as=admin",
        "--as-group=system:masters",
        "get",
        "secrets",
        "-n",
        "sec",
    ]);
    assert!(!became, "{out}");
    assert!(
        out.contains("cannot impersonate resource \"users\""),
        "{out}"
    );
    let viewer = "--as=system:serviceaccount:sec:viewer";
    let (_, out) = kubectl(
        &s,
        &[viewer, "auth", "can-i", "create", "pods", "-n", "sec"],
    );
    assert_eq!(out.trim(), "no", "{out}");
    let (created, out) = kubectl(&s, &[viewer, "create", "configmap", "y", "-n", "sec"]);
    assert!(!created && out.contains("forbidden"), "{out}");
    assert!(out.contains("system:serviceaccount:sec:viewer"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_credentials_touch_only_their_own_node_and_pods() {
    let s = tokio::task::block_in_place(|| Servers::start(1, "[controllers]\nenabled = false\n"));
    let admin = s.client(0);
    let nodes: Api<Node> = Api::all(admin.clone());
    for name in ["n1", "n2"] {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
        nodes
            .create(&PostParams::default(), &n)
            .await
            .expect("node");
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for (name, node) in [("on-n1", "n1"), ("on-n2", "n2")] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &p).await.expect("pod");
    }
    // The server's own node credential: CN=system:node:n1, O=system:nodes.
    let pki = s.data_dir(0).join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("pki file");
    let node_client = Access {
        url: s.url(0),
        ca_pem: read("ca.crt"),
        identity: Identity::Cert(KeyedCert {
            cert: read("node.crt"),
            key: read("node.key"),
        }),
    }
    .kube_client()
    .expect("node client");
    let as_node_nodes: Api<Node> = Api::all(node_client.clone());
    let as_node_pods: Api<Pod> = Api::namespaced(node_client.clone(), "default");
    let as_node_secrets: Api<Secret> = Api::namespaced(node_client, "default");
    let label = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"touched": v}}}));

    as_node_nodes
        .patch("n1", &PatchParams::default(), &label("yes"))
        .await
        .expect("a node labels itself");
    assert!(forbidden(
        as_node_nodes
            .patch("n2", &PatchParams::default(), &label("no"))
            .await
    ));
    assert!(forbidden(
        as_node_nodes.delete("n2", &DeleteParams::default()).await
    ));
    // Creates carry the name in the body only: a node cannot register another node.
    let other: Node = serde_json::from_value(json!({"metadata": {"name": "n9"}})).expect("node");
    assert!(forbidden(
        as_node_nodes.create(&PostParams::default(), &other).await
    ));
    assert!(nodes.get_opt("n9").await.expect("get n9").is_none());
    as_node_pods
        .patch_status(
            "on-n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("status of its own pod");
    assert!(forbidden(
        as_node_pods
            .patch_status(
                "on-n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Failed"}})),
            )
            .await
    ));
    assert!(forbidden(
        as_node_pods.delete("on-n2", &DeleteParams::default()).await
    ));
    // Reading is allowed (the node sees the cluster's pods and nodes).
    as_node_pods.get("on-n2").await.expect("read");
    // Nothing of n2 changed.
    let n2 = nodes.get("n2").await.expect("n2");
    assert!(!n2
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("touched"));
    let p2 = pods.get("on-n2").await.expect("on-n2");
    assert_ne!(p2.status.and_then(|s| s.phase).as_deref(), Some("Failed"));

    // A node reads only the secrets its pods mount, and cannot widen that by editing its
    // own pod: volumes and the service account are fixed at creation.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "db-password"}, "stringData": {"pw": "x"}}),
    )
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    assert!(forbidden(as_node_secrets.get("db-password").await));
    for change in [
        json!({"spec": {"volumes": [{"name": "stolen", "secret": {"secretName": "db-password"}}]}}),
        json!({"spec": {"serviceAccountName": "admin"}}),
    ] {
        let refused = as_node_pods
            .patch("on-n1", &PatchParams::default(), &Patch::Merge(change))
            .await;
        match refused {
            Err(kube::Error::Api(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
                assert!(
                    e.message
                        .contains("spec: Forbidden: pod updates may not change fields other than"),
                    "{}",
                    e.message
                );
            }
            other => panic!("a node changed its pod's spec: {other:?}"),
        }
    }
    let p1 = pods.get("on-n1").await.expect("on-n1");
    assert!(p1
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .iter()
        .all(|v| v.name != "stolen"));
    assert!(forbidden(as_node_secrets.get("db-password").await));
}

#[test]
fn a_server_with_the_wrong_token_cannot_join() {
    let s = Servers::start(1, "[controllers]\nenabled = false\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "node_name = \"x\"\ndata_dir = \"{}\"\ninitial_cluster = [\"x=127.0.0.1:1\"]\npeer_listen_addr = \"127.0.0.1:0\"\nhttp_listen_addr = \"127.0.0.1:0\"\napi_addr = \"127.0.0.1:0\"\n[node]\nenabled = false\n[security]\ntoken = \"wrong-token-0123456789abcdef\"\nserver_url = \"{}\"\n",
            dir.path().join("data").display(),
            s.url(0)
        ),
    )
    .expect("config");
    let out = Command::new(servers::BIN)
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .expect("skiff server");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert!(!dir.path().join("data/pki/ca.key").exists());
}
