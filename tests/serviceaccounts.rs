//! ServiceAccounts against a real `skiff server` with real kubectl: the `default` account
//! and `kube-root-ca.crt` in every namespace, ServiceAccount admission of pods (the default
//! account, a missing account refused, the projected `kube-api-access-*` token volume), the
//! TokenRequest API (`kubectl create token`), and ServiceAccount tokens as credentials: 403
//! until RBAC grants, allowed after, 401 once the account (or the bound pod) is gone.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use servers::Servers;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(1, ""))
}

fn kubectl(args: &[&str]) -> (bool, String) {
    tokio::task::block_in_place(|| cluster().kubectl(args))
}

fn ok(args: &[&str]) -> String {
    let (good, out) = kubectl(args);
    assert!(good, "kubectl {}: {out}", args.join(" "));
    out
}

/// Retries `args` until `check` accepts (success, output).
fn eventually(args: &[&str], check: impl Fn(bool, &str) -> bool) -> String {
    tokio::task::block_in_place(|| cluster().kubectl_until(args, check))
}

/// The claims of a JWT (not verified: the server does that).
fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON claims")
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

fn busybox() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox"}], "initContainers": [{"name": "i", "image": "busybox"}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_get_the_default_account_and_the_root_ca() {
    let client = tokio::task::block_in_place(|| cluster().client(0));
    namespace(&client, "sa-new").await;
    let sa = eventually(
        &[
            "get",
            "serviceaccount",
            "default",
            "-n",
            "sa-new",
            "-o",
            "json",
        ],
        |good, _| good,
    );
    let sa: Value = serde_json::from_str(&sa).expect("json");
    assert!(sa["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let ca = std::fs::read_to_string(cluster().data_dir(0).join("pki/ca.crt")).expect("ca.crt");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "sa-new");
    let deadline = Instant::now() + Duration::from_secs(30);
    let cm = loop {
        if let Ok(Some(cm)) = cms.get_opt("kube-root-ca.crt").await {
            break cm;
        }
        assert!(Instant::now() < deadline, "no kube-root-ca.crt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cm.data.unwrap_or_default().get("ca.crt"), Some(&ca));
    // Deleted, both come back (the account with a new uid).
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
    ok(&["delete", "serviceaccount", "default", "-n", "sa-new"]);
    ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "sa-new"]);
    let again = eventually(
        &[
            "get",
            "serviceaccount",
            "default",
            "-n",
            "sa-new",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        |good, out| good && !out.is_empty(),
    );
    assert_ne!(again.trim(), uid);
    eventually(
        &["get", "configmap", "kube-root-ca.crt", "-n", "sa-new"],
        |good, _| good,
    );
    // System namespaces have them too.
    for ns in ["default", "kube-system"] {
        eventually(
            &["get", "serviceaccount", "default", "-n", ns],
            |good, _| good,
        );
        eventually(
            &["get", "configmap", "kube-root-ca.crt", "-n", ns],
            |good, _| good,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn created_tokens_are_forbidden_until_rbac_allows_and_die_with_their_account() {
    let client = tokio::task::block_in_place(|| cluster().client(0));
    namespace(&client, "sa-token").await;
    eventually(
        &["get", "serviceaccount", "default", "-n", "sa-token"],
        |good, _| good,
    );
    let token = ok(&["create", "token", "default", "-n", "sa-token"]);
    let token = token.trim().to_string();
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:sa-token:default");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["aud"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(c["kubernetes.io"]["namespace"], "sa-token");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "default");
    let (exp, iat) = (c["exp"].as_i64().unwrap(), c["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    assert_eq!(c["nbf"], c["iat"]);

    // Authenticated as the account, which may do nothing yet.
    let as_sa = ["--token", &token, "get", "pods", "-n", "sa-token"];
    let (good, out) = kubectl(&as_sa);
    assert!(!good, "{out}");
    assert!(
        out.contains("Forbidden")
            && out.contains(
                "\"system:serviceaccount:sa-token:default\" cannot list resource \"pods\""
            ),
        "{out}"
    );
    // Longer than the maximum: shortened, with a warning; shorter than 10 minutes: invalid.
    let (good, out) = kubectl(&[
        "create",
        "token",
        "default",
        "-n",
        "sa-token",
        "--duration=100h",
    ]);
    assert!(good, "{out}");
    assert!(out.contains("shortened to 172800 seconds"), "{out}");
    let (good, out) = kubectl(&[
        "create",
        "token",
        "default",
        "-n",
        "sa-token",
        "--duration=5m",
    ]);
    assert!(
        !good && out.contains("may not specify a duration less than 10 minutes"),
        "{out}"
    );
    let (good, out) = kubectl(&["create", "token", "nobody", "-n", "sa-token"]);
    assert!(
        !good && out.contains("serviceaccounts \"nobody\" not found"),
        "{out}"
    );

    // Deleting an account revokes its tokens.
    ok(&["create", "serviceaccount", "robot", "-n", "sa-token"]);
    let robot = ok(&["create", "token", "robot", "-n", "sa-token"]);
    let as_robot = ["--token", robot.trim(), "get", "pods", "-n", "sa-token"];
    let (good, out) = kubectl(&as_robot);
    assert!(!good && out.contains("Forbidden"), "{out}");
    ok(&["delete", "serviceaccount", "robot", "-n", "sa-token"]);
    let (good, out) = kubectl(&as_robot);
    assert!(!good && out.contains("Unauthorized"), "{out}");

    // What RBAC decides (src/api/auth/rbac.rs): every authenticated user may ask who it is,
    // and a Role with its RoleBinding lets the account list pods in its namespace only.
    let who = ok(&["--token", &token, "auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_str(&who).expect("whoami json");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:sa-token:default"
    );
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:serviceaccounts:sa-token"),
        "{groups}"
    );

    // A Role and RoleBinding grant listing pods in this namespace only.
    ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "sa-token",
    ]);
    ok(&[
        "create",
        "rolebinding",
        "pod-reader",
        "--role=pod-reader",
        "--serviceaccount=sa-token:default",
        "-n",
        "sa-token",
    ]);
    eventually(&as_sa, |good, out| {
        good && (out.contains("No resources found") || out.contains("NAME"))
    });
    let (good, out) = kubectl(&["--token", &token, "get", "pods", "-n", "default"]);
    assert!(!good && out.contains("Forbidden"), "{out}");

    // Deleting `default` revokes its tokens too (the controller's new `default` is another).
    ok(&["delete", "serviceaccount", "default", "-n", "sa-token"]);
    let (good, out) = kubectl(&as_sa);
    assert!(!good && out.contains("Unauthorized"), "{out}");
    eventually(
        &["get", "serviceaccount", "default", "-n", "sa-token"],
        |good, _| good,
    );
    let (good, out) = kubectl(&as_sa);
    assert!(!good && out.contains("Unauthorized"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_as_an_existing_account_with_its_token_mounted() {
    let client = tokio::task::block_in_place(|| cluster().client(0));
    namespace(&client, "sa-pods").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sa-pods");
    let pp = PostParams::default();
    // Created before the account's controller may have run: admission waits for `default`.
    let p = pods
        .create(&pp, &pod("plain", busybox()))
        .await
        .expect("pod");
    let spec = p.spec.expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.service_account.as_deref(), Some("default"));
    let vols = spec.volumes.unwrap_or_default();
    let vol = vols
        .iter()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .expect("token volume");
    assert_eq!(vol.name.len(), "kube-api-access-".len() + 5);
    let projected = serde_json::to_value(vol.projected.as_ref().expect("projected")).unwrap();
    assert_eq!(
        projected,
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == MOUNT)
            .expect("token mount");
        assert_eq!(
            (m.name.as_str(), m.read_only),
            (vol.name.as_str(), Some(true))
        );
    }

    // An account that does not exist: 403 as upstream.
    let missing =
        json!({"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox"}]});
    match pods.create(&pp, &pod("ghost", missing)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message.contains(
                    "error looking up service account sa-pods/ghost: serviceaccount \"ghost\" not found"
                ),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }

    // Opting out: on the pod, or on the account.
    let off = json!({"automountServiceAccountToken": false, "containers": [{"name": "c", "image": "busybox"}]});
    let p = pods.create(&pp, &pod("off", off)).await.expect("pod");
    assert!(p.spec.unwrap().volumes.unwrap_or_default().is_empty());
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "sa-pods");
    let quiet: ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    )
    .unwrap();
    sas.create(&pp, &quiet).await.expect("sa");
    let spec =
        json!({"serviceAccountName": "quiet", "containers": [{"name": "c", "image": "busybox"}]});
    let p = pods.create(&pp, &pod("quiet", spec)).await.expect("pod");
    let spec = p.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("quiet"));
    assert!(spec.volumes.unwrap_or_default().is_empty());
    // The pod's own setting wins.
    let spec = json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true,
        "containers": [{"name": "c", "image": "busybox"}]});
    let p = pods.create(&pp, &pod("loud", spec)).await.expect("pod");
    assert_eq!(p.spec.unwrap().volumes.unwrap_or_default().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_tokens_name_their_pod_and_die_with_it() {
    let client = tokio::task::block_in_place(|| cluster().client(0));
    namespace(&client, "sa-bound").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sa-bound");
    let pp = PostParams::default();
    let p = pods.create(&pp, &pod("web", busybox())).await.expect("pod");
    let uid = p.metadata.uid.clone().expect("uid");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "sa-bound");
    let request = |name: &str, uid: Option<&str>, secs: i64| TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(secs),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: uid.map(String::from),
            }),
        },
        ..Default::default()
    };
    let tr = sas
        .create_token_request("default", &pp, &request("web", Some(&uid), 3607))
        .await
        .expect("token request");
    let status = tr.status.expect("status");
    let c = claims(&status.token);
    assert_eq!(
        c["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": uid})
    );
    let sa = sas.get("default").await.expect("sa");
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"]["uid"].as_str(),
        sa.metadata.uid.as_deref()
    );
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3607
    );
    let left = status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    assert!((3590..=3608).contains(&left), "{left}");
    assert_eq!(tr.spec.expiration_seconds, Some(3607));

    // Errors as upstream: wrong uid 409, missing pod 404, too short 422, no account 404.
    let code = |r: Result<TokenRequest, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an error, got {other:?}"),
    };
    for (account, pod, uid, secs, want) in [
        ("default", "web", Some("nope"), 3600, 409),
        ("default", "gone", None, 3600, 404),
        ("default", "web", None, 60, 422),
        ("ghost", "web", None, 3600, 404),
    ] {
        let req = request(pod, uid, secs);
        let got = code(sas.create_token_request(account, &pp, &req).await);
        assert_eq!(got, want, "{account} {pod} {uid:?} {secs}");
    }

    // The token authenticates (403: no role) while the pod lives, and not after.
    let port = cluster().nodes[0].api;
    let path = "/api/v1/namespaces/sa-bound/pods";
    let get = |t: String| {
        tokio::task::block_in_place(|| servers::tls::get(port, path, Some(&t)).map(|r| r.0))
    };
    assert_eq!(get(status.token.clone()), Some(403));
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(get(status.token.clone()), Some(401));
}
