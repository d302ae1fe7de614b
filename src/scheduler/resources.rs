//! Resource quantities (`100m`, `0.5`, `128Mi`, `1G`) and a pod's requests.

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU in millicores and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl std::ops::AddAssign for Resources {
    fn add_assign(&mut self, o: Self) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
    }
}

impl std::ops::SubAssign for Resources {
    fn sub_assign(&mut self, o: Self) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
    }
}

pub use crate::k8s::quantity::parse;

fn of(q: Option<&Quantity>, scale: f64) -> i64 {
    q.and_then(|q| parse(&q.0, scale)).unwrap_or(0)
}

fn requests(r: Option<&ResourceRequirements>) -> Resources {
    let req = r.and_then(|r| r.requests.as_ref());
    Resources {
        milli_cpu: of(req.and_then(|m| m.get("cpu")), 1000.0),
        memory: of(req.and_then(|m| m.get("memory")), 1.0),
    }
}

/// What a pod asks for: the sum over its containers, or the largest init container if that
/// is more (they run one at a time before the others).
pub fn pod_requests(p: &Pod) -> Resources {
    let Some(spec) = &p.spec else {
        return Resources::default();
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum += requests(c.resources.as_ref());
    }
    for c in spec.init_containers.iter().flatten() {
        let r = requests(c.resources.as_ref());
        sum.milli_cpu = sum.milli_cpu.max(r.milli_cpu);
        sum.memory = sum.memory.max(r.memory);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("100m", 1000.0), Some(100));
        assert_eq!(parse("2", 1000.0), Some(2000));
        assert_eq!(parse("0.5", 1000.0), Some(500));
        assert_eq!(parse("128Mi", 1.0), Some(128 * 1024 * 1024));
        assert_eq!(parse("1G", 1.0), Some(1_000_000_000));
        assert_eq!(parse("1e3", 1.0), Some(1000));
        assert_eq!(parse("lots", 1.0), None);
    }
}
