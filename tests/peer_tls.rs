//! Mutual TLS on the Raft peer transport: members with certificates of the cluster CA form
//! the cluster; a peer with a certificate of another CA, without the peer organization, or
//! without a certificate is refused before any raft message is taken, and the cluster keeps
//! serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Cluster};
use protobuf::Message as _;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use skiff::store::peer_tls::{IssuedCert, ThrowawayCa, PEER_ORGANIZATION};
use skiff::store::{Consistency, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const FAILURES: &str = "skiff_raft_peer_tls_handshake_failures_total";

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

/// `skiff_raft_peer_tls_handshake_failures_total{direction}` of replica `i`.
fn tls_failures(c: &LocalCluster, i: usize, direction: &str) -> u64 {
    c.registry(i)
        .gather()
        .iter()
        .filter(|f| f.get_name() == FAILURES)
        .flat_map(|f| f.get_metric())
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.get_name() == "direction" && l.get_value() == direction)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .unwrap_or(0)
}

/// A raw TLS client trusting `ca_pem`, presenting `identity` (or no certificate).
fn client_config(ca_pem: &str, identity: Option<&IssuedCert>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(der(ca_pem)).expect("CA");
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let cfg = match identity {
        Some(c) => builder
            .with_client_auth_cert(
                vec![der(&c.cert_pem)],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key PEM"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// Connects to a peer port over TLS as a peer would and sends a valid hello (cluster id,
/// sender `from`) and a heartbeat at `term` to `to`: a message that makes the receiver
/// adopt `term` if it is taken. `Err` if the TLS handshake already failed here.
async fn knock(
    addr: &str,
    tls: Arc<ClientConfig>,
    cluster_id: u64,
    from: u64,
    to: u64,
    term: u64,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let mut hello = b"SKIFFRP1".to_vec();
    hello.extend_from_slice(&cluster_id.to_le_bytes());
    hello.extend_from_slice(&from.to_le_bytes());
    let mut msg = raft::eraftpb::Message::default();
    msg.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
    msg.from = from;
    msg.to = to;
    msg.term = term;
    let body = msg.write_to_bytes().expect("encode");
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to peer port");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .expect("handshake ends")?;
    let mut wire = Vec::new();
    for frame in [hello, body] {
        wire.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        wire.extend_from_slice(&frame);
    }
    s.write_all(&wire).await?;
    s.flush().await?;
    Ok(s)
}

/// Whether the replica closes (or fails) the connection within `within`.
async fn closed_within(s: &mut TlsStream<TcpStream>, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// What a refused connection looks like from the client: the handshake fails, or (TLS 1.3:
/// the server checks the client certificate after the client is done) the server closes
/// the connection right after.
async fn refused(result: Result<TlsStream<TcpStream>, std::io::Error>) -> bool {
    match result {
        Err(_) => true,
        Ok(mut s) => closed_within(&mut s, Duration::from_secs(5)).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_certificates_of_the_cluster_ca_elect_a_leader_and_replicate() {
    install_provider();
    let c = Cluster::start(3, |_| {});
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let rev = c
        .client(follower)
        .create("/tls/key", b"v".to_vec())
        .await
        .expect("write via a follower (forwarded to the leader over TLS)");
    for i in 0..3 {
        let kv = c
            .client(i)
            .get("/tls/key", Consistency::Linearizable)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(kv.mod_revision, rev, "replica {i}");
    }
    assert!(c.converged(Duration::from_secs(5)).await);
    for i in 0..3 {
        assert_eq!(tls_failures(&c, i, "inbound"), 0, "replica {i}");
        assert_eq!(tls_failures(&c, i, "outbound"), 0, "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_certificate_of_another_ca_cannot_join_and_the_cluster_keeps_serving() {
    install_provider();
    let other = ThrowawayCa::generate("another CA").expect("CA");
    let intruder = other.loopback_peer_tls("n3").expect("certificate");
    let c = Cluster::start(3, |o| {
        if o.id == 3 {
            o.tls = intruder.clone();
        }
    });
    let leader = c
        .leader_among(&[0, 1], Duration::from_secs(10))
        .await
        .expect("the two members of the cluster CA elect a leader");
    let term = c.status(leader).await.term;
    c.client(leader)
        .create("/tls/a", b"a".to_vec())
        .await
        .expect("write commits on two of three");
    c.client(1 - leader)
        .create("/tls/b", b"b".to_vec())
        .await
        .expect("write via the other member commits");
    // Both sides refuse: the members do not take the intruder's certificate, and it does
    // not take theirs.
    assert!(
        eventually(Duration::from_secs(10), || async {
            tls_failures(&c, 0, "inbound") > 0
                && tls_failures(&c, 1, "inbound") > 0
                && tls_failures(&c, 2, "outbound") > 0
                && tls_failures(&c, 0, "outbound") > 0
        })
        .await,
        "TLS failures counted on both sides"
    );
    let s = c.status(2).await;
    assert_eq!(
        (s.leader_id, s.keys, s.commit_index),
        (0, 0, 0),
        "the intruder learnt nothing: {s:?}"
    );
    let l = c.status(leader).await;
    assert!(l.is_leader, "leader kept: {l:?}");
    assert_eq!(l.term, term, "term undisturbed");
    assert_eq!(l.keys, 2);
}

/// Knocks on the leader's peer port as a follower with `tls`, at a term that would depose
/// the leader if the message were taken; checks it is refused and the cluster is unaffected.
async fn refused_and_cluster_unaffected(tls: impl Fn(&ThrowawayCa) -> Arc<ClientConfig>) {
    install_provider();
    let c = Cluster::start(3, |_| {});
    let leader = c.leader().await;
    let before = c.status(leader).await;
    let follower = (leader + 1) % 3;
    let addr = c.opts[leader].peers[&(leader as u64 + 1)].clone();
    let failures = tls_failures(&c, leader, "inbound");
    let result = knock(
        &addr,
        tls(c.ca()),
        c.opts[leader].cluster_id,
        follower as u64 + 1,
        leader as u64 + 1,
        before.term + 10,
    )
    .await;
    assert!(refused(result).await, "the connection is refused");
    assert!(
        eventually(Duration::from_secs(5), || async {
            tls_failures(&c, leader, "inbound") > failures
        })
        .await,
        "refused in TLS, counted"
    );
    c.client(follower)
        .create("/tls/after", b"x".to_vec())
        .await
        .expect("the cluster keeps serving");
    let after = c.status(leader).await;
    assert!(after.is_leader, "leader kept: {after:?}");
    assert_eq!(after.term, before.term, "the message was not stepped");
    assert!(c.converged(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_of_another_ca_is_refused() {
    refused_and_cluster_unaffected(|ca| {
        let other = ThrowawayCa::generate("another CA").expect("CA");
        let cert = other
            .issue("n2", &[PEER_ORGANIZATION], &["127.0.0.1"])
            .expect("certificate");
        // It trusts the cluster CA, so only the server's check can refuse it.
        client_config(&ca.cert_pem(), Some(&cert))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_the_cluster_ca_without_the_peer_organization_is_refused() {
    refused_and_cluster_unaffected(|ca| {
        let agent = ca
            .issue("system:node:n2", &["system:nodes"], &["127.0.0.1"])
            .expect("certificate");
        client_config(&ca.cert_pem(), Some(&agent))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_client_certificate_is_refused() {
    refused_and_cluster_unaffected(|ca| client_config(&ca.cert_pem(), None)).await;
}

/// The control of the refusals above: the same knock with a peer certificate of the
/// cluster CA is taken (the term rises), and a peer of another cluster is still refused
/// by the hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_of_the_cluster_ca_is_taken_only_for_its_own_member_and_cluster() {
    install_provider();
    let c = Cluster::start(3, |_| {});
    c.leader().await;
    let addr = c.opts[0].peers[&1].clone();
    let term = c.status(0).await.term;
    let issue = |name: &str| {
        let peer = c
            .ca()
            .issue(name, &[PEER_ORGANIZATION], &["127.0.0.1"])
            .expect("certificate");
        client_config(&c.ca().cert_pem(), Some(&peer))
    };
    let (n2, n3) = (issue("n2"), issue("n3"));

    let foreign = knock(&addr, n2.clone(), 0xbad, 2, 1, term + 10).await;
    assert!(
        refused(foreign).await,
        "a peer of another cluster is closed"
    );
    // The attack: a member (or a stolen member certificate) speaking as another member.
    let impostor = knock(&addr, n3, c.opts[0].cluster_id, 2, 1, term + 10).await;
    assert!(
        refused(impostor).await,
        "n3's certificate cannot speak as member 2"
    );
    assert_eq!(
        c.status(0).await.term,
        term,
        "their messages were not stepped"
    );

    let _own = knock(&addr, n2, c.opts[0].cluster_id, 2, 1, term + 10)
        .await
        .expect("handshake with a peer certificate");
    let replica = c.replica(0);
    assert!(
        eventually(Duration::from_secs(5), || async {
            replica.status().await.map(|s| s.term).unwrap_or(0) >= term + 10
        })
        .await,
        "the heartbeat of member 2 with its own certificate is stepped"
    );
    assert_eq!(tls_failures(&c, 0, "inbound"), 0);
}
