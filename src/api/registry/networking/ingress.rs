//! Ingresses: HTTP routes by host and path, served by the ingress controller.

use k8s_openapi::api::networking::v1::{Ingress, IngressStatus};
use serde_json::{json, Value};

use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::table::{self, arr, col, s, Col};

pub struct Ingresses;

pub static RESOURCE: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    plural: "ingresses",
    singular: "ingress",
    kind: "Ingress",
    namespaced: true,
    short_names: &["ing"],
    categories: &[],
    subresources: &[Sub::Status],
    has_generation: true,
    strategy: &Ingresses,
};

impl Strategy for Ingresses {
    type Object = Ingress;

    fn prepare_for_create(&self, ing: &mut Ingress) {
        ing.status = Some(IngressStatus::default());
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Class", "string"),
            col("Hosts", "string"),
            col("Address", "string"),
            col("Ports", "string"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let hosts: Vec<&str> = arr(o, "/spec/rules")
            .iter()
            .map(|r| s(r, "/host"))
            .map(|h| if h.is_empty() { "*" } else { h })
            .collect();
        let addrs: Vec<&str> = arr(o, "/status/loadBalancer/ingress")
            .iter()
            .map(|x| s(x, "/ip"))
            .collect();
        let ports = if arr(o, "/spec/tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            table::name_cell(o),
            json!(table::or_none(s(o, "/spec/ingressClassName").into())),
            json!(if hosts.is_empty() {
                "*".into()
            } else {
                hosts.join(",")
            }),
            json!(addrs.join(",")),
            json!(ports),
            table::age_cell(o),
        ]
    }
}
