//! Events (core/v1), as the controllers and node agents record them.

use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::table::{self, col, s, Col};

pub struct Events;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &Events,
};

impl Strategy for Events {
    type Object = Event;

    fn columns(&self) -> Vec<Col> {
        vec![
            col("Last Seen", "string"),
            col("Type", "string"),
            col("Reason", "string"),
            col("Object", "string"),
            col("Message", "string"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let last = [
            s(o, "/lastTimestamp"),
            s(o, "/eventTime"),
            s(o, "/metadata/creationTimestamp"),
        ]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or("");
        let object = format!(
            "{}/{}",
            s(o, "/involvedObject/kind").to_lowercase(),
            s(o, "/involvedObject/name")
        );
        vec![
            json!(table::age_of(last)),
            json!(s(o, "/type")),
            json!(s(o, "/reason")),
            json!(object),
            json!(s(o, "/message")),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
}
