//! The overlay across three hosts (network namespaces on an underlay bridge, each running a
//! `skiff server` of one 3-replica control plane; tests/common/overlay_lab.rs), as root:
//! pods reach pods on other hosts and on their own, node agents reach remote pods, for every
//! backend and for a mix of user-space and kernel VXLAN; the wire carries VXLAN; removing a
//! node removes its datapath entries elsewhere; restarting an agent keeps connections.

#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/overlay_lab.rs"]
#[allow(dead_code)]
mod overlay_lab;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use node_host::{http_get_in, in_netns, root_or_skip};
use overlay_lab::{link_gso, underlay_ip, Lab, RunningPod, UNDERLAY_GSO};

/// One lab at a time: three servers and their pods are most of two cores.
static LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lab for `test` (hosts 1-3 on `backends`), held alone; `None`: the test skips. Bind as
/// `(_one, lab)` so the lab is dropped before the next test may start.
async fn start_lab(
    test: &str,
    backends: [&str; 3],
) -> Option<(tokio::sync::MutexGuard<'static, ()>, Lab)> {
    if !root_or_skip(test) {
        return None;
    }
    let one = LAB.lock().await;
    Some((one, Lab::start(backends)))
}

/// An HTTP request from the namespace `from` reaches `to` (its web container answers with
/// its own name), within the deadline.
fn reaches(from: &Path, to: &RunningPod, secs: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < deadline {
        match http_get_in(from, format!("{}:8080", to.ip), "/") {
            Some((200, body)) if body.trim() == to.name => return Ok(()),
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{} did not reach pod {} at {}: last answer {last:?}",
        from.display(),
        to.name,
        to.ip
    ))
}

fn assert_reaches(lab: &Lab, from: &Path, to: &RunningPod) {
    if let Err(e) = reaches(from, to, 30) {
        panic!("{e}\n{}", lab.logs());
    }
}

fn ns_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What host `ns` has programmed for a remote subnet and VTEP MAC: (route, neighbour, fdb).
fn entries(ns: &str, subnet: &str, mac: &str) -> (bool, bool, bool) {
    let vtep = subnet.split('/').next().unwrap_or_default();
    let route = !ns_out(&["ip", "-n", ns, "route", "show", subnet])
        .trim()
        .is_empty();
    let neigh = ns_out(&["ip", "-n", ns, "neigh", "show", "dev", "skiff.1"])
        .lines()
        .any(|l| l.starts_with(&format!("{vtep} ")) && l.contains(mac));
    let fdb = ns_out(&["bridge", "-n", ns, "fdb", "show", "dev", "skiff.1"])
        .lines()
        .any(|l| l.starts_with(mac));
    (route, neigh, fdb)
}

fn poll(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            for ns in ns_out(&["ip", "netns", "list"])
                .lines()
                .filter(|l| l.starts_with("skh"))
            {
                let ns = ns.split_whitespace().next().unwrap_or_default();
                eprintln!(
                    "{ns}:\n{}{}{}",
                    ns_out(&["ip", "-n", ns, "route"]),
                    ns_out(&["ip", "-n", ns, "neigh", "show", "dev", "skiff.1"]),
                    ns_out(&["bridge", "-n", ns, "fdb", "show", "dev", "skiff.1"])
                );
            }
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The common checks: a pod on host 1 reaches pods on hosts 2 and 3 and its neighbour on
/// host 1, and host 1's node (its agents' namespace) reaches the remote pods.
async fn pods_talk(lab: &Lab) -> [RunningPod; 4] {
    let a1 = lab.run_pod("a1", 1).await;
    let b1 = lab.run_pod("b1", 1).await;
    let p2 = lab.run_pod("p2", 2).await;
    let p3 = lab.run_pod("p3", 3).await;
    for to in [&p2, &p3, &b1] {
        assert_reaches(lab, &a1.netns, to);
    }
    for to in [&p2, &p3] {
        assert_reaches(lab, &lab.host(1).netns, to);
    }
    [a1, b1, p2, p3]
}

/// `len` bytes through `to`'s echo server (port 9000) from `from`'s namespace come back
/// unchanged.
fn echo_bulk(from: &RunningPod, to: &RunningPod, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let target = format!("{}:9000", to.ip);
    let conn = in_netns(&from.netns, move || {
        TcpStream::connect(target).expect("connect echo")
    });
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = conn.try_clone().expect("clone");
    let sent = data.clone();
    let send = std::thread::spawn(move || writer.write_all(&sent));
    let mut back = vec![0; len];
    (&conn).read_exact(&mut back).expect("echoed bytes");
    send.join().expect("sender").expect("send");
    assert!(back == data, "{len} bytes came back changed");
}

/// Frames on host 1's port of the underlay bridge while `during` runs: the first UDP/8472 VXLAN datagram
/// whose inner IPv4 packet goes `inner.0 -> inner.1`, as (VNI, outer source, outer
/// destination), parsed with pnet.
fn capture_vxlan(
    underlay: &Path,
    inner: (Ipv4Addr, Ipv4Addr),
    during: impl FnOnce(),
) -> Option<(u32, Ipv4Addr, Ipv4Addr)> {
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;
    use pnet_packet::vxlan::VxlanPacket;
    use pnet_packet::Packet;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let file = std::fs::File::open(underlay).expect("underlay netns");
    let capture = std::thread::spawn(move || {
        // SAFETY: plain syscalls on fds this thread owns; buffers outlive the calls.
        unsafe {
            assert_eq!(libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET), 0);
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let sock = OwnedFd::from_raw_fd(fd);
            // The bridge device itself sees only frames for it; the port sees host 1's.
            let name = std::ffi::CString::new("u1").expect("name");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let rc = libc::bind(
                sock.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let n = libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
                if n <= 0 {
                    continue;
                }
                let found = (|| {
                    let eth = EthernetPacket::new(&buf[..n as usize])?;
                    if eth.get_ethertype() != EtherTypes::Ipv4 {
                        return None;
                    }
                    let ip = Ipv4Packet::new(eth.payload())?;
                    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp {
                        return None;
                    }
                    let udp = UdpPacket::new(ip.payload())?;
                    if udp.get_destination() != 8472 {
                        return None;
                    }
                    let vx = VxlanPacket::new(udp.payload())?;
                    let ieth = EthernetPacket::new(vx.payload())?;
                    let iip = Ipv4Packet::new(ieth.payload())?;
                    ((iip.get_source(), iip.get_destination()) == inner)
                        .then(|| (vx.get_vni(), ip.get_source(), ip.get_destination()))
                })();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
    });
    ready_rx.recv().expect("capture ready");
    during();
    capture.join().expect("capture thread")
}

/// The VTEP MAC and subnet node `name` published.
async fn published(lab: &Lab, name: &str) -> (String, String) {
    let nodes: Api<Node> = Api::all(lab.host(1).client());
    let n = nodes.get(name).await.expect("node");
    let data = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("overlay.skiff.io/backend-data").cloned())
        .expect("backend-data annotation");
    let v: serde_json::Value = serde_json::from_str(&data).expect("backend-data json");
    let mac = v["VtepMAC"].as_str().expect("VtepMAC").to_string();
    let cidr = n.spec.and_then(|s| s.pod_cidr).expect("podCIDR");
    (mac, cidr)
}

fn scrape(lab: &Lab, k: usize) -> String {
    lab.host(k).metrics().map(|(_, b)| b).unwrap_or_default()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn vxlan_carries_pods_across_hosts_and_follows_node_changes() {
    let Some((_one, mut lab)) = start_lab(
        "vxlan_carries_pods_across_hosts_and_follows_node_changes",
        ["vxlan", "vxlan", "vxlan"],
    )
    .await
    else {
        return;
    };
    let [a1, _b1, p2, _p3] = pods_talk(&lab).await;

    // Pods get the underlay MTU less the VXLAN overhead.
    let link = ns_out(&[
        "nsenter",
        &format!("--net={}", a1.netns.display()),
        "ip",
        "link",
        "show",
        "eth0",
    ]);
    assert!(link.contains("mtu 1450"), "pod eth0: {link}");
    // The underlay allows BIG TCP, but a UDP tunnel does not carry it: pods keep 64 KiB.
    assert_eq!(link_gso(&a1.netns, "eth0", None), 65_536);

    // Every node got its own /24 of the cluster CIDR from the IPAM controller.
    let mut cidrs = Vec::new();
    for k in 1..=3 {
        cidrs.push(published(&lab, &format!("n{k}")).await.1);
    }
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "distinct pod subnets: {cidrs:?}");
    assert!(cidrs
        .iter()
        .all(|c| c.starts_with("10.244.") && c.ends_with("/24")));

    // On the wire: UDP/8472, VNI 1, between the hosts' underlay addresses, carrying the
    // pods' own addresses (no masquerading between pods).
    let inner = (a1.ip.parse().unwrap(), p2.ip.parse().unwrap());
    let underlay = lab.underlay.path();
    let seen = capture_vxlan(&underlay, inner, || {
        for _ in 0..20 {
            let _ = http_get_in(&a1.netns, format!("{}:8080", p2.ip), "/");
        }
    });
    let (vni, src, dst) =
        seen.unwrap_or_else(|| panic!("no VXLAN frame {inner:?} seen on the underlay"));
    assert_eq!(vni, 1);
    assert_eq!(
        (src.to_string(), dst.to_string()),
        (underlay_ip(1), underlay_ip(2))
    );

    // Egress out of the cluster CIDR leaves with the node's address.
    let host2 = lab.host(2).netns.clone();
    let listener = in_netns(&host2, || {
        TcpListener::bind(format!("{}:7000", underlay_ip(2))).expect("bind")
    });
    let accept = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer.ip()));
    let target = format!("{}:7000", underlay_ip(2));
    in_netns(&a1.netns, move || {
        TcpStream::connect(target).expect("connect out")
    });
    let peer = accept.join().expect("accept").expect("accepted");
    assert_eq!(
        peer.to_string(),
        underlay_ip(1),
        "pod egress is masqueraded"
    );

    // A connection between pods survives a restart of host 1's agents.
    let target = format!("{}:9000", p2.ip);
    let conn = in_netns(&a1.netns, move || {
        TcpStream::connect(target).expect("connect echo")
    });
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut echo = |text: &str| {
        (&conn)
            .write_all(format!("{text}\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        reader.read_line(&mut line).expect("echo");
        assert_eq!(line.trim(), text);
    };
    echo("before");
    let syncs = "overlay_route_sync_duration_seconds_count ";
    let device = |lab: &Lab| {
        ns_out(&[
            "ip",
            "-n",
            &lab.host(1).name,
            "-o",
            "link",
            "show",
            "skiff.1",
        ])
    };
    let before = device(&lab);
    lab.hosts[0].kill_server();
    lab.hosts[0].start_server();
    poll(
        30,
        "host 1's overlay agent synced after the restart",
        || metric(&scrape(&lab, 1), syncs) >= 1.0,
    );
    echo("after");
    assert_eq!(
        device(&lab),
        before,
        "the VXLAN device (index, MAC) is kept"
    );

    // Removing node 3 removes its route, neighbour and FDB entry on hosts 1 and 2.
    let (mac3, cidr3) = published(&lab, "n3").await;
    for k in [1, 2] {
        assert_eq!(
            entries(&lab.host(k).name, &cidr3, &mac3),
            (true, true, true),
            "n{k} has n3's entries"
        );
    }
    lab.hosts[2].kill_server();
    Api::<Node>::all(lab.host(1).client())
        .delete("n3", &DeleteParams::default())
        .await
        .expect("delete n3");
    for k in [1, 2] {
        let ns = lab.host(k).name.clone();
        poll(30, &format!("n{k} dropped n3's entries"), || {
            entries(&ns, &cidr3, &mac3) == (false, false, false)
        });
    }
}

#[tokio::test]
async fn host_gw_routes_pods_across_hosts() {
    let Some((_one, lab)) = start_lab(
        "host_gw_routes_pods_across_hosts",
        ["host-gw", "host-gw", "host-gw"],
    )
    .await
    else {
        return;
    };
    let [a1, _b1, p2, _p3] = pods_talk(&lab).await;
    let route = ns_out(&["ip", "-n", &lab.host(1).name, "route", "get", &p2.ip]);
    assert!(
        route.contains(&format!("via {} dev eth0", underlay_ip(2))),
        "host-gw routes via the node's underlay address: {route}"
    );

    // Unencapsulated, pods take the underlay's BIG TCP size (bridge and pod ends), and bulk
    // data crosses hosts intact in packets above 64 KiB.
    assert_eq!(link_gso(&lab.host(1).netns, "cni0", None), UNDERLAY_GSO);
    assert_eq!(link_gso(&a1.netns, "eth0", None), UNDERLAY_GSO);
    assert_eq!(link_gso(&p2.netns, "eth0", None), UNDERLAY_GSO);
    echo_bulk(&a1, &p2, 16 << 20);

    // A node that is not on the underlay segment (reached only through a gateway) is
    // refused with an error naming it; the other nodes keep their routes.
    let h1 = lab.host(1).name.clone();
    let gw = underlay_ip(3);
    ns_out(&["ip", "-n", &h1, "route", "add", "default", "via", &gw]);
    let far: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "far", "annotations": {
            "overlay.skiff.io/backend-type": "host-gw",
            "overlay.skiff.io/public-ip": "192.0.2.7",
        }},
        "spec": {"podCIDR": "10.244.200.0/24"},
    }))
    .expect("node");
    Api::<Node>::all(lab.host(1).client())
        .create(&Default::default(), &far)
        .await
        .expect("create node far");
    poll(30, "host 1 reports the unreachable node", || {
        lab.host(1)
            .log()
            .contains("node far (192.0.2.7) is not directly reachable on eth0")
            && metric(&scrape(&lab, 1), "overlay_route_sync_errors_total ") >= 1.0
    });
    let far_route = ns_out(&["ip", "-n", &h1, "route", "show", "10.244.200.0/24"]);
    assert!(
        far_route.trim().is_empty(),
        "no route for the refused node: {far_route}"
    );
    assert_reaches(&lab, &a1.netns, &p2);
}

#[tokio::test]
async fn user_space_vxlan_carries_pods_across_hosts() {
    let Some((_one, lab)) = start_lab(
        "user_space_vxlan_carries_pods_across_hosts",
        ["vxlan-user", "vxlan-user", "vxlan-user"],
    )
    .await
    else {
        return;
    };
    pods_talk(&lab).await;
    let m = scrape(&lab, 1);
    for series in [
        "overlay_vxlan_user_packets_total{direction=\"encap\"} ",
        "overlay_vxlan_user_packets_total{direction=\"decap\"} ",
        "overlay_peers_programmed ",
    ] {
        assert!(metric(&m, series) >= 1.0, "{series}in\n{m}");
    }
}

#[tokio::test]
async fn user_space_and_kernel_vxlan_interoperate() {
    let Some((_one, lab)) = start_lab(
        "user_space_and_kernel_vxlan_interoperate",
        ["vxlan-user", "vxlan", "vxlan"],
    )
    .await
    else {
        return;
    };
    let [a1, _b1, p2, p3] = pods_talk(&lab).await;
    // And the other way: kernel-VXLAN pods and node reach the user-space host's pod.
    assert_reaches(&lab, &p2.netns, &a1);
    assert_reaches(&lab, &p3.netns, &a1);
    assert_reaches(&lab, &lab.host(2).netns, &a1);
}
