//! The node half of the `local-path` StorageClass (the way k3s's local-path provisioner
//! works, without helper pods): claims the scheduler placed on this node get a directory under
//! `<state_dir>/storage` and a PersistentVolume pinned to this node; released volumes under
//! the Delete policy lose their directory and object. The `LocalPath` actor follows claims,
//! volumes and classes through watches and reconciles after changes and every 30 s.

mod provision;
mod reclaim;

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tracing::warn;

/// What the provisioner works from.
#[derive(Clone)]
pub struct View {
    pub client: Client,
    pub node: String,
    /// Where volume directories go.
    pub root: PathBuf,
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

pub struct LocalPath {
    view: View,
    writers: Option<(
        reflector::store::Writer<PersistentVolumeClaim>,
        reflector::store::Writer<PersistentVolume>,
        reflector::store::Writer<StorageClass>,
    )>,
    /// Initial lists done, per watch: nothing is decided on a partial view.
    listed: [bool; 3],
    running: bool,
    again: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Changed {
    watch: usize,
    listed: bool,
}

impl LocalPath {
    pub fn new(client: Client, node: String, root: PathBuf) -> Self {
        let (claims, c) = reflector::store();
        let (volumes, v) = reflector::store();
        let (classes, s) = reflector::store();
        LocalPath {
            view: View {
                client,
                node,
                root,
                claims,
                volumes,
                classes,
            },
            writers: Some((c, v, s)),
            listed: [false; 3],
            running: false,
            again: false,
        }
    }

    fn watch<K>(&self, writer: reflector::store::Writer<K>, i: usize, ctx: &mut Context<Self>)
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = Api::all(self.view.client.clone());
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .map(move |ev| Changed {
                watch: i,
                listed: matches!(ev, Ok(watcher::Event::InitDone)),
            });
        ctx.add_stream(events);
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if self.listed.contains(&false) {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let view = self.view.clone();
        let fut = async move {
            if let Err(e) = provision::run(&view).await {
                warn!("local-path provisioning: {e}");
            }
            if let Err(e) = reclaim::run(&view).await {
                warn!("local-path reclaim: {e}");
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.running = false;
            if std::mem::take(&mut act.again) {
                act.sync(ctx);
            }
        }));
    }
}

impl Actor for LocalPath {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some((c, v, s)) = self.writers.take() {
            self.watch(c, 0, ctx);
            self.watch(v, 1, ctx);
            self.watch(s, 2, ctx);
        }
        ctx.run_interval(Duration::from_secs(30), |act, ctx| act.sync(ctx));
    }
}

impl StreamHandler<Changed> for LocalPath {
    fn handle(&mut self, c: Changed, ctx: &mut Context<Self>) {
        if c.listed {
            self.listed[c.watch] = true;
        }
        self.sync(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        warn!("local-path provisioner: a watch ended");
    }
}
