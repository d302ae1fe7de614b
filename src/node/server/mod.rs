//! The kubelet server (port 10250): container logs and exec for the API server, which
//! proxies `pods/log` and `pods/exec` here. It reads only the node's on-disk layout and runs
//! the OCI runtime, so it works whichever component runs the pods.
//!
//! HTTPS only, with the node's certificate, and every caller must present a client
//! certificate from the cluster CA. Only the API servers (O=skiff:servers) and the
//! privileged group (O=system:masters) get past `/healthz`.

pub mod channel;
mod crilog;
mod exec;
mod logs;
mod tty;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde_json::json;
use thiserror::Error;

use super::layout::{ContainerRecord, NodeDirs, PodRecord};
use crate::api::auth::authn::PeerUser;
use crate::api::auth::{UserInfo, MASTERS};
use crate::pki::SERVERS_GROUP;

/// What every handler shares.
pub struct NodeServer {
    pub dirs: NodeDirs,
    /// The OCI runtime binary (runc).
    pub runtime: PathBuf,
}

/// Request errors, answered as a `metav1.Status` like upstream's kubelet.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
}

impl ResponseError for ServerError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let reason = match self {
            ServerError::NotFound(_) => "NotFound",
            ServerError::BadRequest(_) => "BadRequest",
            ServerError::Internal(_) => "InternalError",
            ServerError::Unauthorized => "Unauthorized",
            ServerError::Forbidden(_) => "Forbidden",
        };
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": self.status_code().as_u16(),
        });
        HttpResponse::build(self.status_code())
            .content_type("application/json")
            .body(status.to_string())
    }
}

/// `{namespace}/{pod}/{container}` of a request path.
pub type ContainerPath = web::Path<(String, String, String)>;

impl NodeServer {
    /// The pod and its current container `container`, or 404.
    async fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(PodRecord, ContainerRecord), ServerError> {
        let dirs = self.dirs.clone();
        let (ns, name) = (namespace.to_string(), pod.to_string());
        let rec = web::block(move || dirs.find(&ns, &name))
            .await
            .map_err(|e| ServerError::Internal(format!("reading pod records: {e}")))?
            .ok_or_else(|| ServerError::NotFound(format!("pod \"{namespace}/{pod}\" not found")))?;
        let c = rec.containers.get(container).cloned().ok_or_else(|| {
            ServerError::NotFound(format!(
                "container \"{container}\" not found in pod \"{namespace}/{pod}\""
            ))
        })?;
        Ok((rec, c))
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn unknown() -> HttpResponse {
    ServerError::NotFound("the server could not find the requested resource".into())
        .error_response()
}

/// Whether a caller may use the kubelet's API (everything but `/healthz`).
pub fn allowed(user: &UserInfo) -> bool {
    user.in_group(SERVERS_GROUP) || user.in_group(MASTERS)
}

/// The verb upstream's kubelet authorizer gives a request (its resource is
/// `nodes/proxy` for the logs and exec paths served here).
fn verb(req: &ServiceRequest) -> &'static str {
    match *req.method() {
        actix_web::http::Method::GET | actix_web::http::Method::HEAD => "get",
        actix_web::http::Method::POST => "create",
        actix_web::http::Method::PUT => "update",
        actix_web::http::Method::DELETE => "delete",
        _ => "*",
    }
}

/// Authorization by the caller's client certificate (the handshake required one from the
/// cluster CA): 401 without a usable one, 403 outside the allowed groups.
async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.path() != "/healthz" {
        match req.conn_data::<PeerUser>() {
            None => return Err(ServerError::Unauthorized.into()),
            Some(PeerUser(user)) if !allowed(user) => {
                return Err(ServerError::Forbidden(format!(
                    "Forbidden (user={}, verb={}, resource=nodes, subresource=proxy)",
                    user.username,
                    verb(&req)
                ))
                .into());
            }
            Some(_) => {}
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The kubelet port's TLS: the node's certificate, client certificates of the CA required.
pub fn tls_config(ca_pem: &str, node: &crate::pki::KeyedCert) -> io::Result<rustls::ServerConfig> {
    crate::pki::tls::server_config(
        ca_pem,
        &node.cert,
        &node.key,
        crate::pki::tls::ClientAuth::Required,
    )
    .map_err(|e| io::Error::other(format!("kubelet TLS: {e}")))
}

/// Binds the kubelet server on `addr` (HTTPS with `tls`, see `tls_config`); the server is
/// returned unstarted (spawn or await it).
pub fn serve(
    addr: SocketAddr,
    dirs: NodeDirs,
    runtime: PathBuf,
    tls: rustls::ServerConfig,
) -> io::Result<actix_web::dev::Server> {
    let state = web::Data::new(NodeServer { dirs, runtime });
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(authorize))
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                web::get().to(logs::container_logs),
            )
            .route(
                "/exec/{namespace}/{pod}/{container}",
                web::route()
                    .guard(
                        actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Post()),
                    )
                    .to(exec::exec),
            )
            .default_service(web::to(unknown))
    })
    .workers(2)
    .disable_signals()
    .on_connect(crate::api::auth::authn::on_connect)
    .bind_rustls_0_23(addr, tls)
    .map_err(|e| io::Error::new(e.kind(), format!("bind kubelet listen_addr {addr}: {e}")))?
    .run();
    Ok(server)
}
