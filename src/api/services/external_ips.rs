//! Upstream's DenyServiceExternalIPs admission plugin, on unless `api.allow_service_external_ips`:
//! a Service's `externalIPs` make every node capture traffic to those addresses, so whoever may
//! create a Service could take over any address (CVE-2020-8554). New ones are refused; an
//! update may keep or drop the ones it had.

use serde_json::Value;

use crate::api::status::ApiError;

fn ips(svc: &Value) -> Vec<&str> {
    svc.pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Refuses `svc` if it brings external IPs that `old` (the stored Service) did not have.
pub fn admit(svc: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let had = old.map(ips).unwrap_or_default();
    if ips(svc).iter().all(|ip| had.contains(ip)) {
        return Ok(());
    }
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(ApiError::Forbidden(format!(
        "services {name:?} is forbidden: Use of external IPs is denied by admission control"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_new_external_ips_are_refused() {
        let with = |ips: &[&str]| json!({"metadata": {"name": "s"}, "spec": {"externalIPs": ips}});
        let err = admit(&with(&["1.2.3.4"]), None).expect_err("new");
        assert_eq!(
            err.to_string(),
            "services \"s\" is forbidden: Use of external IPs is denied by admission control"
        );
        assert!(admit(&json!({"spec": {}}), None).is_ok());
        let old = with(&["1.2.3.4", "5.6.7.8"]);
        assert!(admit(&with(&["5.6.7.8"]), Some(&old)).is_ok());
        assert!(admit(&with(&["9.9.9.9"]), Some(&old)).is_err());
    }
}
