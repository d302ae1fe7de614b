//! For actors that rebuild from several reflector stores (the service proxy, the local-path
//! provisioner): every event of store `watch` as a `StoreChanged` note, with `listed` set
//! once its initial list is in the store (nothing should be decided on a partial view).

use actix::Message;
use futures_util::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreChanged {
    pub watch: usize,
    pub listed: bool,
}

/// Watches every `K` into `writer`, noting each event as a change of store `watch`.
pub fn changes<K>(
    client: &Client,
    writer: Writer<K>,
    watch: usize,
) -> impl Stream<Item = StoreChanged> + use<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(move |ev| StoreChanged {
            watch,
            listed: matches!(ev, Ok(watcher::Event::InitDone)),
        })
}
