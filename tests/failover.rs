//! Killing the leader's `skiff server` process while kubectl talks to another replica:
//! kubectl keeps working within 3 s, and nothing acknowledged is lost.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::process::Command;
use std::time::{Duration, Instant};

use servers::Servers;

/// The replica whose API reports `skiff_raft_is_leader 1`.
fn leader(s: &Servers) -> Option<usize> {
    s.leader()
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> bool {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn kubectl_keeps_working_within_3s_when_the_leader_process_dies() {
    let mut s = Servers::start(3, "");
    let deadline = Instant::now() + Duration::from_secs(10);
    let old = loop {
        if let Some(l) = leader(&s) {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    let talk_to = (old + 1) % 3;
    let kc = s.kubeconfig(talk_to);
    let mut acked = Vec::new();
    for i in 0..5 {
        let name = format!("before-{i}");
        assert!(
            kubectl(&kc, &["create", "configmap", &name, "--from-literal=a=b"]),
            "kubectl works before the kill"
        );
        acked.push(name);
    }

    s.kill(old);
    let killed = Instant::now();
    eprintln!("killed the leader, replica {old}; kubectl talks to replica {talk_to}");
    let mut first_ok = None;
    let mut i = 0;
    // Bounded: at most 60 commands or 60 s.
    while i < 60 && killed.elapsed() < Duration::from_secs(60) {
        let name = format!("after-{i}");
        i += 1;
        let ok = kubectl(&kc, &["create", "configmap", &name, "--from-literal=a=b"])
            && kubectl(&kc, &["get", "configmap", &name]);
        match (ok, first_ok) {
            (true, None) => first_ok = Some(killed.elapsed()),
            (false, Some(at)) => panic!("kubectl failed again after succeeding at {at:?}"),
            _ => {}
        }
        if ok {
            acked.push(name);
        }
        if first_ok.is_some() && acked.len() >= 15 {
            break;
        }
    }
    let recovered = first_ok.expect("kubectl never succeeded after the leader died");
    assert!(
        recovered <= Duration::from_secs(3),
        "kubectl worked again only after {recovered:?}"
    );
    eprintln!("kubectl worked again {recovered:?} after the leader was killed");
    let now = leader(&s);
    assert!(now.is_some_and(|l| l != old), "a new leader: {now:?}");

    let listed = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig((old + 2) % 3))
        .args(["get", "configmaps", "-o", "name"])
        .output()
        .expect("kubectl");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in &acked {
        assert!(
            listed.contains(&format!("configmap/{name}\n")),
            "acknowledged {name} missing on the third replica"
        );
    }
}
