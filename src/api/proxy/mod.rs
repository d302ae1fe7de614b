//! `pods/{name}/log` and `pods/{name}/exec`, proxied to the kubelet server of the pod's node
//! (`status.addresses` and `status.daemonEndpoints.kubeletEndpoint.Port` of its Node), over
//! TLS with the server's certificate (see `tls`).

mod exec;
mod log;
mod tls;

pub use exec::exec;
pub use log::log;
pub use tls::KubeletTls;

use std::net::IpAddr;

use serde_json::Value;

use super::object::{self, subject};
use super::request::Ctx;
use super::resources;
use super::status::ApiError;
use crate::store::Consistency;

const DEFAULT_KUBELET_PORT: u64 = 10250;

/// Where a pod's container is served: the kubelet's `host:port`, its node and the container.
pub struct KubeletTarget {
    pub addr: String,
    pub node: String,
    pub container: String,
}

impl KubeletTarget {
    /// `{base}/{path}/{namespace}/{pod}/{container}?{query of the request, less container}`.
    pub fn url(&self, scheme: &str, path: &str, ctx: &Ctx<'_>) -> String {
        let query = passthrough_query(ctx.req.query_string());
        format!(
            "{scheme}://{}/{path}/{}/{}/{}{}{query}",
            self.addr,
            ctx.ns().unwrap_or_default(),
            ctx.name(),
            self.container,
            if query.is_empty() { "" } else { "?" },
        )
    }
}

/// The container a request is about: the named one, which must be in the pod, or the only one.
fn container(pod: &Value, requested: Option<&str>, pod_name: &str) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers.iter().chain(&init).any(|n| n == c)
                || names("ephemeralContainers").iter().any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::BadRequest(msg))
        }
    }
}

/// The kubelet endpoint in a Node object.
fn kubelet_addr(node: &Value, node_name: &str) -> Result<String, ApiError> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of_type = |t: &str| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .filter(|a| !a.is_empty())
    };
    let host = of_type("InternalIP")
        .or_else(|| of_type("Hostname"))
        .or_else(|| of_type("ExternalIP"))
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "node {node_name} has no address to reach its kubelet"
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    })
}

/// The request's query without what only the API server reads.
fn passthrough_query(qs: &str) -> String {
    qs.split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or_default();
            key != "container" && key != "insecureSkipTLSVerifyBackend"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The kubelet serving `pod` and the container the request is for.
pub async fn target(ctx: &Ctx<'_>, pod: &Value) -> Result<KubeletTarget, ApiError> {
    let container = container(pod, ctx.q.get("container"), ctx.name())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {} does not have a host assigned",
            ctx.name()
        )));
    }
    let nodes = resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    let kv = ctx
        .state
        .store
        .get(&nodes.key(None, node_name), Consistency::Local)
        .await
        .map_err(|e| ApiError::from_store(e, subject(nodes, node_name)))?
        .ok_or_else(|| ApiError::not_found(subject(nodes, node_name)))?;
    let node = object::from_kv(&kv)?;
    Ok(KubeletTarget {
        addr: kubelet_addr(&node, node_name)?,
        node: node_name.to_string(),
        container,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaults_to_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container(&one, None, "p").unwrap(), "a");
        assert!(container(&one, Some("b"), "p").is_err());
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                  "initContainers": [{"name": "i"}]}});
        assert_eq!(container(&two, Some("i"), "p").unwrap(), "i");
        let e = container(&two, None, "p").unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
    }

    #[test]
    fn kubelet_endpoint_from_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_addr(&node, "n1").unwrap(), "127.0.0.1:12345");
        let v6 = json!({"status": {"addresses": [{"type": "InternalIP", "address": "::1"}]}});
        assert_eq!(kubelet_addr(&v6, "n1").unwrap(), "[::1]:10250");
        assert!(kubelet_addr(&json!({}), "n1").is_err());
    }

    #[test]
    fn query_passes_through_less_container() {
        assert_eq!(
            passthrough_query(
                "container=c&follow=true&command=a&command=b&insecureSkipTLSVerifyBackend=true"
            ),
            "follow=true&command=a&command=b"
        );
        assert_eq!(passthrough_query("container=c"), "");
    }
}
