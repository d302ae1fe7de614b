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
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::Client;
use tracing::warn;

use crate::reflect::{self, StoreChanged};

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
            ctx.add_stream(reflect::changes(&self.view.client, c, 0));
            ctx.add_stream(reflect::changes(&self.view.client, v, 1));
            ctx.add_stream(reflect::changes(&self.view.client, s, 2));
        }
        ctx.run_interval(Duration::from_secs(30), |act, ctx| act.sync(ctx));
    }
}

impl StreamHandler<StoreChanged> for LocalPath {
    fn handle(&mut self, c: StoreChanged, ctx: &mut Context<Self>) {
        if c.listed {
            self.listed[c.watch] = true;
        }
        self.sync(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        warn!("local-path provisioner: a watch ended");
    }
}
