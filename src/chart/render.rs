//! Rendering a chart: every file under templates/ is parsed into one template set (so any
//! file may use any `define`), then each file that is not a `_` partial is executed with
//! the built-in objects, and its output is split into manifests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gtmpl_ng::{Context, FuncError, Template, Value};
use serde_json::{json, Value as Json};

use super::funcs::{self, from_json_value, text};
use super::manifest::{self, Manifest};
use super::{Chart, ChartError};

/// `include` and `tpl` re-enter the engine, each level on the stack; Helm stops runaway
/// recursion at 1000, we stop earlier because every level here is a whole render.
const MAX_INCLUDE_DEPTH: usize = 64;
/// The render runs on its own thread with this stack, so nested includes (each up to the
/// engine's own nesting cap) cannot overflow the caller's stack.
const RENDER_STACK: usize = 256 << 20;
const TOO_DEEP: &str = "nested too deep (a recursive template?)";

pub struct RenderOptions {
    pub release_name: String,
    pub namespace: String,
    pub revision: u64,
    pub is_upgrade: bool,
}

#[derive(Debug)]
pub struct Rendered {
    /// In Helm's install order (by kind, then by file).
    pub manifests: Vec<Manifest>,
    /// The rendered templates/NOTES.txt, empty when the chart has none.
    pub notes: String,
}

/// Renders `chart` with the final (coalesced) `values`.
pub fn render(chart: &Chart, values: &Json, opts: &RenderOptions) -> Result<Rendered, ChartError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chart-render".into())
            .stack_size(RENDER_STACK)
            .spawn_scoped(scope, || render_here(chart, values, opts))
            .map_err(|e| ChartError::Render(format!("cannot start the render thread: {e}")))?
            .join()
            .map_err(|_| ChartError::Render("the template engine panicked".into()))?
    })
}

fn render_here(chart: &Chart, values: &Json, opts: &RenderOptions) -> Result<Rendered, ChartError> {
    let chart_name = &chart.meta.name;
    let sources: Vec<(String, String)> = chart
        .templates
        .iter()
        .map(|(rel, text)| (format!("{chart_name}/{rel}"), text.clone()))
        .collect();
    let mut set = template_set(&sources).map_err(ChartError::Parse)?;
    INCLUDES.with(|c| {
        *c.borrow_mut() = Some(Includes {
            sources: sources.clone(),
            cache: HashMap::new(),
            depth: 0,
        })
    });
    let base = builtins(chart, values, opts);
    let notes_name = format!("{chart_name}/templates/NOTES.txt");
    let mut manifests = Vec::new();
    let mut notes = String::new();
    for (name, _) in &sources {
        let base_name = name.rsplit('/').next().unwrap_or(name);
        if base_name.starts_with('_') {
            continue;
        }
        set.name = name.clone();
        let data = with_template(&base, name, chart_name);
        let out = set
            .render(&Context::from(data))
            .map_err(|e| ChartError::Render(e.to_string()))?;
        // Helm renders missing values as nothing rather than Go's `<no value>`.
        let out = out.replace("<no value>", "");
        if *name == notes_name {
            notes = out;
        } else {
            manifests.extend(manifest::split(name, &out)?);
        }
    }
    INCLUDES.with(|c| *c.borrow_mut() = None);
    manifest::sort_for_install(&mut manifests);
    Ok(Rendered { manifests, notes })
}

/// .Values, .Release, .Chart and .Capabilities as Helm names them.
fn builtins(chart: &Chart, values: &Json, opts: &RenderOptions) -> Json {
    let m = &chart.meta;
    json!({
        "Values": values,
        "Release": {
            "Name": opts.release_name,
            "Namespace": opts.namespace,
            "Service": "Skiff",
            "IsInstall": !opts.is_upgrade,
            "IsUpgrade": opts.is_upgrade,
            "Revision": opts.revision,
        },
        "Chart": {
            "Name": m.name,
            "Version": m.version,
            "AppVersion": m.app_version,
            "Description": m.description,
            "APIVersion": m.api_version,
            "Type": if m.chart_type.is_empty() { "application" } else { m.chart_type.as_str() },
        },
        "Capabilities": {
            "KubeVersion": {"Version": "v1.33.0", "Major": "1", "Minor": "33"},
        },
    })
}

fn with_template(base: &Json, name: &str, chart_name: &str) -> Value {
    let mut data = base.clone();
    data["Template"] = json!({"Name": name, "BasePath": format!("{chart_name}/templates")});
    from_json_value(&data)
}

/// A template set holding every chart file, with Skiff's functions.
fn template_set(sources: &[(String, String)]) -> Result<Template, String> {
    let mut t = Template::default();
    t.add_funcs(funcs::FUNCS);
    t.add_func("include", include);
    t.add_func("tpl", tpl);
    for (name, text) in sources {
        t.add_template(name.clone(), text.clone())
            .map_err(|e| e.to_string())?;
    }
    Ok(t)
}

struct Includes {
    sources: Vec<(String, String)>,
    /// One template set per included name: the engine renders a set from its `name`, and
    /// a set cannot be renamed while the file that calls `include` is rendering from it.
    cache: HashMap<String, Rc<Template>>,
    depth: usize,
}

thread_local! {
    // Template functions are plain `fn` pointers, so the chart being rendered reaches
    // `include` through the render thread's state.
    static INCLUDES: RefCell<Option<Includes>> = const { RefCell::new(None) };
}

/// Counts one level of include/tpl nesting for as long as it lives.
struct Nested;

impl Nested {
    fn enter(what: &str) -> Result<Nested, FuncError> {
        INCLUDES.with(|c| {
            let mut c = c.borrow_mut();
            let inc = c
                .as_mut()
                .ok_or_else(|| FuncError::Generic(format!("{what} outside a chart render")))?;
            if inc.depth >= MAX_INCLUDE_DEPTH {
                return Err(FuncError::Generic(format!("{what}: {TOO_DEEP}")));
            }
            inc.depth += 1;
            Ok(Nested)
        })
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        INCLUDES.with(|c| {
            if let Some(inc) = c.borrow_mut().as_mut() {
                inc.depth = inc.depth.saturating_sub(1);
            }
        })
    }
}

fn name_and_data(what: &str, args: &[Value]) -> Result<(String, Value), FuncError> {
    match args {
        [n] => Ok((text(n), Value::Nil)),
        [n, d] => Ok((text(n), d.clone())),
        _ => Err(FuncError::ExactlyXArgs(what.into(), 2)),
    }
}

/// Helm's `include NAME DATA`: a defined template rendered to a string, so it can be piped.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    let (name, data) = name_and_data("include", args)?;
    let _level = Nested::enter("include")?;
    let set = INCLUDES.with(|c| -> Result<Rc<Template>, FuncError> {
        let mut c = c.borrow_mut();
        let inc = c
            .as_mut()
            .ok_or_else(|| FuncError::Generic("include outside a chart render".into()))?;
        if let Some(t) = inc.cache.get(&name) {
            return Ok(t.clone());
        }
        let mut t = template_set(&inc.sources).map_err(FuncError::Generic)?;
        t.name = name.clone();
        let t = Rc::new(t);
        inc.cache.insert(name.clone(), t.clone());
        Ok(t)
    })?;
    set.render(&Context::from(data))
        .map(Value::String)
        .map_err(|e| nested_error("include", &name, e))
}

/// Helm's `tpl TEXT DATA`: a string rendered as a template, with the chart's defines.
fn tpl(args: &[Value]) -> Result<Value, FuncError> {
    let (body, data) = name_and_data("tpl", args)?;
    let _level = Nested::enter("tpl")?;
    let sources = INCLUDES.with(|c| c.borrow().as_ref().map(|inc| inc.sources.clone()));
    let sources = sources.ok_or_else(|| FuncError::Generic("tpl outside a chart render".into()))?;
    let mut t = template_set(&sources).map_err(FuncError::Generic)?;
    // A name no chart file can have, so the text cannot shadow a file.
    let name = "<tpl>";
    t.add_template(name, body)
        .map_err(|e| FuncError::Generic(format!("tpl: {e}")))?;
    t.name = name.into();
    t.render(&Context::from(data))
        .map(Value::String)
        .map_err(|e| nested_error("tpl", name, e))
}

/// An error from a nested render; runaway recursion is reported once, not once per level.
fn nested_error(what: &str, name: &str, e: gtmpl_ng::ExecError) -> FuncError {
    let text = e.to_string();
    if text.contains(TOO_DEEP) {
        FuncError::Generic(format!("{what} {name:?}: {TOO_DEEP}"))
    } else {
        FuncError::Generic(format!("{what} {name:?}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::ChartMeta;

    fn chart(files: &[(&str, &str)]) -> Chart {
        Chart {
            dir: "/nowhere".into(),
            meta: ChartMeta {
                api_version: "v2".into(),
                name: "t".into(),
                version: "1.0.0".into(),
                app_version: "2".into(),
                description: String::new(),
                chart_type: String::new(),
            },
            values: json!({}),
            templates: files
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    fn opts() -> RenderOptions {
        RenderOptions {
            release_name: "r".into(),
            namespace: "ns".into(),
            revision: 4,
            is_upgrade: true,
        }
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ";

    #[test]
    fn include_tpl_builtins_and_missing_values() {
        let c = chart(&[
            ("templates/_h.tpl", "{{ define \"n\" }}{{ .Release.Name }}-{{ .Chart.Name }}{{ end }}"),
            (
                "templates/cm.yaml",
                &format!("{CM}{{{{ include \"n\" . | upper }}}}\ndata:\n  rev: {{{{ .Release.Revision | quote }}}}\n  up: {{{{ .Release.IsUpgrade | quote }}}}\n  ns: {{{{ .Release.Namespace }}}}\n  app: {{{{ .Chart.AppVersion | quote }}}}\n  tpl: {{{{ tpl .Values.t . }}}}\n  missing: \"{{{{ .Values.nope }}}}\"\n  file: {{{{ .Template.Name }}}}\n"),
            ),
            ("templates/NOTES.txt", "hello {{ include \"n\" . }}"),
        ]);
        let r = render(&c, &json!({"t": "{{ .Release.Name }}x"}), &opts()).unwrap();
        assert_eq!(r.manifests.len(), 1);
        let o = &r.manifests[0].object;
        assert_eq!(o["metadata"]["name"], "R-T");
        assert_eq!(
            o["data"],
            json!({"rev": "4", "up": "true", "ns": "ns", "app": "2", "tpl": "rx", "missing": "", "file": "t/templates/cm.yaml"})
        );
        assert_eq!(r.notes, "hello r-t");
    }

    #[test]
    fn errors_name_the_file() {
        let c = chart(&[("templates/bad.yaml", "{{ if }}")]);
        let e = render(&c, &json!({}), &opts()).unwrap_err().to_string();
        assert!(
            e.starts_with("parse error") && e.contains("t/templates/bad.yaml"),
            "{e}"
        );
        let c = chart(&[("templates/x.yaml", "{{ include \"nope\" . }}")]);
        let e = render(&c, &json!({}), &opts()).unwrap_err().to_string();
        assert!(
            e.contains("t/templates/x.yaml") && e.contains("nope"),
            "{e}"
        );
        let c = chart(&[("templates/x.yaml", "{{ required \"set foo\" .Values.foo }}")]);
        let e = render(&c, &json!({}), &opts()).unwrap_err().to_string();
        assert!(e.contains("set foo"), "{e}");
    }

    #[test]
    fn runaway_include_is_an_error_not_a_crash() {
        let c = chart(&[
            (
                "templates/_loop.tpl",
                "{{ define \"loop\" }}{{ include \"loop\" . }}{{ end }}",
            ),
            ("templates/x.yaml", "{{ include \"loop\" . }}"),
        ]);
        let e = render(&c, &json!({}), &opts()).unwrap_err().to_string();
        assert!(e.contains("nested too deep") && e.len() < 200, "{e}");
    }
}
