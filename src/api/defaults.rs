//! Admission defaults that are not a kind's own (upstream's DefaultTolerationSeconds
//! admission plugin); the kinds' defaults are their strategies' in `registry`.

use serde_json::{json, Value};

/// Upstream's DefaultTolerationSeconds admission: every pod tolerates a not-ready or
/// unreachable node for a while before it is evicted.
pub fn pod_tolerations(obj: &mut Value, seconds: u64) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && t.get("operator") == Some(&json!("Exists"))))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}
