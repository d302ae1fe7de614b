//! Validation of a Service's address fields (upstream's ValidateService rules for
//! clusterIP/clusterIPs, IP families, NodePorts and the health check port) in a single-stack
//! IPv4 cluster.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use serde_json::Value;

use super::plan::{cluster_ip, go_strings, kind_of, needs_health_check_port};
use crate::api::status::Cause;

fn forbidden(field: impl Into<String>, why: impl std::fmt::Display) -> Cause {
    Cause {
        reason: "FieldValueForbidden",
        field: field.into(),
        message: format!("Forbidden: {why}"),
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    let list = v.and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A Service's spec: its type, ports, addresses, families and node ports.
pub fn spec(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let allowed = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !allowed.contains(&ty) {
        causes.push(Cause::not_supported(
            "spec.type",
            format!("\"{ty}\""),
            &allowed,
        ));
    }
    check(obj, causes);
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    if ty != "ExternalName"
        && ports.is_none_or(|p| p.is_empty())
        && obj.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
    {
        causes.push(Cause::required("spec.ports"));
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = |v: Option<i64>, field: &str, required: bool, causes: &mut Vec<Cause>| match v {
            None if required => causes.push(Cause::required(field)),
            Some(p) if !(1..=65535).contains(&p) => causes.push(Cause::invalid(
                field,
                p,
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        };
        port(
            p.get("port").and_then(Value::as_i64),
            &format!("spec.ports[{i}].port"),
            true,
            causes,
        );
        port(
            p.get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0),
            &format!("spec.ports[{i}].nodePort"),
            false,
            causes,
        );
        let key = (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string(),
        );
        if !seen.insert(key.clone()) {
            causes.push(Cause::duplicate(
                format!("spec.ports[{i}]"),
                format!("{{{:?}, \"{}\"}}", key.0.unwrap_or(0), key.1),
            ));
        }
        if ports.is_some_and(|ps| ps.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
    }
}

/// `validateUpgradeDowngradeClusterIPs`: outside ExternalName, allocated addresses stay.
pub fn update(new: &Service, old: &Service, causes: &mut Vec<Cause>) {
    let spec = |s: &Service| s.spec.clone().unwrap_or_default();
    let (new, old) = (spec(new), spec(old));
    let external = |s: &ServiceSpec| s.type_.as_deref() == Some("ExternalName");
    if external(&new) || external(&old) {
        return;
    }
    let ips = |s: &ServiceSpec| s.cluster_ips.clone().unwrap_or_default();
    let (new_ips, old_ips) = (ips(&new), ips(&old));
    let headless = |ips: &[String]| ips == ["None"];
    if headless(&new_ips) && headless(&old_ips) {
        return;
    }
    if let (Some(n), Some(o)) = (new_ips.first(), old_ips.first()) {
        if n != o {
            // Upstream shows the whole new list as the value.
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                serde_json::to_string(&new_ips).unwrap_or_default(),
                "may not change once set",
            ));
        }
    }
}

fn check(svc: &Value, causes: &mut Vec<Cause>) {
    let ty = kind_of(svc);
    let spec = svc.get("spec");
    let field = |k: &str| spec.and_then(|s| s.get(k)).filter(|v| !v.is_null());
    let ip = cluster_ip(svc);
    let ips = strings(field("clusterIPs"));
    if ty == "ExternalName" {
        if !ip.is_empty() || !ips.is_empty() {
            causes.push(forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
        for k in ["ipFamilies", "ipFamilyPolicy"] {
            if field(k).is_some() {
                causes.push(forbidden(
                    format!("spec.{k}"),
                    "may not be set for ExternalName services",
                ));
            }
        }
        if field("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required("spec.externalName"));
        }
    } else {
        addresses(ty, ip, &ips, causes);
        families(field("ipFamilies"), field("ipFamilyPolicy"), causes);
    }
    node_ports(svc, ty, causes);
    let hc = field("healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if hc != 0 && !needs_health_check_port(svc) {
        causes.push(Cause::invalid(
            "spec.healthCheckNodePort",
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    if field("allocateLoadBalancerNodePorts").is_some() && ty != "LoadBalancer" {
        causes.push(forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
}

fn addresses(ty: &str, ip: &str, ips: &[&str], causes: &mut Vec<Cause>) {
    let listed = go_strings(ips);
    if !ip.is_empty() {
        if ips.first() != Some(&ip) {
            causes.push(Cause::invalid(
                "spec.clusterIPs",
                &listed,
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        causes.push(Cause::invalid(
            "spec.clusterIPs",
            &listed,
            "must be empty when `clusterIP` is not specified",
        ));
    }
    if ips.len() > 1 {
        causes.push(Cause::invalid(
            "spec.clusterIPs",
            &listed,
            "this cluster is single-stack (IPv4): at most one address",
        ));
    }
    for (i, a) in ips.iter().enumerate() {
        let field = format!("spec.clusterIPs[{i}]");
        if *a == "None" {
            if matches!(ty, "NodePort" | "LoadBalancer") {
                causes.push(Cause::invalid(
                    field,
                    "\"None\"",
                    format!("may not be set to 'None' for {ty} services"),
                ));
            }
        } else if a.parse::<IpAddr>().is_err() {
            causes.push(Cause::invalid(
                field,
                format!("{a:?}"),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
}

fn families(list: Option<&Value>, policy: Option<&Value>, causes: &mut Vec<Cause>) {
    for (i, f) in strings(list).iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        match *f {
            "IPv4" => {}
            "IPv6" => causes.push(Cause::invalid(
                field,
                "\"IPv6\"",
                "not configured on this cluster",
            )),
            other => causes.push(Cause::not_supported(
                field,
                format!("{other:?}"),
                &["IPv4", "IPv6"],
            )),
        }
    }
    match policy.and_then(Value::as_str) {
        None | Some("SingleStack" | "PreferDualStack") => {}
        Some("RequireDualStack") => causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            "\"RequireDualStack\"",
            "this cluster is not configured for dual-stack services",
        )),
        Some(other) => causes.push(Cause::not_supported(
            "spec.ipFamilyPolicy",
            format!("{other:?}"),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        )),
    }
}

fn node_ports(svc: &Value, ty: &str, causes: &mut Vec<Cause>) {
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
    let mut seen = HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if np == 0 {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        if matches!(ty, "ClusterIP" | "ExternalName") {
            causes.push(forbidden(
                &field,
                format!("may not be used when `type` is '{ty}'"),
            ));
        }
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !seen.insert((np, protocol.to_string())) {
            causes.push(Cause::duplicate(field, np));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn causes(spec: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&json!({"spec": spec}), &mut out);
        out.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn address_fields_follow_upstream_rules() {
        assert!(causes(
            json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ipFamilies": ["IPv4"]})
        )
        .is_empty());
        assert_eq!(
            causes(json!({"clusterIPs": ["10.96.0.5"]})),
            [
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: must be empty when `clusterIP` is not specified"#
            ]
        );
        assert_eq!(
            causes(json!({"clusterIP": "x", "clusterIPs": ["x"]})),
            [
                r#"spec.clusterIPs[0]: Invalid value: "x": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
            ]
        );
        assert_eq!(
            causes(json!({"type": "NodePort", "clusterIP": "None", "clusterIPs": ["None"]})),
            [
                r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#
            ]
        );
        assert_eq!(
            causes(json!({"type": "ExternalName", "clusterIP": "10.96.0.5"})),
            [
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
                "spec.externalName: Required value"
            ]
        );
    }

    #[test]
    fn node_ports_only_where_the_type_has_them() {
        assert_eq!(
            causes(json!({"ports": [{"port": 80, "nodePort": 30080}]})),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        assert_eq!(
            causes(
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30080}]})
            ),
            ["spec.ports[1].nodePort: Duplicate value: 30080"]
        );
        assert!(causes(json!({"type": "NodePort", "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053}, {"port": 53, "nodePort": 30053}]})).is_empty());
        assert_eq!(
            causes(json!({"type": "NodePort", "healthCheckNodePort": 30001})).len(),
            1
        );
        assert_eq!(
            causes(json!({"allocateLoadBalancerNodePorts": true})).len(),
            1
        );
    }
}
