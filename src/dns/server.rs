//! The hickory-server request handler: cluster names from the current snapshot, everything
//! else forwarded; every question answered once, counted and timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::CNAME;
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::forward::{self, Forwarder};
use super::lookup::Lookup;
use super::metrics::DnsMetrics;
use super::records::Snapshot;

/// How many CNAMEs an answer follows (ExternalName services pointing at each other).
const MAX_CHAIN: usize = 8;

/// What the handler and the `ClusterDns` actor share.
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Every watch has listed once; until then a missing name may only be one not seen yet.
    synced: AtomicBool,
    pub forwarder: Forwarder,
    pub metrics: DnsMetrics,
    /// Who is answered (`DnsOptions::clients`).
    clients: Vec<ipnet::IpNet>,
}

impl Shared {
    pub fn new(
        empty: Snapshot,
        forwarder: Forwarder,
        metrics: DnsMetrics,
        clients: Vec<ipnet::IpNet>,
    ) -> Self {
        Shared {
            snapshot: RwLock::new(Arc::new(empty)),
            synced: AtomicBool::new(false),
            forwarder,
            metrics,
            clients,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a whole Arc: a writer only ever swaps it.
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn publish(&self, snapshot: Snapshot, synced: bool) {
        let snapshot = Arc::new(snapshot);
        match self.snapshot.write() {
            Ok(mut s) => *s = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        self.synced.store(synced, Ordering::Release);
    }
}

pub struct QueryHandler(pub Arc<Shared>);

/// One answer, owned until it is encoded.
struct Answer {
    rcode: ResponseCode,
    authoritative: bool,
    truncated: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Answer {
    fn error(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            authoritative: false,
            truncated: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// An authoritative answer from the cluster zone.
    fn zone(rcode: ResponseCode, answers: Vec<Record>, soa: Option<Record>) -> Self {
        Answer {
            authoritative: true,
            answers,
            authorities: soa.into_iter().collect(),
            ..Answer::error(rcode)
        }
    }
}

fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

impl QueryHandler {
    async fn answer(&self, request: &Request) -> Answer {
        let src = request.src().ip();
        if !self.0.clients.iter().any(|net| net.contains(&src)) {
            return Answer::error(ResponseCode::Refused);
        }
        let meta = &request.metadata;
        if meta.message_type != MessageType::Query || meta.op_code != OpCode::Query {
            return Answer::error(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Answer::error(ResponseCode::BADVERS);
        }
        let Ok(info) = request.request_info() else {
            return Answer::error(ResponseCode::FormErr);
        };
        let query = info.query.original();
        if query.query_class() != DNSClass::IN {
            return self.forward(request).await;
        }
        let snap = self.0.snapshot();
        let qtype = query.query_type();
        let lookup = snap.lookup_from(query.name(), qtype, Some(request.src().ip()));
        if lookup != Lookup::Forward && !self.0.synced.load(Ordering::Acquire) {
            // Like CoreDNS before its first list: no claim that a name does not exist.
            return Answer::error(ResponseCode::ServFail);
        }
        match lookup {
            Lookup::Found {
                answers,
                additionals,
            } => {
                let answers = self.chase(&snap, answers, qtype).await;
                Answer {
                    additionals,
                    ..Answer::zone(ResponseCode::NoError, answers, None)
                }
            }
            Lookup::NoData => Answer::zone(ResponseCode::NoError, Vec::new(), snap.soa()),
            Lookup::NxDomain => Answer::zone(ResponseCode::NXDomain, Vec::new(), snap.soa()),
            Lookup::Forward => self.forward(request).await,
        }
    }

    /// Follows a final CNAME (an ExternalName service) to addresses, inside the zone or
    /// upstream, as CoreDNS does: stub resolvers do not chase CNAMEs themselves.
    async fn chase(
        &self,
        snap: &Snapshot,
        mut answers: Vec<Record>,
        qtype: RecordType,
    ) -> Vec<Record> {
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
            return answers;
        }
        for _ in 0..MAX_CHAIN {
            let Some(RData::CNAME(CNAME(target))) = answers.last().map(|r| &r.data) else {
                break;
            };
            let target = target.clone();
            match snap.lookup(&target, qtype) {
                Lookup::Found { answers: more, .. } => answers.extend(more),
                Lookup::Forward => {
                    self.0.metrics.forwarded.inc();
                    let Ok(question) = forward::question(&target, qtype) else {
                        break;
                    };
                    match self.0.forwarder.exchange(&question, false).await {
                        Ok(reply) => answers.extend(reply.answers),
                        Err(e) => debug!(%target, error = %e, "following a CNAME upstream"),
                    }
                    break;
                }
                _ => break,
            }
        }
        answers
    }

    async fn forward(&self, request: &Request) -> Answer {
        self.0.metrics.forwarded.inc();
        let tcp = request.protocol() == Protocol::Tcp;
        match self.0.forwarder.exchange(request.as_slice(), tcp).await {
            Ok(reply) => Answer {
                rcode: reply.metadata.response_code,
                authoritative: reply.metadata.authoritative,
                truncated: reply.metadata.truncation,
                answers: reply.answers,
                authorities: reply.authorities,
                additionals: reply.additionals,
            },
            Err(e) => {
                debug!(error = %e, "forwarding failed");
                Answer::error(ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for QueryHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let answer = self.answer(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.truncation = answer.truncated;
        metadata.recursion_available = true;
        metadata.response_code = answer.rcode;
        // EDNS is answered with EDNS; the client's payload size bounds a UDP answer.
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512)).set_version(0);
            e
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                warn!(src = %request.src(), error = %e, "sending a DNS answer");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        let m = &self.0.metrics;
        m.requests
            .with_label_values(&[rcode_label(answer.rcode)])
            .inc();
        m.duration.observe(start.elapsed().as_secs_f64());
        if tracing::enabled!(tracing::Level::DEBUG) {
            let q = request
                .queries
                .queries()
                .first()
                .map(|q| q.original().to_string());
            debug!(question = ?q, rcode = rcode_label(answer.rcode), elapsed = ?start.elapsed(), "dns");
        }
        info
    }
}
