//! The CronJob controller (batch/v1): starts a Job for each run of a cron schedule (in
//! `timeZone`), within startingDeadlineSeconds, as concurrencyPolicy allows, unless
//! suspended; keeps `status.active`, lastScheduleTime and lastSuccessfulTime; prunes finished
//! Jobs beyond the history limits; wakes up at the next run.

mod clock;
mod history;
mod policy;
mod schedule;
mod status;
mod sync;
mod template;

use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use kube::ResourceExt;

use super::pods::controller_of;
use super::runtime::{key, ReconcileResult, Reconciler};
use super::shared::Shared;
use clock::Clock;

pub struct CronJobController {
    shared: Arc<Shared>,
    clock: Clock,
}

impl CronJobController {
    /// `clock_speed`: the testing knob of `ControllerOptions::cronjob_clock_speed` (1.0 real).
    pub fn new(shared: Arc<Shared>, clock_speed: f64) -> Rc<Self> {
        Rc::new(CronJobController {
            shared,
            clock: Clock::new(clock_speed),
        })
    }

    /// Keys: CronJob changes, and Job changes mapped to their controlling CronJob.
    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        let own = self
            .shared
            .cronjobs
            .changes()
            .map(|c| key(c.obj.namespace().as_deref(), &c.obj.name_any()));
        let jobs = self.shared.jobs.changes().filter_map(|c| {
            let owner = controller_of(&c.obj.metadata)
                .filter(|o| o.kind == "CronJob")
                .map(|o| key(c.obj.namespace().as_deref(), &o.name));
            futures_util::future::ready(owner)
        });
        vec![own.boxed_local(), jobs.boxed_local()]
    }
}

impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .cronjobs
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
