//! Field validation shared by the strategies: names, labels, ports, immutable fields, and the
//! unknown fields a typed decode drops. Messages are upstream's.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::api::status::Cause;

pub use crate::config::is_dns_label as is_dns1123_label;

pub const DNS1123_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
pub const DNS1123_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A value as upstream's field errors print it: numbers and booleans bare, strings quoted,
/// anything else as JSON.
pub fn shown<T: Serialize + ?Sized>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => format!("{s:?}"),
        Ok(Value::Null) => "null".into(),
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `ValidateImmutableField`: `field: Invalid value: <new>: field is immutable`.
pub fn immutable<T: Serialize + PartialEq + ?Sized>(
    new: &T,
    old: &T,
    field: &str,
    errs: &mut Vec<Cause>,
) {
    if new != old {
        errs.push(Cause::invalid(field, shown(new), "field is immutable"));
    }
}

/// `ValidateNonnegativeField`.
pub fn non_negative(v: Option<i64>, field: &str, errs: &mut Vec<Cause>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        errs.push(Cause::invalid(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// A port number: 1-65535.
pub fn port(v: i32, field: &str, errs: &mut Vec<Cause>) {
    if !(1..=65535).contains(&v) {
        errs.push(Cause::invalid(
            field,
            v,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// Label keys and values (`ValidateLabels`).
pub fn labels(labels: Option<&BTreeMap<String, String>>, field: &str, errs: &mut Vec<Cause>) {
    for (k, v) in labels.into_iter().flatten() {
        qualified_name(k, field, errs);
        let value_ok = v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && (v.is_empty()
                || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.ends_with(|c: char| c.is_ascii_alphanumeric())));
        if !value_ok {
            errs.push(Cause::invalid(field, format!("{v:?}"), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
    }
}

/// A qualified name (`prefix/name`), as label and annotation keys are.
pub fn qualified_name(k: &str, field: &str, errs: &mut Vec<Cause>) {
    let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok || (k.contains('/') && !is_dns1123_subdomain(prefix)) {
        errs.push(Cause::invalid(field, format!("{k:?}"), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
    }
}

/// Paths of fields in `input` that the typed form dropped.
pub fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_as_upstream_field_errors() {
        assert_eq!(shown("a"), "\"a\"");
        assert_eq!(shown(&3), "3");
        assert_eq!(
            shown(&json!({"matchLabels": {"a": "b"}})),
            r#"{"matchLabels":{"a":"b"}}"#
        );
        let mut errs = Vec::new();
        immutable("new", "old", "spec.x", &mut errs);
        assert_eq!(
            errs[0].message,
            "Invalid value: \"new\": field is immutable"
        );
    }
}
