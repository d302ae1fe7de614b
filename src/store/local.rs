//! Several replicas in one process over real loopback TCP (mutual TLS with a throwaway CA)
//! and real data dirs: the store as tests and benchmarks run it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::encryption::Transformer;
use super::loopback_ports::free_loopback_ports;
use super::peer_tls::ThrowawayCa;
use super::{NodeOptions, NodeStatus, Replica, StoreClient, StoreError};

pub struct LocalCluster {
    pub opts: Vec<NodeOptions>,
    addrs: Vec<SocketAddr>,
    replicas: Vec<Option<Replica>>,
    registries: Vec<prometheus::Registry>,
    ca: ThrowawayCa,
}

impl LocalCluster {
    /// Starts `n` replicas with data dirs under `dir`; `tweak` adjusts every replica's options.
    /// Each replica gets a peer certificate (O=skiff:servers, for 127.0.0.1 and localhost)
    /// of a CA made for this cluster.
    pub fn start(
        n: usize,
        dir: &Path,
        tweak: impl Fn(&mut NodeOptions),
    ) -> Result<Self, StoreError> {
        let ca = ThrowawayCa::generate("skiff local cluster CA")?;
        let addrs: Vec<SocketAddr> = free_loopback_ports(n)?
            .into_iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let peers: BTreeMap<u64, String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.to_string()))
            .collect();
        // One generated key for the whole cluster: any replica's client decrypts what
        // another's encrypted.
        let encryption = Some(Arc::new(Transformer::generate()?));
        let opts: Vec<NodeOptions> = (0..n)
            .map(|i| {
                let tls = ca.loopback_peer_tls(&format!("n{}", i + 1))?;
                let mut o = NodeOptions {
                    id: i as u64 + 1,
                    cluster_id: 0x5eed,
                    peers: peers.clone(),
                    peer_names: (1..=n as u64).map(|id| (id, format!("n{id}"))).collect(),
                    data_dir: dir.join(format!("n{}", i + 1)),
                    tick: Duration::from_millis(100),
                    election_ticks: 10,
                    heartbeat_ticks: 1,
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 512,
                    snapshot_interval: 100_000,
                    snapshot_catchup_entries: 5_000,
                    request_timeout: Duration::from_secs(5),
                    watch_history: 10_000,
                    tolerate_tail_corruption: false,
                    encryption: encryption.clone(),
                    tls,
                };
                tweak(&mut o);
                Ok(o)
            })
            .collect::<Result<_, StoreError>>()?;
        let mut c = LocalCluster {
            opts,
            addrs,
            replicas: (0..n).map(|_| None).collect(),
            registries: (0..n).map(|_| prometheus::Registry::new()).collect(),
            ca,
        };
        for i in 0..n {
            c.start_replica(i)?;
        }
        Ok(c)
    }

    pub fn size(&self) -> usize {
        self.replicas.len()
    }

    pub fn start_replica(&mut self, i: usize) -> Result<(), StoreError> {
        let registry = prometheus::Registry::new();
        self.replicas[i] = Some(Replica::start(
            self.opts[i].clone(),
            self.addrs[i],
            &registry,
        )?);
        self.registries[i] = registry;
        Ok(())
    }

    /// The metrics of replica `i` (of its latest start).
    pub fn registry(&self, i: usize) -> &prometheus::Registry {
        &self.registries[i]
    }

    /// The CA the replicas' peer certificates come from.
    pub fn ca(&self) -> &ThrowawayCa {
        &self.ca
    }

    pub fn stop_replica(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            r.stop();
        }
    }

    /// The running replica `i`. Panics if it is stopped: a harness misuse.
    pub fn replica(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("replica is running")
    }

    pub fn client(&self, i: usize) -> StoreClient {
        self.replica(i).client()
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|&i| self.replicas[i].is_some())
            .collect()
    }

    pub async fn status(&self, i: usize) -> Result<NodeStatus, StoreError> {
        self.replica(i).status().await
    }

    /// Waits until the live replicas in `among` agree on a leader that is one of them.
    pub async fn leader_among(&self, among: &[usize], within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut seen = Vec::new();
            for &i in among {
                if let Ok(s) = self.replica(i).status().await {
                    seen.push(s);
                }
            }
            if let Some(l) = seen.iter().find(|s| s.is_leader) {
                let agreed = seen.iter().all(|s| s.leader_id == l.id && s.term == l.term);
                if agreed && seen.len() == among.len() {
                    return Some(l.id as usize - 1);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn leader(&self, within: Duration) -> Option<usize> {
        self.leader_among(&self.live(), within).await
    }

    /// Waits until every live replica has applied what the leader has committed.
    pub async fn converged(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut st = Vec::new();
            for i in self.live() {
                if let Ok(s) = self.status(i).await {
                    st.push(s);
                }
            }
            if let Some(l) = st.iter().find(|s| s.is_leader) {
                if st.len() == self.live().len()
                    && st
                        .iter()
                        .all(|s| s.applied_index >= l.commit_index && s.revision == l.revision)
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}
