//! The controller actor: keys from informer changes and periodic resyncs go into a work
//! queue; up to `workers` level-triggered reconciles run at once, never two for one key;
//! a failed reconcile is retried with per-key back-off, a reconcile may ask to run again later.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use thiserror::Error;
use tracing::{debug, warn};

use super::queue::WorkQueue;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// `Ok(Some(d))`: reconcile this key again after `d` (waiting on time, not on a change).
pub type ReconcileResult = Result<Option<Duration>, ReconcileError>;

pub trait Reconciler: 'static {
    fn name(&self) -> &'static str;
    /// Every key, for a resync.
    fn keys(&self) -> Vec<String>;
    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult>;
}

/// How often delayed keys are checked. One timer for all of them: actix polls every timer
/// of an actor on each wake-up, so a timer per requeue would make busy controllers quadratic.
const DELAY_TICK: Duration = Duration::from_millis(100);

pub struct Controller<R: Reconciler> {
    r: Rc<R>,
    queue: WorkQueue,
    /// Keys to reconcile again at a time (the earliest asked for wins).
    delayed: HashMap<String, Instant>,
    workers: usize,
    running: usize,
    resync: Duration,
    sources: Vec<LocalBoxStream<'static, String>>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(r: Rc<R>, workers: usize, resync: Duration) -> Self {
        Controller {
            r,
            queue: WorkQueue::default(),
            delayed: HashMap::new(),
            workers: workers.max(1),
            running: 0,
            resync,
            sources: Vec::new(),
        }
    }

    /// Adds a stream of keys to reconcile (usually mapped from informer changes).
    pub fn watch(mut self, keys: impl futures_util::Stream<Item = String> + 'static) -> Self {
        self.sources.push(Box::pin(keys));
        self
    }

    fn enqueue(&mut self, key: String, ctx: &mut Context<Self>) {
        self.queue.add(key);
        self.pump(ctx);
    }

    fn enqueue_after(&mut self, key: String, after: Duration) {
        let due = Instant::now() + after;
        let at = self.delayed.entry(key).or_insert(due);
        if due < *at {
            *at = due;
        }
    }

    fn release_due(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let due: Vec<String> = self
            .delayed
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.delayed.remove(&key);
            self.queue.add(key);
        }
        self.pump(ctx);
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.running < self.workers {
            let Some(key) = self.queue.next() else { return };
            self.running += 1;
            let fut = self.r.clone().reconcile(key.clone());
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                act.running -= 1;
                act.queue.done(&key);
                match res {
                    Ok(None) => act.queue.forget(&key),
                    Ok(Some(after)) => {
                        act.queue.forget(&key);
                        act.enqueue_after(key, after);
                    }
                    Err(e) => {
                        let after = act.queue.backoff(&key);
                        if matches!(&e, ReconcileError::Api(kube::Error::Api(s)) if s.code == 409) {
                            debug!(controller = act.r.name(), %key, "conflict, retrying: {e}");
                        } else {
                            warn!(controller = act.r.name(), %key, "reconcile failed (retry in {after:?}): {e}");
                        }
                        act.enqueue_after(key, after);
                    }
                }
                act.pump(ctx);
            }));
        }
    }
}

impl<R: Reconciler> Actor for Controller<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for s in self.sources.drain(..) {
            ctx.add_stream(s);
        }
        for key in self.r.keys() {
            self.queue.add(key);
        }
        self.pump(ctx);
        ctx.run_interval(DELAY_TICK, |act, ctx| act.release_due(ctx));
        ctx.run_interval(self.resync, |act, ctx| {
            for key in act.r.keys() {
                act.queue.add(key);
            }
            act.pump(ctx);
        });
    }
}

impl<R: Reconciler> StreamHandler<String> for Controller<R> {
    fn handle(&mut self, key: String, ctx: &mut Context<Self>) {
        self.enqueue(key, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // An informer ended (its arbiter is stopping): nothing to do, resync covers the rest.
    }
}

/// `namespace/name`, the work-queue key of a namespaced object.
pub fn key(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Splits a key into (namespace, name).
pub fn split(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}
