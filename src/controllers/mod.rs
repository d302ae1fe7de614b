//! Controllers: actix actors fed by kube-rs informers over the API, run only on the replica
//! that is the Raft leader (the controller manager starts and stops them with leadership).

mod claim;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod expectations;
mod gc;
mod job;
mod loadbalancer;
mod namespace;
mod nodeipam;
mod nodelifecycle;
pub mod pods;
mod replicaset;
mod revisions;
pub mod runtime;
mod serviceaccount;
mod shared;
mod statefulset;
pub mod volumes;

pub use loadbalancer::held as loadbalancer_ips;
pub use shared::{obj_ref, Shared};

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use crate::store::Health;

/// Settings of the controllers (from the `[controllers]` config section).
#[derive(Clone)]
pub struct ControllerOptions {
    /// The API every controller talks to (this replica's), and as whom.
    pub api: crate::pki::client::Access,
    pub workers: usize,
    pub resync: Duration,
    /// A node silent for longer is NotReady and tainted unreachable.
    pub node_grace: Duration,
    /// Node pod subnets: (cluster CIDR, prefix length of a node's subnet), if allocated.
    pub node_cidrs: Option<(ipnet::Ipv4Net, u8)>,
    /// Addresses for LoadBalancer services (`services.load_balancer_pool`).
    pub lb_pool: Vec<std::net::Ipv4Addr>,
    /// Testing knob: the CronJob controller's clock runs this many times faster than real
    /// time (its "now" is start + real elapsed × speed; 60 makes a cron minute pass in a
    /// second). 1.0 in production; only the CronJob controller uses it.
    pub cronjob_clock_speed: f64,
}

fn run<R: runtime::Reconciler>(
    r: std::rc::Rc<R>,
    sources: Vec<futures_util::stream::LocalBoxStream<'static, String>>,
    opts: &ControllerOptions,
) {
    let mut ctl = runtime::Controller::new(r, opts.workers, opts.resync);
    for s in sources {
        ctl = ctl.watch(s);
    }
    ctl.start();
}

/// Starts the controllers of one leadership term on their own arbiter.
fn start_term(opts: ControllerOptions, arbiter: &Arbiter) -> bool {
    arbiter.spawn(async move {
        let client = match opts.api.kube_client() {
            Ok(c) => c,
            Err(e) => {
                warn!("controllers: API client: {e}");
                return;
            }
        };
        let shared = Shared::start(client);
        shared.ready().await;
        for flavor in [
            replicaset::Flavor::ReplicaSet,
            replicaset::Flavor::ReplicationController,
        ] {
            let rs = replicaset::ReplicaSetController::new(shared.clone(), flavor);
            run(rs.clone(), rs.sources(), &opts);
        }
        let d = deployment::DeploymentController::new(shared.clone());
        run(d.clone(), d.sources(), &opts);
        let nl = nodelifecycle::NodeLifecycle::new(shared.clone(), opts.node_grace);
        run(nl.clone(), nl.sources(), &opts);
        if let Some((cluster, mask)) = opts.node_cidrs {
            let ipam = nodeipam::NodeIpam::new(shared.clone(), cluster, mask);
            run(ipam.clone(), ipam.sources(), &opts);
        }
        let ep = endpoints::EndpointsController::new(shared.clone());
        run(ep.clone(), ep.sources(), &opts);
        let lb = loadbalancer::LoadBalancerController::new(shared.clone(), opts.lb_pool.clone());
        run(lb.clone(), lb.sources(), &opts);
        let ds = daemonset::DaemonSetController::new(shared.clone());
        run(ds.clone(), ds.sources(), &opts);
        let job = job::JobController::new(shared.clone());
        run(job.clone(), job.sources(), &opts);
        let cj = cronjob::CronJobController::new(shared.clone(), opts.cronjob_clock_speed);
        run(cj.clone(), cj.sources(), &opts);
        let sts = statefulset::StatefulSetController::new(shared.clone());
        run(sts.clone(), sts.sources(), &opts);
        let pv = volumes::VolumeController::new(shared.clone());
        run(pv.clone(), pv.sources(), &opts);
        let sa = serviceaccount::ServiceAccountController::new(shared.clone());
        run(sa.clone(), sa.sources(), &opts);
        let ca = serviceaccount::RootCaPublisher::new(shared.clone(), opts.api.ca_pem.clone());
        run(ca.clone(), ca.sources(), &opts);
        let ns = namespace::NamespaceController::new(shared.clone());
        run(ns.clone(), ns.sources(), &opts);
        let gc = gc::GarbageCollector::new(shared.clone());
        run(gc.clone(), gc.sources(), &opts);
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
