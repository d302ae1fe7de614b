//! Services in the three-node lab, as root: ClusterIP load balancing across the nodes through
//! each node's nftables proxy, scaling removing endpoints, hairpin traffic, refusal without
//! endpoints, NodePort on every node's underlay address, and a LoadBalancer address that
//! moves when the node answering for it stops.

#[path = "common/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::*;
use serde_json::Value;

/// `n` HTTP GETs of `url` from inside `pod`; the bodies, one per line (failures print `ERR`).
fn requests_from(lab: &TestLab, pod: &str, url: &str, n: usize) -> Vec<String> {
    let script = format!("for i in $(seq {n}); do timeout 3 wget -q -O- {url} || echo ERR; done");
    let out = lab.kubectl(
        "/usr/bin/kubectl",
        &["exec", pod, "--", "sh", "-c", &script],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The echo chart answers `pod=NAME node=NODE`.
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("pod="))
                .unwrap_or(l)
                .to_string()
        })
        .collect()
}

/// busybox `wget -q -O- ARGS` from the underlay namespace (outside every node), 3 s at most.
fn underlay_wget(args: &[String]) -> Option<Output> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{UNDERLAY_NS}"))
        .args(["busybox", "timeout", "3"])
        .args(["busybox", "wget", "-q", "-O-"])
        .args(args)
        .output()
        .ok()
}

/// GET from the underlay namespace: the body, if it answered.
fn underlay_get(url: &str) -> Option<String> {
    let out = underlay_wget(&[url.to_string()])?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn service(lab: &TestLab, name: &str) -> Value {
    serde_json::from_str(&lab.kubectl_ok(&["get", "service", name, "-o", "json"])).expect("json")
}

#[test]
fn cluster_ip_node_port_and_load_balancer_across_the_lab() {
    let Some((lab, _)) = lab_for("services", &[]) else {
        return;
    };
    install_echo(&lab, 3);
    let deadline = Instant::now() + Duration::from_secs(120);
    let pods = loop {
        let pods = running_pods(&lab, "app=echo", 3);
        let nodes: BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
        if nodes.len() == 3 {
            break pods;
        }
        // Three replicas on three nodes: replace one that doubled up until they spread.
        assert!(
            Instant::now() < deadline,
            "echo pods not on three nodes: {pods:?}"
        );
        lab.kubectl_ok(&["delete", "pod", &pods[0].0, "--wait=false"]);
        std::thread::sleep(Duration::from_secs(2));
    };
    let names: BTreeSet<String> = pods.iter().map(|p| p.0.clone()).collect();
    // A client pod on node 1, outside the service.
    let client = run_client(&lab);
    let cip = service(&lab, "echo")["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();

    // 60 requests to the ClusterIP from node 1 reach all three replicas.
    let url = format!("http://{cip}/");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = requests_from(&lab, &client, &url, 60);
        let seen: BTreeSet<String> = got.iter().filter(|b| names.contains(*b)).cloned().collect();
        if seen == names && got.len() == 60 && got.iter().all(|b| names.contains(b)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "60 requests to {url} reached {seen:?} of {names:?}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // NodePort on every node's underlay address, from outside the nodes.
    lab.kubectl_ok(&[
        "expose",
        "deployment",
        "echo",
        "--name=echo-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let np = service(&lab, "echo-np")["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&np), "{np}");
    for k in 1..=3 {
        let url = format!("http://10.90.0.{}:{np}/", 10 + k);
        wait_for(&format!("NodePort {url}"), Duration::from_secs(30), || {
            underlay_get(&url)
                .is_some_and(|b| names.iter().any(|n| b.contains(&format!("pod={n} "))))
        });
    }

    // A LoadBalancer address from the pool, answered on the underlay; it survives the loss
    // of the node answering for it.
    lab.kubectl_ok(&[
        "expose",
        "deployment",
        "echo",
        "--name=echo-lb",
        "--type=LoadBalancer",
        "--port=80",
        "--target-port=8080",
    ]);
    let mut lb_ip = String::new();
    wait_for("a LoadBalancer address", Duration::from_secs(30), || {
        lb_ip = service(&lab, "echo-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !lb_ip.is_empty()
    });
    assert!(lb_ip.starts_with("10.90.0.2"), "{lb_ip}");
    let lb_url = format!("http://{lb_ip}/");
    wait_for(
        &format!("LoadBalancer {lb_url}"),
        Duration::from_secs(30),
        || underlay_get(&lb_url).is_some(),
    );
    let holder = (1..=3)
        .find(|k| {
            Command::new("ip")
                .args(["-n", &node_ns(*k), "-o", "addr"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{lb_ip}/32")))
        })
        .expect("a node holds the LoadBalancer address");

    // Scaling to 1 stops traffic to the removed pods.
    lab.kubectl_ok(&["scale", "deployment/echo", "--replicas=1"]);
    let kept = running_pods(&lab, "app=echo", 1);
    let started = Instant::now();
    let survivor = kept[0].0.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = requests_from(&lab, &client, &url, 10);
        if got.len() == 10 && got.iter().all(|b| *b == survivor) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic still reaches removed pods: {got:?}"
        );
    }
    eprintln!(
        "removed pods out of rotation after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Hairpin: the only endpoint reaches itself through its service (its source is
    // rewritten, so the reply comes back through the DNAT).
    let got = requests_from(&lab, &survivor, &url, 3);
    assert!(
        got.len() == 3 && got.iter().all(|b| *b == survivor),
        "{survivor} through its own service: {got:?}"
    );

    // No endpoints: refused at once, not a timeout.
    lab.kubectl_ok(&["create", "service", "clusterip", "nobody", "--tcp=80:8080"]);
    let ncip = service(&lab, "nobody")["spec"]["clusterIP"]
        .as_str()
        .expect("ip")
        .to_string();
    let out = lab.kubectl(
        "/usr/bin/kubectl",
        &[
            "exec",
            &client,
            "--",
            "sh",
            "-c",
            &format!("timeout 3 wget -q -O- http://{ncip}/ 2>&1; echo rc=$?"),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("refused"), "no-endpoint service: {said}");

    // The node holding the LoadBalancer address stops; another one takes it over.
    lab.kubectl_ok(&["scale", "deployment/echo", "--replicas=3"]);
    stop_node(&lab, holder);
    wait_for(
        "the LoadBalancer address to move",
        Duration::from_secs(90),
        || underlay_get(&lb_url).is_some(),
    );
}

/// `nslookup NAME` (busybox) in `pod`: (succeeded, output).
fn nslookup(lab: &TestLab, pod: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = vec!["exec", pod, "--", "nslookup"];
    cmd.extend_from_slice(args);
    let out = lab.kubectl("/usr/bin/kubectl", &cmd);
    (out.status.success(), text(&out))
}

/// GET `path` with a Host header from the underlay namespace to node K's ingress port: the
/// body and the response headers (`-S`), whatever the status.
fn ingress_get(k: usize, host: &str, path: &str) -> Option<String> {
    let out = underlay_wget(&[
        "-S".into(),
        format!("--header=Host: {host}"),
        format!("http://10.90.0.{}{path}", 10 + k),
    ])?;
    Some(text(&out))
}

#[test]
fn cluster_dns_and_ingress_in_the_lab() {
    let Some((lab, _)) = lab_for("dns and ingress", &[]) else {
        return;
    };
    install_echo(&lab, 2);
    let client = run_client(&lab);
    let echo = running_pods(&lab, "app=echo", 2);
    let cip = service(&lab, "echo")["spec"]["clusterIP"]
        .as_str()
        .expect("ip")
        .to_string();

    // The pod's resolver is the cluster DNS.
    let resolv = lab.kubectl_ok(&["exec", &client, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("ndots:5"), "{resolv}");
    // busybox's nslookup goes on through the search list after an answer (and exits 1 on
    // the NXDOMAINs that follow), so the answer is read from its output.
    for name in ["echo", "echo.default", "echo.default.svc.cluster.local"] {
        wait_for(&format!("nslookup {name}"), Duration::from_secs(30), || {
            nslookup(&lab, &client, &[name])
                .1
                .contains(&format!("Address: {cip}"))
        });
    }
    // Headless: the pod IPs; SRV for the named port; NXDOMAIN for an unknown name.
    apply(
        &lab,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo-headless\nspec:\n  clusterIP: None\n  selector:\n    app: echo\n  ports:\n  - name: http\n    port: 8080\n",
    );
    wait_for("headless A records", Duration::from_secs(30), || {
        let (_, out) = nslookup(&lab, &client, &["echo-headless.default.svc.cluster.local"]);
        echo.iter()
            .all(|p| out.contains(&format!("Address: {}", p.2)))
    });
    let (_, out) = nslookup(
        &lab,
        &client,
        &["-type=SRV", "_http._tcp.echo.default.svc.cluster.local."],
    );
    assert!(
        out.contains("_http._tcp.echo.default.svc.cluster.local") && out.contains("port = 80")
            || out.contains(" 80 echo.default.svc.cluster.local"),
        "SRV: {out}"
    );
    let (ok, out) = nslookup(&lab, &client, &["nosuch.default.svc.cluster.local."]);
    assert!(
        !ok && out.contains("NXDOMAIN") && !out.contains("Name:"),
        "unknown name: {out}"
    );

    // Ingress: two hosts and two paths to two services; an unknown host gets 404.
    lab.kubectl_ok(&[
        "create", "deployment", "web2", &format!("--image={IMAGE}"), "--",
        "sh", "-c", "mkdir -p /w/two && echo web2 > /w/index.html && echo web2-two > /w/two/index.html && exec httpd -f -p 8080 -h /w",
    ]);
    lab.kubectl_ok(&[
        "expose",
        "deployment",
        "web2",
        "--port=80",
        "--target-port=8080",
    ]);
    running_pods(&lab, "app=web2", 1);
    apply(
        &lab,
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: skiff\nspec:\n  controller: skiff.io/ingress\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: routes\nspec:\n  ingressClassName: skiff\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {service: {name: echo, port: {number: 80}}}\n      - path: /two\n        pathType: Prefix\n        backend: {service: {name: web2, port: {number: 80}}}\n  - host: b.example\n    http:\n      paths:\n      - path: /\n        pathType: Exact\n        backend: {service: {name: web2, port: {number: 80}}}\n",
    );
    for k in 1..=3 {
        wait_for(&format!("ingress on n{k}"), Duration::from_secs(30), || {
            ingress_get(k, "a.example", "/").is_some_and(|b| b.contains("pod=echo-"))
                && ingress_get(k, "a.example", "/two/").is_some_and(|b| b.contains("web2-two"))
                && ingress_get(k, "b.example", "/").is_some_and(|b| b.contains("web2"))
        });
    }
    let unknown = ingress_get(1, "c.example", "/").unwrap_or_default();
    assert!(unknown.contains("404"), "unknown host: {unknown}");
    wait_for("ingress status", Duration::from_secs(30), || {
        let v: Value =
            serde_json::from_str(&lab.kubectl_ok(&["get", "ingress", "routes", "-o", "json"]))
                .expect("json");
        v["status"]["loadBalancer"]["ingress"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    });
}
