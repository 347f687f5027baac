//! The SQL statements a `DO $$ … $$` block runs, found with PostgreSQL's own
//! PL/pgSQL parser (`pg_query::parse_plpgsql`): each embedded statement
//! (`PLpgSQL_stmt_execsql`) and each `EXECUTE` of a constant string, with its
//! line in the block, so lint can judge what the block does.
//!
//! Only what is executed as written: an `EXECUTE` of a built string (`||`,
//! `format(…)`) cannot be known before it runs and is left out.

/// A statement inside a `DO` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    /// 1-based line in the `DO` statement's text.
    pub line: u32,
    /// The statement as written (an `EXECUTE`'s string unquoted).
    pub sql: String,
}

/// The statements `sql` (one `DO` statement) executes, in line order;
/// empty for anything else, or a body that does not parse.
pub fn do_block_statements(sql: &str) -> Vec<Inner> {
    let head = sql.trim_start();
    if !head.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("DO")) {
        return Vec::new();
    }
    let Ok(tree) = pg_query::parse_plpgsql(sql) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&tree, &mut out);
    out.sort_by_key(|i| i.line);
    out
}

fn walk(v: &serde_json::Value, out: &mut Vec<Inner>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let line = value["lineno"].as_u64().unwrap_or(1) as u32;
                match key.as_str() {
                    "PLpgSQL_stmt_execsql" => {
                        if let Some(q) = value["sqlstmt"]["PLpgSQL_expr"]["query"].as_str() {
                            out.push(Inner {
                                line,
                                sql: q.to_string(),
                            });
                        }
                    }
                    "PLpgSQL_stmt_dynexecute" => {
                        if let Some(q) = value["query"]["PLpgSQL_expr"]["query"]
                            .as_str()
                            .and_then(constant_string)
                        {
                            out.push(Inner { line, sql: q });
                        }
                    }
                    _ => walk(value, out),
                }
            }
        }
        _ => {}
    }
}

/// `'text'` (with `''` for a quote) as its text; `None` for anything built.
fn constant_string(expr: &str) -> Option<String> {
    let inner = expr.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    // A lone quote inside means the expression goes on (`'a' || x || 'b'`).
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_embedded_and_constant_executed_statements() {
        let found = do_block_statements(
            "DO $$\nBEGIN\n  CREATE INDEX i ON t (a);\n  IF true THEN\n    ALTER TABLE t ADD CONSTRAINT c UNIQUE (a);\n  END IF;\n  EXECUTE 'ALTER TABLE t ALTER COLUMN b SET NOT NULL';\n  EXECUTE 'ALTER TABLE ' || tbl || ' ADD COLUMN x int';\nEND\n$$",
        );
        let sqls: Vec<&str> = found.iter().map(|i| i.sql.as_str()).collect();
        assert_eq!(
            sqls,
            [
                "CREATE INDEX i ON t (a)",
                "ALTER TABLE t ADD CONSTRAINT c UNIQUE (a)",
                "ALTER TABLE t ALTER COLUMN b SET NOT NULL"
            ]
        );
        assert_eq!(found[0].line, 3);
        assert!(do_block_statements("SELECT 1").is_empty());
    }
}
