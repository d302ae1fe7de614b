//! Chart values: the chart's values.yaml, overridden by `-f` files in order, overridden by
//! `--set` (Helm's strvals syntax), the way `helm install` coalesces them.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ChartError;

/// Helm refuses list indexes above this, so a typo cannot allocate a huge list.
const MAX_INDEX: usize = 65536;

/// Reads a YAML values file; an empty file is an empty map.
pub fn load_file(path: &Path) -> Result<Value, ChartError> {
    let text = std::fs::read_to_string(path).map_err(|e| ChartError::ValuesFile {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    parse_yaml(&text).map_err(|msg| ChartError::ValuesFile {
        path: path.to_path_buf(),
        msg,
    })
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    let v: Value = yaml_serde::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
    match v {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(v),
        _ => Err("the top level is not a mapping".into()),
    }
}

/// The user-supplied values: `-f` files deep-merged in order, then each `--set` applied.
pub fn user_values(files: &[PathBuf], sets: &[String]) -> Result<Value, ChartError> {
    let mut user = Value::Object(Map::new());
    for f in files {
        merge_into(&mut user, load_file(f)?);
    }
    for s in sets {
        parse_set(s, &mut user)?;
    }
    Ok(user)
}

/// The values a chart renders with: `user` over the chart's `defaults`, maps merged
/// key by key, and a `null` from the user deleting the key (Helm's coalesce).
pub fn coalesce(defaults: &Value, user: &Value) -> Value {
    let mut out = defaults.clone();
    overlay(&mut out, user);
    out
}

fn overlay(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                    continue;
                }
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => overlay(existing, v),
                    _ => {
                        let mut fresh = Value::Object(Map::new());
                        if v.is_object() {
                            // A user-only map still loses its nulls.
                            overlay(&mut fresh, v);
                        } else {
                            fresh = v.clone();
                        }
                        b.insert(k.clone(), fresh);
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Deep merge of two `-f` files: maps merge, anything else in `next` replaces (nulls kept,
/// so that the final coalesce can delete the key).
fn merge_into(base: &mut Value, next: Value) {
    match (base, next) {
        (Value::Object(b), Value::Object(n)) => {
            for (k, v) in n {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_into(existing, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, n) => *b = n,
    }
}

/// Applies one `--set` argument: `a.b=1,c[0]=x,d={p,q}` with `\` escaping `.`, `,`, `=`
/// and `[`. Values are typed as Helm types them (see [`typed`]).
pub fn parse_set(arg: &str, into: &mut Value) -> Result<(), ChartError> {
    let err = |msg: String| ChartError::Set {
        arg: arg.to_string(),
        msg,
    };
    let chars: Vec<char> = arg.chars().collect();
    let mut pos = 0;
    while pos < chars.len() {
        let (path, next) = parse_key(&chars, pos).map_err(err)?;
        pos = next;
        let value = if chars.get(pos) == Some(&'{') {
            let (items, next) = parse_list(&chars, pos + 1).map_err(err)?;
            pos = next;
            Value::Array(items.iter().map(|s| typed(s)).collect())
        } else {
            let (text, next) = read_until(&chars, pos, &[',']);
            pos = next;
            typed(&text)
        };
        set_path(into, &path, value).map_err(err)?;
        match chars.get(pos) {
            None => {}
            Some(',') => pos += 1,
            Some(c) => return Err(err(format!("unexpected {c:?} after a value"))),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Reads `a.b[2].c=` from `pos`; returns the path and the position after `=`.
fn parse_key(chars: &[char], mut pos: usize) -> Result<(Vec<Step>, usize), String> {
    let mut path = Vec::new();
    loop {
        let (key, next) = read_until(chars, pos, &['=', '.', '[', ',']);
        pos = next;
        let after_index = matches!(path.last(), Some(Step::Index(_))) && key.is_empty();
        if !after_index {
            if key.is_empty() {
                return Err("empty key".into());
            }
            path.push(Step::Key(key.clone()));
        }
        match chars.get(pos) {
            Some('=') => return Ok((path, pos + 1)),
            Some('.') => pos += 1,
            Some('[') => {
                let (digits, next) = read_until(chars, pos + 1, &[']']);
                if chars.get(next) != Some(&']') {
                    return Err(format!("unterminated index in key {key:?}"));
                }
                let i: usize = digits
                    .parse()
                    .map_err(|_| format!("index {digits:?} is not a non-negative integer"))?;
                if i > MAX_INDEX {
                    return Err(format!("index {i} is larger than {MAX_INDEX}"));
                }
                path.push(Step::Index(i));
                pos = next + 1;
                if !matches!(chars.get(pos), Some('=' | '.' | '[')) {
                    return Err(format!("key {key:?} has no value"));
                }
                if chars.get(pos) == Some(&'.') {
                    pos += 1;
                }
            }
            // `,` or the end before any `=`: Helm's "key has no value".
            _ => {
                let name: Vec<String> = path
                    .iter()
                    .map(|s| match s {
                        Step::Key(k) => k.clone(),
                        Step::Index(i) => format!("[{i}]"),
                    })
                    .collect();
                return Err(format!("key {:?} has no value", name.join(".")));
            }
        }
    }
}

/// Reads `p,q}`: the items of a `{...}` list value.
fn parse_list(chars: &[char], mut pos: usize) -> Result<(Vec<String>, usize), String> {
    let mut items = Vec::new();
    loop {
        let (item, next) = read_until(chars, pos, &[',', '}']);
        pos = next;
        match chars.get(pos) {
            Some(',') => {
                items.push(item);
                pos += 1;
            }
            Some('}') => {
                if !(item.is_empty() && items.is_empty()) {
                    items.push(item);
                }
                return Ok((items, pos + 1));
            }
            _ => return Err("list value without closing '}'".into()),
        }
    }
}

/// Reads up to an unescaped stop character; `\x` stands for `x`.
fn read_until(chars: &[char], mut pos: usize, stops: &[char]) -> (String, usize) {
    let mut out = String::new();
    while let Some(&c) = chars.get(pos) {
        if c == '\\' {
            if let Some(&n) = chars.get(pos + 1) {
                out.push(n);
                pos += 2;
                continue;
            }
        }
        if stops.contains(&c) {
            break;
        }
        out.push(c);
        pos += 1;
    }
    (out, pos)
}

/// Helm's `--set` typing: true/false (any case), null, and base-10 int64 without a leading
/// zero become typed values; everything else (floats included) stays a string.
fn typed(text: &str) -> Value {
    if text.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if text.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if text == "0" {
        return Value::from(0i64);
    }
    if !text.starts_with('0') {
        if let Ok(i) = text.parse::<i64>() {
            return Value::from(i);
        }
    }
    Value::String(text.to_string())
}

fn set_path(root: &mut Value, path: &[Step], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Err("empty key".into());
    };
    match first {
        Step::Key(k) => {
            if !root.is_object() {
                *root = Value::Object(Map::new());
            }
            let Value::Object(map) = root else {
                return Err("not a map".into());
            };
            if rest.is_empty() {
                map.insert(k.clone(), value);
                return Ok(());
            }
            let child = map.entry(k.clone()).or_insert(Value::Null);
            set_path(child, rest, value)
        }
        Step::Index(i) => {
            if !root.is_array() {
                *root = Value::Array(Vec::new());
            }
            let Value::Array(list) = root else {
                return Err("not a list".into());
            };
            if list.len() <= *i {
                list.resize(*i + 1, Value::Null);
            }
            if rest.is_empty() {
                list[*i] = value;
                return Ok(());
            }
            set_path(&mut list[*i], rest, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(args: &[&str]) -> Result<Value, ChartError> {
        let mut v = json!({});
        for a in args {
            parse_set(a, &mut v)?;
        }
        Ok(v)
    }

    #[test]
    fn set_types_like_helm() {
        let v = set(&["a=1,b=true,c=FALSE,d=01,e=1.5,f=null,g=,h=0,i=-3,j=9223372036854775808"])
            .unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": true, "c": false, "d": "01", "e": "1.5", "f": null, "g": "", "h": 0, "i": -3, "j": "9223372036854775808"})
        );
    }

    #[test]
    fn set_dotted_indexed_lists_and_escapes() {
        let v = set(&[
            "node.enabled=false",
            "x.y.z=deep",
            "list[1]=b,list[0].name=a",
            "names={p,q,3}",
            "empty={}",
            r"nodeSelector.kubernetes\.io/hostname=n1",
            r"msg=a\,b",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({
                "node": {"enabled": false},
                "x": {"y": {"z": "deep"}},
                "list": [{"name": "a"}, "b"],
                "names": ["p", "q", 3],
                "empty": [],
                "nodeSelector": {"kubernetes.io/hostname": "n1"},
                "msg": "a,b"
            })
        );
        // A later --set replaces a scalar on the way with a map.
        assert_eq!(set(&["a=1", "a.b=2"]).unwrap(), json!({"a": {"b": 2}}));
    }

    #[test]
    fn bad_set() {
        for bad in [
            "novalue",
            "a.b",
            "=1",
            "a..b=1",
            "a[x]=1",
            "a[1",
            "a[99999999]=1",
            "a={x,y",
            "a=1,b",
        ] {
            let e = set(&[bad]).expect_err(bad).to_string();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(set(&["a.b"])
            .unwrap_err()
            .to_string()
            .contains("has no value"));
    }

    #[test]
    fn precedence_defaults_files_set() {
        let dir = tempfile::tempdir().unwrap();
        let f1 = dir.path().join("one.yaml");
        let f2 = dir.path().join("two.yaml");
        std::fs::write(&f1, "replicas: 2\nimage: one\nlabels: {a: x, b: y}\n").unwrap();
        std::fs::write(&f2, "image: two\nlabels: {b: z}\nservice: null\n").unwrap();
        let user = user_values(&[f1, f2], &["replicas=7".into()]).unwrap();
        let defaults = json!({"replicas": 3, "image": "busybox:latest", "service": {"port": 80}, "labels": {"c": "w"}});
        let v = coalesce(&defaults, &user);
        assert_eq!(
            v,
            json!({"replicas": 7, "image": "two", "labels": {"a": "x", "b": "z", "c": "w"}})
        );
    }

    #[test]
    fn null_deletes_nested_default_and_user_only_nulls_vanish() {
        let defaults = json!({"a": {"b": 1, "c": 2}});
        let user = json!({"a": {"b": null}, "n": {"x": null, "y": 1}});
        assert_eq!(
            coalesce(&defaults, &user),
            json!({"a": {"c": 2}, "n": {"y": 1}})
        );
    }

    #[test]
    fn values_file_errors_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, "a: [1,\n b: {\n").unwrap();
        let e = user_values(&[f], &[]).unwrap_err().to_string();
        assert!(e.starts_with("values file") && !e.contains('\n'), "{e}");
        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- 1\n").unwrap();
        assert!(user_values(&[list], &[]).is_err());
        assert!(user_values(&[dir.path().join("missing.yaml")], &[]).is_err());
    }
}
