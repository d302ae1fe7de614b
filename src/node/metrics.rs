//! Node agent metrics: running pods and containers, pod start latency, and per-container CPU
//! and memory read from the containers' cgroups at scrape time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry};

/// Running containers of one pod: (container name, runc id).
#[derive(Clone, Debug, Default)]
pub struct PodUsage {
    pub namespace: String,
    pub pod: String,
    pub containers: Vec<(String, String)>,
}

/// Workers publish their running containers here; scrapes read it.
pub type UsageTable = Arc<Mutex<BTreeMap<String, PodUsage>>>;

pub struct KubeletMetrics {
    pub pod_start: Histogram,
    pub usage: UsageTable,
}

struct ContainerCollector {
    usage: UsageTable,
    node: String,
    descs: Vec<Desc>,
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// (CPU seconds, working-set bytes) of the container's cgroup, v2 or v1.
fn cgroup_usage(node: &str, id: &str) -> Option<(f64, f64)> {
    let rel = format!("skiff/{node}/{id}");
    let v2 = format!("/sys/fs/cgroup/{rel}");
    if std::path::Path::new(&format!("{v2}/cgroup.controllers")).exists() {
        let cpu = stat_field(&format!("{v2}/cpu.stat"), "usage_usec")? as f64 / 1e6;
        let mem = read_u64(&format!("{v2}/memory.current")).unwrap_or(0);
        let inactive = stat_field(&format!("{v2}/memory.stat"), "inactive_file").unwrap_or(0);
        return Some((cpu, mem.saturating_sub(inactive) as f64));
    }
    let cpu = read_u64(&format!("/sys/fs/cgroup/cpuacct/{rel}/cpuacct.usage"))? as f64 / 1e9;
    let mem = read_u64(&format!(
        "/sys/fs/cgroup/memory/{rel}/memory.usage_in_bytes"
    ))
    .unwrap_or(0);
    let inactive = stat_field(
        &format!("/sys/fs/cgroup/memory/{rel}/memory.stat"),
        "total_inactive_file",
    )
    .unwrap_or(0);
    Some((cpu, mem.saturating_sub(inactive) as f64))
}

fn families(
    node: &str,
    usage: &BTreeMap<String, PodUsage>,
) -> prometheus::Result<Vec<MetricFamily>> {
    let pods = IntGauge::new(
        "kubelet_running_pods",
        "Number of pods that have a running container",
    )?;
    let containers = IntGaugeVec::new(
        Opts::new(
            "kubelet_running_containers",
            "Number of containers currently running",
        ),
        &["container_state"],
    )?;
    let labels = ["namespace", "pod", "container"];
    let cpu = CounterVec::new(
        Opts::new(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds",
        ),
        &labels,
    )?;
    let mem = prometheus::GaugeVec::new(
        Opts::new(
            "container_memory_working_set_bytes",
            "Current working set in bytes",
        ),
        &labels,
    )?;
    let mut running = 0;
    for p in usage.values() {
        if !p.containers.is_empty() {
            pods.inc();
        }
        for (name, id) in &p.containers {
            running += 1;
            if let Some((c, m)) = cgroup_usage(node, id) {
                let l = [p.namespace.as_str(), p.pod.as_str(), name.as_str()];
                cpu.with_label_values(&l).inc_by(c);
                mem.with_label_values(&l).set(m);
            }
        }
    }
    containers.with_label_values(&["running"]).set(running);
    let mut out = pods.collect();
    out.extend(containers.collect());
    out.extend(cpu.collect());
    out.extend(mem.collect());
    Ok(out)
}

impl Collector for ContainerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(usage) = self.usage.lock().map(|u| u.clone()) else {
            return Vec::new();
        };
        families(&self.node, &usage).unwrap_or_default()
    }
}

impl KubeletMetrics {
    pub fn register(registry: &Registry, node: &str) -> prometheus::Result<Self> {
        let pod_start = Histogram::with_opts(
            HistogramOpts::new(
                "kubelet_pod_start_duration_seconds",
                "Duration in seconds from the node seeing a pod to the pod running",
            )
            .buckets(vec![
                0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        registry.register(Box::new(pod_start.clone()))?;
        let usage: UsageTable = Arc::default();
        // Descriptors must be unique per registry; taking them from an empty scrape keeps
        // them in step with what collect() returns.
        let descs = {
            let probe = families(node, &BTreeMap::new())?;
            probe
                .iter()
                .map(|f| {
                    Desc::new(
                        f.get_name().into(),
                        f.get_help().into(),
                        Vec::new(),
                        Default::default(),
                    )
                })
                .collect::<prometheus::Result<Vec<_>>>()?
        };
        registry.register(Box::new(ContainerCollector {
            usage: usage.clone(),
            node: node.to_string(),
            descs,
        }))?;
        Ok(KubeletMetrics { pod_start, usage })
    }
}
