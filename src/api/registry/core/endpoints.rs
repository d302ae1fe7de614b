//! Endpoints: the addresses behind a Service, written by the endpoints controller.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Value};

use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::table::{self, arr, col, i, s, Col};

pub struct EndpointsStrategy;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &EndpointsStrategy,
};

impl Strategy for EndpointsStrategy {
    type Object = Endpoints;

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Endpoints", "string"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let mut eps = Vec::new();
        for sub in arr(o, "/subsets") {
            for a in arr(sub, "/addresses") {
                for p in arr(sub, "/ports") {
                    eps.push(format!("{}:{}", s(a, "/ip"), i(p, "/port")));
                }
            }
        }
        vec![
            table::name_cell(o),
            json!(table::or_none(eps.join(","))),
            table::age_cell(o),
        ]
    }
}
