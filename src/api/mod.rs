//! The Kubernetes-compatible API server: the only component that touches the store.

mod admission;
mod audit;
pub mod auth;
mod body;
pub mod defaults;
mod discovery;
pub use discovery::{KUBE_MAJOR, KUBE_MINOR};
mod handlers;
mod join;
mod limits;
mod namespaces;
mod object;
mod openapi;
mod patch;
mod path;
pub mod podsecurity;
mod prometheus_sd;
mod protobuf;
mod proxy;
pub mod registry;
mod request;
mod resources;
mod selectors;
pub mod serviceaccounts;
mod services;
mod state;
mod status;
mod strategic;
mod subresources;
mod table;
mod validate;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use prometheus::Registry;

pub use proxy::KubeletTls;
pub use services::{network as service_network, Bootstrap, ServiceNetwork};
use state::{ApiMetrics, ApiState};

use crate::store::{Health, StoreClient};

fn json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(v.to_string())
}

async fn version() -> HttpResponse {
    json(discovery::version())
}

/// The aggregated discovery document when the client asks for one (kubectl 1.27+).
fn aggregated(req: &HttpRequest, core: bool) -> Option<HttpResponse> {
    let accept = req.headers().get("accept")?.to_str().ok()?;
    let version = discovery::aggregated_version(accept)?;
    Some(
        HttpResponse::Ok()
            .content_type(discovery::aggregated_content_type(version))
            .body(discovery::aggregated(core, version).to_string()),
    )
}

async fn api(req: HttpRequest) -> HttpResponse {
    if let Some(r) = aggregated(&req, true) {
        return r;
    }
    let host = req.connection_info().host().to_string();
    json(discovery::api_versions(&host))
}

async fn apis(req: HttpRequest) -> HttpResponse {
    if let Some(r) = aggregated(&req, false) {
        return r;
    }
    json(discovery::api_group_list())
}

async fn group(path: web::Path<String>) -> HttpResponse {
    let g = path.into_inner();
    if resources::groups().contains(&g.as_str()) && !g.is_empty() {
        json(discovery::api_group(&g))
    } else {
        path::not_found().error_response()
    }
}

async fn core(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
    p: web::Path<(String, String)>,
) -> HttpResponse {
    let (version, rest) = p.into_inner();
    if !resources::group_served("", &version) {
        return path::not_found().error_response();
    }
    if rest.trim_matches('/').is_empty() {
        return json(discovery::resource_list("", &version));
    }
    handlers::resource(req, payload, state, "", &version, &rest).await
}

async fn grouped(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
    p: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (group, version, rest) = p.into_inner();
    if !resources::group_served(&group, &version) {
        return path::not_found().error_response();
    }
    if rest.trim_matches('/').is_empty() {
        return json(discovery::resource_list(&group, &version));
    }
    handlers::resource(req, payload, state, &group, &version, &rest).await
}

/// Swagger 2.0 as JSON; asked for as protobuf (kubectl), an empty `openapi_v2.Document`
/// (see `openapi`): kubectl then uses its built-in types and the server validates.
async fn openapi_v2(req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        return HttpResponse::Ok()
            .content_type("application/octet-stream")
            .finish();
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::v2())
}

async fn openapi_v3_index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::v3_index())
}

async fn openapi_v3(path: web::Path<String>) -> HttpResponse {
    match openapi::v3(&path.into_inner()) {
        Some(doc) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header(("Etag", format!("\"{}\"", doc.hash)))
            .body(doc.body.as_slice()),
        None => path::not_found().error_response(),
    }
}

async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    // Like upstream's rbac/bootstrap-roles hook: not ready before the default roles are
    // visible to the authorizer, or nodes and users would get 403 for a moment.
    let snap = state.rbac.snapshot();
    if !state.rbac.synced() || snap.cluster_role_rules("system:node").is_none() {
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("[-]poststarthook/rbac/bootstrap-roles failed: not finished\n");
    }
    crate::metrics::readiness(&state.health)
}

async fn metrics_text(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(&state.registry))
}

/// Creates what a new cluster has (the system namespaces, the default RBAC roles and
/// bindings, the `kubernetes` and `kube-dns` Services) and lists this server in the
/// `kubernetes` Service's endpoints; retried until the store takes writes.
pub async fn bootstrap(store: StoreClient, services: Bootstrap) {
    namespaces::bootstrap(store.clone()).await;
    serviceaccounts::bootstrap(store.clone()).await;
    auth::roles::bootstrap(store.clone()).await;
    services::bootstrap(store, services).await;
}

async fn unknown() -> HttpResponse {
    path::not_found().error_response()
}

/// TLS and authentication of the API port.
pub struct Security {
    /// Serving certificate; client certificates from the cluster CA are optional.
    pub tls: rustls::ServerConfig,
    pub keys: crate::pki::TokenKeys,
    /// Answers joining servers and agents (servers only).
    pub join: crate::pki::join::JoinService,
    /// The client side of kubelets' TLS (`KubeletTls::new(ca, server certificate)`).
    pub kubelet_tls: KubeletTls,
}

/// Binds the API on `addr`; the server is returned unstarted (spawn or await it).
#[allow(clippy::too_many_arguments)]
pub fn serve(
    addr: SocketAddr,
    store: StoreClient,
    health: Arc<Health>,
    registry: Registry,
    toleration_seconds: u64,
    services: ServiceNetwork,
    limits: &crate::config::ApiConfig,
    security: Security,
    pod_security: podsecurity::PodSecurityConfig,
) -> std::io::Result<actix_web::dev::Server> {
    let authn = web::Data::new(auth::authn::Authn {
        keys: security.keys,
        store: store.clone(),
    });
    let join = web::Data::new(security.join);
    let limiter = limits::Limiter::new(limits, &registry)
        .map_err(|e| std::io::Error::other(format!("API metrics: {e}")))?;
    let metrics = ApiMetrics::register(&registry)
        .map_err(|e| std::io::Error::other(format!("API metrics: {e}")))?;
    let auditor = audit::Auditor::start(limits, &registry)?;
    let pod_security = podsecurity::PodSecurity::new(pod_security, &registry)
        .map_err(|e| std::io::Error::other(format!("API metrics: {e}")))?;
    let state = web::Data::new(ApiState {
        store,
        health,
        metrics,
        registry,
        toleration_seconds,
        services,
        rbac: auth::rbac_cache::RbacCache::new(),
        kubelet_tls: security.kubelet_tls,
        authn: authn.clone(),
        allow_external_ips: limits.allow_service_external_ips,
        pod_security,
    });
    state.rbac.start(state.store.clone());
    let server = HttpServer::new(move || {
        // The last `.wrap` is the outermost: the audit log sees every request, refused ones
        // too; `audit::tap` stays the first (innermost).
        App::new()
            .wrap(actix_web::middleware::from_fn(audit::tap))
            .wrap(actix_web::middleware::from_fn(limits::admit))
            // Outside the limits: the per-user watch limit needs the user.
            .wrap(actix_web::middleware::from_fn(auth::authn::authenticate))
            .wrap(actix_web::middleware::from_fn(audit::record))
            .app_data(authn.clone())
            .app_data(join.clone())
            .route(crate::pki::join::CACERTS_PATH, web::get().to(join::cacerts))
            .route(crate::pki::join::JOIN_PATH, web::post().to(join::join))
            .app_data(web::Data::new(limiter.clone()))
            .app_data(web::Data::new(auditor.clone()))
            .app_data(state.clone())
            .route("/version", web::get().to(version))
            .route("/healthz", web::get().to(crate::metrics::live))
            .route("/livez", web::get().to(crate::metrics::live))
            .route("/readyz", web::get().to(ready))
            .route("/metrics", web::get().to(metrics_text))
            .route("/openapi/v2", web::get().to(openapi_v2))
            .route("/openapi/v3", web::get().to(openapi_v3_index))
            .route("/openapi/v3/{gv:.*}", web::get().to(openapi_v3))
            .route(
                "/skiff/v1/prometheus-sd",
                web::get().to(prometheus_sd::serve),
            )
            .route("/api", web::get().to(api))
            .route("/apis", web::get().to(apis))
            .route("/apis/{group}", web::get().to(group))
            .route("/api/{version}{rest:(/.*)?}", web::route().to(core))
            .route(
                "/apis/{group}/{version}{rest:(/.*)?}",
                web::route().to(grouped),
            )
            .default_service(web::to(unknown))
    })
    .workers(2)
    .disable_signals()
    .on_connect(auth::authn::on_connect)
    // Under a burst of new connections handshakes queue for the CPU; actix's 3 s default
    // would drop them without an answer.
    .tls_handshake_timeout(std::time::Duration::from_secs(15))
    // The same for the request head after the handshake (actix's default is 5 s).
    .client_request_timeout(std::time::Duration::from_secs(30))
    .bind_rustls_0_23(addr, security.tls)
    .map_err(|e| std::io::Error::new(e.kind(), format!("bind api_addr {addr}: {e}")))?
    .run();
    Ok(server)
}
