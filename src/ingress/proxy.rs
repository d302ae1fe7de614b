//! The HTTP/1.1 reverse proxy: routes each request by Host and path through the current
//! `RouteTable` to one ready endpoint of the backend (round-robin) and streams both bodies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::metrics::IngressMetrics;
use super::table::RouteTable;
use super::IngressConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request and response bodies, streamed.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A client has this long to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (out of descriptors, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Idle upstream connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Cheap to clone: one per connection.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` until the controller has built its first table.
    routes: watch::Receiver<Option<Arc<RouteTable>>>,
    client: Client<HttpConnector, ProxyBody>,
    metrics: IngressMetrics,
    response_timeout: Duration,
    max_body: Option<u64>,
}

impl Proxy {
    pub fn new(
        routes: watch::Receiver<Option<Arc<RouteTable>>>,
        cfg: &IngressConfig,
        metrics: IngressMetrics,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms.max(1))));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Proxy {
            inner: Arc::new(Inner {
                routes,
                client,
                metrics,
                response_timeout: Duration::from_secs(cfg.response_timeout_seconds.max(1)),
                max_body: (cfg.max_body_bytes > 0).then_some(cfg.max_body_bytes),
            }),
        }
    }

    /// Accepts connections until `shutdown` changes (or its sender goes); connections then
    /// finish their request in flight.
    pub fn serve(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(conn) => conn,
                        Err(e) => {
                            warn!("ingress: accept: {e}");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    },
                    _ = shutdown.changed() => break,
                };
                let local_port = stream.local_addr().map_or(0, |a| a.port());
                let _ = stream.set_nodelay(true);
                tokio::spawn(
                    self.clone()
                        .connection(stream, peer, local_port, shutdown.clone()),
                );
            }
        })
    }

    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        local_port: u16,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let svc = service_fn(move |req| {
            let proxy = self.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, peer, local_port).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), svc);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, "ingress connection: {e}");
                }
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let resp = self.forward(req, peer, port).await;
        let m = &self.inner.metrics;
        m.requests
            .with_label_values(&[resp.status().as_str()])
            .inc();
        m.duration.observe(started.elapsed().as_secs_f64());
        resp
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
    ) -> Response<ProxyBody> {
        let host = request_host(&req);
        let Some(table) = self.inner.routes.borrow().clone() else {
            return local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 service unavailable: ingress routes not loaded yet\n",
            );
        };
        let Some(backend) = table.route(&host, req.uri().path()) else {
            return local(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let Some(addr) = backend.pick() else {
            debug!(backend = %backend.name, "ingress: no ready endpoints");
            return local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 service unavailable: no ready endpoints\n",
            );
        };
        if let (Some(max), Some(len)) = (self.inner.max_body, content_length(req.headers())) {
            if len > max {
                return local(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "413 request body too large\n",
                );
            }
        }
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = format!("http://{addr}{path}").parse::<Uri>() else {
            return local(StatusCode::BAD_REQUEST, "400 bad request\n");
        };
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        if let Ok(v) = HeaderValue::from_str(&host) {
            if !host.is_empty() {
                parts.headers.insert(header::HOST, v);
            }
        }
        add_forwarded(&mut parts.headers, peer, &host, port);
        let body = match self.inner.max_body {
            Some(max) => {
                Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed_unsync()
            }
            None => body.map_err(BoxError::from).boxed_unsync(),
        };
        let sent = self.inner.client.request(Request::from_parts(parts, body));
        match tokio::time::timeout(self.inner.response_timeout, sent).await {
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
            Ok(Err(e)) if too_large(&e) => local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 request body too large\n",
            ),
            Ok(Err(e)) => {
                warn!(backend = %backend.name, %addr, "ingress: upstream failed: {e}");
                local(StatusCode::BAD_GATEWAY, "502 bad gateway\n")
            }
            Err(_) => {
                warn!(backend = %backend.name, %addr, "ingress: upstream response timed out");
                local(StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout\n")
            }
        }
    }
}

/// The authority of an absolute-form target (which replaces Host, RFC 9112 3.2.2), else the
/// Host header, else empty (rules without a host).
fn request_host<B>(req: &Request<B>) -> String {
    req.uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            let h = req.headers().get(header::HOST)?;
            h.to_str().ok().map(str::to_string)
        })
        .unwrap_or_default()
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Removes the headers that describe one connection (RFC 9110 7.6.1), including the ones the
/// Connection header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        h.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(name);
    }
}

/// X-Forwarded-For (the client appended), -Host (the Host as sent), -Proto, -Port.
fn add_forwarded(h: &mut HeaderMap, peer: SocketAddr, host: &str, port: u16) {
    let client = peer.ip().to_string();
    let prior: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prior.is_empty() {
        client
    } else {
        format!("{}, {client}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR, v);
    }
    match HeaderValue::from_str(host) {
        Ok(v) if !host.is_empty() => {
            h.insert(X_FORWARDED_HOST, v);
        }
        _ => {
            h.remove(X_FORWARDED_HOST);
        }
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    h.insert(X_FORWARDED_PORT, HeaderValue::from(port));
}

fn local(code: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
