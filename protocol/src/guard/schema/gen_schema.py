#!/usr/bin/env python3
"""Generates the guard's request schemas (and the unit tests' sample builders) from
kafka-protocol's generated decoders, which are the ground truth for what will read the
bytes after the guard.

usage: python3 gen_schema.py ~/.cargo/registry/src/*/kafka-protocol-0.18.0
       rustfmt --edition 2021 ../mod.rs   # formats the generated files too

Re-run after every kafka-protocol upgrade; it refuses (exits non-zero) on any decode
shape it does not understand instead of guessing.
"""
import os
import re
import sys

# (ApiKey variant, message file stem) in priority order.
COVERED = [
    "ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets", "CreateTopics",
    "DeleteTopics", "DescribeConfigs", "AlterConfigs", "IncrementalAlterConfigs",
    "CreatePartitions", "DeleteRecords", "DescribeCluster", "FindCoordinator",
    "JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "OffsetCommit", "OffsetFetch",
    "ListGroups", "DescribeGroups", "DeleteGroups", "OffsetDelete", "InitProducerId",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit",
    "WriteTxnMarkers", "DescribeProducers", "ListTransactions", "DescribeTransactions",
    "OffsetForLeaderEpoch", "SaslHandshake", "SaslAuthenticate",
    "ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "DescribeUserScramCredentials",
    "AlterUserScramCredentials", "DescribeLogDirs", "AlterReplicaLogDirs", "ElectLeaders",
    "AlterPartitionReassignments", "ListPartitionReassignments", "DescribeQuorum",
    "DescribeTopicPartitions", "DescribeClientQuotas", "AlterClientQuotas",
    "CreateAcls", "DescribeAcls", "DeleteAcls",
    "ShareGroupHeartbeat", "ShareGroupDescribe", "ShareFetch", "ShareAcknowledge",
    "DescribeShareGroupOffsets", "AlterShareGroupOffsets", "DeleteShareGroupOffsets",
]

SCALARS = {
    "types::Boolean": "Bool", "types::Int8": "Int8", "types::Int16": "Int16",
    "types::UInt16": "UInt16", "types::Int32": "Int32", "types::UInt32": "UInt32",
    "types::Int64": "Int64", "types::Float64": "Float64", "types::Uuid": "Uuid",
}
SAMPLE_SCALAR = {
    "Bool": "true", "Int8": "7i8.into()", "Int16": "7i16.into()", "UInt16": "7u16.into()",
    "Int32": "7i32.into()", "UInt32": "7u32.into()", "Int64": "7i64.into()",
    "Float64": "1.5f64.into()", "Uuid": "uuid!()", "String": "s()", "Bytes": "b()",
}


def die(msg):
    sys.exit(f"gen_schema: {msg}")


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def match_brace(s, i):
    """Index just past the brace block opening at s[i] == '{'."""
    assert s[i] == "{", s[i:i + 40]
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    die("unbalanced braces")


def cond_fn(cond):
    py = cond.replace("&&", " and ").replace("||", " or ").replace("!=", "!=")
    if not re.fullmatch(r"[ version<>=!0-9andor]+", py):
        die(f"odd condition {cond!r}")
    return lambda v: eval(py, {}, {"version": v})


def parse_expr(s):
    """Decode expression -> tree: ('if', cond, a, b) | ('decode', ty) | ('default',)."""
    s = s.strip()
    if s.startswith("if "):
        i = s.index("{")
        cond = cond_fn(s[3:i])
        j = match_brace(s, i)
        then = parse_expr(s[i + 1:j - 1])
        rest = s[j:].strip()
        if not rest.startswith("else"):
            die(f"if without else: {s[:80]}")
        rest = rest[4:].strip()
        if rest.startswith("if "):
            other = parse_expr(rest)
        else:
            k = match_brace(rest, 0)
            other = parse_expr(rest[1:k - 1])
        return ("if", cond, then, other)
    m = re.fullmatch(r"(types::.*)\.decode\(buf\)\?", s)
    if m:
        return ("decode", m.group(1))
    if "decode" in s or "bail" in s:
        die(f"unexpected expression {s[:80]}")
    return ("default",)


def eval_expr(tree, v):
    while tree[0] == "if":
        tree = tree[2] if tree[1](v) else tree[3]
    return tree[1] if tree[0] == "decode" else None


def split_statements(body):
    """Top-level statements of a block (split on ';' and on closing braces of if-blocks)."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(body):
        c = body[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                rest = body[i + 1:].lstrip()
                if not rest.startswith("else") and not rest.startswith(".") and not rest.startswith(")") and not rest.startswith("."):
                    out.append(body[start:i + 1].strip())
                    start = i + 1
        elif c == ";" and depth == 0:
            out.append(body[start:i].strip())
            start = i + 1
        i += 1
    if body[start:].strip():
        out.append(body[start:].strip())
    return [x for x in out if x and x != ")"]


class Msg:
    pass


def parse_file(path):
    src = open(path).read()
    structs = {}
    for m in re.finditer(r"pub struct (\w+) \{", src):
        end = match_brace(src, m.end() - 1)
        fields = dict(re.findall(r"pub (\w+): ([^\n]+),\n", src[m.end():end]))
        structs[m.group(1)] = fields
    decodes = {}
    for m in re.finditer(r"impl Decodable for (\w+) \{", src):
        i = src.index("{", src.index("fn decode", m.end()))
        end = match_brace(src, i)
        decodes[m.group(1)] = src[i + 1:end - 1]
    ranges = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"impl Message for (\w+) \{\s*const VERSIONS: VersionRange = VersionRange \{ min: (\d+), max: (\d+) \}", src)}
    return structs, decodes, ranges


def rust_inner(ty):
    """('opt', inner) / ('vec', inner) / name peeled from a Rust field type."""
    ty = ty.strip()
    for w in ("Option", "Vec"):
        if ty.startswith(w + "<") and ty.endswith(">"):
            return w, ty[len(w) + 1:-1]
    return None, ty


class Gen:
    def __init__(self, stem, structs, decodes, vmin, vmax):
        self.stem, self.structs, self.decodes = stem, structs, decodes
        self.vmin, self.vmax = vmin, vmax
        self.flex = None
        self.out_structs = []  # (name, fields, tagged)
        self.seen = set()

    def versions_of(self, pred):
        vs = [v for v in range(self.vmin, self.vmax + 1) if pred(v)]
        if not vs:
            return None
        if vs != list(range(vs[0], vs[-1] + 1)):
            die(f"{self.stem}: non-contiguous versions {vs}")
        return vs[0], vs[-1]

    def set_flex(self, f):
        if self.flex is None:
            self.flex = f
        elif self.flex != f:
            die(f"{self.stem}: flexible versions disagree {self.flex} vs {f}")

    def classify(self, expr, rust_ty, struct, field, v):
        """Schema type (compact-agnostic) for one decode call at version v."""
        wrap, inner = rust_inner(rust_ty)
        nullable = wrap == "Option"
        if nullable:
            wrap, inner = rust_inner(inner)
        compact = "Compact" in expr
        flexible = self.flex is not None and v >= self.flex
        if compact != flexible and not expr.startswith(tuple(SCALARS)) and expr[7:13] not in ("Struct", "Option"):
            # compact types appear exactly in the flexible versions
            self.pending_compact.append((v, compact, f"{struct}.{field}"))
        e = expr.replace("Compact", "")
        if e in SCALARS:
            return SCALARS[e], None
        if e == "types::String":
            return ("NullableString" if nullable else "String"), None
        if e == "types::Bytes":
            return ("NullableBytes" if nullable else "Bytes"), None
        if e == "types::Struct { version }":
            assert not nullable
            return "Struct", inner
        if e == "types::OptionStruct { version }":
            assert nullable
            return "OptionStruct", inner
        m = re.fullmatch(r"types::Array\((.*)\)", e)
        if m:
            if wrap != "Vec":
                die(f"array field {struct}.{field} has Rust type {rust_ty}")
            el = m.group(1)
            ew, einner = rust_inner(inner)
            if ew is not None:
                die(f"nested wrapper in {struct}.{field}: {rust_ty}")
            arr = "NullableArray" if nullable else "Array"
            if el == "types::Struct { version }":
                return arr, einner
            if el in SCALARS:
                return f"{arr}({SCALARS[el]})", None
            if el == "types::String":
                return f"{arr}(String)", None
            die(f"array element {el}")
        die(f"unknown decoder {expr} for {struct}.{field}")

    def gen_struct(self, name):
        if name in self.seen:
            return
        self.seen.add(name)
        body = self.decodes.get(name) or die(f"{self.stem}: no decode for {name}")
        rfields = self.structs[name]
        stmts = split_statements(body)
        fields, tagged = [], []
        # flexible version: find the tagged-field block first
        for st in stmts:
            if "num_tagged_fields" in st:
                m = re.match(r"if (version[^{]*)\{", st)
                if m:
                    fv = self.versions_of(cond_fn(m.group(1)))
                    if fv[1] != self.vmax:
                        die("flex range must end at max")
                    self.set_flex(fv[0])
                else:
                    self.set_flex(self.vmin)
                for am in re.finditer(r"\n\s*(\d+) => \{", st):
                    k = match_brace(st, am.end() - 1)
                    arm = st[am.end():k - 1].strip()
                    cond = lambda v: True
                    cm = re.fullmatch(r"if (version[^{]*)\{(.*)\} else \{\s*bail!\([^;]*\);\s*\}", arm, re.S)
                    if cm:
                        cond = cond_fn(cm.group(1))
                        arm = cm.group(2).strip()
                    fm = re.fullmatch(r"(\w+) = (types::.*)\.decode\(buf\)\?;", arm, re.S)
                    if not fm:
                        die(f"odd tagged arm {arm!r}")
                    tagged.append((int(am.group(1)), fm.group(1), cond, fm.group(2)))
        self.pending_compact = []
        for st in stmts:
            if st.startswith("let mut ") or "num_tagged_fields" in st or st.startswith("Ok(Self"):
                continue
            m = re.fullmatch(r"if version < (\d+) \|\| version > (\d+) \{\s*bail!\([^;]*\);\s*\}", st, re.S) or \
                re.fullmatch(r"if version != (\d+) \{\s*bail!\([^;]*\);\s*\}", st, re.S)
            if m:
                continue
            m = re.fullmatch(r"let (\w+) = (.*)", st, re.S)
            if not m:
                die(f"{self.stem}/{name}: odd statement {st[:100]!r}")
            fname, tree = m.group(1), parse_expr(m.group(2))
            per_v = {}
            for v in range(self.vmin, self.vmax + 1):
                expr = eval_expr(tree, v)
                if expr is not None:
                    per_v[v] = self.classify(expr, rfields[fname], name, fname, v)
            if not per_v:
                continue
            kinds = set(per_v.values())
            if len(kinds) != 1:
                die(f"{name}.{fname}: type changes across versions {kinds}")
            vr = self.versions_of(lambda v: v in per_v)
            fields.append((fname, vr, kinds.pop(), rfields[fname]))
        self.out_structs.append((name, fields, []))
        idx = len(self.out_structs) - 1
        for f in fields:
            if f[2][1]:
                self.gen_struct(f[2][1])
        tag_out = []
        for tag, fname, cond, expr in tagged:
            vr = self.versions_of(lambda v: cond(v) and self.flex is not None and v >= self.flex)
            kind = self.classify(expr, rfields[fname], name, fname, self.vmax)
            tag_out.append((tag, fname, vr, kind, rfields[fname]))
            if kind[1]:
                self.gen_struct(kind[1])
        self.out_structs[idx] = (name, fields, tag_out)
        for v, compact, where in self.pending_compact:
            if compact != (v >= self.flex if self.flex is not None else False):
                die(f"{where}: compact encoding at v{v} does not match flexible versions")


def const_name(name):
    return snake(name).upper()


def ty_expr(kind):
    k, s = kind
    if s:
        return f"{k}(&{const_name(s)})" if k in ("Struct", "OptionStruct") else f"{k}(&Struct(&{const_name(s)}))"
    m = re.fullmatch(r"(\w+)\((\w+)\)", k)
    if m:
        return f"{m.group(1)}(&{m.group(2)})"
    return k


def emit_schema(api, g, top):
    lines = [
        f"//! {api} request schema, generated by `gen_schema.py` from kafka-protocol 0.18.0's",
        f"//! `{g.stem}.rs` decoders. Do not edit by hand: re-run the generator.",
        "",
        "use crate::guard::walk::{Field, Message, StructSchema, %sTy::*};"
        % ("Tagged, " if any(t for _, _, t in g.out_structs) else ""),
        "",
        f"/// How kafka-protocol decodes a {api} request body, version by version.",
        f"pub(crate) const MESSAGE: Message = Message {{",
        f"    versions: ({g.vmin}, {g.vmax}),",
        f"    flexible: {g.flex if g.flex is not None else 'i16::MAX'},",
        f"    root: &{const_name(top)},",
        "};",
    ]
    for name, fields, tagged in g.out_structs:
        lines += ["", f"pub(crate) const {const_name(name)}: StructSchema = StructSchema {{", f'    name: "{name}",', "    fields: &["]
        for fname, (a, b), kind, _ in fields:
            lines.append(f'        Field::new("{fname}", {a}, {b}, {ty_expr(kind)}),')
        if not tagged:
            lines += ["    ],", "    tagged: &[],", "};"]
            continue
        lines += ["    ],", "    tagged: &["]
        for tag, fname, (a, b), kind, _ in tagged:
            lines.append(f'        Tagged::new({tag}, "{fname}", {a}, {b}, {ty_expr(kind)}),')
        lines += ["    ],", "};"]
    return "\n".join(lines) + "\n"


def sample_value(kind, rust_ty, mod):
    k, s = kind
    wrap, inner = rust_inner(rust_ty)
    some = (lambda x: f"Some({x})") if wrap == "Option" else (lambda x: x)
    if s:
        f = f"{mod}_{snake(s)}(v)"
        if k in ("Struct", "OptionStruct"):
            return some(f)
        return some(f"vec![{f}, {f}]")
    m = re.fullmatch(r"(\w+)\((\w+)\)", k)
    if m:
        x = SAMPLE_SCALAR[m.group(2)]
        return some(f"vec![{x}, {x}]")
    base = k.replace("Nullable", "")
    return some(SAMPLE_SCALAR[base])


def emit_samples(api, g, mod):
    out = []
    for name, fields, tagged in g.out_structs:
        out.append(f"pub(super) fn {mod}_{snake(name)}(v: i16) -> {mod}::{name} {{")
        out.append(f"    let mut m = {mod}::{name}::default();")
        for fname, (a, b), kind, rty in fields:
            out.append(f"    if ({a}..={b}).contains(&v) {{ m.{fname} = {sample_value(kind, rty, mod)}; }}")
        for tag, fname, (a, b), kind, rty in tagged:
            out.append(f"    if ({a}..={b}).contains(&v) {{ m.{fname} = {sample_value(kind, rty, mod)}; }}")
        if g.flex is not None:
            out.append(f"    if v >= {g.flex} {{ m.unknown_tagged_fields.insert(1000, b()); }}")
        out.append("    m")
        out.append("}")
    return "\n".join(out) + "\n"


def main():
    root = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    mods, samples, table, sizes = [], [], [], []
    for api in COVERED:
        stem = snake(api) + "_request"
        structs, decodes, ranges = parse_file(os.path.join(root, "src/messages", stem + ".rs"))
        top = api + "Request"
        vmin, vmax = ranges[top]
        g = Gen(stem, structs, decodes, vmin, vmax)
        g.gen_struct(top)
        # flex discovered while walking; re-run once so compact checks see it
        flex = g.flex
        g = Gen(stem, structs, decodes, vmin, vmax)
        g.flex = flex
        g.gen_struct(top)
        mod = snake(api)
        with open(os.path.join(here, mod + ".rs"), "w") as f:
            f.write(emit_schema(api, g, top))
        mods.append(mod)
        table.append((api, mod, vmin, vmax))
        samples.append(emit_samples(api, g, stem))
        for name, _, _ in g.out_structs:
            sizes.append(f"        (ApiKey::{api}, \"{name}\", size_of::<{stem}::{name}>()),")
    with open(os.path.join(here, "mod.rs"), "w") as f:
        f.write("//! One schema per covered request, generated by `gen_schema.py` from kafka-protocol's\n")
        f.write("//! decoders (the code that reads the bytes after the guard). Do not edit by hand.\n\n")
        f.write("use kafka_protocol::messages::ApiKey;\n\nuse super::walk::Message;\n\n")
        for m in mods:
            f.write(f"pub(crate) mod {m};\n")
        f.write("\n/// Every covered API with its schema, in priority order.\n")
        f.write("pub(crate) const COVERED: &[(ApiKey, &Message)] = &[\n")
        for api, mod, a, b in table:
            f.write(f"    (ApiKey::{api}, &{mod}::MESSAGE),\n")
        f.write("];\n")
    with open(os.path.join(here, "..", "samples.rs"), "w") as f:
        f.write("//! Fully populated sample requests for the round-trip tests, generated by\n")
        f.write("//! `schema/gen_schema.py`: every field present at `v` is set, arrays have two\n")
        f.write("//! elements, and flexible versions carry an unknown tagged field.\n")
        f.write("#![allow(clippy::all)]\n\n")
        f.write("use bytes::Bytes;\nuse kafka_protocol::messages::*;\nuse kafka_protocol::protocol::Decodable;\n\n")

        f.write("use super::tests::{b, s};\n\n")
        f.write("/// A non-nil UUID: this crate cannot name `uuid::Uuid`, so one is decoded.\n")
        f.write("macro_rules! uuid {\n    () => {\n        delete_topics_request::DeleteTopicState::decode(\n")
        f.write("            &mut Bytes::from_static(&[0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0]),\n")
        f.write("            6,\n        )\n        .expect(\"uuid\")\n        .topic_id\n    };\n}\n\n")
        f.write("\n".join(samples))
        f.write("\n/// Encodes the sample request for `api` at `v`.\n")
        f.write("pub(super) fn encode_sample(api: ApiKey, v: i16) -> Vec<u8> {\n    match api {\n")
        for api, mod, a, b in table:
            stem = snake(api) + "_request"
            f.write(f"        ApiKey::{api} => super::tests::encode(&{stem}_{snake(api + 'Request')}(v), v),\n")
        f.write("        _ => unreachable!(\"not covered\"),\n    }\n}\n")
        f.write("\n/// Every schema struct with the in-memory size of the Rust type it decodes into.\n")
        f.write("pub(super) fn rust_sizes() -> Vec<(ApiKey, &'static str, usize)> {\n")
        f.write("    use std::mem::size_of;\n    vec![\n")
        f.write("\n".join(sizes))
        f.write("\n    ]\n}\n")
        f.write("\n/// The default (empty) request for `api`.\n")
        f.write("pub(super) fn default_kind(api: ApiKey) -> RequestKind {\n    match api {\n")
        for api, mod, a, b in table:
            f.write(f"        ApiKey::{api} => RequestKind::{api}(Default::default()),\n")
        f.write("        _ => unreachable!(\"not covered\"),\n    }\n}\n")


if __name__ == "__main__":
    main()
