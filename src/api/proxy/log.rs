//! `GET pods/{name}/log`: the kubelet's `/containerLogs`, streamed through as it arrives
//! (chunked, so `kubectl logs -f` sees each line when the kubelet sends it).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::Value;

use super::super::request::Ctx;
use super::super::status::ApiError;
use super::KubeletTls;

/// Clients kept per thread; past this many nodes the map starts over.
const MAX_CLIENTS: usize = 256;

thread_local! {
    // Per API worker thread (its pooled connections live on that thread's runtime) and per
    // node (each checks its kubelet's certificate for that node).
    static CLIENTS: RefCell<HashMap<String, reqwest::Client>> = RefCell::new(HashMap::new());
}

fn client(tls: &KubeletTls, node: &str) -> Result<reqwest::Client, ApiError> {
    CLIENTS.with(|c| {
        let mut clients = c.borrow_mut();
        if let Some(client) = clients.get(node) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured((*tls.for_node(node)).clone())
            .build()
            .map_err(|e| ApiError::Internal(format!("kubelet client: {e}")))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(node.to_string(), client.clone());
        Ok(client)
    })
}

/// An error and what caused it (reqwest's own message leaves out TLS failures).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
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
    let url = target.url("https", "containerLogs", ctx);
    let client = client(&ctx.state.kubelet_tls, &target.node)?;
    let resp = client.get(&url).send().await.map_err(|e| {
        ApiError::Internal(format!(
            "error trying to reach the kubelet at {}: {}",
            target.addr,
            with_causes(&e)
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
