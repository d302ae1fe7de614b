//! The template functions charts call, with Helm's (Sprig's) names, argument order (the
//! piped value last) and treatment of empty values. `include` and `tpl` live in render.rs
//! because they render templates.

use gtmpl_ng::{Func, FuncError, Number, NumberKind, Value};

pub const FUNCS: &[(&str, Func)] = &[
    ("toYaml", to_yaml),
    ("toJson", to_json),
    ("indent", indent),
    ("nindent", nindent),
    ("default", default),
    ("empty", empty),
    ("required", required),
    ("quote", quote),
    ("squote", squote),
    ("trunc", trunc),
    ("trim", trim),
    ("trimSuffix", trim_suffix),
    ("trimPrefix", trim_prefix),
    ("replace", replace),
    ("lower", lower),
    ("upper", upper),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("toString", to_string),
    ("int", int),
    ("list", list),
    ("dict", dict),
];

/// A template value as JSON, for toYaml/toJson and for manifests.
pub fn to_json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => match n.kind() {
            NumberKind::Unsigned(u) => u.into(),
            NumberKind::Signed(i) => i.into(),
            NumberKind::Float(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        },
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json_value).collect()),
        Value::Object(m) | Value::Map(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect(),
        ),
    }
}

/// JSON (values, built-in objects) as a template value.
pub fn from_json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Number(n) => Value::Number(if let Some(i) = n.as_i64() {
            Number::signed(i)
        } else if let Some(u) = n.as_u64() {
            Number::unsigned(u)
        } else {
            Number::float(n.as_f64().unwrap_or(0.0))
        }),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json_value).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), from_json_value(v)))
                .collect(),
        ),
    }
}

fn generic(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn exactly(name: &str, n: usize, args: &[Value]) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

/// Go's `%v` of a value, with nothing for nil (Sprig's strval, and what Helm shows after
/// replacing `<no value>`).
pub fn text(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int_arg(name: &str, v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => match n.kind() {
            NumberKind::Signed(i) => Ok(i),
            NumberKind::Unsigned(u) => {
                i64::try_from(u).map_err(|_| generic(format!("{name}: {u} is too large")))
            }
            // Sprig's toInt truncates.
            NumberKind::Float(f) => Ok(f as i64),
        },
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| generic(format!("{name}: {s:?} is not an integer"))),
        other => Err(generic(format!("{name}: {other} is not an integer"))),
    }
}

/// Sprig's `empty`: nil, false, 0, "" and empty lists and maps.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => match n.kind() {
            NumberKind::Unsigned(u) => u == 0,
            NumberKind::Signed(i) => i == 0,
            NumberKind::Float(f) => f == 0.0,
        },
        Value::Array(a) => a.is_empty(),
        Value::Object(m) | Value::Map(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toYaml", 1, args)?;
    let text = yaml_serde::to_string(&to_json_value(&args[0]))
        .map_err(|e| generic(format!("toYaml: {e}")))?;
    // Helm trims the final newline so that `toYaml | nindent` composes.
    Ok(Value::String(text.trim_end_matches('\n').to_string()))
}

fn to_json(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toJson", 1, args)?;
    serde_json::to_string(&to_json_value(&args[0]))
        .map(Value::String)
        .map_err(|e| generic(format!("toJson: {e}")))
}

fn pad(name: &str, args: &[Value]) -> Result<String, FuncError> {
    exactly(name, 2, args)?;
    let n = int_arg(name, &args[0])?;
    let n = usize::try_from(n).map_err(|_| generic(format!("{name}: negative width {n}")))?;
    // The engine caps one function's output; a width beyond it is a mistake, not a layout.
    if n > 1000 {
        return Err(generic(format!("{name}: width {n} is more than 1000")));
    }
    let pad = " ".repeat(n);
    Ok(format!(
        "{pad}{}",
        text(&args[1]).replace('\n', &format!("\n{pad}"))
    ))
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    pad("indent", args).map(Value::String)
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    pad("nindent", args).map(|s| Value::String(format!("\n{s}")))
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, given] if is_empty(given) => Ok(d.clone()),
        [_, given] => Ok(given.clone()),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

fn empty(args: &[Value]) -> Result<Value, FuncError> {
    exactly("empty", 1, args)?;
    Ok(Value::Bool(is_empty(&args[0])))
}

fn required(args: &[Value]) -> Result<Value, FuncError> {
    exactly("required", 2, args)?;
    match &args[1] {
        Value::NoValue | Value::Nil => Err(generic(text(&args[0]))),
        Value::String(s) if s.is_empty() => Err(generic(text(&args[0]))),
        v => Ok(v.clone()),
    }
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for a in args
        .iter()
        .filter(|a| !matches!(a, Value::Nil | Value::NoValue))
    {
        // Go's %q through the engine's own printf, so escapes match Helm byte for byte.
        let q = gtmpl_ng::funcs::printf(&[Value::from("%q"), Value::String(text(a))])?;
        out.push(text(&q));
    }
    Ok(Value::String(out.join(" ")))
}

fn squote(args: &[Value]) -> Result<Value, FuncError> {
    let out: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::Nil | Value::NoValue))
        .map(|a| format!("'{}'", text(a)))
        .collect();
    Ok(Value::String(out.join(" ")))
}

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trunc", 2, args)?;
    let n = int_arg("trunc", &args[0])?;
    let s: Vec<char> = text(&args[1]).chars().collect();
    let len = s.len() as i64;
    let kept: String = if n < 0 && len + n > 0 {
        s[(len + n) as usize..].iter().collect()
    } else if n >= 0 && len > n {
        s[..n as usize].iter().collect()
    } else {
        s.iter().collect()
    };
    Ok(Value::String(kept))
}

fn trim(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trim", 1, args)?;
    Ok(Value::String(text(&args[0]).trim().to_string()))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trimSuffix", 2, args)?;
    let (suffix, s) = (text(&args[0]), text(&args[1]));
    Ok(Value::String(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
    ))
}

fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trimPrefix", 2, args)?;
    let (prefix, s) = (text(&args[0]), text(&args[1]));
    Ok(Value::String(
        s.strip_prefix(prefix.as_str()).unwrap_or(&s).to_string(),
    ))
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    exactly("replace", 3, args)?;
    let (old, new, s) = (text(&args[0]), text(&args[1]), text(&args[2]));
    // Go's strings.Replace with an empty `old` inserts between every rune; str::replace
    // does the same.
    Ok(Value::String(s.replace(&old, &new)))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    exactly("lower", 1, args)?;
    Ok(Value::String(text(&args[0]).to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    exactly("upper", 1, args)?;
    Ok(Value::String(text(&args[0]).to_uppercase()))
}

fn contains(args: &[Value]) -> Result<Value, FuncError> {
    exactly("contains", 2, args)?;
    Ok(Value::Bool(text(&args[1]).contains(&text(&args[0]))))
}

fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    exactly("hasPrefix", 2, args)?;
    Ok(Value::Bool(text(&args[1]).starts_with(&text(&args[0]))))
}

fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    exactly("hasSuffix", 2, args)?;
    Ok(Value::Bool(text(&args[1]).ends_with(&text(&args[0]))))
}

fn to_string(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toString", 1, args)?;
    Ok(Value::String(text(&args[0])))
}

fn int(args: &[Value]) -> Result<Value, FuncError> {
    exactly("int", 1, args)?;
    // Sprig's cast: anything unreadable is 0.
    let n = match &args[0] {
        Value::Bool(b) => i64::from(*b),
        v => int_arg("int", v).unwrap_or(0),
    };
    Ok(Value::from(n))
}

fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

fn dict(args: &[Value]) -> Result<Value, FuncError> {
    let mut m = std::collections::HashMap::new();
    for pair in args.chunks(2) {
        let v = pair.get(1).cloned().unwrap_or(Value::Nil);
        m.insert(text(&pair[0]), v);
    }
    Ok(Value::Map(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::from(v)
    }

    fn call(f: Func, args: &[Value]) -> String {
        text(&f(args).unwrap())
    }

    #[test]
    fn string_functions() {
        assert_eq!(call(nindent, &[Value::from(2i64), s("a\nb")]), "\n  a\n  b");
        assert_eq!(call(indent, &[Value::from(1i64), s("a")]), " a");
        assert_eq!(
            call(quote, &[s("a\"b"), Value::Nil, Value::from(3i64)]),
            "\"a\\\"b\" \"3\""
        );
        assert_eq!(call(trunc, &[Value::from(3i64), s("abcdef")]), "abc");
        assert_eq!(call(trunc, &[Value::from(-2i64), s("abcdef")]), "ef");
        assert_eq!(call(trim_suffix, &[s("-"), s("a-")]), "a");
        assert_eq!(call(replace, &[s("+"), s("_"), s("1+2")]), "1_2");
        assert_eq!(call(upper, &[s("ab")]), "AB");
        assert!(indent(&[Value::from(-1i64), s("a")]).is_err());
    }

    #[test]
    fn defaults_and_required() {
        assert_eq!(call(default, &[s("d"), Value::NoValue]), "d");
        assert_eq!(call(default, &[s("d"), s("")]), "d");
        assert_eq!(call(default, &[s("d"), s("x")]), "x");
        assert_eq!(call(default, &[Value::from(3i64), Value::from(0i64)]), "3");
        assert!(required(&[s("need x"), Value::NoValue]).is_err());
        assert_eq!(call(required, &[s("need x"), s("v")]), "v");
    }

    #[test]
    fn yaml_and_json() {
        let v = from_json_value(&serde_json::json!({"b": [1, "x"], "a": {"c": true}}));
        assert_eq!(
            call(to_yaml, std::slice::from_ref(&v)),
            "a:\n  c: true\nb:\n- 1\n- x"
        );
        assert_eq!(call(to_json, &[v]), r#"{"a":{"c":true},"b":[1,"x"]}"#);
    }
}
