//! The pure parts: record lookup from plain objects, resolv.conf generation, upstream lists.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::forward::{parse_upstream, upstreams};
use super::lookup::Lookup;
use super::records::Snapshot;
use super::resolv::{pod_resolv_conf, ClusterDnsRef, PodDns, ResolvConf};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).expect("object"))
}

fn service(ns: &str, name: &str, spec: Value) -> Arc<Service> {
    obj(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
}

fn slice(ns: &str, svc: &str, ports: Value, endpoints: Value) -> Arc<EndpointSlice> {
    obj(json!({
        "metadata": {"name": format!("{svc}-abc"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
    }))
}

fn pod(ns: &str, name: &str, spec: Value, status: Value) -> Arc<Pod> {
    obj(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec, "status": status}))
}

fn zone() -> Snapshot {
    let services = vec![
        service(
            "default",
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                             {"port": 9000, "protocol": "UDP"}]}),
        ),
        service(
            "default",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        service("default", "empty", json!({"clusterIP": "None"})),
        service("default", "sts", json!({"clusterIP": "None"})),
        service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
    ];
    let slices = vec![
        slice(
            "default",
            "web",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}]),
        ),
        slice(
            "default",
            "db",
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
            json!([
                {"addresses": ["10.244.1.7"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.8"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.9"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
        ),
        slice(
            "default",
            "empty",
            json!([]),
            json!([{"addresses": ["10.244.3.3"], "conditions": {"ready": false}}]),
        ),
        slice(
            "default",
            "sts",
            json!([{"name": "web", "port": 80}]),
            json!([{"addresses": ["10.244.4.4"], "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": "sts-0", "namespace": "default"}}]),
        ),
    ];
    let pods = vec![
        pod(
            "default",
            "sts-0",
            json!({"hostname": "sts-0", "subdomain": "sts", "containers": []}),
            json!({"phase": "Running", "podIP": "10.244.4.4"}),
        ),
        pod(
            "default",
            "sts-1",
            json!({"hostname": "sts-1", "subdomain": "sts", "containers": []}),
            json!({"phase": "Running", "podIP": "10.244.4.5"}),
        ),
        pod(
            "default",
            "sts-2",
            json!({"hostname": "sts-2", "subdomain": "sts", "containers": []}),
            json!({"phase": "Pending"}),
        ),
    ];
    Snapshot::build("cluster.local", 30, 7, &services, &slices, &pods)
}

fn ask(z: &Snapshot, name: &str, qtype: RecordType) -> Lookup {
    z.lookup(&Name::from_ascii(name).expect("name"), qtype)
}

/// The answers as text, sorted: `name TYPE data`.
fn texts(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        // to_ascii: Display would fold the case.
        .map(|r| format!("{} {} {}", r.name.to_ascii(), r.record_type(), r.data))
        .collect();
    out.sort();
    out
}

fn answers(l: Lookup) -> Vec<String> {
    match l {
        Lookup::Found { answers, .. } => texts(&answers),
        other => panic!("expected records, got {other:?}"),
    }
}

fn ask_from(z: &Snapshot, name: &str, src: Option<&str>) -> Lookup {
    let src = src.map(|ip| ip.parse().expect("ip"));
    z.lookup_from(&Name::from_ascii(name).expect("name"), RecordType::A, src)
}

#[test]
fn dotted_short_names_are_completed_with_the_askers_search_path() {
    let z = zone();
    assert_eq!(
        answers(ask_from(&z, "web.default.", None)),
        ["web.default. CNAME web.default.svc.cluster.local."]
    );
    assert_eq!(ask_from(&z, "nope.default.", None), Lookup::Forward);
    assert_eq!(ask_from(&z, "example.com.", None), Lookup::Forward);
    assert_eq!(ask_from(&z, "a.web.default.", None), Lookup::Forward);
    // A StatefulSet pod's `host.subdomain` from a pod of that namespace (10.244.4.5 is
    // sts-1 in default); unknown askers get no namespace.
    assert_eq!(
        answers(ask_from(&z, "sts-0.sts.", Some("10.244.4.5"))),
        ["sts-0.sts. CNAME sts-0.sts.default.svc.cluster.local."]
    );
    assert_eq!(
        ask_from(&z, "sts-0.sts.", Some("10.9.9.9")),
        Lookup::Forward
    );
    assert_eq!(ask_from(&z, "sts-0.sts.", None), Lookup::Forward);
    // Names in the cluster domain are answered as they are.
    assert_eq!(
        ask_from(&z, "nope.default.svc.cluster.local.", Some("10.244.4.5")),
        Lookup::NxDomain
    );
}

#[test]
fn cluster_ip_service() {
    let z = zone();
    assert_eq!(
        answers(ask(&z, "web.default.svc.cluster.local.", RecordType::A)),
        ["web.default.svc.cluster.local. A 10.96.0.20"]
    );
    // Case-insensitive; the answer keeps the asker's spelling.
    assert_eq!(
        answers(ask(&z, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A)),
        ["WEB.Default.SVC.cluster.LOCAL. A 10.96.0.20"]
    );
    assert_eq!(
        ask(&z, "web.default.svc.cluster.local.", RecordType::AAAA),
        Lookup::NoData
    );
    assert_eq!(
        ask(&z, "web.default.svc.cluster.local.", RecordType::TXT),
        Lookup::NoData
    );
    assert_eq!(
        ask(&z, "nope.default.svc.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        ask(&z, "web.other.svc.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn headless_service_and_endpoints() {
    let z = zone();
    assert_eq!(
        answers(ask(&z, "db.default.svc.cluster.local.", RecordType::A)),
        [
            "db.default.svc.cluster.local. A 10.244.1.7",
            "db.default.svc.cluster.local. A 10.244.2.8"
        ]
    );
    // Endpoint by hostname, by dashed address; an unready one does not exist.
    assert_eq!(
        answers(ask(&z, "db-0.db.default.svc.cluster.local.", RecordType::A)),
        ["db-0.db.default.svc.cluster.local. A 10.244.1.7"]
    );
    assert_eq!(
        answers(ask(
            &z,
            "10-244-2-8.db.default.svc.cluster.local.",
            RecordType::A
        )),
        ["10-244-2-8.db.default.svc.cluster.local. A 10.244.2.8"]
    );
    assert_eq!(
        ask(&z, "db-2.db.default.svc.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
    // No ready endpoint: NXDOMAIN, as the specification says.
    assert_eq!(
        ask(&z, "empty.default.svc.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn pod_hostname_and_subdomain() {
    let z = zone();
    // The endpoint takes the pod's hostname (its subdomain names the service).
    assert_eq!(
        answers(ask(
            &z,
            "sts-0.sts.default.svc.cluster.local.",
            RecordType::A
        )),
        ["sts-0.sts.default.svc.cluster.local. A 10.244.4.4"]
    );
    // A running pod with hostname and subdomain answers even without an endpoint.
    assert_eq!(
        answers(ask(
            &z,
            "sts-1.sts.default.svc.cluster.local.",
            RecordType::A
        )),
        ["sts-1.sts.default.svc.cluster.local. A 10.244.4.5"]
    );
    assert_eq!(
        ask(&z, "sts-2.sts.default.svc.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        ask(
            &z,
            "10-244-4-4.sts.default.svc.cluster.local.",
            RecordType::A
        ),
        Lookup::NxDomain
    );
}

#[test]
fn srv_records() {
    let z = zone();
    let Lookup::Found {
        answers,
        additionals,
    } = ask(
        &z,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    else {
        panic!("no SRV");
    };
    assert_eq!(
        texts(&answers),
        ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(
        texts(&additionals),
        ["web.default.svc.cluster.local. A 10.96.0.20"]
    );
    let Lookup::Found {
        answers,
        additionals,
    } = ask(
        &z,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    else {
        panic!("no SRV");
    };
    assert_eq!(
        texts(&answers),
        [
            "_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 10-244-2-8.db.default.svc.cluster.local.",
            "_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        texts(&additionals),
        [
            "10-244-2-8.db.default.svc.cluster.local. A 10.244.2.8",
            "db-0.db.default.svc.cluster.local. A 10.244.1.7"
        ]
    );
    // Unnamed ports have no SRV name; a wrong protocol does not match.
    assert_eq!(
        ask(
            &z,
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV
        ),
        Lookup::NxDomain
    );
    assert_eq!(
        ask(
            &z,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::A
        ),
        Lookup::NoData
    );
}

#[test]
fn external_name_pods_apex_and_outside() {
    let z = zone();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        assert_eq!(
            answers(ask(&z, "ext.default.svc.cluster.local.", qtype)),
            ["ext.default.svc.cluster.local. CNAME example.org."]
        );
    }
    assert_eq!(
        answers(ask(
            &z,
            "10-244-1-5.default.pod.cluster.local.",
            RecordType::A
        )),
        ["10-244-1-5.default.pod.cluster.local. A 10.244.1.5"]
    );
    assert_eq!(
        ask(&z, "bogus.default.pod.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        ask(&z, "default.svc.cluster.local.", RecordType::A),
        Lookup::NoData
    );
    assert_eq!(ask(&z, "svc.cluster.local.", RecordType::A), Lookup::NoData);
    assert_eq!(ask(&z, "cluster.local.", RecordType::A), Lookup::NoData);
    assert_eq!(
        ask(&z, "a.b.c.d.e.f.cluster.local.", RecordType::A),
        Lookup::NxDomain
    );
    let soa = answers(ask(&z, "cluster.local.", RecordType::SOA));
    assert_eq!(
        soa,
        ["cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 30"]
    );
    assert_eq!(ask(&z, "example.org.", RecordType::A), Lookup::Forward);
    assert_eq!(ask(&z, "notcluster.local.", RecordType::A), Lookup::Forward);
}

#[test]
fn reverse_lookups() {
    let z = zone();
    assert_eq!(
        answers(ask(&z, "20.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["20.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."]
    );
    assert_eq!(
        answers(ask(&z, "7.1.244.10.in-addr.arpa.", RecordType::PTR)),
        ["7.1.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."]
    );
    assert_eq!(
        ask(&z, "1.1.1.1.in-addr.arpa.", RecordType::PTR),
        Lookup::Forward
    );
}

#[test]
fn ttl_and_soa_follow_the_configuration() {
    let z = zone();
    let Lookup::Found { answers, .. } = ask(&z, "web.default.svc.cluster.local.", RecordType::A)
    else {
        panic!("no answer");
    };
    assert_eq!(answers[0].ttl, 30);
    let soa = z.soa().expect("soa");
    let RData::SOA(soa) = &soa.data else {
        panic!("not an SOA")
    };
    assert_eq!(soa.minimum, 30);
    assert!(Snapshot::empty("", 30).soa().is_none());
    assert_eq!(
        Snapshot::empty("", 30).lookup(&Name::from_str("a.cluster.local.").unwrap(), RecordType::A),
        Lookup::Forward
    );
}

fn host() -> ResolvConf {
    ResolvConf::parse(
        "# comment\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example. lab\noptions edns0 timeout:2\n",
    )
}

fn cluster() -> PodDns {
    PodDns {
        cluster: Some(ClusterDnsRef {
            server: "10.96.0.10".into(),
            domain: "cluster.local".into(),
        }),
        node_servers: Vec::new(),
    }
}

fn pod_with(spec: Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([]);
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec}))
        .expect("pod")
}

#[test]
fn resolv_conf_parse_and_render() {
    let h = host();
    assert_eq!(h.nameservers, ["192.168.1.1", "192.168.1.2"]);
    assert_eq!(h.searches, ["corp.example", "lab"]);
    assert_eq!(h.options, ["edns0", "timeout:2"]);
    assert_eq!(
        h.render(),
        "nameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example lab\noptions edns0 timeout:2\n"
    );
}

#[test]
fn cluster_first_pods_use_cluster_dns() {
    let conf = pod_resolv_conf(&pod_with(json!({})), &cluster(), &host());
    assert_eq!(
        conf.render(),
        "nameserver 10.96.0.10\nsearch team.svc.cluster.local svc.cluster.local cluster.local corp.example lab\noptions ndots:5\n"
    );
    // Host-network pods keep the node's resolvers unless ClusterFirstWithHostNet.
    let hostnet = pod_with(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirst"}));
    assert_eq!(pod_resolv_conf(&hostnet, &cluster(), &host()), host());
    let with = pod_with(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
    assert_eq!(
        pod_resolv_conf(&with, &cluster(), &host()).nameservers,
        ["10.96.0.10"]
    );
    // Without cluster DNS (dns.enabled = false) ClusterFirst falls back to the node's.
    let off = PodDns {
        cluster: None,
        node_servers: vec!["9.9.9.9".into()],
    };
    let conf = pod_resolv_conf(&pod_with(json!({})), &off, &host());
    assert_eq!(conf.nameservers, ["9.9.9.9"]);
    assert_eq!(conf.searches, ["corp.example", "lab"]);
}

#[test]
fn default_none_and_dns_config() {
    let default = pod_with(json!({"dnsPolicy": "Default"}));
    assert_eq!(pod_resolv_conf(&default, &cluster(), &host()), host());
    let none = pod_with(json!({"dnsPolicy": "None", "dnsConfig": {
        "nameservers": ["1.2.3.4"], "searches": ["my.dns.search.suffix"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
    assert_eq!(
        pod_resolv_conf(&none, &cluster(), &host()).render(),
        "nameserver 1.2.3.4\nsearch my.dns.search.suffix\noptions ndots:2 edns0\n"
    );
    // dnsConfig merges into ClusterFirst: servers and searches appended without repeats,
    // options overridden by name.
    let merged = pod_with(json!({"dnsConfig": {
        "nameservers": ["10.96.0.10", "1.2.3.4", "5.6.7.8", "9.9.9.9"],
        "searches": ["lab", "extra"],
        "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}));
    let conf = pod_resolv_conf(&merged, &cluster(), &host());
    assert_eq!(conf.nameservers, ["10.96.0.10", "1.2.3.4", "5.6.7.8"]);
    assert_eq!(
        conf.searches,
        [
            "team.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "lab",
            "extra"
        ]
    );
    assert_eq!(conf.options, ["ndots:1", "single-request"]);
}

#[test]
fn search_list_limits() {
    let searches: Vec<String> = (0..40)
        .map(|i| format!("d{i}.{}", "x".repeat(60)))
        .collect();
    let p = pod_with(json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}));
    let conf = pod_resolv_conf(&p, &cluster(), &host());
    assert!(conf.searches.len() <= 32);
    assert!(conf.searches.join(" ").len() <= 2048);
    assert_eq!(conf.searches[0], searches[0]);
}

#[test]
fn upstream_lists() {
    assert_eq!(
        parse_upstream("1.1.1.1").unwrap(),
        "1.1.1.1:53".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(parse_upstream("127.0.0.1:5353").unwrap().port(), 5353);
    assert_eq!(
        parse_upstream("[::1]:53").unwrap(),
        "[::1]:53".parse::<SocketAddr>().unwrap()
    );
    assert!(parse_upstream("resolver.example").is_err());
    let host = ResolvConf::parse(
        "nameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver 10.96.0.10\nnameserver 10.0.0.3\n",
    );
    let me: SocketAddr = "10.0.0.3:53".parse().unwrap();
    let svc: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let got = upstreams(&[], &host, &[me, svc]).unwrap();
    assert_eq!(got, ["10.0.0.2:53".parse::<SocketAddr>().unwrap()]);
    let configured = upstreams(&["8.8.8.8".into()], &host, &[me]).unwrap();
    assert_eq!(configured, ["8.8.8.8:53".parse::<SocketAddr>().unwrap()]);
    assert!(upstreams(&["nope".into()], &host, &[]).is_err());
}
