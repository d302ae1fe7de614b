//! The httpGet probe as kubelet runs it: a real HTTP client (the URL and headers are built
//! and checked by it, so `path`, `host` and `httpHeaders` cannot inject request lines),
//! `scheme: HTTPS` without certificate verification, `httpHeaders` (a `Host` header picks
//! the virtual host), redirects followed on the same host up to 10 (one to another host
//! counts as the success it answered), any 200-399 a success.

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::HTTPGetAction;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use reqwest::{redirect, Client, Url};

/// Upstream's `maxRedirects`-style limit on same-host redirects.
const MAX_REDIRECTS: usize = 10;

/// kubelet's redirect rule: same host followed (up to 10), another host not followed (its
/// 3xx answer is the result).
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().and_then(|u| u.host_str());
        let same_host = attempt.url().host_str() == first;
        let hops = attempt.previous().len();
        if !same_host {
            attempt.stop()
        } else if hops >= MAX_REDIRECTS {
            attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// One client for every probe (no connection reuse, as kubelet disables keep-alives).
fn client() -> Result<&'static Client, String> {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // The process installs ring first thing; a unit test may not have, and then reqwest
    // would panic building its TLS config. Installing again is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let built = Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .redirect(redirect_policy())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("probe HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// The probe's URL: `path` (with its query) below `scheme://host:port`, every part set
/// through the URL parser (which escapes or drops control characters).
fn url(scheme: &str, host: &str, port: u16, path: &str) -> Result<Url, String> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut url = Url::parse(&format!("{scheme}://{host}:{port}/"))
        .map_err(|e| format!("invalid probe host {host:?}: {e}"))?;
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    url.set_path(p);
    url.set_query(q);
    Ok(url)
}

/// The request headers: the probe's `httpHeaders` (refused when a name or value is not a
/// valid header), then kubelet's User-Agent and Accept unless given.
fn headers(h: &HTTPGetAction) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for hh in h.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(hh.name.as_bytes())
            .map_err(|_| format!("invalid probe header name {:?}", hh.name))?;
        let value = HeaderValue::from_str(&hh.value)
            .map_err(|_| format!("invalid value of probe header {:?}", hh.name))?;
        map.append(name, value);
    }
    if !map.contains_key(USER_AGENT) {
        map.insert(USER_AGENT, HeaderValue::from_static("kube-probe/1.33"));
    }
    if !map.contains_key(ACCEPT) {
        map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(map)
}

/// Runs the probe against `ip` (or its `host`) on `port`.
pub async fn probe(
    h: &HTTPGetAction,
    ip: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let host = h.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(ip);
    let scheme = match h.scheme.as_deref() {
        Some("HTTPS") => "https",
        _ => "http",
    };
    let url = url(scheme, host, port, h.path.as_deref().unwrap_or("/"))?;
    let headers = headers(h)?;
    let resp = client()?
        .get(url.clone())
        .headers(headers)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let code = resp.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-request-at-a-time HTTP server on 127.0.0.1 that records each request's head and
    /// answers with `answers` in turn.
    fn server(answers: Vec<String>) -> (u16, mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut s, _)) = l.accept() else { return };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
                    head.push(b[0]);
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    fn action(v: serde_json::Value) -> HTTPGetAction {
        serde_json::from_value(v).expect("action")
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn path_cannot_inject_a_header() {
        let (port, rx) = server(vec![OK.into()]);
        let h = action(serde_json::json!({"path": "/x\r\nX-Evil: 1", "port": port}));
        probe(&h, "127.0.0.1", port, SECOND).await.expect("probe");
        let head = rx.recv_timeout(SECOND).expect("request");
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert!(lines[0].starts_with("GET /x"), "{head}");
        assert!(
            !lines
                .iter()
                .any(|l| l.to_ascii_lowercase().starts_with("x-evil")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn bad_header_values_are_refused_and_good_ones_sent() {
        let h = action(serde_json::json!({"port": 1,
            "httpHeaders": [{"name": "X-A", "value": "1\r\nX-Evil: 1"}]}));
        let err = probe(&h, "127.0.0.1", 1, SECOND)
            .await
            .expect_err("refused");
        assert!(err.contains("invalid value of probe header"), "{err}");
        let h = action(serde_json::json!({"port": 1, "host": "127.0.0.1\r\nX-Evil: 1"}));
        assert!(probe(&h, "127.0.0.1", 1, SECOND).await.is_err());

        let (port, rx) = server(vec![OK.into()]);
        let h = action(serde_json::json!({"port": port, "path": "/healthz?full=1",
            "httpHeaders": [{"name": "Host", "value": "web.example"},
                            {"name": "X-Custom", "value": "yes"}]}));
        probe(&h, "127.0.0.1", port, SECOND).await.expect("probe");
        let head = rx
            .recv_timeout(SECOND)
            .expect("request")
            .to_ascii_lowercase();
        assert!(head.starts_with("get /healthz?full=1 http/1.1"), "{head}");
        assert!(head.contains("\r\nhost: web.example\r\n"), "{head}");
        assert!(head.contains("\r\nx-custom: yes\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: kube-probe/"), "{head}");
    }

    #[tokio::test]
    async fn redirects_as_kubelet() {
        // Same host: followed to the final answer.
        let (port, rx) = server(vec![
            "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ]);
        let h = action(serde_json::json!({"port": port, "path": "/start"}));
        let err = probe(&h, "127.0.0.1", port, SECOND).await.expect_err("500");
        assert_eq!(err, "HTTP probe failed with statuscode: 500");
        assert!(rx
            .recv_timeout(SECOND)
            .expect("first")
            .starts_with("GET /start"));
        assert!(rx
            .recv_timeout(SECOND)
            .expect("second")
            .starts_with("GET /final"));
        // Another host: not followed, the 3xx counts as success.
        let (port, _rx) = server(vec![
            "HTTP/1.1 301 Moved\r\nLocation: http://192.0.2.1:9/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ]);
        probe(&h, "127.0.0.1", port, SECOND)
            .await
            .expect("3xx elsewhere is success");
    }
}
