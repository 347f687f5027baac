//! The same index on another table: a `CREATE INDEX` statement rewritten to
//! build its index, under another name, on another table with the same
//! columns. The guard builds that copy on an empty temporary table and lets
//! the server print both definitions (`pg_get_indexdef`), so "is the index
//! already there the one this statement builds?" is answered by PostgreSQL's
//! own normal form, not by comparing SQL text.

use pg_query::protobuf::RangeVar;
use pg_query::NodeEnum;

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
/// rebuilt `CONCURRENTLY` as `name`, with key or `INCLUDE` column `column`
/// replaced by `shadow`: the index a type change's shadow column needs.
/// `None` when `definition` is not a single `CREATE INDEX`, or uses the
/// column in an expression or its predicate (not rebuilt this way).
pub fn on_shadow_column(
    definition: &str,
    column: &str,
    shadow: &str,
    name: &str,
) -> Option<String> {
    let mut parsed = pg_query::parse(definition, 0).ok()?.protobuf;
    let [raw] = parsed.stmts.as_mut_slice() else {
        return None;
    };
    let Some(NodeEnum::IndexStmt(index)) = raw.stmt.as_mut()?.node.as_mut() else {
        return None;
    };
    let in_expression = NodeEnum::IndexStmt(index.clone())
        .nodes()
        .iter()
        .any(|(n, ..)| {
            matches!(n, pg_query::NodeRef::ColumnRef(c)
            if super::expr::strings(&c.fields).last().map(String::as_str) == Some(column))
        });
    if in_expression {
        return None;
    }
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
        }
    }
    parsed.deparse(Default::default()).ok()
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
            Some("CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_new ON public.accounts USING btree (id_new) INCLUDE (balance)")
        );
        assert_eq!(
            on_shadow_column("CREATE INDEX i ON t USING btree (lower(c))", "c", "n", "i2"),
            None
        );
        assert_eq!(
            on_shadow_column(
                "CREATE INDEX i ON t USING btree (a) WHERE c > 0",
                "c",
                "n",
                "i2"
            ),
            None
        );
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
