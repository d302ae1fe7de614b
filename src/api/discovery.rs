//! Discovery: `/api`, `/apis`, per group-version resource lists, `/version`, OpenAPI stubs.

use serde_json::{json, Value};

use super::resources::{self, Resource, Sub, RESOURCES};

/// The Kubernetes version Skiff's API follows.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str) -> Value {
    let gv = format!("{group}/v1");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": "v1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1"},
    })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(group_entry)
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group(group: &str) -> Value {
    let mut g = group_entry(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn sub_entry(r: &Resource, s: Sub) -> Value {
    let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match s {
        Sub::Status => (r.kind, "", "", &["get", "patch", "update"]),
        Sub::Scale => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        Sub::Binding => ("Binding", "", "", &["create"]),
        Sub::Log => ("Pod", "", "", &["get"]),
        Sub::Exec => ("PodExecOptions", "", "", &["create", "get"]),
        Sub::Token => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
    };
    let mut e = json!({
        "name": format!("{}/{}", r.plural, s.name()),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !group.is_empty() {
        e["group"] = json!(group);
        e["version"] = json!(version);
    }
    e
}

pub fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        list.extend(r.subresources.iter().map(|s| sub_entry(r, *s)));
    }
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_lists_deployments_with_scale_from_autoscaling() {
        let l = resource_list("apps", "v1");
        let res = l["resources"].as_array().expect("resources");
        let d = res
            .iter()
            .find(|r| r["name"] == "deployments")
            .expect("deployments");
        assert_eq!(d["shortNames"], json!(["deploy"]));
        assert_eq!(d["categories"], json!(["all"]));
        let s = res
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("scale");
        assert_eq!(
            (s["group"].as_str(), s["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
    }

    #[test]
    fn version_parses_as_semver() {
        let v = version();
        let git = v["gitVersion"].as_str().expect("gitVersion");
        assert!(git.starts_with("v1.33.0"));
    }
}
