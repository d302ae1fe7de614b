//! What a request is, parsed from its method, path and query as upstream's
//! `RequestInfoFactory` does: the verb (list and watch told from get), and for resource
//! requests the group, version, namespace, resource, name and subresource. The limits and the
//! audit log decide on this, never on substrings of the raw path.

/// A request's verb and, for `/api` and `/apis` object paths, what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
}

/// Subresources that stream for as long as the client wants (upstream's long-running check).
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];

/// A query flag as Go's `strconv.ParseBool` reads it.
fn flag(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            k == name && matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
        })
    })
}

impl RequestInfo {
    pub fn parse(method: &str, path: &str, query: &str) -> RequestInfo {
        let lower = method.to_ascii_lowercase();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, mut parts) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => {
                return RequestInfo {
                    verb: lower,
                    ..Default::default()
                }
            }
        };
        let mut verb = match method {
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            "GET" | "HEAD" => "get",
            _ => "",
        };
        // The deprecated `/watch/` and `/proxy/` prefixes name the verb.
        if let Some(first @ ("watch" | "proxy")) = parts.first().copied() {
            if verb == "get" {
                verb = first;
            }
            parts = &parts[1..];
        }
        let mut namespace = "";
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            namespace = parts[1];
            // `namespaces/NAME/status` and `/finalize` are the namespace's own subresources.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let Some(resource) = parts.first() else {
            return RequestInfo {
                verb: lower,
                ..Default::default()
            };
        };
        let name = parts.get(1).copied().unwrap_or("");
        let subresource = parts.get(2).copied().unwrap_or("");
        if name.is_empty() {
            verb = match verb {
                "get" if flag(query, "watch") => "watch",
                "get" => "list",
                "delete" => "deletecollection",
                v => v,
            };
        }
        if verb.is_empty() {
            return RequestInfo {
                verb: lower,
                ..Default::default()
            };
        }
        RequestInfo {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            version: version.into(),
            namespace: namespace.into(),
            resource: resource.to_string(),
            name: name.into(),
            subresource: subresource.into(),
        }
    }

    /// A request that streams for as long as the client wants: watches, proxies, exec,
    /// attach, port-forward and logs (upstream's long-running requests).
    pub fn long_running(&self) -> bool {
        self.resource_request
            && (matches!(self.verb.as_str(), "watch" | "proxy")
                || LONG_RUNNING_SUBRESOURCES.contains(&self.subresource.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, uri: &str) -> RequestInfo {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        RequestInfo::parse(method, path, query)
    }

    #[test]
    fn verbs_and_objects_as_upstream() {
        let i = info("GET", "/api/v1/namespaces/d/pods");
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.namespace.as_str()),
            ("list", "pods", "d")
        );
        assert_eq!(info("GET", "/api/v1/pods?watch=true").verb, "watch");
        assert_eq!(info("GET", "/api/v1/watch/namespaces/d/pods").verb, "watch");
        assert_eq!(info("GET", "/api/v1/namespaces/d/pods/p").verb, "get");
        assert_eq!(
            info("DELETE", "/apis/apps/v1/namespaces/d/deployments").verb,
            "deletecollection"
        );
        let ns = info("PUT", "/api/v1/namespaces/d/finalize");
        assert_eq!(
            (
                ns.resource.as_str(),
                ns.name.as_str(),
                ns.subresource.as_str()
            ),
            ("namespaces", "d", "finalize")
        );
        let exec = info("POST", "/api/v1/namespaces/d/pods/p/exec?command=sh");
        assert_eq!(
            (exec.verb.as_str(), exec.subresource.as_str()),
            ("create", "exec")
        );
        let other = info("GET", "/healthz");
        assert!(!other.resource_request);
        assert_eq!(other.verb, "get");
    }

    #[test]
    fn long_running_is_decided_on_the_parsed_request() {
        assert!(info("GET", "/api/v1/pods?watch=true").long_running());
        assert!(info("GET", "/api/v1/watch/pods").long_running());
        assert!(info("GET", "/api/v1/namespaces/d/pods/p/log").long_running());
        assert!(info("POST", "/api/v1/namespaces/d/pods/p/exec").long_running());
        assert!(info("GET", "/api/v1/namespaces/d/services/s/proxy/x").long_running());
        // What the raw path check let through.
        assert!(!info("POST", "/api/v1/namespaces/d/configmaps?watch=true").long_running());
        assert!(!info("GET", "/api/v1/namespaces/d/configmaps/proxy").long_running());
        assert!(!info("GET", "/api/v1/namespaces/proxy/configmaps").long_running());
        assert!(!info("GET", "/api/v1/namespaces/d/pods/exec").long_running());
        assert!(!info("GET", "/api/v1/namespaces/d/pods/p?watch=true").long_running());
    }
}
