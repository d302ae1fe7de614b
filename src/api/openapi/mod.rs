//! OpenAPI documents generated from the served kinds' schemas (k8s-openapi's, through
//! schemars): `/openapi/v3` (an index of per group-version documents, as kubectl 1.27+
//! reads for `explain` and to find which query parameters a server takes) and `/openapi/v2`
//! (Swagger 2.0 as JSON).
//!
//! `/openapi/v2` asked for as protobuf (kubectl) stays an empty document: kubectl computes
//! client-side apply patches from a v2 document when it has one, and these schemas lack the
//! patch strategies and merge keys it would need (it falls back to its built-in types).

mod paths;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::resources::{Resource, RESOURCES};

/// One generated document, and the hash its URL carries.
pub struct Document {
    pub body: Vec<u8>,
    pub hash: String,
}

impl Document {
    fn of(v: &Value) -> Self {
        let body = v.to_string().into_bytes();
        let hash = Sha256::digest(&body)
            .iter()
            .take(32)
            .map(|b| format!("{b:02X}"))
            .collect();
        Document { body, hash }
    }
}

struct Docs {
    /// `api/v1`, `apis/apps/v1`, ...: the v3 document of each group-version.
    v3: BTreeMap<String, Document>,
    v3_index: Vec<u8>,
    v2: Vec<u8>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut gvs: BTreeMap<String, Vec<&'static Resource>> = BTreeMap::new();
        for r in RESOURCES {
            gvs.entry(gv_path(r)).or_default().push(r);
        }
        let v3: BTreeMap<String, Document> = gvs
            .iter()
            .map(|(path, rs)| (path.clone(), Document::of(&v3_document(rs))))
            .collect();
        let index: Map<String, Value> = v3
            .iter()
            .map(|(path, d)| {
                let url = format!("/openapi/v3/{path}?hash={}", d.hash);
                (path.clone(), json!({ "serverRelativeURL": url }))
            })
            .collect();
        Docs {
            v3_index: json!({ "paths": index }).to_string().into_bytes(),
            v2: v2_document(RESOURCES).to_string().into_bytes(),
            v3,
        }
    })
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(r: &Resource) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

pub fn v3_index() -> &'static [u8] {
    &docs().v3_index
}

/// The v3 document of a group-version path (`apis/apps/v1`).
pub fn v3(path: &str) -> Option<&'static Document> {
    docs().v3.get(path.trim_matches('/'))
}

pub fn v2() -> &'static [u8] {
    &docs().v2
}

/// The schema name of a kind (`io.k8s.api.apps.v1.Deployment`) and its definitions, as
/// `generator` registers them.
fn kind_schema(r: &Resource, generator: &mut SchemaGenerator) -> String {
    let reference = r.strategy.schema(generator);
    let name = reference
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or(r.kind)
        .to_string();
    name
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

/// Definitions of `resources` (and what they reference), the kinds and their lists marked
/// with `x-kubernetes-group-version-kind` as upstream's are.
fn definitions(
    resources: &[&'static Resource],
    settings: SchemaSettings,
    prefix: &str,
) -> (Map<String, Value>, BTreeMap<&'static str, String>) {
    let mut generator = settings.into_generator();
    let mut names = BTreeMap::new();
    for r in resources {
        names.insert(r.plural, kind_schema(r, &mut generator));
    }
    for extra in paths::COMMON {
        extra(&mut generator);
    }
    let mut defs = generator.take_definitions(true);
    for r in resources {
        let name = &names[r.plural];
        annotate_patches(&mut defs, name, r.kind, &mut Vec::new(), 0);
        if let Some(Value::Object(schema)) = defs.get_mut(name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(r.group, r.version, r.kind)]),
            );
        }
        let list = format!("{name}List");
        defs.entry(list).or_insert_with(|| {
            json!({
                "description": format!("{}List is a list of {}.", r.kind, r.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                    "items": {"type": "array", "items": {"$ref": format!("{prefix}{name}")}},
                    "metadata": {"$ref": format!("{prefix}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")},
                },
                "required": ["items"],
                "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &r.list_kind())],
            })
        });
    }
    (defs, names)
}

/// The definition a property schema refers to (`$ref`, or upstream v3's `allOf: [{$ref}]`).
fn referenced(schema: &Value) -> Option<String> {
    let r = schema
        .get("$ref")
        .or_else(|| schema.pointer("/allOf/0/$ref"))?
        .as_str()?;
    r.rsplit('/').next().map(String::from)
}

/// Marks the lists under definition `def` (reached from `kind`'s root along `path`) with
/// the patch strategy and merge key the server's strategic merge uses for them.
fn annotate_patches(
    defs: &mut Map<String, Value>,
    def: &str,
    kind: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    // The API types nest far less; recursive schemas (JSONSchemaProps) stop here.
    if depth > 16 {
        return;
    }
    let props: Vec<(String, Value)> = match defs.get(def).and_then(|d| d.get("properties")) {
        Some(Value::Object(p)) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => return,
    };
    for (prop, schema) in props {
        path.push(prop.clone());
        let next = if schema.get("type").and_then(Value::as_str) == Some("array") {
            if let Some((strategy, key)) = super::strategic::patch_extensions(kind, path) {
                if let Some(Value::Object(p)) = defs
                    .get_mut(def)
                    .and_then(|d| d.pointer_mut(&format!("/properties/{prop}")))
                {
                    p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                    if let Some(key) = key {
                        p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                    }
                }
            }
            schema.get("items").and_then(referenced)
        } else {
            if super::strategic::retains_keys(kind, path) {
                if let Some(Value::Object(p)) = defs
                    .get_mut(def)
                    .and_then(|d| d.pointer_mut(&format!("/properties/{prop}")))
                {
                    p.insert("x-kubernetes-patch-strategy".into(), json!("retainKeys"));
                }
            }
            referenced(&schema)
        };
        if let Some(next) = next {
            annotate_patches(defs, &next, kind, path, depth + 1);
        }
        path.pop();
    }
}

fn info() -> Value {
    json!({
        "title": "Kubernetes",
        "version": format!("v{}.{}.0", super::KUBE_MAJOR, super::KUBE_MINOR),
    })
}

fn v3_document(resources: &[&'static Resource]) -> Value {
    let prefix = "#/components/schemas/";
    let (defs, names) = definitions(resources, SchemaSettings::openapi3(), prefix);
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths::all(resources, &names, paths::Flavor::V3),
        "components": {
            "schemas": defs,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        },
    })
}

fn v2_document(resources: &[&'static Resource]) -> Value {
    let prefix = "#/definitions/";
    let mut settings = SchemaSettings::draft07();
    settings.meta_schema = None;
    let (defs, names) = definitions(resources, settings, prefix);
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths::all(resources, &names, paths::Flavor::V2),
        "definitions": defs,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_mark_kinds_and_take_field_validation_on_patch() {
        let index: Value = serde_json::from_slice(v3_index()).expect("index");
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("apps/v1 listed");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let doc: Value =
            serde_json::from_slice(&v3("apis/apps/v1").expect("doc").body).expect("json");
        let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert!(spec["properties"]["replicas"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Number of desired pods")));
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
            assert!(params.contains(&p), "{p} in {params:?}");
        }
        // Every $ref resolves inside the document.
        let text = String::from_utf8_lossy(&v3("api/v1").expect("core").body).into_owned();
        let core: Value = serde_json::from_str(&text).expect("json");
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or("");
            assert!(
                core["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
        // Lists say how the server merges them (kubectl 1.29+ patches by that).
        let pod_spec = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            pod_spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            pod_spec["properties"]["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let container = &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"];
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert!(pod_spec["properties"]["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none());
        let service = &core["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"];
        assert_eq!(
            service["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "port"
        );
        let v2: Value = serde_json::from_slice(v2()).expect("v2 json");
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"].is_object());
    }
}
