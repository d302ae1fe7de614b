//! Cluster DNS against a real `skiff server`: Services, EndpointSlices and Pods made through
//! kube-rs are answered by a `ClusterDns` running in this process on 127.0.0.1, asked over
//! UDP and TCP with hickory's client; other names go to a fake upstream run by the test.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::proto::op::{Message, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use servers::Servers;
use skiff::dns::{self, DnsOptions};

const DOMAIN: &str = "cluster.local";
/// How long the DNS may take to reflect a change made through the API.
const WITHIN: Duration = Duration::from_secs(20);

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(1, ""))
}

fn options(upstream: Vec<SocketAddr>, timeout_ms: u64) -> DnsOptions {
    DnsOptions {
        domain: DOMAIN.into(),
        ttl: 30,
        upstream,
        upstream_timeout: Duration::from_millis(timeout_ms),
        clients: vec!["127.0.0.0/8".parse().expect("loopback")],
    }
}

async fn create<K>(api: &Api<K>, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("namespace {name}: {e}"),
    }
}

/// One question to `server`, over TCP or UDP.
async fn ask(server: SocketAddr, tcp: bool, name: &str, qtype: RecordType) -> Message {
    // from_ascii keeps the case (from_str folds it, as IDNA does).
    let name = Name::from_ascii(name).expect("name");
    let provider = TokioRuntimeProvider::default();
    let timeout = Duration::from_secs(5);
    let mut client = if tcp {
        let (stream, handle) = TcpClientStream::new(server, None, Some(timeout), provider);
        let stream = stream.await.expect("TCP connect");
        let (client, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, handle, timeout);
        tokio::spawn(bg);
        client
    } else {
        let conn = UdpClientStream::builder(server, provider)
            .with_timeout(Some(timeout))
            .build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
        tokio::spawn(bg);
        client
    };
    let response = client
        .query(name, DNSClass::IN, qtype)
        .await
        .expect("an answer");
    response.into_message()
}

/// The data of the answers, as text, sorted.
fn data(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    out.sort();
    out
}

fn fqdn(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.svc.{DOMAIN}.")
}

/// Asks until `check` holds for the answer, or fails after `WITHIN` with the last answer.
async fn until(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    check: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = Instant::now() + WITHIN;
    loop {
        let m = ask(server, false, name, qtype).await;
        if check(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {qtype}: last answer {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.get_name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.get_name() == k && l.get_value() == v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

async fn setup_records(client: &kube::Client, ns: &str) {
    namespace(client, ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    create(
        &services,
        json!({"metadata": {"name": "web"}, "spec": {
        "clusterIP": "10.96.100.20",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                  {"name": "metrics", "port": 9100, "protocol": "TCP"}]}}),
    )
    .await;
    create(
        &services,
        json!({"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}),
    )
    .await;
    create(
        &services,
        json!({"metadata": {"name": "sts"}, "spec": {"clusterIP": "None"}}),
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let label = |svc: &str| json!({"kubernetes.io/service-name": svc});
    create(
        &slices,
        json!({
        "metadata": {"name": "web-1", "labels": label("web")}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}]}),
    )
    .await;
    create(
        &slices,
        json!({
        "metadata": {"name": "db-1", "labels": label("db")}, "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.7"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.8"], "conditions": {"ready": true}},
            {"addresses": ["10.244.2.9"], "hostname": "db-2", "conditions": {"ready": false}}]}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(
        &pods,
        json!({"metadata": {"name": "sts-0"}, "spec": {
        "hostname": "sts-0", "subdomain": "sts",
        "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    // No node runs pods here: the test plays the kubelet.
    let status = json!({"status": {"phase": "Running", "podIP": "10.244.4.4",
                                   "podIPs": [{"ip": "10.244.4.4"}]}});
    pods.patch_status("sts-0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

#[test]
fn answers_cluster_names_from_the_api() {
    let servers = cluster();
    actix::System::new().block_on(async {
        let client = servers.client(0);
        let ns = "dns-records";
        setup_records(&client, ns).await;
        let registry = prometheus::Registry::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (_dns, addr) = dns::serve(client.clone(), options(vec![], 500), listen, &registry)
            .await
            .expect("start DNS");
        assert_ne!(addr.port(), 0);

        let web = fqdn("web", ns);
        until(addr, &web, RecordType::A, |m| !m.answers.is_empty()).await;
        // Without upstreams, other names fail.
        let m = ask(addr, false, "example.org.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        for tcp in [false, true] {
            let m = ask(addr, tcp, &web, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            assert_eq!(data(&m.answers), ["10.96.100.20"]);
            assert_eq!(m.answers[0].ttl, 30);
            // Matching is case-insensitive.
            let m = ask(addr, tcp, &web.to_uppercase(), RecordType::A).await;
            assert_eq!(data(&m.answers), ["10.96.100.20"], "tcp={tcp}");

            // Headless: the ready endpoints; one endpoint by hostname, one by dashed address.
            let m = ask(addr, tcp, &fqdn("db", ns), RecordType::A).await;
            assert_eq!(data(&m.answers), ["10.244.1.7", "10.244.2.8"]);
            let m = ask(
                addr,
                tcp,
                &format!("db-0.{}", fqdn("db", ns)),
                RecordType::A,
            )
            .await;
            assert_eq!(data(&m.answers), ["10.244.1.7"]);
            let m = ask(
                addr,
                tcp,
                &format!("10-244-2-8.{}", fqdn("db", ns)),
                RecordType::A,
            )
            .await;
            assert_eq!(data(&m.answers), ["10.244.2.8"]);

            // SRV of a named port, targets' addresses in Additional.
            let m = ask(addr, tcp, &format!("_http._tcp.{web}"), RecordType::SRV).await;
            assert_eq!(data(&m.answers), [format!("0 100 80 {web}")]);
            assert_eq!(data(&m.additionals), ["10.96.100.20"]);
            let m = ask(
                addr,
                tcp,
                &format!("_pg._tcp.{}", fqdn("db", ns)),
                RecordType::SRV,
            )
            .await;
            assert_eq!(
                data(&m.answers),
                [
                    format!("0 50 5432 10-244-2-8.{}", fqdn("db", ns)),
                    format!("0 50 5432 db-0.{}", fqdn("db", ns)),
                ]
            );
            assert_eq!(data(&m.additionals), ["10.244.1.7", "10.244.2.8"]);

            // Unknown name: NXDOMAIN; known name, other type: NODATA; both with the SOA.
            for (name, qtype, rcode) in [
                (fqdn("nope", ns), RecordType::A, ResponseCode::NXDomain),
                (web.clone(), RecordType::AAAA, ResponseCode::NoError),
                (
                    format!("db-2.{}", fqdn("db", ns)),
                    RecordType::A,
                    ResponseCode::NXDomain,
                ),
            ] {
                let m = ask(addr, tcp, &name, qtype).await;
                assert_eq!(m.metadata.response_code, rcode, "{name} {qtype}");
                assert!(m.answers.is_empty(), "{name} {qtype}");
                let soa = m
                    .authorities
                    .iter()
                    .find(|r| r.record_type() == RecordType::SOA);
                assert_eq!(soa.map(|r| r.name.to_string()), Some(format!("{DOMAIN}.")));
            }

            // Pods: by dashed address, and by hostname.subdomain.
            let m = ask(
                addr,
                tcp,
                &format!("10-244-3-3.{ns}.pod.{DOMAIN}."),
                RecordType::A,
            )
            .await;
            assert_eq!(data(&m.answers), ["10.244.3.3"]);
        }
        until(
            addr,
            &format!("sts-0.{}", fqdn("sts", ns)),
            RecordType::A,
            |m| data(&m.answers) == ["10.244.4.4"],
        )
        .await;

        // Endpoint changes show: db-2 becomes ready, db-0 goes.
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
        let patch = json!({"endpoints": [
            {"addresses": ["10.244.2.8"], "conditions": {"ready": true}},
            {"addresses": ["10.244.2.9"], "hostname": "db-2", "conditions": {"ready": true}}]});
        slices
            .patch("db-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch slice");
        until(addr, &fqdn("db", ns), RecordType::A, |m| {
            data(&m.answers) == ["10.244.2.8", "10.244.2.9"]
        })
        .await;
        let m = ask(
            addr,
            true,
            &format!("db-2.{}", fqdn("db", ns)),
            RecordType::A,
        )
        .await;
        assert_eq!(data(&m.answers), ["10.244.2.9"]);
        // No ready endpoint left: the headless name does not exist.
        let none = json!({"endpoints": [
            {"addresses": ["10.244.2.8"], "conditions": {"ready": false}}]});
        slices
            .patch("db-1", &PatchParams::default(), &Patch::Merge(&none))
            .await
            .expect("patch slice");
        until(addr, &fqdn("db", ns), RecordType::A, |m| {
            m.metadata.response_code == ResponseCode::NXDomain
        })
        .await;
        // A deleted service goes too.
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        services
            .delete("web", &DeleteParams::default())
            .await
            .expect("delete");
        until(addr, &web, RecordType::A, |m| {
            m.metadata.response_code == ResponseCode::NXDomain
        })
        .await;

        assert!(
            metric(
                &registry,
                "skiff_dns_requests_total",
                Some(("rcode", "NOERROR"))
            ) > 0.0
        );
        assert!(
            metric(
                &registry,
                "skiff_dns_requests_total",
                Some(("rcode", "NXDOMAIN"))
            ) > 0.0
        );
    });
}

/// The fake upstream's answer to `query`: `example.test.` A 192.0.2.1, silence (`None`) for
/// names under `slow.test.`, NXDOMAIN for anything else.
fn upstream_reply(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let q = query.queries.first()?.clone();
    let name = q.name().to_lowercase().to_string();
    if name.ends_with("slow.test.") {
        return None;
    }
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    if name == "example.test." && q.query_type() == RecordType::A {
        let a = RData::A(A::new(192, 0, 2, 1));
        reply.add_answer(Record::from_rdata(q.name().clone(), 60, a));
    } else {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply.to_vec().ok()
}

/// A DNS responder on 127.0.0.1, UDP and TCP on one port, answering with `upstream_reply`.
async fn fake_upstream() -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = udp.local_addr().expect("addr");
        // The UDP port's TCP twin may be taken: then try another.
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if let Some(reply) = upstream_reply(&buf[..n]) {
                let _ = udp.send_to(&reply, from).await;
            }
        }
    });
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).await.is_ok() {
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = upstream_reply(&query) else {
                        continue;
                    };
                    let len = u16::try_from(reply.len()).expect("short reply");
                    let mut framed = len.to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    if conn.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn forwards_other_names_upstream() {
    let servers = cluster();
    actix::System::new().block_on(async {
        let client = servers.client(0);
        let ns = "dns-forward";
        namespace(&client, ns).await;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        create(
            &services,
            json!({"metadata": {"name": "ext"}, "spec": {
            "type": "ExternalName", "externalName": "example.test"}}),
        )
        .await;
        let upstream = fake_upstream().await;
        let registry = prometheus::Registry::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (_dns, addr) = dns::serve(
            client.clone(),
            options(vec![upstream], 300),
            listen,
            &registry,
        )
        .await
        .expect("start DNS");

        // Over the client's transport: UDP upstream for UDP, TCP for TCP.
        for tcp in [false, true] {
            let m = ask(addr, tcp, "Example.TEST.", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.recursion_available);
            assert_eq!(data(&m.answers), ["192.0.2.1"]);
            let m = ask(addr, tcp, "missing.test.", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        }
        // A reverse name of no cluster address goes upstream too.
        let m = ask(addr, false, "9.9.0.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

        // An upstream that stays silent: SERVFAIL once the timeout passes.
        let start = Instant::now();
        let m = ask(addr, false, "www.slow.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );

        // ExternalName: the CNAME, followed upstream to its address.
        let m = until(addr, &fqdn("ext", ns), RecordType::A, |m| {
            m.answers.len() == 2
        })
        .await;
        assert_eq!(m.answers[0].data.to_string(), "example.test.");
        assert_eq!(m.answers[1].data.to_string(), "192.0.2.1");

        assert!(metric(&registry, "skiff_dns_forwarded_total", None) >= 6.0);
        assert!(
            metric(
                &registry,
                "skiff_dns_requests_total",
                Some(("rcode", "SERVFAIL"))
            ) >= 1.0
        );
    });
}

#[test]
fn clients_outside_the_allowed_networks_are_refused() {
    let servers = cluster();
    actix::System::new().block_on(async {
        let upstream = fake_upstream().await;
        let registry = prometheus::Registry::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // The attack: anyone who reaches a node's address uses its DNS as an open resolver.
        let pods_only = DnsOptions {
            clients: vec!["10.244.0.0/16".parse().expect("pod network")],
            ..options(vec![upstream], 300)
        };
        let (_dns, addr) = dns::serve(servers.client(0), pods_only, listen, &registry)
            .await
            .expect("start DNS");
        for tcp in [false, true] {
            let m = ask(addr, tcp, "Example.TEST.", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            assert!(m.answers.is_empty());
            let m = ask(addr, tcp, &fqdn("kubernetes", "default"), RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        }
    });
}
