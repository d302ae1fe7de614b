//! Discovery: `/api`, `/apis` (legacy and aggregated, `apidiscovery.k8s.io`), groups,
//! per group-version resource lists, `/version`.

use serde_json::{json, Value};

use super::registry::Storage;
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

/// The versions a group serves, preferred (newest stable) first.
fn versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn group_entry(group: &str) -> Value {
    let vs: Vec<Value> = versions(group)
        .into_iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(json!({})),
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

/// The verbs a kind answers: reviews are created only.
fn verbs(r: &Resource) -> &'static [&'static str] {
    if r.strategy.storage() == Storage::Review {
        return &["create"];
    }
    &[
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
}

/// A subresource's kind (group, version, kind; empty group and version: the parent's)
/// and verbs.
fn sub_kind(
    r: &Resource,
    s: Sub,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    match s {
        Sub::Status => ("", "", r.kind, &["get", "patch", "update"]),
        Sub::Scale => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        Sub::Binding => ("", "", "Binding", &["create"]),
        Sub::Log => ("", "", "Pod", &["get"]),
        Sub::Exec => ("", "", "PodExecOptions", &["create", "get"]),
        Sub::Token => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        Sub::Finalize => ("", "", r.kind, &["update"]),
    }
}

fn sub_entry(r: &Resource, s: Sub) -> Value {
    let (group, version, kind, verbs) = sub_kind(r, s);
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
            "verbs": verbs(r),
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
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": list })
}

/// The aggregated discovery version a client accepts (`apidiscovery.k8s.io` v2, or v2beta1
/// for kubectl 1.27-1.29), from its `Accept` header.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let offers = |v: &str| {
        accept.split(',').any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&format!("v={v}").as_str())
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    };
    ["v2", "v2beta1"].into_iter().find(|v| offers(v))
}

/// The content type of an aggregated discovery answer.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// `/api` (`core`) or `/apis` as one `APIGroupDiscoveryList`: every group, version and
/// resource with its verbs and subresources.
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|g| g.is_empty() == core)
        .map(|group| {
            let vs: Vec<Value> = versions(group)
                .into_iter()
                .map(|v| {
                    let resources: Vec<Value> = RESOURCES
                        .iter()
                        .filter(|r| r.group == group && r.version == v)
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": vs})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind, verbs) = sub_kind(r, *s);
            let (group, version) = if group.is_empty() {
                (r.group, r.version)
            } else {
                (group, version)
            };
            json!({
                "subresource": s.name(),
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": verbs,
            })
        })
        .collect();
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        e["subresources"] = json!(subresources);
    }
    e
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
    fn aggregated_discovery_has_real_verbs_and_subresources() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(accept), Some("v2"));
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(old), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json"), None);
        let apis = aggregated(false, "v2");
        let group = |name: &str| {
            apis["items"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["metadata"]["name"] == name))
                .cloned()
                .unwrap_or_default()
        };
        let authz = group("authorization.k8s.io");
        let review = &authz["versions"][0]["resources"][0];
        assert_eq!(review["verbs"], json!(["create"]), "{review}");
        let apps = group("apps");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["resource"] == "deployments"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["verbs"].as_array().map(Vec::len), Some(8));
        let scale = deploy["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["subresource"] == "scale"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(scale["responseKind"]["kind"], "Scale", "{deploy}");
        let core = aggregated(true, "v2");
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let authn = group("authentication.k8s.io");
        assert_eq!(authn["versions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn version_parses_as_semver() {
        let v = version();
        let git = v["gitVersion"].as_str().expect("gitVersion");
        assert!(git.starts_with("v1.33.0"));
    }
}
