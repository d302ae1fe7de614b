//! The health and metrics HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/livez`,
//! `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::store::Health;

struct State {
    registry: Registry,
    health: Arc<Health>,
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

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render(&state.registry))
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

/// Binds and returns the server (not yet polled: spawn or await it).
pub fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(State { registry, health });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(live))
            .route("/livez", web::get().to(live))
            .route("/readyz", web::get().to(ready))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|e| std::io::Error::new(e.kind(), format!("bind http_listen_addr {addr}: {e}")))?
    .run();
    Ok(server)
}
