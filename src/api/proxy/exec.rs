//! `GET|POST pods/{name}/exec`: the API server accepts the client's WebSocket itself, opens
//! one to the kubelet with the same subprotocol and relays messages both ways. A kubelet that
//! cannot be reached or refuses is reported on the error channel, so kubectl shows the reason
//! instead of falling back to SPDY.

use std::time::Duration;

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{web, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, Session};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::super::request::Ctx;
use super::super::status::ApiError;
use crate::node::server::channel::{self, Outcome, Protocol};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_FRAME: usize = 1 << 20;

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

fn upgrade(ctx: &Ctx<'_>) -> String {
    ctx.req
        .headers()
        .get("upgrade")
        .and_then(|u| u.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub async fn exec(
    ctx: &Ctx<'_>,
    pod: &Value,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let target = super::target(ctx, pod).await?;
    match phase {
        "Running" => {}
        "Succeeded" | "Failed" => {
            return Err(ApiError::BadRequest(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )))
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "pod {} is not running; current phase is {phase}",
                ctx.name()
            )))
        }
    }
    let upgrade = upgrade(ctx);
    if upgrade != "websocket" {
        let how = if upgrade.starts_with("spdy") {
            "exec over SPDY is not supported; use kubectl 1.30 or newer (WebSocket v5.channel.k8s.io)"
        } else {
            "exec needs a WebSocket upgrade (v5.channel.k8s.io)"
        };
        return Err(ApiError::BadRequest(how.into()));
    }
    let offered = ctx
        .req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|h| h.to_str().ok());
    let offered = Protocol::negotiate(offered).map_err(ApiError::BadRequest)?;
    let proto = offered.unwrap_or(Protocol::V1);
    let url = target.url("wss", "exec", ctx);
    let tls = ctx.state.kubelet_tls.for_node(&target.node);
    let upstream = connect(&url, proto, &target.addr, tls).await;
    let (mut resp, session, stream) = actix_ws::handle(ctx.req, payload)
        .map_err(|e| ApiError::BadRequest(format!("WebSocket handshake: {e}")))?;
    if let Some(p) = offered {
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p.name()));
    }
    let stream = stream.max_frame_size(MAX_FRAME).aggregate_continuations();
    match upstream {
        Ok(up) => {
            actix_web::rt::spawn(relay(up, session, stream));
        }
        Err(message) => {
            tracing::info!(pod = ctx.name(), "exec: {message}");
            actix_web::rt::spawn(refuse(session, proto, message));
        }
    }
    Ok(resp)
}

/// The kubelet's WebSocket over TLS (`tls`: see `KubeletTls::for_node`), or why there is none.
async fn connect(
    url: &str,
    proto: Protocol,
    addr: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Upstream, String> {
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("invalid kubelet URL {url}: {e}"))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static(proto.name()),
    );
    let name = super::tls::server_name(addr)?;
    let cfg = tungstenite::protocol::WebSocketConfig::default().max_frame_size(Some(MAX_FRAME));
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("error dialing backend: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("error dialing backend: TLS with the kubelet at {addr}: {e}"))?;
        match tokio_tungstenite::client_async_with_config(req, stream, Some(cfg)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
                Err(format!(
                    "the kubelet refused exec ({}): {message}",
                    resp.status().as_u16()
                ))
            }
            Err(e) => Err(format!("error dialing backend: {e}")),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "error dialing backend: timed out reaching the kubelet at {addr}"
            ))
        })
}

/// Reports `message` as the exec's failure and closes.
async fn refuse(mut session: Session, proto: Protocol, message: String) {
    if let Some(p) = channel::status_payload(proto, &Outcome::Failed(message), &[]) {
        let _ = session.binary(channel::frame(channel::ERROR, &p)).await;
    }
    let _ = session.close(Some(channel::normal_close())).await;
}

/// Copies messages both ways until either side closes, then closes the other.
async fn relay(upstream: Upstream, session: Session, mut client: AggregatedMessageStream) {
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut down_session = session.clone();
    let mut pong_session = session.clone();
    let down = async {
        while let Some(msg) = up_rx.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("exec relay, kubelet side: {e}");
                    return;
                }
            };
            let sent = match msg {
                Message::Binary(b) => down_session.binary(b).await,
                Message::Text(t) => down_session.text(t.as_str().to_owned()).await,
                Message::Close(_) => return,
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    };
    let up = async {
        while let Some(msg) = client.recv().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("exec relay, client side: {e}");
                    return;
                }
            };
            let sent = match msg {
                AggregatedMessage::Binary(b) => up_tx.send(Message::Binary(b)).await,
                AggregatedMessage::Text(t) => up_tx.send(Message::text(t.to_string())).await,
                AggregatedMessage::Ping(p) => {
                    if pong_session.pong(&p).await.is_err() {
                        return;
                    }
                    Ok(())
                }
                AggregatedMessage::Close(_) => return,
                AggregatedMessage::Pong(_) => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, up_tx.close()).await;
    let _ = session.close(Some(channel::normal_close())).await;
}
