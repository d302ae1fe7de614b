//! Services: ClusterIP, NodePort, LoadBalancer and ExternalName, written together with their
//! address allocations (`api::services`).

use k8s_openapi::api::core::v1::{Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::api::registry::{NameRule, Storage, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::services;
use crate::api::status::Cause;
use crate::api::table::{self, arr, col, s, wide, Col};

pub struct Services;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[Sub::Status],
    has_generation: false,
    strategy: &Services,
};

impl Strategy for Services {
    type Object = Service;

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn defaults(&self, svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        let ty = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
        spec.session_affinity.get_or_insert_with(|| "None".into());
        if ty != "ExternalName" {
            spec.internal_traffic_policy
                .get_or_insert_with(|| "Cluster".into());
            spec.ip_family_policy
                .get_or_insert_with(|| "SingleStack".into());
            spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            spec.external_traffic_policy
                .get_or_insert_with(|| "Cluster".into());
        }
        if ty == "LoadBalancer" {
            spec.allocate_load_balancer_node_ports.get_or_insert(true);
        }
        // A client that sets only the singular field (an old one) gets the plural too.
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if !ip.is_empty() && spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            spec.cluster_ips = Some(vec![ip]);
        }
        for p in spec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            p.target_port.get_or_insert(IntOrString::Int(p.port));
        }
    }

    fn prepare_for_create(&self, svc: &mut Service) {
        svc.status = Some(ServiceStatus::default());
    }

    /// The allocated values the client left out are kept (`api::services::prepare_update`).
    fn prepare_update_json(&self, old: &Value, new: &mut Value) {
        services::prepare_update(old, new);
    }

    fn validate_json(&self, obj: &Value, errs: &mut Vec<Cause>) {
        services::validate_spec(obj, errs);
    }

    fn validate_update(&self, new: &Service, old: &Service, errs: &mut Vec<Cause>) {
        services::validate_update(new, old, errs);
    }

    fn storage(&self) -> Storage {
        Storage::ServiceAllocations
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Type", "string"),
            col("Cluster-IP", "string"),
            col("External-IP", "string"),
            col("Port(s)", "string"),
            table::age_col(),
            wide("Selector"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let ty = s(o, "/spec/type");
        let external: Vec<String> = arr(o, "/status/loadBalancer/ingress")
            .iter()
            .map(|x| s(x, "/ip").to_string())
            .chain(
                arr(o, "/spec/externalIPs")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from),
            )
            .collect();
        let external = match (ty, external.is_empty()) {
            ("ExternalName", _) => s(o, "/spec/externalName").to_string(),
            ("LoadBalancer", true) => "<pending>".into(),
            (_, true) => "<none>".into(),
            _ => external.join(","),
        };
        vec![
            table::name_cell(o),
            json!(ty),
            json!(table::or_none(s(o, "/spec/clusterIP").into())),
            json!(external),
            json!(table::service_ports(o)),
            table::age_cell(o),
            json!(table::map_selector(o, "/spec/selector")),
        ]
    }
}
