#!/usr/bin/env python3
"""Generates src/api/protobuf/schema.txt: the Kubernetes protobuf message layouts Skiff
decodes (kubectl 1.32+ sends protobuf bodies), with JSON field names.

Field numbers and types come from the prost code of the `k8s-pb` crate; JSON names from
the serde code of `k8s-openapi` (both in the cargo registry once `cargo fetch` ran).

Usage: scripts/gen-proto-schema.py K8S_PB_SRC K8S_OPENAPI_VERSION_SRC > src/api/protobuf/schema.txt
  e.g. ~/.cargo/registry/src/*/k8s-pb-0.9.0/src ~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_33
"""
import os
import re
import sys

PACKAGES = [
    "api/core/v1", "api/apps/v1", "api/batch/v1", "api/networking/v1", "api/rbac/v1",
    "api/authorization/v1", "api/authentication/v1", "api/coordination/v1",
    "api/discovery/v1", "api/policy/v1", "api/scheduling/v1", "api/autoscaling/v1",
    "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource", "apimachinery/pkg/runtime",
]

ATTR = re.compile(r'#\[prost\(([^]]*)\)\]')
FIELD = re.compile(r'pub (r#)?(\w+):\s*(.+),\s*$')
STRUCT = re.compile(r'pub struct (\w+) \{')


def json_names(openapi_root):
    """type name -> {lowercased json name without separators: json name}"""
    out = {}
    for dirpath, _, files in os.walk(openapi_root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            m = STRUCT.search(text)
            if not m:
                continue
            names = re.findall(r'"([A-Za-z0-9$]+)" => Field::Key_', text)
            out.setdefault(m.group(1), {}).update({n.lower(): n for n in names})
    return out


def camel(snake):
    parts = snake.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def resolve(module, rust_type):
    """A prost type path relative to `module` (list of segments) -> dotted full name."""
    path = rust_type.strip().lstrip(":").split("::")
    path = [p for p in path if p]
    mod = list(module)
    while path and path[0] == "super":
        path.pop(0)
        mod.pop()
    return ".".join(mod + path)


def inner(rust_type, wrappers):
    t = rust_type.strip()
    changed = True
    while changed:
        changed = False
        for w in wrappers:
            if t.startswith(w + "<") and t.endswith(">"):
                t = t[len(w) + 1:-1].strip()
                changed = True
    return t


WRAPPERS = ["::core::option::Option", "::prost::alloc::vec::Vec", "::prost::alloc::boxed::Box",
            "::std::boxed::Box", "Option", "Vec", "Box"]


def kind_of_attr(attr):
    return attr.split(",")[0].strip()


def main():
    pb_root, openapi_root = sys.argv[1], sys.argv[2]
    names = json_names(openapi_root)
    messages = []  # (full name, simple name, [(tag, json, spec, child full name or None, repeated)])
    for pkg in PACKAGES:
        module = pkg.split("/")
        text = open(os.path.join(pb_root, pkg, "mod.rs"), encoding="utf-8").read()
        current = None
        attr = None
        pending = ""
        for line in text.splitlines():
            line = line.strip()
            if pending or (attr and line.startswith("pub ") and not line.endswith(",")):
                # A field whose type spans several lines: join them.
                pending += line
                if pending.count("<") > pending.count(">") or not pending.endswith(","):
                    continue
                line, pending = pending.replace(",>", ">"), ""
            m = STRUCT.match(line)
            if m:
                current = m.group(1)
                messages.append((".".join(module + [current]), current, []))
                continue
            m = ATTR.match(line)
            if m:
                attr = m.group(1)
                continue
            m = FIELD.match(line)
            if not (m and attr and current):
                continue
            rust_name, rust_type = m.group(2), m.group(3)
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            json = names.get(current, {}).get(rust_name.replace("_", "").lower(), camel(rust_name))
            repeated = "repeated" in attr
            kind = kind_of_attr(attr)
            child = None
            if kind.startswith("btree_map") or kind.startswith("map"):
                k, v = re.search(r'"(\w+), (\w+)"', attr).groups()
                if v == "message":
                    args = rust_type.split("<", 1)[1].rsplit(">", 1)[0]
                    v = "m:" + resolve(module, args.split(",", 1)[1])
                spec = f"map:{k}:{v}"
            elif kind == "message":
                child = resolve(module, inner(rust_type, WRAPPERS))
                spec = f"m {child}"
            elif kind.startswith("bytes"):
                spec = "bytes"
            else:
                spec = kind
            messages[-1][2].append((tag, json, spec, child, repeated))
            attr = None

    by_name = {full: fields for full, _, fields in messages}
    print("# generated by scripts/gen-proto-schema.py; M <message>, F <tag> <json> <kind> [type] [r] [i]")
    for full, simple, fields in messages:
        print(f"M {full}")
        known = set(names.get(simple, {}).values())
        for tag, json, spec, child, repeated in fields:
            flags = " r" if repeated else ""
            # Go structs embedded with `json:",inline"` are a nested message in protobuf;
            # their JSON fields sit in the parent, which k8s-openapi shows.
            if child and known and json not in known:
                child_json = {f[1] for f in by_name.get(child, [])}
                # (a newer k8s-pb may know a few fields the k8s-openapi version lacks)
                if child_json and len(child_json & known) >= 0.75 * len(child_json):
                    flags += " i"
            print(f"F {tag} {json} {spec}{flags}")


main()
