//! `GET pods/{name}/log`: the kubelet's `/containerLogs`, streamed through as it arrives
//! (chunked, so `kubectl logs -f` sees each line when the kubelet sends it).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::Value;

use super::super::handlers::Ctx;
use super::super::status::ApiError;

thread_local! {
    // One client per API worker thread: its pooled connections live on that thread's runtime.
    static CLIENT: RefCell<Option<reqwest::Client>> = const { RefCell::new(None) };
}

fn client() -> Result<reqwest::Client, ApiError> {
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(client) = c.as_ref() {
            return Ok(client.clone());
        }
        // Kubelets are spoken to in plain HTTP, but the TLS backend is compiled in (for image
        // pulls) and must be given a crypto provider rather than look for a process default.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Internal(format!("kubelet client TLS: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| ApiError::Internal(format!("kubelet client: {e}")))?;
        *c = Some(client.clone());
        Ok(client)
    })
}

/// A kubelet's error answer: passed on when it is a `metav1.Status`, wrapped otherwise.
pub fn kubelet_error(code: u16, body: &[u8]) -> HttpResponse {
    let is_status = serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some("Status"));
    if is_status {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return HttpResponse::build(code)
            .content_type("application/json")
            .body(body.to_vec());
    }
    actix_web::ResponseError::error_response(&ApiError::Internal(format!(
        "the kubelet answered {code}: {}",
        String::from_utf8_lossy(body).trim()
    )))
}

pub async fn log(ctx: &Ctx<'_>, pod: &Value) -> Result<HttpResponse, ApiError> {
    let target = super::target(ctx, pod).await?;
    let url = target.url("http", "containerLogs", ctx);
    let resp = client()?.get(&url).send().await.map_err(|e| {
        ApiError::Internal(format!(
            "error trying to reach the kubelet at {}: {e}",
            target.addr
        ))
    })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        return Ok(kubelet_error(status, &body));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(resp.bytes_stream()))
}
