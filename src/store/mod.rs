//! The Raft-replicated state store that replaces etcd (raft-rs + raft-engine).

mod client;
pub mod datadir;
pub mod encryption;
mod error;
mod local;
mod logger;
mod loopback_ports;
mod metrics;
mod node;
pub mod peer_tls;
mod pending;
mod replica;
mod snapshot;
mod state_machine;
mod storage;
pub mod transport;
mod watch;

pub use client::{Consistency, ListResult, StoreClient};
pub use error::StoreError;
pub use local::LocalCluster;
pub use loopback_ports::free_loopback_ports;
pub use node::{Health, NodeOptions, NodeStatus};
pub use peer_tls::PeerTls;
pub use replica::Replica;
pub use state_machine::{Event, EventKind, KeyValue, Op, OpResult, TxnResponse};
pub use watch::WatchStream;
