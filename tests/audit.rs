//! The audit log and the per-user watch limit against a real `skiff server`: kubectl's
//! requests (failed ones too, reads, exec and the join endpoint included) are logged as
//! `audit.k8s.io/v1` events with the user and the outcome, and with the default policy no
//! object data reaches the log; a client with
//! `api.max_watches_per_user` watches open gets 429 for the next until one ends.

#[path = "common/poll.rs"]
#[allow(dead_code)]
mod poll;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, WatchParams};
use serde_json::{json, Value};
use servers::Servers;

/// The audit log's events, in order (a partly written last line is left for the next read).
fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// kubectl's events in namespace `ns` (controllers write there too, as themselves).
fn kubectl_in<'a>(events: &'a [Value], ns: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_at(e, "/objectRef/namespace") == ns)
        .filter(|e| str_at(e, "/userAgent").starts_with("kubectl"))
        .collect()
}

/// (verb, resource, name, code) of kubectl's writes in namespace `ns`.
fn summary(events: &[Value], ns: &str) -> Vec<(String, String, String, u64)> {
    kubectl_in(events, ns)
        .into_iter()
        .filter(|e| !matches!(str_at(e, "/verb"), "get" | "list" | "watch"))
        .map(|e| {
            (
                str_at(e, "/verb").to_string(),
                str_at(e, "/objectRef/resource").to_string(),
                str_at(e, "/objectRef/name").to_string(),
                e.pointer("/responseStatus/code")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_writes_are_audited_with_user_and_outcome_and_without_data() {
    let servers = tokio::task::block_in_place(|| Servers::start(1, ""));
    let kubectl = |args: &[&str]| tokio::task::block_in_place(|| servers.kubectl(args));
    let ns = "audit-test";
    // Unique enough not to appear in a log by chance; neither it nor its base64 may appear.
    let secret = "s3cr3t-audit-value-7f9c2e";
    let secret_b64 = "czNjcjN0LWF1ZGl0LXZhbHVlLTdmOWMyZQ==";

    let (ok, out) = kubectl(&["create", "namespace", ns]);
    assert!(ok, "create namespace: {out}");
    let (ok, out) = kubectl(&[
        "-n",
        ns,
        "create",
        "configmap",
        "audited",
        "--from-literal=k=v",
    ]);
    assert!(ok, "create configmap: {out}");
    let (ok, out) = kubectl(&[
        "-n",
        ns,
        "create",
        "configmap",
        "audited",
        "--from-literal=k=v",
    ]);
    assert!(
        !ok && out.contains("already exists"),
        "a second create fails: {out}"
    );
    let (ok, out) = kubectl(&[
        "-n",
        ns,
        "patch",
        "configmap",
        "audited",
        "-p",
        r#"{"data":{"k":"w"}}"#,
    ]);
    assert!(ok, "patch configmap: {out}");
    let (ok, out) = kubectl(&["-n", ns, "get", "configmap", "audited", "-o", "json"]);
    assert!(ok && out.contains("\"w\""), "get configmap: {out}");
    let (ok, out) = kubectl(&["-n", ns, "delete", "configmap", "audited"]);
    assert!(ok, "delete configmap: {out}");
    let literal = format!("--from-literal=password={secret}");
    let (ok, out) = kubectl(&["-n", ns, "create", "secret", "generic", "pw", &literal]);
    assert!(ok, "create secret: {out}");

    let path = servers.data_dir(0).join("audit.log");
    let expected: Vec<(String, String, String, u64)> = [
        ("create", "configmaps", "", 201),
        ("create", "configmaps", "", 409),
        ("patch", "configmaps", "audited", 200),
        ("delete", "configmaps", "audited", 200),
        ("create", "secrets", "", 201),
    ]
    .iter()
    .map(|(v, r, n, c)| (v.to_string(), r.to_string(), n.to_string(), *c))
    .collect();
    let all = poll::poll(Duration::from_secs(30), "the audit events", || {
        let path = path.clone();
        let expected = expected.clone();
        async move {
            let all = events(&path);
            let got = summary(&all, ns);
            // Each command is one write: the events are exactly these, in order.
            (got == expected).then_some(all)
        }
    })
    .await;

    let ours = kubectl_in(&all, ns);
    for e in &ours {
        assert_eq!(str_at(e, "/kind"), "Event", "{e}");
        assert_eq!(str_at(e, "/apiVersion"), "audit.k8s.io/v1", "{e}");
        assert_eq!(str_at(e, "/level"), "Metadata", "{e}");
        assert_eq!(str_at(e, "/stage"), "ResponseComplete", "{e}");
        assert_eq!(str_at(e, "/objectRef/apiVersion"), "v1", "{e}");
        let user = str_at(e, "/user/username");
        assert!(
            !user.is_empty() && user != "system:anonymous",
            "the authenticated user: {e}"
        );
        assert!(!str_at(e, "/auditID").is_empty(), "{e}");
        assert!(str_at(e, "/requestURI").starts_with("/api/v1/namespaces/audit-test/"));
        let ips = e.pointer("/sourceIPs").and_then(Value::as_array);
        assert_eq!(ips.map(Vec::len), Some(1), "{e}");
        assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
    }
    let conflict = ours[1];
    assert_eq!(
        conflict.pointer("/responseStatus"),
        Some(&json!({"code": 409, "status": "Failure", "reason": "AlreadyExists"}))
    );
    assert_eq!(
        str_at(ours[0], "/annotations/authorization.k8s.io~1decision"),
        "allow"
    );
    assert_eq!(
        ours[0].pointer("/responseStatus"),
        Some(&json!({"code": 201}))
    );

    // Reads are audited too: kubectl's get of the config map.
    assert!(
        ours.iter().any(|e| str_at(e, "/verb") == "get"
            && str_at(e, "/objectRef/name") == "audited"
            && str_at(e, "/level") == "Metadata"),
        "the read is audited: {ours:?}"
    );
    // So are exec (a GET, or a WebSocket upgrade) and the join endpoint, whatever their outcome.
    let token = servers.admin_token();
    let exec = "/api/v1/namespaces/audit-test/pods/nope/exec?command=id&stdout=true";
    let addr = format!("127.0.0.1:{}", servers.nodes[0].api);
    let ((code, _), (join_code, _, _)) = tokio::task::block_in_place(|| {
        let exec = servers::tls::get(servers.nodes[0].api, exec, Some(&token)).expect("exec");
        let join = servers::tls::request(&addr, "POST", "/skiff/v1/join", None).expect("join");
        (exec, join)
    });
    assert_eq!(code, 404);
    let code = join_code;
    assert!(code >= 400, "an empty join is refused: {code}");
    poll::poll(
        Duration::from_secs(30),
        "exec and join in the audit log",
        || {
            let path = path.clone();
            async move {
                let all = events(&path);
                let exec = all.iter().any(|e| {
                    str_at(e, "/objectRef/subresource") == "exec"
                        && e.pointer("/responseStatus/code") == Some(&json!(404))
                });
                let join = all.iter().any(|e| {
                    str_at(e, "/requestURI") == "/skiff/v1/join" && str_at(e, "/verb") == "post"
                });
                (exec && join).then_some(())
            }
        },
    )
    .await;
    let text = std::fs::read_to_string(&path).expect("audit log");
    assert!(
        !text.contains(secret) && !text.contains(secret_b64),
        "object data in the audit log"
    );
    assert!(!text.contains("\"w\""), "patch bodies stay out of the log");
    let mode = std::fs::metadata(&path)
        .expect("audit log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the audit log is private");
}

/// A client with the test's kubeconfig identity that does not retry 429s itself (kube-rs'
/// default client retries them with backoff for minutes).
async fn no_retry_client(servers: &Servers) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(servers.kubeconfig(0)).expect("read");
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("kubeconfig");
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_over_the_per_user_limit_get_429_until_one_ends() {
    // The controllers (their own user) are off so that nothing else in the server watches; the
    // node agent is off without a [node] table.
    let servers = tokio::task::block_in_place(|| {
        Servers::start(
            1,
            "[api]\nmax_watches_per_user = 3\n[controllers]\nenabled = false\n",
        )
    });
    let client = no_retry_client(&servers).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let params = WatchParams::default().timeout(290);

    let mut open = Vec::new();
    for i in 0..3 {
        let stream = cms
            .watch(&params, "0")
            .await
            .unwrap_or_else(|e| panic!("watch {i} within the limit: {e}"));
        open.push(Box::pin(stream));
    }
    match cms.watch(&params, "0").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(
                (s.code, s.reason.as_str()),
                (429, "TooManyRequests"),
                "{s:?}"
            );
            let retry = s.details.as_ref().map(|d| d.retry_after_seconds);
            assert_eq!(retry, Some(1), "{s:?}");
        }
        Err(e) => panic!("a fourth watch: {e}"),
        Ok(_) => panic!("a fourth watch was accepted"),
    }
    // Other requests of the same user are not limited by its watches.
    cms.list(&Default::default()).await.expect("list");

    // The client goes away from one watch; the server notices when it next writes to it, so
    // there are events to write while polling.
    drop(open.pop());
    let mut tick = 0u32;
    let reopened = poll::poll(Duration::from_secs(30), "a watch after one ended", || {
        tick += 1;
        let (cms, params) = (cms.clone(), params.clone());
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": "tick"}, "data": {"n": tick.to_string()}
            }))
            .expect("configmap");
            cms.patch(
                "tick",
                &PatchParams::apply("audit-test").force(),
                &Patch::Apply(&cm),
            )
            .await
            .expect("apply");
            match cms.watch(&params, "0").await {
                Ok(stream) => Some(Box::pin(stream)),
                Err(kube::Error::Api(s)) if s.code == 429 => None,
                Err(e) => panic!("watch: {e}"),
            }
        }
    })
    .await;
    open.push(reopened);
    // And the limit holds again.
    match cms.watch(&params, "0").await {
        Err(kube::Error::Api(s)) if s.code == 429 => {}
        Err(e) => panic!("a fourth watch: {e}"),
        Ok(_) => panic!("a fourth watch was accepted after the reopen"),
    }
}
