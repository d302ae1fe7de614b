//! Property tests of the decoders of untrusted input, through the entry points the fuzzers use
//! (`skiff::fuzz_targets`): no input makes them panic, and what they accept means what it
//! should (selectors match what they say, bodies round-trip, patches obey their RFCs).

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use skiff::fuzz_targets::{
    self as ft, apply_patch, decode_body, field_selector_matches, label_selector_matches,
    JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, TARGETS,
};

/// 256 cases keep a debug run to seconds; PROPTEST_CASES asks for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys of a small alphabet, so generated documents and patches collide often (and never
/// `env`, the one short field name with a strategic list strategy).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-d]",
        1 => "[a-d]{2}",
        1 => "[a-z/~ .-]{0,4}",
    ]
    .prop_filter("a list with a merge key", |k| k != "env")
}

/// Scalars that survive a trip through JSON and YAML text exactly.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n as f64 / 8.0)),
        "\\PC{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "true",
            "null",
            "~",
            "yes",
            "no",
            "on",
            "0x1F",
            "1e3",
            ".inf",
            "- a",
            "a: b",
            "#x",
            "'",
            "\"",
            "  lead",
            "trail ",
            "multi\nline",
            "tab\there",
            "\u{0}",
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn value(null: bool) -> impl Strategy<Value = Value> {
    let leaf = if null {
        scalar().boxed()
    } else {
        scalar().prop_filter("no null", |v| !v.is_null()).boxed()
    };
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object(null: bool) -> impl Strategy<Value = Value> {
    btree_map(key(), value(null), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// JSON nesting depth (serde_json reads at most 127).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What the store does with an accepted object: write it as JSON and read it back.
fn store_round_trip(v: &Value) -> Value {
    let bytes = serde_json::to_vec(v).expect("serialize");
    serde_json::from_slice(&bytes).expect("the store could not read back an accepted object")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn mutated_seeds_never_panic(
        seed in prop::sample::select(vec![
            &b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x05\x0a\x03\x0a\x01c"[..],
            &br#"[{"op":"copy","from":"","path":"/a"},{"op":"move","from":"/a","path":"/b"}]"#[..],
            &br#"{"spec":{"template":{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}}}"#[..],
            &b"app=web,tier in (a,b),!x"[..],
            &b"SKIFFRP1\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0"[..],
        ]),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut data = seed.to_vec();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn arbitrary_documents_and_patches_never_panic(doc in value(true), patch in value(true)) {
        let mut input = serde_json::to_vec(&doc).expect("doc");
        input.push(ft::PATCH_SEPARATOR);
        input.extend(serde_json::to_vec(&patch).expect("patch"));
        ft::patch_json(&input);
        ft::patch_merge(&input);
        ft::patch_strategic(&input);
    }

    /// A selector rendered from generated requirements parses and matches exactly the label
    /// sets that satisfy every requirement.
    #[test]
    fn label_selectors_match_what_they_say(
        reqs in vec(requirement(), 0..5),
        labels in btree_map(label_key(), label_value(), 0..4),
        spaced in any::<bool>(),
    ) {
        let sep = if spaced { " , " } else { "," };
        let selector = reqs.iter().map(|r| r.render(spaced)).collect::<Vec<_>>().join(sep);
        let want = reqs.iter().all(|r| r.holds(&labels));
        prop_assert_eq!(label_selector_matches(&selector, &labels), Ok(want), "{}", selector);
    }

    #[test]
    fn field_selectors_match_what_they_say(
        reqs in vec((prop::sample::select(POD_FIELDS.to_vec()), any::<bool>(), "[a-c]{0,2}"), 0..4),
        fields in btree_map(prop::sample::select(POD_FIELDS.to_vec()), "[a-c]{0,2}", 0..4),
    ) {
        let mut pod = json!({"kind": "Pod"});
        for (field, v) in &fields {
            let pointer = format!("/{}", field.replace('.', "/"));
            set_pointer(&mut pod, &pointer, json!(v));
        }
        let selector = reqs
            .iter()
            .map(|(f, eq, v)| format!("{f}{}{v}", if *eq { "=" } else { "!=" }))
            .collect::<Vec<_>>()
            .join(",");
        let want = reqs.iter().all(|(f, eq, v)| {
            let have = fields.get(f).map(String::as_str).unwrap_or("");
            (have == v) == *eq
        });
        prop_assert_eq!(field_selector_matches(&selector, "Pod", &pod), Ok(want), "{}", selector);
    }

    /// A generated object written as JSON and as YAML decodes to itself.
    #[test]
    fn bodies_round_trip_through_json_and_yaml(obj in object(true)) {
        let as_json = serde_json::to_vec(&obj).expect("json");
        prop_assert_eq!(decode_body("application/json", &as_json), Ok(obj.clone()));
        let pretty = serde_json::to_vec_pretty(&obj).expect("json");
        prop_assert_eq!(decode_body("application/json", &pretty), Ok(obj.clone()));
        let as_yaml = yaml_serde::to_string(&obj).expect("yaml");
        prop_assert_eq!(decode_body("application/yaml", as_yaml.as_bytes()), Ok(obj.clone()), "{}", as_yaml);
        // JSON is YAML too (kubectl apply sends either).
        prop_assert_eq!(decode_body("application/yaml", &as_json), Ok(obj));
    }

    /// A ConfigMap as kubectl's protobuf encoder writes it decodes to its JSON form.
    #[test]
    fn protobuf_configmaps_decode_to_their_json(
        name in "[a-z][a-z0-9-]{0,10}",
        labels in btree_map("[a-z/.]{1,6}", "[a-z]{0,4}", 0..4),
        data in btree_map("[A-Za-z._-]{1,6}", "\\PC{1,8}", 0..4),
    ) {
        let mut meta = pb_field(1, name.as_bytes());
        for (k, v) in &labels {
            meta.extend(pb_field(11, &[pb_field(1, k.as_bytes()), pb_field(2, v.as_bytes())].concat()));
        }
        let mut cm = pb_field(1, &meta);
        for (k, v) in &data {
            cm.extend(pb_field(2, &[pb_field(1, k.as_bytes()), pb_field(2, v.as_bytes())].concat()));
        }
        let type_meta = [pb_field(1, b"v1"), pb_field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), pb_field(1, &type_meta), pb_field(2, &cm)].concat();
        let mut want = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        if !labels.is_empty() {
            want["metadata"]["labels"] = json!(labels);
        }
        if !data.is_empty() {
            want["data"] = json!(data);
        }
        prop_assert_eq!(decode_body("application/vnd.kubernetes.protobuf", &body), Ok(want));
    }

    /// However deeply a body nests, the decoders refuse it or accept an object the store can
    /// write and read back.
    #[test]
    fn deep_bodies_are_refused_or_storable(levels in 110usize..140, map in any::<bool>()) {
        let (open, close) = if map { ("{\"a\":", "}") } else { ("[", "]") };
        let json_text = format!("{}1{}", open.repeat(levels), close.repeat(levels));
        let block_yaml: String = (0..levels).map(|i| format!("{}a:\n", "  ".repeat(i))).collect();
        let raw = pb_field(7, &pb_field(1, json_text.as_bytes()));
        let meta = [pb_field(1, b"cfg"), pb_field(17, &raw)].concat();
        let type_meta = [pb_field(1, b"v1"), pb_field(2, b"ConfigMap")].concat();
        let protobuf = [b"k8s\0".to_vec(), pb_field(1, &type_meta), pb_field(2, &pb_field(1, &meta))].concat();
        for (media, body) in [
            ("application/json", json_text.as_bytes()),
            ("application/yaml", json_text.as_bytes()),
            ("application/yaml", block_yaml.as_bytes()),
            ("application/vnd.kubernetes.protobuf", &protobuf[..]),
        ] {
            if let Ok(obj) = decode_body(media, body) {
                prop_assert!(depth(&obj) <= 127, "{}", media);
                prop_assert_eq!(store_round_trip(&obj), obj);
            }
        }
    }

    /// RFC 7386: applying the merge patch that describes the change from `doc` to `target`
    /// gives `target`; so does the strategic merge patch for fields without list strategies.
    #[test]
    fn merge_patch_of_a_diff_gives_the_target(doc in object(false), target in object(false)) {
        let diff = serde_json::to_vec(&merge_diff(&doc, &target)).expect("diff");
        prop_assert_eq!(apply_patch(MERGE_PATCH, "ConfigMap", &doc, &diff), Ok(target.clone()));
        prop_assert_eq!(apply_patch(STRATEGIC_MERGE_PATCH, "ConfigMap", &doc, &diff), Ok(target));
    }

    /// RFC 6902: `add` then `remove` of the same new member or element is no change, and
    /// `test` sees what `add` put there.
    #[test]
    fn json_patch_add_then_remove_is_no_change(
        doc in object(true),
        at in any::<prop::sample::Index>(),
        new_key in "[a-z~/]{1,4}",
        v in value(true),
    ) {
        let places = containers(&doc, String::new());
        let (pointer, len) = &places[at.index(places.len())];
        let path = match len {
            // An object: a member it does not have yet.
            None => {
                let obj = doc.pointer(pointer).and_then(Value::as_object).expect("object");
                let mut k = new_key.clone();
                while obj.contains_key(&k) {
                    k.push('x');
                }
                format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"))
            }
            // An array: an index up to its length.
            Some(n) => format!("{pointer}/{}", at.index(n + 1)),
        };
        let ops = json!([
            {"op": "add", "path": path, "value": v},
            {"op": "test", "path": path, "value": v},
            {"op": "remove", "path": path},
        ]);
        let body = serde_json::to_vec(&ops).expect("ops");
        prop_assert_eq!(apply_patch(JSON_PATCH, "ConfigMap", &doc, &body), Ok(doc));
    }

    /// Whatever a JSON patch does (copies and moves included), an accepted result is an
    /// object the store can write and read back.
    #[test]
    fn accepted_json_patches_give_storable_objects(
        doc in object(true),
        ops in vec(json_patch_op(), 1..12),
    ) {
        let body = serde_json::to_vec(&ops).expect("ops");
        if let Ok(out) = apply_patch(JSON_PATCH, "ConfigMap", &doc, &body) {
            prop_assert!(depth(&out) <= 127);
            prop_assert_eq!(store_round_trip(&out), out);
        }
    }
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "status.podIP",
];

fn set_pointer(doc: &mut Value, pointer: &str, v: Value) {
    let mut cur = doc;
    let tokens: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, t) in tokens.iter().enumerate() {
        let m = cur.as_object_mut().expect("object");
        if i + 1 == tokens.len() {
            m.insert(t.to_string(), v);
            return;
        }
        cur = m.entry(t.to_string()).or_insert_with(|| json!({}));
    }
}

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String, bool),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn label_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "app",
        "tier",
        "example.com/role",
        "k8s.io/x-y_z.w",
        "a1",
    ])
    .prop_map(String::from)
}

fn label_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["web", "db", "v1.2-3", "x_y", "a"]).prop_map(String::from)
}

fn requirement() -> impl Strategy<Value = Req> {
    prop_oneof![
        (label_key(), label_value(), any::<bool>()).prop_map(|(k, v, d)| Req::Eq(k, v, d)),
        (label_key(), label_value()).prop_map(|(k, v)| Req::NotEq(k, v)),
        (label_key(), vec(label_value(), 1..3)).prop_map(|(k, v)| Req::In(k, v)),
        (label_key(), vec(label_value(), 1..3)).prop_map(|(k, v)| Req::NotIn(k, v)),
        label_key().prop_map(Req::Exists),
        label_key().prop_map(Req::NotExists),
    ]
}

impl Req {
    fn render(&self, spaced: bool) -> String {
        let s = if spaced { " " } else { "" };
        match self {
            Req::Eq(k, v, double) => format!("{k}{s}{}{s}{v}", if *double { "==" } else { "=" }),
            Req::NotEq(k, v) => format!("{k}{s}!={s}{v}"),
            Req::In(k, vs) => format!("{k} in ({})", vs.join(&format!(",{s}"))),
            Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(&format!(",{s}"))),
            Req::Exists(k) => k.clone(),
            Req::NotExists(k) => format!("!{k}"),
        }
    }

    /// Upstream's semantics: `!=` and `notin` also match labels sets without the key.
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Req::Eq(k, v, _) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// The merge patch (RFC 7386) that turns `doc` into `target`.
fn merge_diff(doc: &Value, target: &Value) -> Value {
    match (doc, target) {
        (Value::Object(d), Value::Object(t)) => {
            let mut out = Map::new();
            for (k, tv) in t {
                match d.get(k) {
                    Some(dv) if dv == tv => {}
                    Some(dv) => {
                        out.insert(k.clone(), merge_diff(dv, tv));
                    }
                    None => {
                        out.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in d.keys().filter(|k| !t.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        (_, t) => t.clone(),
    }
}

/// Pointers to every object (`None`) and array (`Some(len)`) in `v`.
fn containers(v: &Value, at: String) -> Vec<(String, Option<usize>)> {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Object(m) => {
            let mut out = vec![(at.clone(), None)];
            for (k, child) in m {
                out.extend(containers(child, format!("{at}/{}", escape(k))));
            }
            out
        }
        Value::Array(a) => {
            let mut out = vec![(at.clone(), Some(a.len()))];
            for (i, child) in a.iter().enumerate() {
                out.extend(containers(child, format!("{at}/{i}")));
            }
            out
        }
        _ => Vec::new(),
    }
}

fn pointer() -> impl Strategy<Value = String> {
    vec(prop_oneof!["[a-c]", "[0-2]", Just("-".to_string())], 0..5)
        .prop_map(|t| t.iter().map(|t| format!("/{t}")).collect())
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    prop_oneof![
        (pointer(), value(true)).prop_map(|(p, v)| json!({"op": "add", "path": p, "value": v})),
        (pointer(), value(true)).prop_map(|(p, v)| json!({"op": "replace", "path": p, "value": v})),
        pointer().prop_map(|p| json!({"op": "remove", "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "copy", "from": f, "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "move", "from": f, "path": p})),
        (pointer(), value(true)).prop_map(|(p, v)| json!({"op": "test", "path": p, "value": v})),
    ]
}

fn pb_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn pb_field(tag: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_varint(tag << 3 | 2, &mut out);
    pb_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
