//! The projected ServiceAccount token volume on a real node (runc, as root; see
//! tests/common/node_host.rs): a pod created without a ServiceAccount runs as `default`, and
//! its container, running as a non-root user, reads `token`, `ca.crt` and `namespace` under
//! /var/run/secrets/kubernetes.io/serviceaccount; the token is bound to the pod and
//! authenticates against the API.

#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use node_host::{root_or_skip, NodeHost, IMAGE};
use serde_json::{json, Value};

const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[tokio::test(flavor = "multi_thread")]
async fn pods_read_their_serviceaccount_token_ca_and_namespace() {
    if !root_or_skip("pods_read_their_serviceaccount_token_ca_and_namespace") {
        return;
    }
    let host = tokio::task::block_in_place(|| NodeHost::start(""));
    let pods: Api<Pod> = Api::namespaced(host.client(), "default");
    let script = format!(
        "echo ns=$(cat {DIR}/namespace); echo token=$(cat {DIR}/token); \
         echo ca-begin; cat {DIR}/ca.crt; echo ca-end; \
         echo modes=$(stat -c %a {DIR} {DIR}/token {DIR}/ca.crt {DIR}/namespace); \
         if touch {DIR}/x 2>/dev/null; then echo writable; fi; exec sleep 3600"
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "reader"},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", script]}],
        },
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref()),
        Some("default")
    );

    // Wait for the container's output.
    let deadline = Instant::now() + Duration::from_secs(90);
    let logs = loop {
        if let Ok(l) = pods.logs("reader", &LogParams::default()).await {
            if l.contains("modes=") {
                break l;
            }
        }
        if Instant::now() > deadline {
            let p = pods.get("reader").await.ok().and_then(|p| p.status);
            panic!("no output from the pod; status {p:#?}\n{}", host.log());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let line = |prefix: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {logs}"))
            .trim()
            .to_string()
    };
    assert_eq!(line("ns="), "default");
    assert_eq!(line("modes="), "755 644 644 644", "{logs}");
    assert!(
        !logs.contains("writable"),
        "the token volume is read-only: {logs}"
    );
    let ca = logs
        .split_once("ca-begin\n")
        .and_then(|(_, rest)| rest.split_once("ca-end"))
        .map(|(ca, _)| ca.to_string())
        .expect("ca.crt in the output");
    let want_ca =
        std::fs::read_to_string(host.dir.path().join("data/pki/ca.crt")).expect("cluster CA");
    assert_eq!(ca.trim(), want_ca.trim());

    // The token: this pod's, for the API's audience, and the API takes it.
    let token = line("token=");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload"),
    )
    .expect("claims");
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "reader", "uid": uid})
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    // Authenticated (the account may not list pods: 403), where a bad token is 401.
    let port = host.api_port;
    let path = "/api/v1/namespaces/default/pods";
    let code = |t: &str| {
        let t = t.to_string();
        tokio::task::block_in_place(|| servers::tls::get(port, path, Some(&t)).map(|r| r.0))
    };
    assert_eq!(code(&token), Some(403));
    assert_eq!(code(&format!("{token}x")), Some(401));
}
