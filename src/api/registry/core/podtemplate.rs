//! PodTemplates: a stored pod template (upstream serves them; controllers of other
//! projects create pods from them).

use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{json, Value};

use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, Col};

pub struct PodTemplates;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "podtemplates",
    singular: "podtemplate",
    kind: "PodTemplate",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &PodTemplates,
};

impl Strategy for PodTemplates {
    type Object = PodTemplate;

    fn defaults(&self, t: &mut PodTemplate) {
        if let Some(template) = t.template.as_mut() {
            pod_spec::template_defaults(template);
        }
    }

    fn validate(&self, t: &PodTemplate, errs: &mut Vec<Cause>) {
        match &t.template {
            None => errs.push(Cause::required("template")),
            Some(template) => pod_spec::validate_template(template, "template", &[], errs),
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Containers", "string"),
            col("Images", "string"),
            col("Pod Labels", "string"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let (c, im) = table::containers_images(o, "/template/spec");
        vec![
            table::name_cell(o),
            json!(c),
            json!(im),
            json!(table::map_selector(o, "/template/metadata/labels")),
        ]
    }
}
