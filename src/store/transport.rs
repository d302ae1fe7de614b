//! Peer transport: one persistent outbound TCP connection per peer carrying length-delimited
//! protobuf raft `Message`s. Every connection opens with a hello frame naming the cluster id
//! and the sender; a peer of another cluster is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::error::StoreError;

const MAGIC: &[u8; 8] = b"SKIFFRP1";
const QUEUE_PER_PEER: usize = 8192;
const MAX_FRAME: usize = 512 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Starts the listener and one sender task per peer on the current (actix) runtime.
    pub fn start(
        cluster_id: u64,
        node_id: u64,
        peers: &BTreeMap<u64, String>,
        listener: TcpListener,
        inbound: Recipient<Inbound>,
        unreachable: Recipient<PeerUnreachable>,
        isolation: Isolation,
    ) -> Self {
        let greeting = hello(cluster_id, node_id);
        let mut senders = BTreeMap::new();
        for (&id, addr) in peers.iter().filter(|(&id, _)| id != node_id) {
            let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
            senders.insert(id, tx);
            actix::spawn(run_peer(
                id,
                addr.clone(),
                rx,
                greeting.clone(),
                unreachable.clone(),
            ));
        }
        let accept = Accept {
            cluster_id,
            node_id,
            inbound,
            isolation: isolation.clone(),
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

async fn run_peer(
    id: u64,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    greeting: Bytes,
    unreachable: Recipient<PeerUnreachable>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(&addr, &greeting).await {
            Ok(mut framed) => {
                backoff = BACKOFF_MIN;
                debug!(peer = id, %addr, "connected to peer");
                if pump(&mut rx, &mut framed).await.is_none() {
                    return;
                }
                debug!(peer = id, %addr, "peer connection lost");
            }
            Err(e) => debug!(peer = id, %addr, "cannot reach peer: {e}"),
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

async fn connect(
    addr: &str,
    greeting: &Bytes,
) -> std::io::Result<FramedWrite<TcpStream, LengthDelimitedCodec>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
    stream.set_nodelay(true)?;
    let mut framed = FramedWrite::new(stream, codec());
    framed.send(greeting.clone()).await?;
    Ok(framed)
}

/// Writes queued messages in batches until the connection fails (`Some`) or the transport
/// is dropped (`None`).
async fn pump(
    rx: &mut mpsc::Receiver<Message>,
    framed: &mut FramedWrite<TcpStream, LengthDelimitedCodec>,
) -> Option<()> {
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
    inbound: Recipient<Inbound>,
    isolation: Isolation,
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

    async fn serve(self: Arc<Self>, stream: TcpStream, from: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut framed = FramedRead::new(stream, codec());
        let Some(Ok(first)) = framed.next().await else {
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
