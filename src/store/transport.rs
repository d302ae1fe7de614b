//! Peer transport: one persistent outbound mutual-TLS connection per peer carrying
//! length-delimited protobuf raft `Message`s. Both ends present a certificate of the cluster
//! CA naming the peer organization (see `peer_tls`). Every connection then opens with a hello
//! frame naming the cluster id and the sender; a peer of another cluster is refused.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntCounterVec};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{client, server};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::error::StoreError;
use super::node::NodeOptions;
use super::peer_tls::{PeerTls, HANDSHAKE_TIMEOUT};

const MAGIC: &[u8; 8] = b"SKIFFRP1";
const QUEUE_PER_PEER: usize = 8192;
const MAX_FRAME: usize = 512 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A repeated TLS failure (same peer or address, same reason) is logged at warn this often.
const TLS_WARN_EVERY: Duration = Duration::from_secs(60);

type PeerWriter = FramedWrite<client::TlsStream<TcpStream>, LengthDelimitedCodec>;

/// A raft message received from a peer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Message);

/// The connection to a peer failed; raft should stop pipelining to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerUnreachable(pub u64);

/// Cuts a replica off the network (both directions) when set: the fault a partition causes.
#[derive(Clone, Default)]
pub struct Isolation(Arc<AtomicBool>);

impl Isolation {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Transport {
    peers: BTreeMap<u64, mpsc::Sender<Message>>,
    isolation: Isolation,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn hello(cluster_id: u64, node_id: u64) -> Bytes {
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&cluster_id.to_le_bytes());
    b.extend_from_slice(&node_id.to_le_bytes());
    b.into()
}

/// The hello frame that opens a peer connection: (cluster id, sender id).
pub fn parse_hello(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() != 24 || &b[..8] != MAGIC {
        return None;
    }
    let cluster = u64::from_le_bytes(b[8..16].try_into().ok()?);
    let node = u64::from_le_bytes(b[16..24].try_into().ok()?);
    Some((cluster, node))
}

/// Binds the peer listener (address reuse on, so a restarted replica gets its port back).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, StoreError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| StoreError::Storage(format!("bind peer address {addr}: {e}")))?;
    Ok(socket.listen(1024)?)
}

impl Transport {
    /// Starts the listener and one sender task per peer on the current (actix) runtime, for
    /// the replica of `opts` (its ids, peers and TLS settings). TLS failures count in
    /// `tls_failures` by direction.
    pub fn start(
        opts: &NodeOptions,
        listener: TcpListener,
        inbound: Recipient<Inbound>,
        unreachable: Recipient<PeerUnreachable>,
        isolation: Isolation,
        tls_failures: IntCounterVec,
    ) -> Self {
        let (cluster_id, node_id) = (opts.cluster_id, opts.id);
        let greeting = hello(cluster_id, node_id);
        let outbound_failures = tls_failures.with_label_values(&["outbound"]);
        let mut senders = BTreeMap::new();
        for (&id, addr) in opts.peers.iter().filter(|(&id, _)| id != node_id) {
            let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
            senders.insert(id, tx);
            actix::spawn(run_peer(
                Dialer {
                    id,
                    addr: addr.clone(),
                    tls: opts.tls.clone(),
                    greeting: greeting.clone(),
                    tls_failures: outbound_failures.clone(),
                },
                rx,
                unreachable.clone(),
            ));
        }
        let accept = Accept {
            cluster_id,
            node_id,
            peer_names: opts.peer_names.clone(),
            inbound,
            isolation: isolation.clone(),
            tls: opts.tls.clone(),
            tls_failures: tls_failures.with_label_values(&["inbound"]),
            warned: Mutex::new(HashMap::new()),
        };
        actix::spawn(accept.run(listener));
        Transport {
            peers: senders,
            isolation,
        }
    }

    /// Queues messages; returns the peers whose queue is full or unknown.
    pub fn send(&self, msgs: Vec<Message>, unreachable: &mut Vec<u64>) {
        if self.isolation.get() {
            return;
        }
        for m in msgs {
            let to = m.to;
            match self.peers.get(&to) {
                Some(tx) if tx.try_send(m).is_ok() => {}
                _ => unreachable.push(to),
            }
        }
    }
}

/// How to reach one peer.
struct Dialer {
    id: u64,
    addr: String,
    tls: PeerTls,
    greeting: Bytes,
    tls_failures: IntCounter,
}

enum ConnectError {
    /// TCP connect or write failed: the peer is down or unreachable.
    Io(std::io::Error),
    /// The TLS handshake or the peer certificate check failed.
    Tls(String),
}

async fn run_peer(
    dialer: Dialer,
    mut rx: mpsc::Receiver<Message>,
    unreachable: Recipient<PeerUnreachable>,
) {
    let (id, addr) = (dialer.id, dialer.addr.clone());
    let mut backoff = BACKOFF_MIN;
    // The last TLS failure logged at warn, and when: the reconnect loop would repeat it.
    let mut warned: Option<(String, Instant)> = None;
    loop {
        match dialer.connect().await {
            Ok(mut framed) => {
                backoff = BACKOFF_MIN;
                warned = None;
                debug!(peer = id, %addr, "connected to peer");
                if pump(&mut rx, &mut framed).await.is_none() {
                    return;
                }
                debug!(peer = id, %addr, "peer connection lost");
            }
            Err(ConnectError::Io(e)) => debug!(peer = id, %addr, "cannot reach peer: {e}"),
            Err(ConnectError::Tls(reason)) => {
                dialer.tls_failures.inc();
                let repeated = warned
                    .as_ref()
                    .is_some_and(|(r, at)| *r == reason && at.elapsed() < TLS_WARN_EVERY);
                if repeated {
                    debug!(peer = id, %addr, "refusing peer connection: {reason}");
                } else {
                    warn!(peer = id, %addr, "refusing peer connection: {reason}");
                    warned = Some((reason, Instant::now()));
                }
            }
        }
        unreachable.do_send(PeerUnreachable(id));
        // What queued while the peer was away is stale; raft sends again what matters.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if rx.is_closed() {
            return;
        }
    }
}

impl Dialer {
    /// TCP connect, TLS handshake and peer check, hello: each bounded in time.
    async fn connect(&self) -> Result<PeerWriter, ConnectError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                ConnectError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timeout",
                ))
            })?
            .map_err(ConnectError::Io)?;
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let stream = self
            .tls
            .connect(&self.addr, stream)
            .await
            .map_err(ConnectError::Tls)?;
        let mut framed = FramedWrite::new(stream, codec());
        tokio::time::timeout(CONNECT_TIMEOUT, framed.send(self.greeting.clone()))
            .await
            .map_err(|_| {
                ConnectError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "hello timeout",
                ))
            })?
            .map_err(ConnectError::Io)?;
        Ok(framed)
    }
}

/// Writes queued messages in batches until the connection fails (`Some`) or the transport
/// is dropped (`None`).
async fn pump(rx: &mut mpsc::Receiver<Message>, framed: &mut PeerWriter) -> Option<()> {
    loop {
        let first = rx.recv().await?;
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for m in batch {
            let Ok(bytes) = m.write_to_bytes() else {
                continue;
            };
            if framed.feed(Bytes::from(bytes)).await.is_err() {
                return Some(());
            }
        }
        if SinkExt::<Bytes>::flush(framed).await.is_err() {
            return Some(());
        }
    }
}

/// A raft message frame from a peer (untrusted bytes).
pub fn decode_message(frame: &[u8]) -> Result<Message, protobuf::ProtobufError> {
    Message::parse_from_bytes(frame)
}

struct Accept {
    cluster_id: u64,
    node_id: u64,
    peer_names: BTreeMap<u64, String>,
    inbound: Recipient<Inbound>,
    isolation: Isolation,
    tls: PeerTls,
    tls_failures: IntCounter,
    /// When a TLS refusal from an address was last logged at warn.
    warned: Mutex<HashMap<IpAddr, Instant>>,
}

impl Accept {
    async fn run(self, listener: TcpListener) {
        let this = Arc::new(self);
        loop {
            match listener.accept().await {
                Ok((stream, from)) => {
                    actix::spawn(this.clone().serve(stream, from));
                }
                Err(e) => {
                    warn!("peer listener: {e}");
                    tokio::time::sleep(BACKOFF_MIN).await;
                }
            }
        }
    }

    /// Logs a TLS refusal: at warn, but at most once per `TLS_WARN_EVERY` per address (a
    /// misconfigured peer retries every second).
    fn refused(&self, from: SocketAddr, reason: &str) {
        self.tls_failures.inc();
        let now = Instant::now();
        let loud = {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.len() > 1024 {
                warned.retain(|_, at| now.duration_since(*at) < TLS_WARN_EVERY);
            }
            match warned.get(&from.ip()) {
                Some(at) if now.duration_since(*at) < TLS_WARN_EVERY => false,
                _ => {
                    warned.insert(from.ip(), now);
                    true
                }
            }
        };
        if loud {
            warn!(%from, "refusing peer connection: {reason}");
        } else {
            debug!(%from, "refusing peer connection: {reason}");
        }
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, from: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let stream: server::TlsStream<TcpStream> = match self.tls.accept(stream).await {
            Ok(s) => s,
            Err(reason) => {
                self.refused(from, &reason);
                return;
            }
        };
        // The member name the peer's certificate was issued for (its CN).
        let certified = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crate::pki::identity::subject_of_der(c.as_ref()).ok())
            .map(|(cn, _)| cn);
        let mut framed = FramedRead::new(stream, codec());
        let Ok(Some(Ok(first))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next()).await
        else {
            debug!(%from, "peer connection closed before its hello");
            return;
        };
        let peer = match parse_hello(&first) {
            Some((cluster, peer)) if cluster == self.cluster_id => peer,
            Some((cluster, _)) => {
                warn!(%from, "refusing peer of another cluster (id {cluster:016x}, ours {:016x})", self.cluster_id);
                return;
            }
            None => {
                warn!(%from, "refusing peer connection without a valid hello");
                return;
            }
        };
        if certified.as_ref() != self.peer_names.get(&peer) {
            warn!(%from, "refusing peer: its hello claims id {peer} ({:?}) but its certificate names {certified:?}", self.peer_names.get(&peer));
            return;
        }
        while let Some(Ok(frame)) = framed.next().await {
            if self.isolation.get() {
                continue;
            }
            match decode_message(&frame) {
                Ok(m) if m.from == peer && m.to == self.node_id => self.inbound.do_send(Inbound(m)),
                Ok(m) => {
                    warn!(%from, "dropping message from {} to {} on the connection of {peer}", m.from, m.to)
                }
                Err(e) => {
                    warn!(%from, "undecodable peer message, closing: {e}");
                    return;
                }
            }
        }
    }
}
