//! The same index on another table: a `CREATE INDEX` statement rewritten to
//! build its index, under another name, on another table with the same
//! columns. The guard builds that copy on an empty temporary table and lets
//! the server print both definitions (`pg_get_indexdef`), so "is the index
//! already there the one this statement builds?" is answered by PostgreSQL's
//! own normal form, not by comparing SQL text.

use pg_query::protobuf::RangeVar;
use pg_query::{Node, NodeEnum};

/// `sql` (one `CREATE INDEX`) rewritten to build the same index named `name`
/// on `schema.table`: not concurrently, without `IF NOT EXISTS` and
/// without a tablespace. `None` when `sql` is not a single `CREATE INDEX`.
pub fn create_index_on(sql: &str, schema: &str, table: &str, name: &str) -> Option<String> {
    let mut parsed = pg_query::parse(sql, 0).ok()?.protobuf;
    let [raw] = parsed.stmts.as_mut_slice() else {
        return None;
    };
    let Some(NodeEnum::IndexStmt(index)) = raw.stmt.as_mut()?.node.as_mut() else {
        return None;
    };
    let relation = index.relation.as_mut()?;
    *relation = RangeVar {
        schemaname: schema.to_string(),
        relname: table.to_string(),
        inh: relation.inh,
        relpersistence: relation.relpersistence.clone(),
        ..Default::default()
    };
    index.idxname = name.to_string();
    index.concurrent = false;
    index.if_not_exists = false;
    index.table_space = String::new();
    parsed.deparse(Default::default()).ok()
}

/// `definition` (one `CREATE INDEX`, as `pg_get_indexdef` prints it)
/// rebuilt `CONCURRENTLY` as `name`, with every reference to `column` (a key,
/// an `INCLUDE` column, inside an expression or the `WHERE` predicate)
/// replaced by `shadow`: the index a type change's shadow column needs. The
/// server then parses the expressions against the shadow's type, as the
/// plain `ALTER COLUMN … TYPE` parses the same definition again against the
/// column's new type. `Err` says why not: `definition` is not a single
/// `CREATE INDEX`, or refers to the column inside an expression this
/// rewrite does not walk (it then leaves no reference behind unnoticed).
pub fn on_shadow_column(
    definition: &str,
    column: &str,
    shadow: &str,
    name: &str,
) -> Result<String, String> {
    let not_one = || format!("`{definition}` is not one CREATE INDEX");
    let mut parsed = pg_query::parse(definition, 0)
        .map_err(|e| format!("`{definition}` does not parse: {e}"))?
        .protobuf;
    let [raw] = parsed.stmts.as_mut_slice() else {
        return Err(not_one());
    };
    let Some(NodeEnum::IndexStmt(index)) = raw.stmt.as_mut().and_then(|n| n.node.as_mut()) else {
        return Err(not_one());
    };
    index.idxname = name.to_string();
    index.concurrent = true;
    for elem in index
        .index_params
        .iter_mut()
        .chain(index.index_including_params.iter_mut())
    {
        if let Some(NodeEnum::IndexElem(e)) = elem.node.as_mut() {
            if e.name == column {
                e.name = shadow.to_string();
            }
            if let Some(expr) = e.expr.as_deref_mut() {
                rename_column(expr, column, shadow);
            }
        }
    }
    if let Some(predicate) = index.where_clause.as_deref_mut() {
        rename_column(predicate, column, shadow);
    }
    // Every node, whatever its type: a reference the walk above missed
    // would build the copy on the old column.
    let tree = serde_json::to_value(&**index).map_err(|e| e.to_string())?;
    if refers_to(&tree, column) {
        return Err(format!(
            "it uses {column} inside an expression locksmith cannot rewrite onto the shadow column"
        ));
    }
    parsed
        .deparse(Default::default())
        .map_err(|e| e.to_string())
}

/// Renames column references to `column` in the expression `node` (the
/// expressions `pg_get_indexdef` prints: operators, calls, casts, `CASE`,
/// `COALESCE`, `GREATEST`, tests, arrays, rows, subscripts, `COLLATE`).
fn rename_column(node: &mut Node, column: &str, shadow: &str) {
    let each = |nodes: &mut Vec<Node>| {
        for n in nodes {
            rename_column(n, column, shadow);
        }
    };
    let Some(n) = node.node.as_mut() else {
        return;
    };
    let one = |n: &mut Option<Box<Node>>| {
        if let Some(n) = n.as_deref_mut() {
            rename_column(n, column, shadow);
        }
    };
    match n {
        NodeEnum::ColumnRef(c) => {
            if let Some(Some(NodeEnum::String(s))) = c.fields.last_mut().map(|f| f.node.as_mut()) {
                if s.sval == column {
                    s.sval = shadow.to_string();
                }
            }
        }
        NodeEnum::AExpr(e) => {
            one(&mut e.lexpr);
            one(&mut e.rexpr);
        }
        NodeEnum::BoolExpr(e) => each(&mut e.args),
        NodeEnum::FuncCall(f) => {
            each(&mut f.args);
            each(&mut f.agg_order);
            one(&mut f.agg_filter);
        }
        NodeEnum::TypeCast(t) => one(&mut t.arg),
        NodeEnum::CollateClause(c) => one(&mut c.arg),
        NodeEnum::NullTest(t) => one(&mut t.arg),
        NodeEnum::BooleanTest(t) => one(&mut t.arg),
        NodeEnum::CoalesceExpr(c) => each(&mut c.args),
        NodeEnum::MinMaxExpr(m) => each(&mut m.args),
        NodeEnum::CaseExpr(c) => {
            one(&mut c.arg);
            each(&mut c.args);
            one(&mut c.defresult);
        }
        NodeEnum::CaseWhen(w) => {
            one(&mut w.expr);
            one(&mut w.result);
        }
        NodeEnum::AArrayExpr(a) => each(&mut a.elements),
        NodeEnum::RowExpr(r) => each(&mut r.args),
        NodeEnum::AIndirection(a) => {
            one(&mut a.arg);
            each(&mut a.indirection);
        }
        NodeEnum::AIndices(i) => {
            one(&mut i.lidx);
            one(&mut i.uidx);
        }
        NodeEnum::SortBy(s) => one(&mut s.node),
        NodeEnum::List(l) => each(&mut l.items),
        _ => {}
    }
}

/// Whether the serialised parse tree `tree` has a column reference, or an
/// index column, named `column`.
fn refers_to(tree: &serde_json::Value, column: &str) -> bool {
    use serde_json::Value;
    match tree {
        Value::Object(map) => map.iter().any(|(key, value)| match key.as_str() {
            "ColumnRef" => names(value).last().map(String::as_str) == Some(column),
            "IndexElem" => {
                value.get("name").and_then(Value::as_str) == Some(column)
                    || refers_to(value, column)
            }
            _ => refers_to(value, column),
        }),
        Value::Array(items) => items.iter().any(|v| refers_to(v, column)),
        _ => false,
    }
}

/// The string values (`sval`) under a serialised node, in order.
fn names(tree: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match tree {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value) {
                ("sval", Value::String(s)) => vec![s.clone()],
                _ => names(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(names).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_target_name_and_options_only() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email \
                   ON app.users USING btree (lower(email)) INCLUDE (id) \
                   WITH (fillfactor = 90) TABLESPACE fast WHERE deleted_at IS NULL";
        let copy = create_index_on(sql, "pg_temp", "shadow", "shadow_idx").unwrap();
        assert_eq!(
            copy,
            "CREATE UNIQUE INDEX shadow_idx ON pg_temp.shadow USING btree (lower(email)) \
             INCLUDE (id) WITH (fillfactor=90) WHERE deleted_at IS NULL"
        );
    }

    #[test]
    fn an_index_is_rebuilt_on_the_shadow_column() {
        let def = "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id) INCLUDE (balance)";
        assert_eq!(
            on_shadow_column(def, "id", "id_new", "accounts_pkey_new").as_deref(),
            Ok("CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_new ON public.accounts USING btree (id_new) INCLUDE (balance)")
        );
    }

    #[test]
    fn expressions_and_predicates_are_rebuilt_on_the_shadow_column() {
        let cases = [
            (
                "CREATE INDEX i ON public.t USING btree (lower((c)::text))",
                "CREATE INDEX CONCURRENTLY i2 ON public.t USING btree (lower(n::text))",
            ),
            (
                "CREATE INDEX i ON public.t USING btree (a) WHERE (c > 0)",
                "CREATE INDEX CONCURRENTLY i2 ON public.t USING btree (a) WHERE n > 0",
            ),
            (
                "CREATE UNIQUE INDEX i ON public.t USING btree (((a * 1000) + c), c) WHERE ((c IS NOT NULL) AND (COALESCE(c, 0) <> ALL (ARRAY[1, c])))",
                "CREATE UNIQUE INDEX CONCURRENTLY i2 ON public.t USING btree ((a * 1000 + n), n) WHERE n IS NOT NULL AND COALESCE(n, 0) <> ALL(ARRAY[1, n])",
            ),
            (
                "CREATE INDEX i ON public.t USING btree ((CASE WHEN (c > 0) THEN GREATEST(c, a) ELSE (t.c)[1] END))",
                "CREATE INDEX CONCURRENTLY i2 ON public.t USING btree ((CASE WHEN n > 0 THEN GREATEST(n, a) ELSE t.n[1] END))",
            ),
        ];
        for (def, want) in cases {
            assert_eq!(
                on_shadow_column(def, "c", "n", "i2").as_deref(),
                Ok(want),
                "{def}"
            );
        }
    }

    #[test]
    fn a_reference_the_rewrite_cannot_reach_is_refused() {
        let def = "CREATE INDEX i ON public.t USING btree (((xmlelement(name x, c))::text))";
        let why = on_shadow_column(def, "c", "n", "i2").unwrap_err();
        assert!(why.contains("cannot rewrite"), "{why}");
        assert!(on_shadow_column("CREATE TABLE t (c int)", "c", "n", "i2").is_err());
    }

    #[test]
    fn other_statements_are_not_rewritten() {
        assert_eq!(
            create_index_on("CREATE TABLE t (id int)", "s", "t", "i"),
            None
        );
        assert_eq!(
            create_index_on(
                "CREATE INDEX a ON t (x); CREATE INDEX b ON t (y)",
                "s",
                "t",
                "i"
            ),
            None
        );
    }
}
