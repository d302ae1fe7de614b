//! `skiff lab up --prometheus`: Debian's Prometheus in node 1's namespace, finding its targets
//! through the API server's HTTP service discovery (`/skiff/v1/prometheus-sd`), so it scrapes
//! pods on every node across the overlay.
//!
//! It authenticates as itself, not as the admin: the ServiceAccount `kube-system/prometheus`,
//! bound to the ClusterRole `skiff-lab-prometheus` (GET on `/metrics` and on the discovery
//! endpoint, nothing else), with a token from the TokenRequest API in
//! `DIR/prometheus/token` (0600). The API and the node metrics ports are HTTPS: Prometheus
//! trusts the cluster CA (`DIR/prometheus/ca.crt`). Pods are scraped as their apps serve
//! (plain HTTP), without the token. The forwarder renews the token at half its lifetime
//! (Prometheus reads the file at every scrape).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use crate::pki::client::Access;

use super::netns;
use super::plan::{Plan, API_PORT, PROMETHEUS_PORT};
use super::status::http_ok;
use super::LabError;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE_ACCOUNT: &str = "prometheus";
/// The ClusterRole and ClusterRoleBinding.
pub const ROLE: &str = "skiff-lab-prometheus";
/// What the role allows: GET of these non-resource paths.
pub const URLS: [&str; 2] = ["/metrics", "/skiff/v1/prometheus-sd"];
/// Asked for; the API server may shorten it (the answer says), the forwarder renews.
const TOKEN_SECONDS: i64 = 365 * 24 * 3600;
const SD_PATH: &str = "/skiff/v1/prometheus-sd";

pub fn root(dir: &Path) -> PathBuf {
    dir.join("prometheus")
}

pub fn token_path(dir: &Path) -> PathBuf {
    root(dir).join("token")
}

pub fn ca_path(dir: &Path) -> PathBuf {
    root(dir).join("ca.crt")
}

/// Two jobs over the same discovery: node metrics (HTTPS, Prometheus' token) and pods
/// (as the apps serve them: plain HTTP, no token). The discovery request itself is HTTPS with
/// the token in both.
pub fn config_text(token_file: &Path, ca_file: &Path) -> String {
    let (token, ca) = (token_file.display(), ca_file.display());
    let sd = |job: &str| -> String {
        [
            "  http_sd_configs:".to_string(),
            format!("  - url: https://127.0.0.1:{API_PORT}{SD_PATH}"),
            "    refresh_interval: 5s".into(),
            // The type explicitly: Prometheus 2.42 leaves the discovery's `Authorization`
            // without it otherwise (just the token, which the API refuses).
            format!("    authorization: {{type: Bearer, credentials_file: '{token}'}}"),
            format!("    tls_config: {{ca_file: '{ca}'}}"),
            "  relabel_configs:".into(),
            "  - source_labels: [job]".into(),
            format!("    regex: {job}"),
            "    action: keep".into(),
        ]
        .join("\n")
    };
    [
        "global:".to_string(),
        "  scrape_interval: 5s".into(),
        "  scrape_timeout: 4s".into(),
        "  evaluation_interval: 5s".into(),
        "scrape_configs:".into(),
        "- job_name: skiff-nodes".into(),
        "  scheme: https".into(),
        format!("  authorization: {{type: Bearer, credentials_file: '{token}'}}"),
        format!("  tls_config: {{ca_file: '{ca}'}}"),
        sd("skiff-nodes"),
        "- job_name: skiff-pods".into(),
        "  scheme: http".into(),
        sd("skiff-pods"),
        String::new(),
    ]
    .join("\n")
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "skiff-lab".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// Creates `obj` unless it exists.
async fn ensure<K>(api: &Api<K>, obj: &K) -> Result<(), LabError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(LabError::NotReady(format!(
            "creating {} {}: {e}",
            K::kind(&()),
            obj.meta().name.as_deref().unwrap_or_default()
        ))),
    }
}

/// The ServiceAccount, its ClusterRole and the binding.
async fn ensure_identity(client: &kube::Client) -> Result<(), LabError> {
    let role = ClusterRole {
        metadata: meta(ROLE, None),
        rules: Some(vec![PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(URLS.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    ensure(&Api::<ClusterRole>::all(client.clone()), &role).await?;
    let sa = ServiceAccount {
        metadata: meta(SERVICE_ACCOUNT, Some(NAMESPACE)),
        ..Default::default()
    };
    ensure(
        &Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        &sa,
    )
    .await?;
    let binding = ClusterRoleBinding {
        metadata: meta(ROLE, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SERVICE_ACCOUNT.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    };
    ensure(&Api::<ClusterRoleBinding>::all(client.clone()), &binding).await
}

/// A new token of the ServiceAccount (TokenRequest), written to `DIR/prometheus/token`.
/// Returns its lifetime.
async fn request_token(client: &kube::Client, dir: &Path) -> Result<Duration, LabError> {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let api = Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE);
    let got = api
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &req)
        .await
        .map_err(|e| {
            LabError::NotReady(format!(
                "TokenRequest for {NAMESPACE}/{SERVICE_ACCOUNT}: {e}"
            ))
        })?;
    let token = got.status.map(|s| s.token).unwrap_or_default();
    if token.is_empty() {
        return Err(LabError::NotReady(format!(
            "TokenRequest for {NAMESPACE}/{SERVICE_ACCOUNT}: no token in the answer"
        )));
    }
    crate::pki::write_private(&token_path(dir), &token)?;
    let seconds = got.spec.expiration_seconds.unwrap_or(TOKEN_SECONDS).max(60);
    Ok(Duration::from_secs(seconds as u64))
}

/// Sets up Prometheus' identity and token through the API (as the admin), then starts it;
/// returns its pid.
pub fn start(dir: &Path, plan: &Plan, admin: &Access) -> Result<u32, LabError> {
    let root = root(dir);
    std::fs::create_dir_all(root.join("data"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = admin.kube_client()?;
        ensure_identity(&client).await?;
        request_token(&client, dir).await
    })?;
    std::fs::write(ca_path(dir), &admin.ca_pem)?;
    let cfg = root.join("prometheus.yml");
    std::fs::write(&cfg, config_text(&token_path(dir), &ca_path(dir)))?;
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            root.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
        .arg("--storage.tsdb.retention.time=1d");
    netns::spawn(Some(&plan.node_ns(1)), cmd, &root.join("prometheus.log"))
}

/// (issued at, expires) of a JWT, read without checking it (it is our own file).
fn token_times(jwt: &str) -> Option<(i64, i64)> {
    let payload = jwt.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims["iat"].as_i64()?, claims["exp"].as_i64()?))
}

/// Whether the token in `DIR/prometheus/token` is past half its lifetime (or unreadable).
fn due(dir: &Path, now: i64) -> bool {
    match std::fs::read_to_string(token_path(dir))
        .ok()
        .and_then(|t| token_times(&t))
    {
        Some((iat, exp)) => now >= iat + (exp - iat) / 2,
        None => true,
    }
}

/// The forwarder's task: renews Prometheus' token at half its lifetime, as the admin. Does
/// nothing until `start` has written the first one.
pub async fn renew(dir: PathBuf, plan: Plan) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if !token_path(&dir).exists() {
            continue;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if !due(&dir, now) {
            continue;
        }
        let renewed = async {
            let client = super::access::admin(&dir, &plan)?.kube_client()?;
            request_token(&client, &dir).await
        };
        match renewed.await {
            Ok(life) => info!(
                seconds = life.as_secs(),
                "renewed Prometheus' ServiceAccount token"
            ),
            Err(e) => warn!("renewing Prometheus' token: {e}"),
        }
    }
}

/// Prometheus answers `/-/ready` through the forwarder.
pub fn wait_ready(plan: &Plan, timeout: Duration) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let port = plan.ports.prometheus;
    loop {
        if http_ok(port, "/-/ready") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "Prometheus not ready on 127.0.0.1:{port} after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_discovers_through_the_api_over_tls_with_its_own_token() {
        let text = config_text(
            Path::new("/lab/prometheus/token"),
            Path::new("/lab/prometheus/ca.crt"),
        );
        let v: serde_json::Value = yaml_serde::from_str(&text).expect("yaml");
        assert_eq!(v["global"]["scrape_interval"], "5s");
        let jobs = v["scrape_configs"].as_array().expect("jobs");
        assert_eq!(jobs.len(), 2);
        for job in jobs {
            let sd = &job["http_sd_configs"][0];
            assert_eq!(sd["url"], "https://127.0.0.1:6443/skiff/v1/prometheus-sd");
            assert_eq!(
                sd["authorization"]["credentials_file"],
                "/lab/prometheus/token"
            );
            assert_eq!(sd["authorization"]["type"], "Bearer");
            assert_eq!(sd["tls_config"]["ca_file"], "/lab/prometheus/ca.crt");
            let keep = &job["relabel_configs"][0];
            assert_eq!(keep["action"], "keep");
            assert_eq!(keep["source_labels"][0], "job");
            assert_eq!(keep["regex"], job["job_name"]);
        }
        // Node metrics: HTTPS with the token; pods: as the app serves, never with the token.
        let nodes = &jobs[0];
        assert_eq!(nodes["job_name"], "skiff-nodes");
        assert_eq!(nodes["scheme"], "https");
        assert_eq!(
            nodes["authorization"]["credentials_file"],
            "/lab/prometheus/token"
        );
        assert_eq!(nodes["tls_config"]["ca_file"], "/lab/prometheus/ca.crt");
        let pods = &jobs[1];
        assert_eq!(pods["job_name"], "skiff-pods");
        assert_eq!(pods["scheme"], "http");
        assert!(pods.get("authorization").is_none(), "{pods}");
    }

    #[test]
    fn a_token_is_renewed_at_half_its_lifetime() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256"}"#),
            b64(r#"{"iat":1000,"exp":3000,"sub":"x"}"#)
        );
        assert_eq!(token_times(&jwt), Some((1000, 3000)));
        assert_eq!(token_times("not a jwt"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(due(dir.path(), 0), "no token: due");
        std::fs::create_dir_all(root(dir.path())).expect("mkdir");
        std::fs::write(token_path(dir.path()), &jwt).expect("write");
        assert!(!due(dir.path(), 1999));
        assert!(due(dir.path(), 2000));
    }
}
