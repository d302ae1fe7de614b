//! Controllers: actix actors fed by kube-rs informers over the API, run only on the replica
//! that is the Raft leader (the controller manager starts and stops them with leadership).

mod deployment;
mod gc;
mod nodelifecycle;
pub mod pods;
mod replicaset;
pub mod runtime;
mod shared;

pub use shared::{obj_ref, Shared};

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use crate::store::Health;

/// Settings of the controllers (from the `[controllers]` config section).
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The API every controller talks to (this replica's).
    pub api_url: String,
    pub workers: usize,
    pub resync: Duration,
    /// A node silent for longer is NotReady and tainted unreachable.
    pub node_grace: Duration,
}

/// Starts the controllers of one leadership term on their own arbiter.
fn start_term(opts: ControllerOptions, arbiter: &Arbiter) -> bool {
    arbiter.spawn(async move {
        let url = match opts.api_url.parse() {
            Ok(u) => u,
            Err(e) => {
                warn!("controllers: bad API URL {}: {e}", opts.api_url);
                return;
            }
        };
        let client = match kube::Client::try_from(kube::Config::new(url)) {
            Ok(c) => c,
            Err(e) => {
                warn!("controllers: API client: {e}");
                return;
            }
        };
        let shared = Shared::start(client);
        shared.ready().await;
        let rs = replicaset::ReplicaSetController::new(shared.clone());
        let mut ctl = runtime::Controller::new(rs.clone(), opts.workers, opts.resync);
        for s in rs.sources() {
            ctl = ctl.watch(s);
        }
        ctl.start();
        let d = deployment::DeploymentController::new(shared.clone());
        let mut ctl = runtime::Controller::new(d.clone(), opts.workers, opts.resync);
        for s in d.sources() {
            ctl = ctl.watch(s);
        }
        ctl.start();
        let nl = nodelifecycle::NodeLifecycle::new(shared.clone(), opts.node_grace);
        let mut ctl = runtime::Controller::new(nl.clone(), opts.workers, opts.resync);
        for s in nl.sources() {
            ctl = ctl.watch(s);
        }
        ctl.start();
        let gc = gc::GarbageCollector::new(shared.clone());
        let mut ctl = runtime::Controller::new(gc.clone(), opts.workers, opts.resync);
        for s in gc.sources() {
            ctl = ctl.watch(s);
        }
        ctl.start();
        crate::scheduler::Scheduler::new(shared.clone()).start();
        info!("controllers and scheduler started");
    })
}

/// Watches this replica's leadership and runs the controllers while it leads.
pub struct ControllerManager {
    health: Arc<Health>,
    opts: ControllerOptions,
    term: Option<Arbiter>,
}

impl ControllerManager {
    pub fn new(health: Arc<Health>, opts: ControllerOptions) -> Self {
        ControllerManager {
            health,
            opts,
            term: None,
        }
    }

    fn check(&mut self) {
        match (self.health.is_leader(), self.term.is_some()) {
            (true, false) => {
                info!("this replica leads: starting controllers");
                let arbiter = Arbiter::new();
                if start_term(self.opts.clone(), &arbiter) {
                    self.term = Some(arbiter);
                }
            }
            (false, true) => {
                info!("this replica no longer leads: stopping controllers");
                if let Some(a) = self.term.take() {
                    a.stop();
                }
            }
            _ => {}
        }
    }
}

impl Actor for ControllerManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(250), |act, _| act.check());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(a) = self.term.take() {
            a.stop();
        }
    }
}
