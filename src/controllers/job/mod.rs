//! The Job controller (batch/v1): runs pods from `spec.template` to `completions` successes
//! with `parallelism` at once, backing off after failures up to `backoffLimit`, within
//! `activeDeadlineSeconds`, in NonIndexed or Indexed mode, suspendable; deletes finished Jobs
//! after `ttlSecondsAfterFinished`. Status through the status subresource, as upstream.

mod backoff;
mod indexed;
mod manage;
mod status;
mod sync;
mod template;
mod ttl;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use kube::ResourceExt;

use super::claim::orphan_owners;
use super::expectations::Expectations;
use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;

pub struct JobController {
    shared: Arc<Shared>,
    expectations: RefCell<Expectations>,
}

impl JobController {
    pub fn new(shared: Arc<Shared>) -> Rc<Self> {
        Rc::new(JobController {
            shared,
            expectations: RefCell::new(Expectations::default()),
        })
    }

    /// Keys to reconcile: Job changes, and pod changes mapped to their controlling Job
    /// (lowering the expectations of creations and deletions on the way).
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let own = self
            .shared
            .jobs
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let me = self.clone();
        let pods = self.shared.pods.changes().flat_map(move |c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == "Job" && o.api_version.starts_with("batch/"))
                .map(|o| key(c.obj.namespace().as_deref(), &o.name));
            if let (Some(k), Some(uid)) = (&owner, c.obj.uid()) {
                let gone = c.deleted || c.obj.metadata.deletion_timestamp.is_some();
                me.expectations.borrow_mut().observed(k, &uid, gone);
            }
            let keys = match owner {
                Some(k) => vec![k],
                None if c.deleted => Vec::new(),
                None => {
                    let jobs = me.shared.jobs.store.state();
                    orphan_owners(&jobs, &c.obj.metadata, |j| {
                        j.spec.as_ref().and_then(|s| s.selector.as_ref())
                    })
                }
            };
            futures_util::stream::iter(keys)
        });
        vec![own.boxed_local(), pods.boxed_local()]
    }
}

impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .jobs
            .store
            .state()
            .iter()
            .map(|o| key(o.namespace().as_deref(), &o.name_any()))
            .collect()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move { sync::sync(&self, &key).await })
    }
}
