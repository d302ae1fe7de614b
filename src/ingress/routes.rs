//! Building the routing table from Ingresses, IngressClasses, Services and EndpointSlices: a
//! pure function, rebuilt whole on every change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::class;
use super::table::{normalize_host, Backend, HostRoutes, PathKind, PathRoute, RouteTable};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The table for the Ingresses of `class`. Where two Ingresses claim the same host, path and
/// path type, or both have a default backend, the older one (creation time, then
/// namespace/name) wins, as in ingress-nginx.
pub fn build(
    class: &str,
    ingresses: &[&Ingress],
    classes: &[&IngressClass],
    services: &[&Service],
    slices: &[&EndpointSlice],
) -> RouteTable {
    let default = class::is_default(class, classes);
    let mut ours: Vec<&Ingress> = ingresses
        .iter()
        .copied()
        .filter(|i| class::is_ours(i, class, default))
        .collect();
    ours.sort_by(|a, b| age(a).cmp(&age(b)));
    let mut resolver = Resolver::new(services, slices);
    let mut table = RouteTable::default();
    for ing in ours {
        add_ingress(&mut table, &mut resolver, ing);
    }
    table.warnings.append(&mut resolver.warnings);
    table
}

fn age(
    i: &Ingress,
) -> (
    Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    &str,
    &str,
) {
    (
        i.metadata.creation_timestamp.as_ref(),
        namespace(i),
        i.metadata.name.as_deref().unwrap_or(""),
    )
}

fn namespace(i: &Ingress) -> &str {
    i.metadata.namespace.as_deref().unwrap_or("default")
}

fn add_ingress(table: &mut RouteTable, resolver: &mut Resolver, ing: &Ingress) {
    let ns = namespace(ing);
    let id = format!("{ns}/{}", ing.metadata.name.as_deref().unwrap_or(""));
    let Some(spec) = &ing.spec else { return };
    if let Some(b) = &spec.default_backend {
        if table.default.is_none() {
            table.default = Some(resolver.backend(ns, b, &id));
        } else {
            table.warnings.push(format!(
                "{id}: defaultBackend ignored, an older Ingress has one"
            ));
        }
    }
    for rule in spec.rules.iter().flatten() {
        let Some(http) = &rule.http else { continue };
        let host = normalize_host(rule.host.as_deref().unwrap_or(""));
        let slot: &mut HostRoutes = if host.is_empty() {
            &mut table.any
        } else if let Some(suffix) = host.strip_prefix("*.").filter(|s| !s.contains('*')) {
            table.wildcard.entry(suffix.to_string()).or_default()
        } else if host.contains('*') {
            table.warnings.push(format!(
                "{id}: host {host:?}: a wildcard must be the first label"
            ));
            continue;
        } else {
            table.exact.entry(host.clone()).or_default()
        };
        for p in &http.paths {
            let kind = match p.path_type.as_str() {
                "Exact" => PathKind::Exact,
                "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                other => {
                    table
                        .warnings
                        .push(format!("{id}: unknown pathType {other:?}, path skipped"));
                    continue;
                }
            };
            let path = p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            if !path.starts_with('/') {
                table.warnings.push(format!(
                    "{id}: path {path:?} does not start with '/', skipped"
                ));
                continue;
            }
            let backend = resolver.backend(ns, &p.backend, &id);
            if !slot.add(PathRoute::new(kind, path, backend)) {
                table.warnings.push(format!(
                    "{id}: {host}{path} ({kind:?}) is already routed by an older Ingress"
                ));
            }
        }
    }
}

/// Service backends to ready endpoints, one shared `Backend` per (service, port) so that
/// round-robin spans every path that uses it.
struct Resolver<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    cache: HashMap<String, Arc<Backend>>,
    warnings: Vec<String>,
}

#[derive(Debug)]
enum PortRef<'b> {
    Number(i32),
    Name(&'b str),
}

impl<'a> Resolver<'a> {
    fn new(services: &[&'a Service], slices: &[&'a EndpointSlice]) -> Self {
        let services = services
            .iter()
            .filter_map(|s| {
                let ns = s.metadata.namespace.as_deref().unwrap_or("default");
                Some(((ns, s.metadata.name.as_deref()?), *s))
            })
            .collect();
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                by_service.entry((ns, svc.as_str())).or_default().push(*s);
            }
        }
        Resolver {
            services,
            slices: by_service,
            cache: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    fn backend(&mut self, ns: &str, b: &IngressBackend, id: &str) -> Arc<Backend> {
        let Some(svc) = &b.service else {
            self.warnings
                .push(format!("{id}: resource backends are not supported"));
            return Arc::new(Backend::new(format!("{ns}/<resource>"), Vec::new()));
        };
        let port = match svc.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
            Some((Some(n), _)) => PortRef::Number(n),
            Some((None, Some(name))) => PortRef::Name(name),
            _ => {
                self.warnings
                    .push(format!("{id}: backend {} has no port", svc.name));
                return Arc::new(Backend::new(format!("{ns}/{}", svc.name), Vec::new()));
            }
        };
        let name = match port {
            PortRef::Number(n) => format!("{ns}/{}:{n}", svc.name),
            PortRef::Name(p) => format!("{ns}/{}:{p}", svc.name),
        };
        if let Some(b) = self.cache.get(&name) {
            return b.clone();
        }
        let endpoints = match self.endpoints(ns, &svc.name, &port) {
            Ok(e) => e,
            Err(why) => {
                self.warnings.push(format!("{id}: backend {name}: {why}"));
                Vec::new()
            }
        };
        let backend = Arc::new(Backend::new(name.clone(), endpoints));
        self.cache.insert(name, backend.clone());
        backend
    }

    /// Ready endpoints of a service port: the port's name picks the EndpointSlice port, whose
    /// number is the resolved targetPort.
    fn endpoints(&self, ns: &str, svc: &str, port: &PortRef) -> Result<Vec<SocketAddr>, String> {
        let service = self.services.get(&(ns, svc)).ok_or("no such service")?;
        let sp = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .find(|sp| match port {
                PortRef::Number(n) => sp.port == *n,
                PortRef::Name(name) => sp.name.as_deref() == Some(*name),
            })
            .ok_or_else(|| format!("the service has no port {port:?}"))?;
        if sp.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return Err("not a TCP port".into());
        }
        let port_name = sp.name.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for slice in self.slices.get(&(ns, svc)).into_iter().flatten() {
            if slice.address_type == "FQDN" {
                continue;
            }
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().is_none_or(|p| p == "TCP")
                })
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                let ip = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok());
                if let (true, Some(ip)) = (ready, ip) {
                    out.push(SocketAddr::new(ip, target));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
