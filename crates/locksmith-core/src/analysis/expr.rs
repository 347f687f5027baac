//! Small readers of parse-tree pieces: names, type names, default
//! expressions, and the tables a query reads.
//!
//! Kept apart from `convert` so the statement logic reads as lock rules, not
//! as tree plumbing. Must not decide locks itself.

use pg_query::protobuf::{RangeVar, TypeName};
use pg_query::{Node, NodeEnum, NodeRef};

use super::kind::ColumnDefault;

/// `schema.name` or `name`, as written.
pub fn range_var(rv: &RangeVar) -> String {
    if rv.schemaname.is_empty() {
        rv.relname.clone()
    } else {
        format!("{}.{}", rv.schemaname, rv.relname)
    }
}

/// The strings of a list of `String` nodes, joined with dots (`a.b.c`).
pub fn dotted(nodes: &[Node]) -> String {
    strings(nodes).join(".")
}

/// The `String` values in a node list.
pub fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// The names in a list of `List` nodes (e.g. `DROP TABLE a, s.b`).
pub fn object_names(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::List(l)) => Some(dotted(&l.items)),
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            Some(NodeEnum::RangeVar(rv)) => Some(range_var(rv)),
            _ => None,
        })
        .collect()
}

/// A type's base name and its modifiers, `pg_catalog.` dropped:
/// `("varchar", [20])`.
pub fn type_parts(t: &TypeName) -> (String, Vec<i64>) {
    let names = strings(&t.names);
    let name = match names.as_slice() {
        [schema, n] if schema == "pg_catalog" => n.clone(),
        _ => names.join("."),
    };
    let mods = t
        .typmods
        .iter()
        .filter_map(|m| match &m.node {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(pg_query::protobuf::a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    (name, mods)
}

/// A type as SQL: `varchar(20)`, `int8`, `text[]`.
pub fn type_sql(t: &TypeName) -> String {
    let (name, mods) = type_parts(t);
    // The parser's internal names, back to what people write.
    let mut s = match name.as_str() {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "bpchar" => "char",
        n => n,
    }
    .to_string();
    if !mods.is_empty() {
        let m: Vec<String> = mods.iter().map(|m| m.to_string()).collect();
        s = format!("{s}({})", m.join(","));
    }
    for _ in &t.array_bounds {
        s.push_str("[]");
    }
    s
}

/// Functions known to be volatile: adding a column with such a default
/// evaluates it per row, so the table is rewritten.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "setval",
    "txid_current",
    "gen_random_bytes",
];

/// Functions known not to be volatile (immutable or stable): evaluated once.
const NOT_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_setting",
    "to_timestamp",
    "to_char",
    "to_date",
    "lower",
    "upper",
    "concat",
    "coalesce",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "array",
    "make_interval",
    "timezone",
    "date_trunc",
    "length",
    "md5",
];

/// Classifies a default expression.
pub fn classify_default(expr: Option<&Node>) -> ColumnDefault {
    let Some(node) = expr.and_then(|n| n.node.as_ref()) else {
        return ColumnDefault::None;
    };
    let mut unknown = None;
    for (n, ..) in node.nodes() {
        if let NodeRef::FuncCall(f) = n {
            let names = strings(&f.funcname);
            let name = names.last().cloned().unwrap_or_default();
            if VOLATILE.contains(&name.as_str()) {
                return ColumnDefault::Volatile(format!("{name}()"));
            }
            if !NOT_VOLATILE.contains(&name.as_str()) && unknown.is_none() {
                unknown = Some(format!("{}()", names.join(".")));
            }
        }
    }
    match unknown {
        Some(f) => ColumnDefault::Unknown(f),
        None => ColumnDefault::NonVolatile,
    }
}

/// The relations a query or expression mentions, in order, without CTE names.
pub fn relations_in(node: &NodeEnum) -> Vec<String> {
    let mut ctes = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for (n, ..) in node.nodes() {
        match n {
            NodeRef::CommonTableExpr(c) => ctes.push(c.ctename.clone()),
            NodeRef::RangeVar(rv) => {
                let name = range_var(rv);
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            _ => {}
        }
    }
    out.retain(|r| !ctes.contains(r));
    out
}

/// Column names referenced in an expression (for `CHECK` constraints).
pub fn columns_in(node: &NodeEnum) -> Vec<String> {
    let mut out = Vec::new();
    for (n, ..) in node.nodes() {
        if let NodeRef::ColumnRef(c) = n {
            if let Some(name) = strings(&c.fields).last() {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
    }
    out
}

/// Whether `expr` is exactly `col IS NOT NULL` (what lets `SET NOT NULL` skip its scan).
pub fn is_not_null_check(expr: Option<&Node>) -> Option<String> {
    match expr?.node.as_ref()? {
        NodeEnum::NullTest(t)
            if t.nulltesttype == pg_query::protobuf::NullTestType::IsNotNull as i32 =>
        {
            match t.arg.as_ref()?.node.as_ref()? {
                NodeEnum::ColumnRef(c) => strings(&c.fields).last().cloned(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The text of a constant (`'2s'`, `0`, `on`), without quotes.
pub fn const_text(node: &Node) -> Option<String> {
    use pg_query::protobuf::a_const::Val;
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            Val::Ival(i) => Some(i.ival.to_string()),
            Val::Fval(f) => Some(f.fval.clone()),
            Val::Sval(s) => Some(s.sval.clone()),
            Val::Boolval(b) => Some(b.boolval.to_string()),
            Val::Bsval(b) => Some(b.bsval.clone()),
        },
        NodeEnum::String(s) => Some(s.sval.clone()),
        _ => None,
    }
}

/// Whether the option `name` of a parenthesised list (`REINDEX (CONCURRENTLY
/// false)`, `VACUUM (FULL)`) is on: named with no value, or with a value
/// other than false/off/0.
pub fn option_enabled(options: &[Node], name: &str) -> bool {
    options.iter().any(|o| {
        matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname == name
        && d.arg.as_ref().and_then(|a| const_text(a)).is_none_or(|v| {
            !matches!(v.to_ascii_lowercase().as_str(), "false" | "off" | "0" | "no")
        }))
    })
}

/// `SELECT set_config('lock_timeout', '2s', false)` (and nothing else):
/// the setting, lower case, its value and whether it is transaction-local.
pub fn set_config_call(s: &pg_query::protobuf::SelectStmt) -> Option<(String, String, bool)> {
    if !s.from_clause.is_empty() || s.target_list.len() != 1 {
        return None;
    }
    let NodeEnum::ResTarget(t) = s.target_list[0].node.as_ref()? else {
        return None;
    };
    let NodeEnum::FuncCall(f) = t.val.as_ref()?.node.as_ref()? else {
        return None;
    };
    if strings(&f.funcname).last().map(String::as_str) != Some("set_config") {
        return None;
    }
    let [name, value, local] = f.args.as_slice() else {
        return None;
    };
    let local = const_text(local)?.to_ascii_lowercase();
    Some((
        const_text(name)?.to_ascii_lowercase(),
        const_text(value)?,
        matches!(local.as_str(), "true" | "t" | "on" | "1" | "yes"),
    ))
}
