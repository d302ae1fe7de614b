//! The routing table the proxy reads: hosts to paths to backends, and the matching rules of
//! networking.k8s.io/v1 (host wildcards of one label, element-wise path prefixes, longest path
//! first with Exact before Prefix at equal length).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A Service port with its ready endpoints, chosen round-robin.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs and error bodies.
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddr>) -> Self {
        Backend {
            name,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint in round-robin order; `None` without ready endpoints.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Exact,
    /// `Prefix`, and `ImplementationSpecific` (treated as `Prefix`).
    Prefix,
}

#[derive(Debug)]
pub struct PathRoute {
    pub kind: PathKind,
    /// As written (Exact) or normalised to `/a/b` (Prefix).
    pub path: String,
    segments: Vec<String>,
    pub backend: Arc<Backend>,
}

impl PathRoute {
    pub fn new(kind: PathKind, path: &str, backend: Arc<Backend>) -> Self {
        let segments: Vec<String> = segments(path).map(str::to_string).collect();
        let path = match kind {
            PathKind::Exact => path.to_string(),
            PathKind::Prefix => format!("/{}", segments.join("/")),
        };
        PathRoute {
            kind,
            path,
            segments,
            backend,
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => self.path == path,
            PathKind::Prefix => {
                let mut req = segments(path);
                self.segments.iter().all(|s| req.next() == Some(s.as_str()))
            }
        }
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The paths of one host (or of the rules without a host), best match first.
#[derive(Debug, Default)]
pub struct HostRoutes {
    paths: Vec<PathRoute>,
}

impl HostRoutes {
    /// Adds a path unless one of the same kind and path is there (the older Ingress wins).
    pub fn add(&mut self, route: PathRoute) -> bool {
        if self
            .paths
            .iter()
            .any(|p| p.kind == route.kind && p.path == route.path)
        {
            return false;
        }
        let key = |p: &PathRoute| (std::cmp::Reverse(p.path.len()), p.kind != PathKind::Exact);
        let at = self.paths.partition_point(|p| key(p) <= key(&route));
        self.paths.insert(at, route);
        true
    }

    pub fn find(&self, path: &str) -> Option<&PathRoute> {
        self.paths.iter().find(|p| p.matches(path))
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// What the proxy routes by.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Lower-case host names.
    pub exact: HashMap<String, HostRoutes>,
    /// `*.example.com` under `example.com`.
    pub wildcard: HashMap<String, HostRoutes>,
    /// Rules without a host.
    pub any: HostRoutes,
    /// The oldest matching Ingress's `spec.defaultBackend`.
    pub default: Option<Arc<Backend>>,
    /// Things skipped or unresolved while building (logged by the controller).
    pub warnings: Vec<String>,
}

impl RouteTable {
    /// The backend for a request: the host's exact rules, then its wildcard rules, then the
    /// rules without a host (each tier only if a path matches there), then the default backend.
    /// `host` is as sent (any port is ignored, case-insensitive).
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Backend>> {
        let host = normalize_host(host);
        let exact = self.exact.get(&host);
        let wildcard = host
            .split_once('.')
            .filter(|(first, _)| !first.is_empty())
            .and_then(|(_, rest)| self.wildcard.get(rest));
        [exact, wildcard, Some(&self.any)]
            .into_iter()
            .flatten()
            .find_map(|h| h.find(path))
            .map(|p| &p.backend)
            .or(self.default.as_ref())
    }

    /// Host/path routes in the table (the default backend not counted).
    pub fn len(&self) -> usize {
        self.exact.values().map(HostRoutes::len).sum::<usize>()
            + self.wildcard.values().map(HostRoutes::len).sum::<usize>()
            + self.any.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lower case, without a port or a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    bare.trim_end_matches('.').to_ascii_lowercase()
}
