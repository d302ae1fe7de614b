//! The joining endpoints: `/cacerts` (the CA certificate, public) and `/skiff/v1/join` (the
//! bundle for a new server or agent, for holders of the cluster token).

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::status::ApiError;
use crate::pki::join::{JoinRequest, JoinService};

pub async fn cacerts(join: web::Data<JoinService>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(join.ca.cert_pem.clone())
}

pub async fn join(
    req: HttpRequest,
    body: web::Bytes,
    join: web::Data<JoinService>,
) -> HttpResponse {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !join.token.accepts(presented) {
        tracing::warn!(
            peer = ?req.peer_addr(),
            "join refused: wrong or missing cluster token"
        );
        return ApiError::Unauthorized.error_response();
    }
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::BadRequest(format!("join request: {e}")).error_response(),
    };
    match join.bundle(&request) {
        Ok(b) => {
            tracing::info!(name = %request.name, role = ?request.role, "node joined");
            HttpResponse::Ok().json(b)
        }
        Err(e) => ApiError::BadRequest(e.to_string()).error_response(),
    }
}
