//! Forwarding of non-cluster questions to upstream resolvers: one plain DNS exchange over the
//! client's transport (as CoreDNS's `forward`: a truncated UDP answer goes back truncated and
//! the client retries over TCP), under a fresh message ID and one deadline for all upstreams.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::resolv::ResolvConf;
use super::DnsError;

/// The largest DNS message (TCP length prefix; UDP datagrams are smaller).
const MAX_MESSAGE: usize = 65_535;
/// The header: ID (2 bytes), flags (2), four counts.
const HEADER_LEN: usize = 12;

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Forwarder { upstreams, timeout }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` (a whole DNS message) to the upstreams in order until one answers within
    /// the timeout; the answer carries the query's own ID again.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Message, DnsError> {
        if self.upstreams.is_empty() {
            return Err(DnsError::NoUpstream);
        }
        if query.len() < HEADER_LEN {
            return Err(DnsError::Message("query shorter than a header".into()));
        }
        let original_id = u16::from_be_bytes([query[0], query[1]]);
        let deadline = Instant::now() + self.timeout;
        let mut last = DnsError::UpstreamTimeout;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // An upstream that fails at once leaves its share of the time to the next ones.
            let left = u32::try_from(self.upstreams.len() - i).unwrap_or(1);
            let budget = (deadline - now) / left;
            // A fresh, random ID: clients' IDs can be guessable, and upstream answers are
            // matched on it.
            let id: u16 = rand::random();
            let mut msg = query.to_vec();
            msg[..2].copy_from_slice(&id.to_be_bytes());
            let exchange = async {
                if tcp {
                    tcp_exchange(*upstream, &msg, id).await
                } else {
                    udp_exchange(*upstream, &msg, id).await
                }
            };
            match tokio::time::timeout(budget, exchange).await {
                Ok(Ok(bytes)) => match Message::from_vec(&bytes) {
                    Ok(mut answer) => {
                        answer.metadata.id = original_id;
                        return Ok(answer);
                    }
                    Err(e) => last = DnsError::Message(format!("from {upstream}: {e}")),
                },
                Ok(Err(e)) => {
                    debug!(%upstream, error = %e, "upstream exchange failed");
                    last = e;
                }
                Err(_) => {
                    debug!(%upstream, ?budget, "upstream did not answer in time");
                    last = DnsError::UpstreamTimeout;
                }
            }
        }
        Err(last)
    }
}

/// Whether `bytes` is a response carrying `id`.
fn answers(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= HEADER_LEN
        && u16::from_be_bytes([bytes[0], bytes[1]]) == id
        && bytes[2] & 0x80 != 0
}

async fn udp_exchange(upstream: SocketAddr, msg: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
    let io = |e| DnsError::Upstream(upstream, e);
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: datagrams from other addresses are not delivered to this socket.
    socket.connect(upstream).await.map_err(io)?;
    socket.send(msg).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // Anything else (a late answer to an earlier ID, garbage) is dropped; the caller's
        // deadline bounds the wait.
        if answers(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, msg: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
    let io = |e| DnsError::Upstream(upstream, e);
    let len = u16::try_from(msg.len())
        .map_err(|_| DnsError::Message("query longer than a DNS message".into()))?;
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    if !answers(&buf, id) {
        return Err(DnsError::Message(format!(
            "{upstream} answered another question"
        )));
    }
    Ok(buf)
}

/// A recursive question for `name`/`qtype` (to follow a CNAME out of the cluster zone).
pub fn question(name: &Name, qtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), qtype));
    msg.to_vec().map_err(|e| DnsError::Message(e.to_string()))
}

/// An upstream as configured: `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_upstream(s: &str) -> Result<SocketAddr, DnsError> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse()
        .map_err(|_| DnsError::Config(format!("dns.upstream: {s:?} is not IP or IP:PORT")))
}

/// The upstreams: the configured ones, else the nameservers of `host` (the node's
/// resolv.conf) that are not this server itself (`exclude`: its listener and the DNS service
/// address that leads back to it).
pub fn upstreams(
    configured: &[String],
    host: &ResolvConf,
    exclude: &[SocketAddr],
) -> Result<Vec<SocketAddr>, DnsError> {
    if !configured.is_empty() {
        return configured.iter().map(|s| parse_upstream(s)).collect();
    }
    Ok(host
        .nameservers
        .iter()
        // Scoped (`fe80::1%eth0`) and malformed entries cannot be dialled as written.
        .filter_map(|ns| parse_upstream(ns).ok())
        .filter(|a| !exclude.contains(a))
        .collect())
}
