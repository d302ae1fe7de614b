//! Nodes: registered by their node agent with their status; `podCIDR` and `providerID` are
//! set once.

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use crate::api::registry::validation::shown;
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, arr, col, s, wide, Col};

pub struct Nodes;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[Sub::Status],
    has_generation: false,
    strategy: &Nodes,
};

impl Strategy for Nodes {
    type Object = Node;

    fn validate_update(&self, new: &Node, old: &Node, errs: &mut Vec<Cause>) {
        let spec = |n: &Node| n.spec.clone().unwrap_or_default();
        let (new, old) = (spec(new), spec(old));
        let was = old.pod_cidr.as_deref().unwrap_or("");
        if !was.is_empty() && new.pod_cidr.as_deref().unwrap_or("") != was {
            errs.push(Cause::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let cidrs = |s: &Option<Vec<String>>| s.clone().unwrap_or_default();
        let old_cidrs = cidrs(&old.pod_cidrs);
        if !old_cidrs.is_empty() && cidrs(&new.pod_cidrs) != old_cidrs {
            errs.push(Cause::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let was = old.provider_id.as_deref().unwrap_or("");
        if !was.is_empty() && new.provider_id.as_deref().unwrap_or("") != was {
            errs.push(Cause::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        for (i, t) in new.taints.iter().flatten().enumerate() {
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                errs.push(Cause::not_supported(
                    format!("spec.taints[{i}].effect"),
                    shown(&t.effect),
                    &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                ));
            }
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Status", "string"),
            col("Roles", "string"),
            table::age_col(),
            col("Version", "string"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
            // Not in upstream's printer: the overlay's subnet per node is what lab users check.
            wide("Pod-CIDR"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let ready = arr(o, "/status/conditions")
            .iter()
            .find(|c| c["type"] == "Ready");
        let mut status = match ready.map(|c| s(c, "/status")) {
            Some("True") => "Ready".to_string(),
            _ => "NotReady".to_string(),
        };
        if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<String> = o
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|l| {
                l.keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let addr = |t: &str| {
            arr(o, "/status/addresses")
                .iter()
                .find(|a| a["type"] == t)
                .map(|a| s(a, "/address").to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        vec![
            table::name_cell(o),
            json!(status),
            json!(table::or_none(roles.join(","))),
            table::age_cell(o),
            json!(s(o, "/status/nodeInfo/kubeletVersion")),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            json!(s(o, "/status/nodeInfo/osImage")),
            json!(s(o, "/status/nodeInfo/kernelVersion")),
            json!(s(o, "/status/nodeInfo/containerRuntimeVersion")),
            json!(table::or_none(s(o, "/spec/podCIDR").into())),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}
