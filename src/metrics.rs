//! The health and metrics endpoint (`http_listen_addr`), HTTPS with the server's (servers) or
//! the node's (agents) certificate: `/healthz`, `/livez`, `/readyz` for anyone, `/metrics`
//! (Prometheus text) only for callers the cluster allows, as upstream's delegated
//! authentication and authorization on kubelets and kube-apiserver's `/metrics`:
//!
//! - a client certificate from the cluster CA in `system:masters` or `skiff:servers` is
//!   allowed as it is;
//! - a bearer token is checked by the API server itself: a `SelfSubjectAccessReview` for
//!   `get /metrics`, made with that token, answers for it (Prometheus scrapes with its own
//!   ServiceAccount's token). Answers are kept a minute per token;
//! - nothing: 401.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::auth::authn::PeerUser;
use crate::api::auth::{UserInfo, MASTERS};
use crate::pki::{KeyedCert, PkiError, SERVERS_GROUP};
use crate::store::Health;

/// How long a token's answer is kept.
const REVIEW_TTL: Duration = Duration::from_secs(60);
/// At most this many tokens' answers are kept.
const REVIEW_CACHE_SIZE: usize = 4096;
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
pub const REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// What the API server said of a token for `get /metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// A valid token whose user may not.
    Forbidden,
    /// Not a valid token.
    Unauthorized,
}

/// The verdict in the API server's answer to a SelfSubjectAccessReview, or why there is none.
pub fn verdict_of(status: u16, body: &[u8]) -> Result<Verdict, String> {
    match status {
        200 | 201 => {
            let review: Value = serde_json::from_slice(body)
                .map_err(|e| format!("the API's SelfSubjectAccessReview: {e}"))?;
            let allowed = review.pointer("/status/allowed").and_then(Value::as_bool);
            match allowed {
                Some(true) => Ok(Verdict::Allowed),
                Some(false) => Ok(Verdict::Forbidden),
                None => Err("the API's SelfSubjectAccessReview has no status.allowed".into()),
            }
        }
        401 => Ok(Verdict::Unauthorized),
        // The token is valid (authentication passed) but may not even ask.
        403 => Ok(Verdict::Forbidden),
        code => Err(format!(
            "the API answered the SelfSubjectAccessReview with {code}: {}",
            String::from_utf8_lossy(body).trim()
        )),
    }
}

/// Verdicts by sha256 of the token, each for `ttl`, at most `max` of them.
pub struct VerdictCache {
    entries: HashMap<[u8; 32], (Verdict, Instant)>,
    ttl: Duration,
    max: usize,
}

impl VerdictCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        VerdictCache {
            entries: HashMap::new(),
            ttl,
            max: max.max(1),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((v, expires)) if *expires > now => Some(*v),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, key: [u8; 32], verdict: Verdict, now: Instant) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.max {
                // Full of live answers: the oldest goes.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(key, (verdict, now + self.ttl));
    }
}

/// Asks the API server whether a bearer token may `get /metrics`, with a cache.
pub struct TokenReviewer {
    url: String,
    http: reqwest::Client,
    cache: Mutex<VerdictCache>,
}

impl TokenReviewer {
    /// `api_url`: the API server (https), whose certificate chains to `ca_pem`.
    pub fn new(api_url: &str, ca_pem: &str) -> Result<Self, PkiError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(crate::pki::tls::client_config(ca_pem, None)?)
            .timeout(REVIEW_TIMEOUT)
            .build()
            .map_err(|e| PkiError::Tls(format!("API client: {e}")))?;
        Ok(Self::with_client(api_url, http))
    }

    pub fn with_client(api_url: &str, http: reqwest::Client) -> Self {
        TokenReviewer {
            url: format!("{}{REVIEW_PATH}", api_url.trim_end_matches('/')),
            http,
            cache: Mutex::new(VerdictCache::new(REVIEW_TTL, REVIEW_CACHE_SIZE)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, VerdictCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cached(&self) -> usize {
        self.cache().len()
    }

    /// The verdict on `token`: cached, or the API's; an error (not kept) when the API could
    /// not be asked or answered something else.
    pub async fn review(&self, token: &str) -> Result<Verdict, String> {
        let key = VerdictCache::key(token);
        if let Some(v) = self.cache().get(&key, Instant::now()) {
            return Ok(v);
        }
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}},
        });
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .map_err(|e| format!("asking the API about a token: {}", causes(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the API's answer about a token: {e}"))?;
        let verdict = verdict_of(status, &body)?;
        self.cache().put(key, verdict, Instant::now());
        Ok(verdict)
    }
}

fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// TLS and authentication of the health and metrics port.
pub struct MetricsSecurity {
    /// Serving certificate; client certificates from the cluster CA are optional.
    pub tls: rustls::ServerConfig,
    pub reviewer: TokenReviewer,
}

impl MetricsSecurity {
    /// Serves with `cert` (the server's or the node's), takes client certificates of the CA
    /// and has bearer tokens reviewed by the API at `api_url`.
    pub fn new(ca_pem: &str, cert: &KeyedCert, api_url: &str) -> Result<Self, PkiError> {
        Ok(MetricsSecurity {
            tls: crate::pki::tls::server_config(
                ca_pem,
                &cert.cert,
                &cert.key,
                crate::pki::tls::ClientAuth::Optional,
            )?,
            reviewer: TokenReviewer::new(api_url, ca_pem)?,
        })
    }
}

struct State {
    registry: Registry,
    health: Arc<Health>,
    reviewer: TokenReviewer,
}

/// Prometheus text of `registry` plus the process-wide default registry (raft-engine's).
pub fn render(registry: &Registry) -> String {
    let mut families = registry.gather();
    families.extend(prometheus::gather());
    let mut buf = Vec::new();
    // Encoding into a Vec fails only on invalid metric families, which gather never yields.
    let _ = TextEncoder::new().encode(&families, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Why `/metrics` is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized,
    Forbidden(String),
    /// The API could not say.
    Unavailable(String),
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        let (mut b, text) = match self {
            Refusal::Unauthorized => (HttpResponse::Unauthorized(), "Unauthorized".to_string()),
            Refusal::Forbidden(who) => (
                HttpResponse::Forbidden(),
                format!("Forbidden ({who}verb=get, path=/metrics)"),
            ),
            Refusal::Unavailable(why) => (
                HttpResponse::ServiceUnavailable(),
                format!("cannot check the credentials: {why}"),
            ),
        };
        b.content_type("text/plain").body(text)
    }
}

/// May a caller read `/metrics`? `peer`: the user of its verified client certificate;
/// `authorization`: its Authorization header.
pub async fn authorize(
    peer: Option<&UserInfo>,
    authorization: Option<&[u8]>,
    reviewer: &TokenReviewer,
) -> Result<(), Refusal> {
    if let Some(u) = peer {
        if u.in_group(MASTERS) || u.in_group(SERVERS_GROUP) {
            return Ok(());
        }
    }
    if let Some(header) = authorization {
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthorized)?;
        return match reviewer.review(token).await {
            Ok(Verdict::Allowed) => Ok(()),
            Ok(Verdict::Forbidden) => Err(Refusal::Forbidden(String::new())),
            Ok(Verdict::Unauthorized) => Err(Refusal::Unauthorized),
            Err(why) => {
                tracing::warn!("/metrics: {why}");
                Err(Refusal::Unavailable(why))
            }
        };
    }
    match peer {
        Some(u) => Err(Refusal::Forbidden(format!("user={}, ", u.username))),
        None => Err(Refusal::Unauthorized),
    }
}

async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let peer = req.conn_data::<PeerUser>().map(|p| &p.0);
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|h| h.as_bytes());
    match authorize(peer, authorization, &state.reviewer).await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(render(&state.registry)),
        Err(refusal) => refusal.response(),
    }
}

/// `/healthz`, `/livez`: the process answers.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// `/readyz`: this replica knows a leader and has applied what it knows committed.
pub fn readiness(health: &Health) -> HttpResponse {
    if health.ready() {
        HttpResponse::Ok().content_type("text/plain").body("ok")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("store: no leader known, or not caught up with the commit index")
    }
}

async fn ready(state: web::Data<State>) -> HttpResponse {
    readiness(&state.health)
}

/// Binds (HTTPS) and returns the server (not yet polled: spawn or await it).
pub fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    security: MetricsSecurity,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(State {
        registry,
        health,
        reviewer: security.reviewer,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(live))
            .route("/livez", web::get().to(live))
            .route("/readyz", web::get().to(ready))
    })
    // One worker: the reviewer's pooled connections live on its runtime.
    .workers(1)
    .disable_signals()
    .on_connect(crate::api::auth::authn::on_connect)
    .bind_rustls_0_23(addr, security.tls)
    .map_err(|e| std::io::Error::new(e.kind(), format!("bind http_listen_addr {addr}: {e}")))?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn verdicts_of_the_api_answers() {
        let review = |allowed: &str| {
            format!(r#"{{"kind":"SelfSubjectAccessReview","status":{{"allowed":{allowed}}}}}"#)
        };
        assert_eq!(
            verdict_of(201, review("true").as_bytes()),
            Ok(Verdict::Allowed)
        );
        assert_eq!(
            verdict_of(200, review("true").as_bytes()),
            Ok(Verdict::Allowed)
        );
        assert_eq!(
            verdict_of(201, review("false").as_bytes()),
            Ok(Verdict::Forbidden)
        );
        assert_eq!(verdict_of(401, b"{}"), Ok(Verdict::Unauthorized));
        assert_eq!(verdict_of(403, b"{}"), Ok(Verdict::Forbidden));
        // No verdict: not cached, answered 503.
        assert!(verdict_of(201, b"{}").is_err());
        assert!(verdict_of(201, b"not json").is_err());
        assert!(verdict_of(201, br#"{"status":{"allowed":"yes"}}"#).is_err());
        assert!(verdict_of(500, b"boom").is_err());
        assert!(verdict_of(404, b"").is_err());
    }

    #[test]
    fn the_cache_keeps_answers_for_their_ttl() {
        let mut c = VerdictCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let k = VerdictCache::key("token-a");
        assert_ne!(k, VerdictCache::key("token-b"));
        assert_eq!(c.get(&k, t0), None);
        c.put(k, Verdict::Allowed, t0);
        assert_eq!(
            c.get(&k, t0 + Duration::from_secs(59)),
            Some(Verdict::Allowed)
        );
        assert_eq!(c.get(&k, t0 + Duration::from_secs(60)), None);
        // The expired answer is gone.
        assert!(c.is_empty());
        c.put(k, Verdict::Forbidden, t0);
        c.put(k, Verdict::Unauthorized, t0 + Duration::from_secs(1));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get(&k, t0 + Duration::from_secs(2)),
            Some(Verdict::Unauthorized)
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = VerdictCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        for i in 0..3u64 {
            c.put(VerdictCache::key(&format!("t{i}")), Verdict::Allowed, at(i));
        }
        assert_eq!(c.len(), 3);
        // Full of live answers: the oldest (t0) goes.
        c.put(VerdictCache::key("t3"), Verdict::Forbidden, at(3));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&VerdictCache::key("t0"), at(3)), None);
        assert_eq!(
            c.get(&VerdictCache::key("t1"), at(3)),
            Some(Verdict::Allowed)
        );
        // Expired answers go first, all of them.
        c.put(VerdictCache::key("t4"), Verdict::Allowed, at(62));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&VerdictCache::key("t3"), at(62)),
            Some(Verdict::Forbidden)
        );
        // Many tokens never grow it past its bound.
        for i in 0..1000 {
            c.put(
                VerdictCache::key(&format!("x{i}")),
                Verdict::Allowed,
                at(70),
            );
        }
        assert_eq!(c.len(), 3);
    }

    /// A stand-in for the API's SelfSubjectAccessReview: answers by token, counts requests.
    struct FakeApi {
        url: String,
        calls: Arc<AtomicUsize>,
        handle: actix_web::dev::ServerHandle,
    }

    async fn fake_api() -> FakeApi {
        async fn review(
            req: HttpRequest,
            body: web::Bytes,
            calls: web::Data<AtomicUsize>,
        ) -> HttpResponse {
            calls.fetch_add(1, Ordering::SeqCst);
            let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
            let attrs = &sent["spec"]["nonResourceAttributes"];
            if sent["kind"] != "SelfSubjectAccessReview"
                || attrs["path"] != "/metrics"
                || attrs["verb"] != "get"
            {
                return HttpResponse::BadRequest().finish();
            }
            let token = req
                .headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let allowed = |a: bool| {
                HttpResponse::Created()
                    .content_type("application/json")
                    .body(
                        json!({"kind": "SelfSubjectAccessReview", "status": {"allowed": a}})
                            .to_string(),
                    )
            };
            match token.as_str() {
                "Bearer prometheus" => allowed(true),
                "Bearer nobody" => allowed(false),
                "Bearer no-ssar" => HttpResponse::Forbidden().finish(),
                "Bearer broken" => HttpResponse::InternalServerError().body("boom"),
                _ => HttpResponse::Unauthorized().finish(),
            }
        }
        let calls = web::Data::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(counted.clone())
                .route(REVIEW_PATH, web::post().to(review))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        FakeApi {
            url: format!("http://{addr}"),
            calls: calls.into_inner(),
            handle,
        }
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    #[actix_web::test]
    async fn tokens_are_reviewed_by_the_api_and_cached() {
        let api = fake_api().await;
        let reviewer = TokenReviewer::with_client(&api.url, http());
        let calls = || api.calls.load(Ordering::SeqCst);
        let header = |t: &str| format!("Bearer {t}");
        let check = |t: String| {
            let reviewer = &reviewer;
            async move { authorize(None, Some(t.as_bytes()), reviewer).await }
        };
        assert_eq!(check(header("prometheus")).await, Ok(()));
        assert_eq!(calls(), 1);
        // Cached: the API is not asked again.
        assert_eq!(check(header("prometheus")).await, Ok(()));
        assert_eq!(check("bearer prometheus".into()).await, Ok(()));
        assert_eq!(calls(), 1);
        assert_eq!(
            check(header("nobody")).await,
            Err(Refusal::Forbidden(String::new()))
        );
        assert_eq!(
            check(header("no-ssar")).await,
            Err(Refusal::Forbidden(String::new()))
        );
        assert_eq!(check(header("forged")).await, Err(Refusal::Unauthorized));
        assert_eq!(calls(), 4);
        // Refusals are cached too.
        assert_eq!(check(header("forged")).await, Err(Refusal::Unauthorized));
        assert!(check(header("nobody")).await.is_err());
        assert_eq!(calls(), 4);
        assert_eq!(reviewer.cached(), 4);
        // An API that cannot say: 503, asked again next time.
        assert!(matches!(
            check(header("broken")).await,
            Err(Refusal::Unavailable(_))
        ));
        assert!(matches!(
            check(header("broken")).await,
            Err(Refusal::Unavailable(_))
        ));
        assert_eq!(calls(), 6);
        assert_eq!(reviewer.cached(), 4);
        // Malformed headers never reach the API.
        for bad in ["Basic abc", "Bearer ", "Bearer", "prometheus"] {
            assert_eq!(check(bad.into()).await, Err(Refusal::Unauthorized), "{bad}");
        }
        assert_eq!(calls(), 6);
        api.handle.stop(false).await;
        // No API listening: 503, not 401.
        let gone = TokenReviewer::with_client("http://127.0.0.1:1", http());
        assert!(matches!(
            authorize(None, Some(header("another").as_bytes()), &gone).await,
            Err(Refusal::Unavailable(_))
        ));
    }

    #[actix_web::test]
    async fn certificates_of_the_privileged_groups_pass_without_a_token() {
        let reviewer = TokenReviewer::with_client("http://127.0.0.1:1", http());
        let user = |groups: &[&str]| UserInfo {
            username: "u".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            authorize(Some(&user(&[MASTERS])), None, &reviewer).await,
            Ok(())
        );
        assert_eq!(
            authorize(Some(&user(&[SERVERS_GROUP])), None, &reviewer).await,
            Ok(())
        );
        assert_eq!(
            authorize(Some(&user(&["system:nodes"])), None, &reviewer).await,
            Err(Refusal::Forbidden("user=u, ".into()))
        );
        assert_eq!(
            authorize(None, None, &reviewer).await,
            Err(Refusal::Unauthorized)
        );
        // The certificate wins over a bad token.
        assert_eq!(
            authorize(Some(&user(&[MASTERS])), Some(b"Basic x"), &reviewer).await,
            Ok(())
        );
    }
}
