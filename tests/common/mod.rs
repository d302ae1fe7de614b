//! The store's in-process cluster with a temporary home, plus polling helpers.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use skiff::store::{LocalCluster, NodeOptions, NodeStatus, StoreClient};
use tempfile::TempDir;

pub struct Cluster {
    inner: LocalCluster,
    _dir: TempDir,
}

impl Cluster {
    pub fn start(n: usize, tweak: impl Fn(&mut NodeOptions)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = LocalCluster::start(n, dir.path(), tweak).expect("start cluster");
        Cluster { inner, _dir: dir }
    }

    pub fn start_replica(&mut self, i: usize) {
        self.inner.start_replica(i).expect("start replica");
    }

    pub fn client(&self, i: usize) -> StoreClient {
        self.inner.client(i)
    }

    pub async fn status(&self, i: usize) -> NodeStatus {
        self.inner.status(i).await.expect("status")
    }

    pub async fn leader(&self) -> usize {
        self.inner
            .leader(Duration::from_secs(10))
            .await
            .expect("a leader within 10 s")
    }
}

impl Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.inner
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.inner
    }
}

/// Polls `cond` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
