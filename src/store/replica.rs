//! A store replica on its own thread and actix `System`: the unit that is started, stopped,
//! isolated and restarted, in the server and in tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix::prelude::*;
use prometheus::Registry;
use tokio::sync::watch;

use super::client::StoreClient;
use super::encryption::{Codec, TransformMetrics};
use super::error::StoreError;
use super::metrics::StoreMetrics;
use super::node::{GetStatus, Health, NodeOptions, NodeStatus, RaftNode};
use super::transport::{self, Isolation, Transport};

pub struct Replica {
    id: u64,
    system: System,
    thread: Option<JoinHandle<()>>,
    addr: Addr<RaftNode>,
    isolation: Isolation,
    health: Arc<Health>,
    client: StoreClient,
    exit: watch::Receiver<Option<i32>>,
}

impl Replica {
    /// Opens the data dir, binds the peer port and starts the replica. Metrics go to
    /// `registry`, which must not hold another replica's.
    pub fn start(
        opts: NodeOptions,
        listen: SocketAddr,
        registry: &Registry,
    ) -> Result<Self, StoreError> {
        let metrics = StoreMetrics::register(registry)?;
        let codec = match &opts.encryption {
            Some(t) => Some(Codec::new(
                t.clone(),
                Some(TransformMetrics::register(registry)?),
            )),
            None => None,
        };
        let tls_failures = metrics.peer_tls_handshake_failures.clone();
        let health = Arc::new(Health::default());
        let isolation = Isolation::default();
        let id = opts.id;
        let timeout = opts.request_timeout;
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let (exit_tx, exit) = watch::channel(None);
        let (h, iso) = (health.clone(), isolation.clone());
        let thread = std::thread::Builder::new()
            .name(format!("store-{id}"))
            .spawn(move || {
                let sys = System::new();
                let started = sys.block_on(async move {
                    let listener = transport::bind(listen)?;
                    let node = RaftNode::open(opts.clone(), metrics, h)?;
                    Ok::<_, StoreError>(RaftNode::create(move |ctx| {
                        let t = Transport::start(
                            &opts,
                            listener,
                            ctx.address().recipient(),
                            ctx.address().recipient(),
                            iso,
                            tls_failures,
                        );
                        node.attach(t)
                    }))
                });
                let code = match started {
                    Ok(addr) => {
                        let _ = started_tx.send(Ok((System::current(), addr)));
                        sys.run_with_code().unwrap_or(1)
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        1
                    }
                };
                let _ = exit_tx.send(Some(code));
            })?;
        let (system, addr) = started_rx
            .recv()
            .map_err(|_| StoreError::Storage("store thread ended while starting".into()))??;
        Ok(Self {
            id,
            system,
            thread: Some(thread),
            client: StoreClient::new(addr.clone(), timeout).with_codec(codec),
            addr,
            isolation,
            health,
            exit,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn client(&self) -> StoreClient {
        self.client.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Drops all traffic to and from this replica while on (a network partition).
    pub fn set_isolated(&self, on: bool) {
        self.isolation.set(on);
    }

    pub async fn status(&self) -> Result<NodeStatus, StoreError> {
        self.addr
            .send(GetStatus)
            .await
            .map_err(|_| StoreError::Stopped)
    }

    /// Resolves with the exit code once the replica stopped by itself (storage failure).
    pub async fn exited(&self) -> i32 {
        let mut rx = self.exit.clone();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                return 1;
            }
        }
    }

    /// Stops the replica's actor system and waits for its thread (all files closed).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown();
    }
}
