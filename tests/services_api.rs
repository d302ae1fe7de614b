//! Service allocation against three real `skiff server` processes (no root): ClusterIPs and
//! NodePorts unique under concurrent creates on every replica, requested values honoured or
//! refused as upstream does, released on delete, type change and namespace deletion; the
//! `kubernetes` and `kube-dns` Services a cluster starts with; kubectl showing the addresses.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use servers::Servers;

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(3, ""))
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

fn services(i: usize, ns: &str) -> Api<Service> {
    Api::namespaced(cluster().client(i), ns)
}

async fn create(api: &Api<Service>, name: &str, spec: Value) -> Result<Service, kube::Error> {
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("service");
    api.create(&PostParams::default(), &svc).await
}

/// (code, reason, message) of an API error.
fn status(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

fn spec(s: &Service) -> Value {
    serde_json::to_value(s.spec.clone().expect("spec")).expect("spec json")
}

fn cluster_ip(s: &Service) -> String {
    spec(s)["clusterIP"].as_str().unwrap_or("").to_string()
}

fn node_ports(s: &Service) -> Vec<i64> {
    let spec = spec(s);
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    ports
        .iter()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect()
}

fn in_service_range(ip: &str) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    let o = ip.octets();
    o[0] == 10 && o[1] == 96 && ip != Ipv4Addr::new(10, 96, 0, 0) && o[2..] != [255, 255]
}

fn ports(list: &[(u16, &str)]) -> Value {
    let ports: Vec<Value> = list
        .iter()
        .map(|(p, name)| json!({"name": name, "port": p}))
        .collect();
    json!(ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_ips_are_unique_under_concurrent_creates_on_every_replica() {
    namespace(&cluster().client(0), "ips").await;
    let creates = (0..50).map(|i| async move {
        let api = services(i % 3, "ips");
        let spec = json!({"selector": {"app": "x"}, "ports": [{"port": 80}]});
        create(&api, &format!("s{i}"), spec)
            .await
            .unwrap_or_else(|e| panic!("create s{i} on replica {}: {e}", i % 3))
    });
    let created = join_all(creates).await;
    let mut seen = HashSet::new();
    for s in &created {
        let ip = cluster_ip(s);
        assert!(in_service_range(&ip), "{ip} outside 10.96.0.0/16");
        assert!(ip != "10.96.0.1" && ip != "10.96.0.10", "{ip} is reserved");
        assert!(seen.insert(ip.clone()), "{ip} allocated twice");
        let spec = spec(s);
        assert_eq!(spec["clusterIPs"], json!([ip]));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    }
    // Every replica lists the same 50 addresses.
    for i in 0..3 {
        let listed = services(i, "ips")
            .list(&ListParams::default())
            .await
            .expect("list");
        let ips: HashSet<String> = listed.items.iter().map(cluster_ip).collect();
        assert_eq!(ips, seen, "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_cluster_ips_are_honoured_refused_and_freed() {
    namespace(&cluster().client(0), "req").await;
    let (a, b) = (services(0, "req"), services(1, "req"));
    let web = |ip: &str| json!({"clusterIP": ip, "ports": [{"port": 80}]});
    let s = create(&a, "asked", web("10.96.0.77"))
        .await
        .expect("create");
    assert_eq!(cluster_ip(&s), "10.96.0.77");
    assert_eq!(spec(&s)["clusterIPs"], json!(["10.96.0.77"]));

    let (code, reason, msg) = status(
        create(&b, "twice", web("10.96.0.77"))
            .await
            .expect_err("taken"),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.contains(r#"spec.clusterIPs: Invalid value: []string{"10.96.0.77"}: failed to allocate IP 10.96.0.77: provided IP is already allocated"#),
        "{msg}"
    );
    let (code, _, msg) = status(
        create(&b, "outside", web("10.97.0.1"))
            .await
            .expect_err("range"),
    );
    assert_eq!(code, 422);
    assert!(
        msg.contains("provided IP (10.97.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16"),
        "{msg}"
    );
    for reserved in ["10.96.0.1", "10.96.0.10"] {
        let (code, _, msg) = status(
            create(&b, "reserved", web(reserved))
                .await
                .expect_err(reserved),
        );
        assert_eq!(code, 422, "{reserved}");
        assert!(msg.contains("provided IP is already allocated"), "{msg}");
    }

    let headless = create(&a, "headless", web("None")).await.expect("headless");
    assert_eq!(cluster_ip(&headless), "None");
    assert_eq!(spec(&headless)["clusterIPs"], json!(["None"]));
    let ext = json!({"type": "ExternalName", "externalName": "example.com"});
    let ext = create(&a, "ext", ext).await.expect("external name");
    assert!(spec(&ext).get("clusterIP").is_none(), "{:?}", spec(&ext));

    // Immutable once set.
    let moved = a
        .patch(
            "asked",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"clusterIP": "10.96.0.78", "clusterIPs": ["10.96.0.78"]}}),
            ),
        )
        .await
        .expect_err("immutable");
    let (code, _, msg) = status(moved);
    assert_eq!(code, 422);
    assert!(
        msg.contains(
            r#"spec.clusterIPs[0]: Invalid value: ["10.96.0.78"]: may not change once set"#
        ),
        "{msg}"
    );
    // An update that leaves the address out keeps it.
    let mut replaced = a.get("asked").await.expect("get");
    if let Some(s) = replaced.spec.as_mut() {
        s.cluster_ip = None;
        s.cluster_ips = None;
    }
    let replaced = a
        .replace("asked", &PostParams::default(), &replaced)
        .await
        .expect("replace");
    assert_eq!(cluster_ip(&replaced), "10.96.0.77");

    // A dry run shows an address but holds none.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "dry"}, "spec": web("10.96.0.79")}))
            .expect("svc");
    let planned = a.create(&dry, &svc).await.expect("dry run");
    assert_eq!(cluster_ip(&planned), "10.96.0.79");
    create(&b, "after-dry", web("10.96.0.79"))
        .await
        .expect("not held by the dry run");

    // Deleting frees the address, for a create on another replica.
    a.delete("asked", &DeleteParams::default())
        .await
        .expect("delete");
    let again = create(&b, "again", web("10.96.0.77"))
        .await
        .expect("freed address");
    assert_eq!(cluster_ip(&again), "10.96.0.77");

    // ExternalName -> ClusterIP allocates, ClusterIP -> ExternalName releases.
    let to_ip = json!({"spec": {"type": "ClusterIP", "externalName": null, "clusterIP": "10.96.0.80", "ports": [{"port": 80}]}});
    let s = b
        .patch("ext", &PatchParams::default(), &Patch::Merge(to_ip))
        .await
        .expect("to ClusterIP");
    assert_eq!(cluster_ip(&s), "10.96.0.80");
    let to_ext = json!({"spec": {"type": "ExternalName", "externalName": "example.org"}});
    let s = a
        .patch("ext", &PatchParams::default(), &Patch::Merge(to_ext))
        .await
        .expect("to ExternalName");
    assert!(spec(&s).get("clusterIP").is_none(), "{:?}", spec(&s));
    create(&b, "reuse", web("10.96.0.80"))
        .await
        .expect("released by the type change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_ports_are_unique_requested_refused_and_released() {
    namespace(&cluster().client(0), "np").await;
    let creates = (0..20).map(|i| async move {
        let api = services(i % 3, "np");
        let spec = json!({"type": "NodePort", "selector": {"app": "x"}, "ports": ports(&[(80, "http"), (443, "https")])});
        create(&api, &format!("n{i}"), spec)
            .await
            .unwrap_or_else(|e| panic!("create n{i}: {e}"))
    });
    let created = join_all(creates).await;
    let mut seen = HashSet::new();
    for s in &created {
        let nps = node_ports(s);
        assert_eq!(nps.len(), 2, "{:?}", spec(s));
        for np in nps {
            assert!((30000..=32767).contains(&np), "{np}");
            assert!(seen.insert(np), "nodePort {np} allocated twice");
        }
        assert_eq!(spec(s)["externalTrafficPolicy"], "Cluster");
    }

    let (a, b) = (services(0, "np"), services(2, "np"));
    let asked = |np: i64| json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": np}]});
    let s = create(&a, "asked", asked(30080))
        .await
        .expect("requested nodePort");
    assert_eq!(node_ports(&s), [30080]);
    let (code, reason, msg) = status(create(&b, "twice", asked(30080)).await.expect_err("taken"));
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{msg}"
    );
    let (code, _, msg) = status(create(&b, "low", asked(8080)).await.expect_err("range"));
    assert_eq!(code, 422);
    assert!(
        msg.contains("The range of valid ports is 30000-32767"),
        "{msg}"
    );

    a.delete("asked", &DeleteParams::default())
        .await
        .expect("delete");
    let s = create(&b, "again", asked(30080)).await.expect("freed port");
    assert_eq!(node_ports(&s), [30080]);

    // NodePort -> ClusterIP drops the nodePorts and releases them.
    let to_ip = json!({"spec": {"type": "ClusterIP"}});
    let s = a
        .patch("again", &PatchParams::default(), &Patch::Merge(to_ip))
        .await
        .expect("to ClusterIP");
    assert!(node_ports(&s).is_empty(), "{:?}", spec(&s));
    assert!(
        spec(&s).get("externalTrafficPolicy").is_none(),
        "{:?}",
        spec(&s)
    );
    create(&b, "reuse", asked(30080))
        .await
        .expect("released by the type change");

    // LoadBalancer with externalTrafficPolicy Local: node ports and a health check port.
    let lb = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "x"}, "ports": [{"port": 80}]});
    let s = create(&a, "lb", lb).await.expect("load balancer");
    let sp = spec(&s);
    assert_eq!(sp["allocateLoadBalancerNodePorts"], true);
    let hc = sp["healthCheckNodePort"]
        .as_i64()
        .expect("healthCheckNodePort");
    let np = node_ports(&s);
    assert_eq!(np.len(), 1);
    assert!(
        (30000..=32767).contains(&hc) && hc != np[0] && !seen.contains(&hc),
        "{hc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_releases_its_addresses() {
    let client = cluster().client(1);
    namespace(&client, "gone").await;
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.90", "ports": [{"port": 80, "nodePort": 30090}]});
    create(&services(1, "gone"), "s", spec.clone())
        .await
        .expect("create");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("gone", &DeleteParams::default())
        .await
        .expect("delete namespace");
    namespace(&client, "after").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match create(&services(2, "after"), "s", spec.clone()).await {
            Ok(s) => {
                assert_eq!(
                    (cluster_ip(&s), node_ports(&s)),
                    ("10.96.0.90".into(), vec![30090])
                );
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let (code, _, _) = status(e);
                assert_eq!(code, 422);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("addresses of a deleted namespace not released: {e}"),
        }
    }
}

/// The API ports of `servers`' members, from their `kubernetes` Endpoints: (nodeName, ip, port).
async fn kubernetes_endpoints(client: &Client) -> Vec<(String, String, i32)> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let Ok(eps) = api.get("kubernetes").await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in eps.subsets.unwrap_or_default() {
        let port = s
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .map(|p| p.port)
            .unwrap_or(0);
        for a in s.addresses.unwrap_or_default() {
            out.push((a.node_name.unwrap_or_default(), a.ip, port));
        }
    }
    out.sort();
    out
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A service network of 4 free addresses (a /29 without network, broadcast, the `kubernetes`
/// and the DNS address) and 6 NodePorts.
const SMALL: &str = "[services]\nservice_cidr = \"10.100.0.0/29\"\ndns_service_ip = \"10.100.0.2\"\nnode_port_range = \"30000-30005\"\n";

/// Every free value wanted by concurrent creates on all replicas at once: each gets a
/// different one (the losers of a race pick again), then the pool is full.
async fn small_pools_under_contention(servers: &Servers) {
    namespace(&servers.client(0), "small").await;
    let api = |i: usize| Api::<Service>::namespaced(servers.client(i % 3), "small");
    let spec = json!({"type": "NodePort", "ports": [{"port": 80}]});
    let creates = (0..4).map(|i| {
        let (api, spec) = (api(i), spec.clone());
        async move { create(&api, &format!("s{i}"), spec).await }
    });
    let mut ips = HashSet::new();
    let mut nps = HashSet::new();
    for r in join_all(creates).await {
        let s = r.expect("a free address for every create");
        ips.insert(cluster_ip(&s));
        nps.extend(node_ports(&s));
    }
    let want: HashSet<String> = (3..=6).map(|i| format!("10.100.0.{i}")).collect();
    assert_eq!(ips, want);
    assert_eq!(nps.len(), 4);
    assert!(nps.iter().all(|p| (30000..=30005).contains(p)), "{nps:?}");
    let (code, reason, msg) = status(
        create(&api(1), "full", spec.clone())
            .await
            .expect_err("full"),
    );
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert!(
        msg.contains("failed to allocate a serviceIP: range is full"),
        "{msg}"
    );
    let headless = json!({"clusterIP": "None", "ports": [{"port": 80}]});
    create(&api(2), "headless", headless)
        .await
        .expect("headless needs no address");
    api(0)
        .delete("s2", &DeleteParams::default())
        .await
        .expect("delete");
    create(&api(2), "again", spec)
        .await
        .expect("the freed address");
}

/// Its own cluster, with a small service network; a server is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_and_kube_dns_services_and_api_server_endpoints() {
    let mut servers = Servers::start(3, SMALL);
    let client = servers.client(0);
    let want: Vec<(String, String, i32)> = (0..3)
        .map(|i| {
            (
                format!("n{}", i + 1),
                "127.0.0.1".to_string(),
                i32::from(servers.nodes[i].api),
            )
        })
        .collect();
    let api_ports: Vec<i64> = servers.nodes.iter().map(|n| i64::from(n.api)).collect();
    let svc_api: Api<Service> = Api::namespaced(client.clone(), "default");
    let (svc_ref, client_ref, want_ref, ports_ref) = (&svc_api, &client, &want, &api_ports);
    eventually("kubernetes service", || async move {
        let (svc_api, api_ports) = (svc_ref, ports_ref);
        let s = svc_api.get("kubernetes").await.map_err(|e| e.to_string())?;
        let sp = spec(&s);
        assert_eq!(sp["clusterIP"], "10.100.0.1");
        assert_eq!(sp["type"], "ClusterIP");
        assert_eq!(sp["ports"][0]["name"], "https");
        assert_eq!(sp["ports"][0]["port"], 443);
        assert_eq!(sp["ports"][0]["protocol"], "TCP");
        let target = sp["ports"][0]["targetPort"].as_i64().unwrap_or(0);
        assert!(api_ports.contains(&target), "{target} is not an API port");
        assert!(sp.get("selector").is_none());
        Ok(())
    })
    .await;
    eventually(
        "kubernetes endpoints list the three servers",
        || async move {
            let got = kubernetes_endpoints(client_ref).await;
            (got == *want_ref).then_some(()).ok_or(format!("{got:?}"))
        },
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slices_ref = &slices;
    eventually("kubernetes endpoint slices", || async move {
        let slices = slices_ref;
        let lp = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
        let list = slices.list(&lp).await.map_err(|e| e.to_string())?;
        let mut got: Vec<(String, String, i32)> = Vec::new();
        for s in list.items {
            let port = s
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| p.port)
                .unwrap_or(0);
            for e in s.endpoints {
                for a in e.addresses {
                    got.push((e.node_name.clone().unwrap_or_default(), a, port));
                }
            }
        }
        got.sort();
        (got == *want_ref).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
    let dns: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns_ref = &dns;
    eventually("kube-dns service", || async move {
        let dns = dns_ref;
        let s = dns.get("kube-dns").await.map_err(|e| e.to_string())?;
        let sp = spec(&s);
        assert_eq!(sp["clusterIP"], "10.100.0.2");
        assert_eq!(
            sp["ports"],
            json!([
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ])
        );
        assert!(sp.get("selector").is_none());
        Ok(())
    })
    .await;

    // A stale member and a stale port of n2 are dropped when n2 starts again; nothing is
    // duplicated by the restart.
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let mut current = eps.get("kubernetes").await.expect("endpoints");
    let mut subsets = current.subsets.clone().unwrap_or_default();
    subsets.push(
        serde_json::from_value(json!({"addresses": [{"ip": "127.0.0.9", "nodeName": "gone"}, {"ip": "127.0.0.1", "nodeName": "n2"}], "ports": [{"name": "https", "port": 1}]}))
            .expect("subset"),
    );
    current.subsets = Some(subsets);
    eps.replace("kubernetes", &PostParams::default(), &current)
        .await
        .expect("replace endpoints");
    servers.kill(1);
    servers.spawn(1);
    servers.wait_ready(1);
    eventually(
        "endpoints repaired by the restarted server",
        || async move {
            let got = kubernetes_endpoints(client_ref).await;
            (got == *want_ref).then_some(()).ok_or(format!("{got:?}"))
        },
    )
    .await;
    let s = svc_api.get("kubernetes").await.expect("kubernetes");
    assert_eq!(cluster_ip(&s), "10.100.0.1");
    small_pools_under_contention(&servers).await;
}

#[test]
fn kubectl_creates_and_shows_cluster_ips() {
    let kubectl = "/usr/bin/kubectl";
    if !std::path::Path::new(kubectl).exists() {
        assert!(
            std::env::var_os("SKIFF_E2E_REQUIRED").is_none(),
            "{kubectl} missing"
        );
        eprintln!("skipping: {kubectl} missing");
        return;
    }
    let servers = cluster();
    let cache = servers.dir.path().join("kubectl-cache");
    let output = |args: &[&str]| {
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(servers.kubeconfig(2))
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .output()
            .expect("run kubectl")
    };
    let run = |args: &[&str]| {
        let out = output(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {}: {text}", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["create", "namespace", "kc"]);
    run(&[
        "-n",
        "kc",
        "create",
        "service",
        "clusterip",
        "x",
        "--tcp=80:8080",
    ]);
    let ip = run(&[
        "-n",
        "kc",
        "get",
        "svc",
        "x",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(in_service_range(&ip), "{ip:?}");
    let table = run(&["-n", "kc", "get", "svc"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("x "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        &["x", "ClusterIP", ip.as_str(), "<none>"],
        "{table}"
    );
    assert_eq!(cells[4], "80/TCP", "{table}");
    run(&[
        "-n",
        "kc",
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:8080",
        "--node-port=30070",
    ]);
    let table = run(&["-n", "kc", "get", "svc", "np"]);
    assert!(table.contains("80:30070/TCP"), "{table}");
    // The bootstrap Services are created as the servers start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !output(&["-n", "kube-system", "get", "svc", "kube-dns"])
        .status
        .success()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = run(&["get", "svc", "kubernetes"]);
    assert!(
        table.contains("10.96.0.1 ") && table.contains("443/TCP"),
        "{table}"
    );
    let table = run(&["-n", "kube-system", "get", "svc", "kube-dns"]);
    assert!(
        table.contains("10.96.0.10 ") && table.contains("53/UDP,53/TCP"),
        "{table}"
    );
}
