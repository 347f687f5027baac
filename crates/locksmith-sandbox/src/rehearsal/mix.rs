//! What the simulated application sends during a rehearsal: by default a
//! read and a write by primary key on every table the migration touches,
//! or the templates of a `--traffic` file.
//!
//! The file format, one template per line (`#` starts a comment):
//!
//! ```text
//! # rate/s  SQL ($1 receives a key from 1 to the table's row count)
//! 30  SELECT * FROM orders WHERE id = $1
//! 5   UPDATE orders SET note = 'x' WHERE id = $1
//! ```

use locksmith_pg::Connection;

use crate::traffic::Query;
use crate::Error;

/// Parses a `--traffic` file; `Err` names the line that is wrong.
pub fn parse(text: &str) -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (rate, sql) = line.split_once(char::is_whitespace).ok_or_else(|| {
            format!(
                "line {}: expected `RATE SQL` (requests per second, then the SQL)",
                n + 1
            )
        })?;
        let share: f64 = rate
            .trim_end_matches("/s")
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("line {}: `{rate}` is not a positive rate per second", n + 1))?;
        out.push(Query {
            sql: sql.trim().trim_end_matches(';').to_string(),
            share,
        });
    }
    if out.is_empty() {
        return Err("no templates (one `RATE SQL` per line)".into());
    }
    Ok(out)
}

/// The default mix on `tables`: a read by key and, where the table has a
/// single-column integer primary key and another column, a write of one row.
pub async fn default_mix(client: &Connection, tables: &[String]) -> Result<Vec<Query>, Error> {
    let mut out = Vec::new();
    for table in tables {
        // The table's single-column integer primary key and one other plain column, if any.
        let row = client
            .query_opt(
                "SELECT (SELECT a.attname::text FROM pg_index x
                           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                          WHERE x.indrelid = c.oid AND x.indisprimary AND x.indnatts = 1
                            AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)),
                        (SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                            AND a.attgenerated = '' AND a.attidentity = ''
                            AND a.attnum <> ALL (SELECT unnest(x.indkey::int2[]) FROM pg_index x WHERE x.indrelid = c.oid)
                          ORDER BY a.attnum LIMIT 1)
                   FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[table],
            )
            .await
            .map_err(|e| Error::Sql {
                context: format!("reading the keys of {table}"),
                source: e,
            })?;
        let Some(row) = row else { continue };
        let (key, other): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        let ident = locksmith_core::quote::ident;
        match key {
            Some(key) => {
                out.push(Query {
                    sql: format!("SELECT * FROM {table} WHERE {} = $1::int", ident(&key)),
                    share: 3.0,
                });
                if let Some(other) = other {
                    out.push(Query {
                        sql: format!(
                            "UPDATE {table} SET {c} = {c} WHERE {} = $1::int",
                            ident(&key),
                            c = ident(&other)
                        ),
                        share: 1.0,
                    });
                }
            }
            None => out.push(Query {
                sql: format!("SELECT * FROM {table} LIMIT 10"),
                share: 3.0,
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traffic_file_is_rates_and_sql() {
        let q = parse("# comment\n30 SELECT 1\n\n5/s UPDATE t SET a = a WHERE id = $1;\n").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].share, 5.0);
        assert_eq!(q[1].sql, "UPDATE t SET a = a WHERE id = $1");
    }

    #[test]
    fn a_bad_line_is_named() {
        assert!(parse("fast SELECT 1").unwrap_err().starts_with("line 1:"));
        assert!(parse("").is_err());
    }
}
