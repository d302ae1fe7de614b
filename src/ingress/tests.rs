//! Unit tests: the routing table from typed objects (class selection, host and path rules,
//! default backend, named target ports) and the status helpers.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{json, Value};

use super::routes::build;
use super::table::{normalize_host, RouteTable};
use super::{class, status};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn svc_backend(name: &str, port: Value) -> Value {
    json!({"service": {"name": name, "port": port}})
}

fn path(p: &str, kind: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": kind, "backend": svc_backend(svc, json!({"number": 80}))})
}

fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
    obj(json!({
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": spec,
    }))
}

fn class_obj(name: &str, default: bool) -> IngressClass {
    let ann = if default {
        json!({class::DEFAULT_CLASS_ANNOTATION: "true"})
    } else {
        json!({})
    };
    obj(
        json!({"metadata": {"name": name, "annotations": ann}, "spec": {"controller": "skiff.io/ingress"}}),
    )
}

/// A service `name` with ports `http` (80, targetPort `web`) and `admin` (81, targetPort 9000).
fn service(name: &str) -> Service {
    obj(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "admin", "port": 81, "targetPort": 9000},
        ]},
    }))
}

/// An EndpointSlice of `svc` resolving `http` to 8080 and `admin` to 9000.
fn slice(svc: &str, suffix: &str, endpoints: &[(&str, bool)]) -> EndpointSlice {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}}))
        .collect();
    obj(json!({
        "metadata": {"name": format!("{svc}-{suffix}"), "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "admin", "port": 9000}],
        "endpoints": eps,
    }))
}

struct World {
    ingresses: Vec<Ingress>,
    classes: Vec<IngressClass>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

impl World {
    fn new(ingresses: Vec<Ingress>) -> Self {
        World {
            ingresses,
            classes: vec![class_obj("skiff", false)],
            services: ["a", "b", "c"].into_iter().map(service).collect(),
            slices: vec![
                slice("a", "1", &[("10.0.0.1", true)]),
                slice("b", "1", &[("10.0.0.2", true)]),
                slice("c", "1", &[("10.0.0.3", true)]),
            ],
        }
    }

    fn table(&self) -> RouteTable {
        build(
            "skiff",
            &self.ingresses.iter().collect::<Vec<_>>(),
            &self.classes.iter().collect::<Vec<_>>(),
            &self.services.iter().collect::<Vec<_>>(),
            &self.slices.iter().collect::<Vec<_>>(),
        )
    }
}

/// The service a request goes to (`namespace/service:port` of its backend).
fn route(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    t.route(host, path).map(|b| b.name.clone())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn class_selection_by_name_default_and_legacy_annotation() {
    let named = |c: &str| ingress("i", "2024-01-01T00:00:00Z", json!({"ingressClassName": c}));
    let plain = ingress("i", "2024-01-01T00:00:00Z", json!({}));
    let mut legacy = plain.clone();
    legacy.metadata.annotations = Some(
        [(
            class::LEGACY_CLASS_ANNOTATION.to_string(),
            "skiff".to_string(),
        )]
        .into(),
    );
    let mut legacy_other = legacy.clone();
    legacy_other.metadata.annotations = Some(
        [(
            class::LEGACY_CLASS_ANNOTATION.to_string(),
            "nginx".to_string(),
        )]
        .into(),
    );
    assert!(class::is_ours(&named("skiff"), "skiff", false));
    assert!(!class::is_ours(&named("nginx"), "skiff", true));
    assert!(!class::is_ours(&plain, "skiff", false));
    assert!(class::is_ours(&plain, "skiff", true));
    assert!(class::is_ours(&legacy, "skiff", false));
    assert!(!class::is_ours(&legacy_other, "skiff", true));

    let (on, off) = (class_obj("skiff", true), class_obj("skiff", false));
    let other = class_obj("nginx", true);
    assert!(class::is_default("skiff", &[&on]));
    assert!(!class::is_default("skiff", &[&off, &other]));

    // A class-less Ingress is routed only while `skiff` is the default class.
    let rules = json!({"rules": [{"http": {"paths": [path("/", "Prefix", "a")]}}]});
    let mut w = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", rules)]);
    assert!(w.table().is_empty());
    w.classes = vec![on];
    assert_eq!(route(&w.table(), "x", "/").as_deref(), Some("ns/a:80"));
}

#[test]
fn hosts_exact_wildcard_and_hostless() {
    let spec = json!({"ingressClassName": "skiff", "rules": [
        {"host": "foo.example.com", "http": {"paths": [path("/", "Prefix", "a")]}},
        {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "b")]}},
        {"http": {"paths": [path("/shared", "Prefix", "c")]}},
    ]});
    let t = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", spec)]).table();
    assert_eq!(t.len(), 3);
    assert_eq!(
        route(&t, "foo.example.com", "/x").as_deref(),
        Some("ns/a:80")
    );
    assert_eq!(
        route(&t, "FOO.Example.com:8080", "/x").as_deref(),
        Some("ns/a:80")
    );
    assert_eq!(
        route(&t, "bar.example.com", "/x").as_deref(),
        Some("ns/b:80")
    );
    // A wildcard covers exactly one label.
    assert_eq!(route(&t, "a.bar.example.com", "/x"), None);
    assert_eq!(route(&t, "example.com", "/x"), None);
    // Rules without a host serve every host, after the host's own rules.
    assert_eq!(
        route(&t, "other.org", "/shared/y").as_deref(),
        Some("ns/c:80")
    );
    assert_eq!(
        route(&t, "a.bar.example.com", "/shared").as_deref(),
        Some("ns/c:80")
    );
    assert_eq!(
        route(&t, "foo.example.com", "/shared").as_deref(),
        Some("ns/a:80")
    );
    assert_eq!(route(&t, "", "/other"), None);
}

#[test]
fn prefix_is_element_wise_and_exact_is_exact() {
    let spec = json!({"ingressClassName": "skiff", "rules": [{"host": "h", "http": {"paths": [
        path("/foo", "Prefix", "a"),
        path("/foo/bar/", "ImplementationSpecific", "b"),
        path("/exact", "Exact", "c"),
    ]}}]});
    let t = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", spec)]).table();
    let r = |p: &str| route(&t, "h", p);
    assert_eq!(r("/foo").as_deref(), Some("ns/a:80"));
    assert_eq!(r("/foo/").as_deref(), Some("ns/a:80"));
    assert_eq!(r("/foo/baz").as_deref(), Some("ns/a:80"));
    assert_eq!(r("/foobar"), None);
    assert_eq!(r("/fo"), None);
    // A trailing slash in the rule is ignored; the longer prefix wins.
    assert_eq!(r("/foo/bar").as_deref(), Some("ns/b:80"));
    assert_eq!(r("/foo/bar/x").as_deref(), Some("ns/b:80"));
    assert_eq!(r("/foo/barx").as_deref(), Some("ns/a:80"));
    assert_eq!(r("/exact").as_deref(), Some("ns/c:80"));
    assert_eq!(r("/exact/"), None);
    assert_eq!(r("/exact/x"), None);
}

#[test]
fn longest_path_wins_and_exact_beats_prefix_at_equal_length() {
    let spec = json!({"ingressClassName": "skiff", "rules": [{"http": {"paths": [
        path("/", "Prefix", "a"),
        path("/api", "Prefix", "b"),
        path("/api", "Exact", "c"),
        path("/api/v1", "Prefix", "a"),
    ]}}]});
    let t = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", spec)]).table();
    assert_eq!(t.len(), 4);
    assert_eq!(route(&t, "h", "/api").as_deref(), Some("ns/c:80"));
    assert_eq!(route(&t, "h", "/api/").as_deref(), Some("ns/b:80"));
    assert_eq!(route(&t, "h", "/api/v1/x").as_deref(), Some("ns/a:80"));
    assert_eq!(route(&t, "h", "/other").as_deref(), Some("ns/a:80"));
}

#[test]
fn default_backend_and_conflicts_go_to_the_oldest_ingress() {
    let old = ingress(
        "old",
        "2024-01-01T00:00:00Z",
        json!({"ingressClassName": "skiff", "defaultBackend": svc_backend("a", json!({"number": 80})),
               "rules": [{"host": "h", "http": {"paths": [path("/p", "Prefix", "a")]}}]}),
    );
    let new = ingress(
        "new",
        "2024-06-01T00:00:00Z",
        json!({"ingressClassName": "skiff", "defaultBackend": svc_backend("b", json!({"number": 80})),
               "rules": [{"host": "h", "http": {"paths": [path("/p", "Prefix", "b"), path("/q", "Prefix", "b")]}}]}),
    );
    // Listed newest first: age decides, not order.
    let t = World::new(vec![new.clone(), old]).table();
    assert_eq!(route(&t, "h", "/p").as_deref(), Some("ns/a:80"));
    assert_eq!(route(&t, "h", "/q").as_deref(), Some("ns/b:80"));
    assert_eq!(route(&t, "unknown", "/").as_deref(), Some("ns/a:80"));
    assert_eq!(route(&t, "h", "/nothing").as_deref(), Some("ns/a:80"));
    assert!(t.warnings.iter().any(|w| w.contains("older Ingress")));

    let mut only_rules = new;
    if let Some(s) = only_rules.spec.as_mut() {
        s.default_backend = None;
    }
    let t = World::new(vec![only_rules]).table();
    assert_eq!(route(&t, "unknown", "/"), None);
}

#[test]
fn target_ports_by_number_or_name_through_endpoint_slices() {
    let spec = json!({"ingressClassName": "skiff", "rules": [{"http": {"paths": [
        {"path": "/by-name", "pathType": "Prefix", "backend": svc_backend("a", json!({"name": "http"}))},
        {"path": "/by-number", "pathType": "Prefix", "backend": svc_backend("a", json!({"number": 80}))},
        {"path": "/admin", "pathType": "Prefix", "backend": svc_backend("a", json!({"name": "admin"}))},
        {"path": "/missing-port", "pathType": "Prefix", "backend": svc_backend("a", json!({"number": 99}))},
        {"path": "/missing-svc", "pathType": "Prefix", "backend": svc_backend("zz", json!({"number": 80}))},
    ]}}]});
    let mut w = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", spec)]);
    w.slices = vec![
        slice("a", "1", &[("10.0.0.1", true), ("10.0.0.9", false)]),
        slice("a", "2", &[("10.0.0.2", true), ("10.0.0.1", true)]),
    ];
    let t = w.table();
    let eps = |p: &str| {
        t.route("h", p)
            .map(|b| b.endpoints.clone())
            .unwrap_or_default()
    };
    let http = vec![addr("10.0.0.1:8080"), addr("10.0.0.2:8080")];
    assert_eq!(eps("/by-name"), http);
    assert_eq!(eps("/by-number"), http);
    assert_eq!(
        eps("/admin"),
        vec![addr("10.0.0.1:9000"), addr("10.0.0.2:9000")]
    );
    assert!(eps("/missing-port").is_empty());
    assert!(eps("/missing-svc").is_empty());
    assert!(t.warnings.iter().any(|w| w.contains("no such service")));

    // Round-robin over the ready endpoints.
    let b = t.route("h", "/by-name").expect("backend");
    let picks: Vec<_> = (0..4).filter_map(|_| b.pick()).collect();
    assert_eq!(picks, [http[0], http[1], http[0], http[1]]);
}

#[test]
fn invalid_paths_and_hosts_are_skipped() {
    let spec = json!({"ingressClassName": "skiff", "rules": [
        {"host": "a.*.com", "http": {"paths": [path("/", "Prefix", "a")]}},
        {"host": "h", "http": {"paths": [path("relative", "Prefix", "a"), path("/x", "Regex", "a")]}},
    ]});
    let t = World::new(vec![ingress("i", "2024-01-01T00:00:00Z", spec)]).table();
    assert!(t.is_empty());
    assert_eq!(t.warnings.len(), 3);
}

#[test]
fn host_normalisation() {
    assert_eq!(normalize_host("Foo.COM:8080"), "foo.com");
    assert_eq!(normalize_host("foo.com."), "foo.com");
    assert_eq!(normalize_host("[::1]:80"), "::1");
    assert_eq!(normalize_host(""), "");
}

fn node(name: &str, ip: &str, ready: bool) -> Node {
    obj(json!({
        "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        },
    }))
}

#[test]
fn status_addresses_and_writer() {
    let nodes = [
        node("n3", "10.90.0.13", true),
        node("n1", "10.90.0.11", false),
        node("n2", "10.90.0.9", true),
    ];
    let refs: Vec<&Node> = nodes.iter().collect();
    assert_eq!(status::node_addresses(&refs), ["10.90.0.9", "10.90.0.13"]);
    assert!(status::is_writer("n2", &refs));
    assert!(!status::is_writer("n1", &refs));
    assert!(!status::is_writer("n3", &refs));
    assert!(!status::is_writer("n2", &[]));

    let ing: Ingress = obj(
        json!({"metadata": {"name": "i"}, "status": {"loadBalancer": {"ingress": [{"ip": "10.90.0.9"}]}}}),
    );
    assert_eq!(status::current(&ing), ["10.90.0.9"]);
}
