//! The kubelet HTTP server (port 10250): container logs and exec for the API server, which
//! proxies `pods/log` and `pods/exec` here. It reads only the node's on-disk layout and runs
//! the OCI runtime, so it works whichever component runs the pods.

pub mod channel;
mod crilog;
mod exec;
mod logs;
mod tty;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde_json::json;
use thiserror::Error;

use super::layout::{ContainerRecord, NodeDirs, PodRecord};

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
}

impl ResponseError for ServerError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let reason = match self {
            ServerError::NotFound(_) => "NotFound",
            ServerError::BadRequest(_) => "BadRequest",
            ServerError::Internal(_) => "InternalError",
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

/// Binds the kubelet server on `addr`; the server is returned unstarted (spawn or await it).
pub fn serve(
    addr: SocketAddr,
    dirs: NodeDirs,
    runtime: PathBuf,
) -> io::Result<actix_web::dev::Server> {
    let state = web::Data::new(NodeServer { dirs, runtime });
    let server = HttpServer::new(move || {
        App::new()
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
    .bind(addr)
    .map_err(|e| io::Error::new(e.kind(), format!("bind kubelet listen_addr {addr}: {e}")))?
    .run();
    Ok(server)
}
