//! The operations of each served resource, as upstream's OpenAPI lists them: operation ids,
//! query parameters (`fieldValidation` among them, which kubectl looks for), bodies, and
//! the `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Patch, Status};
use schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::api::registry::Storage;
use crate::api::resources::{Resource, Sub};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Swagger 2.0: `#/definitions/`, `in: body` parameters.
    V2,
    /// OpenAPI 3.0: `#/components/schemas/`, request bodies.
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({ "$ref": format!("#/definitions/{name}") }),
            Flavor::V3 => json!({ "$ref": format!("#/components/schemas/{name}") }),
        }
    }
}

/// Definitions every document references (options, statuses, patches, scales).
pub const COMMON: &[fn(&mut SchemaGenerator)] = &[
    |g| {
        g.subschema_for::<DeleteOptions>();
    },
    |g| {
        g.subschema_for::<Status>();
    },
    |g| {
        g.subschema_for::<Patch>();
    },
    |g| {
        g.subschema_for::<Scale>();
    },
];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// `apps` -> `Apps`, `rbac.authorization.k8s.io` -> `RbacAuthorization`, core -> `Core`.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// A query parameter: `dryRun`, `fieldManager`, ...
fn param(flavor: Flavor, name: &str, ty: &str, why: &str) -> Value {
    match flavor {
        Flavor::V2 => {
            json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": why})
        }
        Flavor::V3 => {
            json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}, "description": why})
        }
    }
}

fn path_param(flavor: Flavor, name: &str, why: &str) -> Value {
    match flavor {
        Flavor::V2 => {
            json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": why})
        }
        Flavor::V3 => {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}, "description": why})
        }
    }
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str =
    "fieldManager is a name associated with the actor or entity that is making these changes.";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict";

fn write_params(flavor: Flavor, patch: bool) -> Vec<Value> {
    let mut out = vec![
        param(flavor, "dryRun", "string", DRY_RUN),
        param(flavor, "fieldManager", "string", FIELD_MANAGER),
        param(flavor, "fieldValidation", "string", FIELD_VALIDATION),
    ];
    if patch {
        out.push(param(
            flavor,
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
        ));
    }
    out
}

fn list_params(flavor: Flavor) -> Vec<Value> {
    [
        ("allowWatchBookmarks", "boolean"),
        ("continue", "string"),
        ("fieldSelector", "string"),
        ("labelSelector", "string"),
        ("limit", "integer"),
        ("resourceVersion", "string"),
        ("resourceVersionMatch", "string"),
        ("sendInitialEvents", "boolean"),
        ("timeoutSeconds", "integer"),
        ("watch", "boolean"),
    ]
    .into_iter()
    .map(|(n, ty)| param(flavor, n, ty, n))
    .collect()
}

/// One operation.
struct Op<'a> {
    flavor: Flavor,
    id: String,
    action: &'a str,
    /// (group, version, kind) of what the operation is about.
    gvk: (&'a str, &'a str, &'a str),
    params: Vec<Value>,
    body: Option<Vec<(&'a str, &'a str)>>,
    response: &'a str,
    tag: String,
}

impl Op<'_> {
    fn render(self) -> Value {
        let f = self.flavor;
        let mut params = self.params;
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": {"group": self.gvk.0, "version": self.gvk.1, "kind": self.gvk.2},
        });
        let ok = match f {
            Flavor::V2 => json!({"description": "OK", "schema": f.reference(self.response)}),
            Flavor::V3 => {
                json!({"description": "OK", "content": {"application/json": {"schema": f.reference(self.response)}}})
            }
        };
        op["responses"] = json!({"200": ok, "401": {"description": "Unauthorized"}});
        if let Some(body) = self.body {
            match f {
                Flavor::V2 => {
                    let schema = body.first().map(|(_, s)| f.reference(s));
                    params.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                    );
                    op["consumes"] = json!(body.iter().map(|(ct, _)| *ct).collect::<Vec<_>>());
                    op["produces"] = json!(["application/json", "application/yaml"]);
                }
                Flavor::V3 => {
                    let content: Map<String, Value> = body
                        .iter()
                        .map(|(ct, s)| (ct.to_string(), json!({"schema": f.reference(s)})))
                        .collect();
                    op["requestBody"] = json!({"content": content, "required": true});
                }
            }
        }
        op["parameters"] = json!(params);
        op
    }
}

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// Every path of `resources`; `names` maps plurals to their schema names.
pub fn all(
    resources: &[&'static Resource],
    names: &BTreeMap<&'static str, String>,
    flavor: Flavor,
) -> Map<String, Value> {
    let mut paths = Map::new();
    for r in resources {
        let name = &names[r.plural];
        let list = format!("{name}List");
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let (scope, ns_word) = if r.namespaced {
            ("/namespaces/{namespace}", "Namespaced")
        } else {
            ("", "")
        };
        let collection = format!("{base}{scope}/{}", r.plural);
        let item = format!("{collection}/{{name}}");
        let gv = format!("{}{}", group_word(r.group), capitalized(r.version));
        let tag = format!(
            "{}_{}",
            r.group
                .split('.')
                .next()
                .filter(|g| !g.is_empty())
                .unwrap_or("core"),
            r.version
        );
        let gvk = (r.group, r.version, r.kind);
        let op = |verb: &str,
                  action: &'static str,
                  suffix: &str,
                  params: Vec<Value>,
                  body: Option<Vec<(&'static str, &str)>>,
                  response: &str| {
            Op {
                flavor,
                id: format!("{verb}{gv}{ns_word}{}{suffix}", r.kind),
                action,
                gvk,
                params,
                body,
                response,
                tag: tag.clone(),
            }
            .render()
        };
        let mut scoped = Vec::new();
        if r.namespaced {
            scoped.push(path_param(
                flavor,
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        if r.strategy.storage() == Storage::Review {
            let mut p = json!({"post": op("create", "post", "", write_params(flavor, false), Some(vec![("application/json", name)]), name)});
            p["parameters"] = json!(scoped);
            paths.insert(collection, p);
            continue;
        }
        let mut c = json!({
            "get": op("list", "list", "", list_params(flavor), None, &list),
            "post": op("create", "post", "", write_params(flavor, false), Some(vec![("application/json", name)]), name),
            "delete": op("delete", "deletecollection", "Collection", list_params(flavor), Some(vec![("application/json", DELETE_OPTIONS)]), STATUS),
        });
        // upstream names the collection delete `deleteAppsV1CollectionNamespacedDeployment`.
        c["delete"]["operationId"] = json!(format!("delete{gv}Collection{ns_word}{}", r.kind));
        c["parameters"] = json!(scoped);
        paths.insert(collection.clone(), c);
        let mut named = scoped.clone();
        named.insert(
            0,
            path_param(flavor, "name", &format!("name of the {}", r.kind)),
        );
        let patch_body: Vec<(&str, &str)> = PATCH_TYPES.iter().map(|t| (*t, PATCH)).collect();
        let mut i = json!({
            "get": op("read", "get", "", vec![], None, name),
            "put": op("replace", "put", "", write_params(flavor, false), Some(vec![("application/json", name)]), name),
            "patch": op("patch", "patch", "", write_params(flavor, true), Some(patch_body.clone()), name),
            "delete": op("delete", "delete", "", vec![param(flavor, "gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."), param(flavor, "propagationPolicy", "string", "Whether and how garbage collection will be performed.")], Some(vec![("application/json", DELETE_OPTIONS)]), STATUS),
        });
        i["parameters"] = json!(named);
        paths.insert(item.clone(), i);
        for sub in r.subresources {
            let (suffix, response) = match sub {
                Sub::Status => ("Status", name.as_str()),
                Sub::Scale => ("Scale", SCALE),
                _ => continue,
            };
            let mut s = json!({
                "get": op("read", "get", suffix, vec![], None, response),
                "put": op("replace", "put", suffix, write_params(flavor, false), Some(vec![("application/json", response)]), response),
                "patch": op("patch", "patch", suffix, write_params(flavor, true), Some(patch_body.clone()), response),
            });
            if *sub == Sub::Scale {
                for verb in ["get", "put", "patch"] {
                    s[verb]["x-kubernetes-group-version-kind"] =
                        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
                }
            }
            s["parameters"] = json!(named);
            paths.insert(format!("{item}/{}", sub.name()), s);
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_upstream() {
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
    }
}
