//! Synthetic rows for every table of a throwaway database, typed from the
//! catalog: parents before children, keys distinct, foreign keys drawn from
//! the rows the referenced table actually got, `CHECK`s honoured by
//! filtering (a check that rejects every generated row is reported, not
//! hidden). Each chunk is one server-side `INSERT … SELECT … FROM
//! generate_series`, so a million rows load in seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use locksmith_pg::Connection;
use serde::Serialize;

use super::catalog::{tables, Table};
use super::values::{self, Column};
use crate::Error;

/// Rows per `INSERT … SELECT` (the progress callback runs after each).
const CHUNK: i64 = 100_000;
/// What the load did, per table.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The table.
    pub table: String,
    /// Rows it holds now.
    pub rows: i64,
}

/// The outcome of a load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Tables in load order.
    pub tables: Vec<Loaded>,
    /// Constraints (or columns) that could not be honoured, and why.
    pub unhonoured: Vec<String>,
    /// Rows inserted in all.
    pub rows: i64,
}

/// Loads every user table of `client`'s database: `rows(table)` rows each
/// (`oid::regclass::text` names). `progress(done, total)` follows the load.
pub async fn load(
    client: &Connection,
    rows: &dyn Fn(&str) -> i64,
    progress: &mut (dyn FnMut(i64, i64) + Send),
) -> Result<LoadReport, Error> {
    let tables = order(tables(client).await?);
    let total: i64 = tables.iter().map(|t| rows(&t.name)).sum();
    let mut report = LoadReport::default();
    let mut loaded: HashMap<String, i64> = HashMap::new();
    for table in &tables {
        let (n, held) = load_table(client, table, rows(&table.name), &mut report, &mut |d| {
            progress(report_rows_before(&loaded) + d, total)
        })
        .await?;
        loaded.insert(table.name.clone(), n);
        report.rows += n;
        report.tables.push(Loaded {
            table: table.name.clone(),
            rows: held,
        });
    }
    client
        .batch_execute("ANALYZE")
        .await
        .map_err(|e| sql("analysing the loaded tables", e))?;
    Ok(report)
}

fn report_rows_before(loaded: &HashMap<String, i64>) -> i64 {
    loaded.values().sum()
}

pub(super) fn sql(context: &str, source: tokio_postgres::Error) -> Error {
    Error::Sql {
        context: context.into(),
        source,
    }
}

/// Parents before children (a cycle is broken where it closes; the
/// reference that closes it gets NULLs or is reported).
fn order(tables: Vec<Table>) -> Vec<Table> {
    let mut left: BTreeMap<String, Table> =
        tables.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let ready = left
            .values()
            .find(|t| {
                t.foreign
                    .iter()
                    .all(|f| f.parent == t.name || !left.contains_key(&f.parent))
            })
            .or_else(|| left.values().next())
            .map(|t| t.name.clone());
        if let Some(name) = ready.and_then(|n| left.remove(&n)) {
            out.push(name);
        }
    }
    out
}

/// Tops `table` up to `wanted` rows: the rows a setup file inserted stay and
/// count, and the generated ones take the keys after theirs (a generated
/// row that would still clash with one of theirs is skipped, not an error).
/// Returns the rows inserted and the rows the table holds then.
async fn load_table(
    client: &Connection,
    table: &Table,
    wanted: i64,
    report: &mut LoadReport,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<(i64, i64), Error> {
    use locksmith_core::quote::ident;
    // The setup's own rows, which the generated ones must not collide with.
    let existing: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
        .await
        .map_err(|e| sql("counting the setup's rows", e))?
        .get(0);
    if existing >= wanted {
        return Ok((0, existing));
    }
    let distinct: BTreeSet<&str> = table.unique.iter().flatten().map(String::as_str).collect();
    // The referenced rows of each foreign key, once, as arrays in a temp table.
    let mut arrays = Vec::new();
    let mut drawn: HashMap<&str, String> = HashMap::new();
    let mut divisor: i64 = 1;
    let mut cap = wanted;
    for (k, fk) in table.foreign.iter().enumerate() {
        if fk.parent == table.name {
            continue;
        }
        let cols: Vec<String> = fk
            .parent_columns
            .iter()
            .enumerate()
            .map(|(j, c)| format!("array_agg({}) AS a{k}_{j}", ident(c)))
            .collect();
        let not_null: Vec<String> = fk
            .parent_columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", ident(c)))
            .collect();
        arrays.push(format!(
            "(SELECT {} FROM {} WHERE {}) AS fk{k}",
            cols.join(", "),
            fk.parent,
            not_null.join(" AND ")
        ));
        let len: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE {}",
                    fk.parent,
                    not_null.join(" AND ")
                ),
                &[],
            )
            .await
            .map_err(|e| sql("counting referenced rows", e))?
            .get(0);
        let nullable = fk.columns.iter().all(|c| {
            table
                .columns
                .iter()
                .any(|col| &col.name == c && !col.not_null)
        });
        for (j, c) in fk.columns.iter().enumerate() {
            let expr = if len == 0 {
                if !nullable {
                    report.unhonoured.push(format!(
                        "{}: foreign key to {} — the referenced table has no rows, so no rows were loaded",
                        table.name, fk.parent
                    ));
                    return Ok((0, existing));
                }
                "NULL".to_string()
            } else {
                format!("fk{k}.a{k}_{j}[1 + ((i - 1) / {divisor}) % {len}]")
            };
            drawn.insert(c.as_str(), expr);
        }
        // A unique key made of foreign-key columns has only so many combinations.
        if fk.columns.iter().all(|c| distinct.contains(c.as_str())) && len > 0 {
            divisor = divisor.saturating_mul(len);
            if table
                .unique
                .iter()
                .any(|u| u.iter().all(|c| drawn.contains_key(c.as_str())))
            {
                cap = cap.min(divisor);
            }
        }
    }
    let mut names = Vec::new();
    // (column, expression) in insert order.
    let mut exprs: Vec<(String, String)> = Vec::new();
    for c in &table.columns {
        let expr = if let Some(e) = drawn.get(c.name.as_str()) {
            e.clone()
        } else if let Some(fk) = table
            .foreign
            .iter()
            .find(|f| f.parent == table.name && f.columns.contains(&c.name))
        {
            // A self-reference: the row's parent is itself (checked at the end of the statement).
            let at = fk.columns.iter().position(|x| x == &c.name).unwrap_or(0);
            if !c.not_null {
                "NULL".into()
            } else {
                let parent = &fk.parent_columns[at];
                match table.columns.iter().find(|p| &p.name == parent) {
                    Some(p) => values::expression(p, true).unwrap_or_else(|_| "NULL".into()),
                    None => "NULL".into(),
                }
            }
        } else if let Some((_, choose)) = table
            .checks
            .iter()
            .filter_map(|(_, e)| values::allowed_values(e))
            .find(|(col, _)| col == &c.name)
        {
            format!("({choose})::{}", c.declared)
        } else {
            match values::expression(c, distinct.contains(c.name.as_str())) {
                Ok(e) => e,
                Err(_) if c.has_default => continue,
                Err(_) if !c.not_null => "NULL".into(),
                Err(why) => {
                    report.unhonoured.push(format!(
                        "{}.{}: {why}; no rows were generated for it",
                        table.name, c.name
                    ));
                    return Ok((0, existing));
                }
            }
        };
        // A bare NULL in a subquery is text; the column's type it must be.
        let expr = if expr == "NULL" {
            format!("NULL::{}", c.declared)
        } else {
            expr
        };
        names.push(ident(&c.name));
        exprs.push((c.name.clone(), expr));
    }
    let from_arrays = arrays
        .iter()
        .map(|a| format!(" CROSS JOIN {a}"))
        .collect::<String>();
    let checks = feasible_checks(client, table, &mut exprs, &from_arrays, cap, report).await?;
    let filter = if checks.is_empty() {
        "true".to_string()
    } else {
        checks
            .iter()
            .map(|(_, e)| format!("({e}) IS NOT FALSE"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let overriding = if table.identity_always {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let mut inserted = 0;
    // Keys after the setup's rows; `ON CONFLICT DO NOTHING` skips a generated
    // row that still meets one of theirs (a setup key far beyond the count).
    let goal = (cap - existing).max(0);
    let mut start = existing + 1;
    let end_of_keys = existing + goal;
    // The arrays are rebuilt per chunk by the planner only once per statement.
    while start <= end_of_keys {
        let end = (start + CHUNK - 1).min(end_of_keys);
        let statement = format!(
            "INSERT INTO {table} ({names}){overriding} SELECT * FROM (SELECT {exprs} FROM generate_series({start}::bigint, {end}) AS i{from_arrays}) AS s WHERE {filter} ON CONFLICT DO NOTHING",
            table = table.name,
            names = names.join(", "),
            exprs = select_list(&exprs),
        );
        inserted += client
            .execute(&statement, &[])
            .await
            .map_err(|e| sql(&format!("loading synthetic rows into {}", table.name), e))?
            as i64;
        progress(inserted);
        start = end + 1;
    }
    if cap < wanted {
        report.unhonoured.push(format!(
            "{}: a unique key made of foreign keys allows only {cap} distinct rows (of {wanted} wanted)",
            table.name
        ));
    }
    if existing + inserted < cap && !checks.is_empty() {
        let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
        report.unhonoured.push(format!(
            "{}: CHECK {} rejected {} of {cap} generated rows (loaded {inserted})",
            table.name,
            names.join(", "),
            cap - existing - inserted
        ));
    }
    // Sequences continue after the generated keys.
    for c in table
        .columns
        .iter()
        .filter(|c| matches!(c.base.as_str(), "int2" | "int4" | "int8"))
    {
        client
            .execute(
                &format!(
                    "SELECT setval(s, (SELECT coalesce(max({col}), 0) + 1 FROM {t})::bigint, false) \
                     FROM (SELECT pg_get_serial_sequence($1, $2) AS s) AS x WHERE s IS NOT NULL",
                    col = ident(&c.name),
                    t = table.name
                ),
                &[&table.name, &c.name],
            )
            .await
            .map_err(|e| sql("moving a sequence past the generated keys", e))?;
    }
    Ok((inserted, existing + inserted))
}

fn select_list(exprs: &[(String, String)]) -> String {
    exprs
        .iter()
        .map(|(c, e)| format!("{e} AS {}", locksmith_core::quote::ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks the rows are filtered by. A check that rejects some of a
/// sample of generated rows gets its one column regenerated from a small
/// range when that satisfies it (`level BETWEEN 1 AND 5`); one that rejects
/// every row has its columns loaded as NULL when they may be (a CHECK accepts
/// NULL), which is reported; otherwise the rows are filtered.
async fn feasible_checks(
    client: &Connection,
    table: &Table,
    exprs: &mut [(String, String)],
    from_arrays: &str,
    cap: i64,
    report: &mut LoadReport,
) -> Result<Vec<(String, String)>, Error> {
    let sample = cap.clamp(1, 1000);
    // How many of the sample rows pass `check` with `exprs`; None when the SQL fails.
    let passing = async |exprs: &[(String, String)], check: &str| -> Option<i64> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT {} FROM generate_series(1::bigint, {sample}) AS i{from_arrays}) AS s WHERE ({check}) IS NOT FALSE",
            select_list(exprs)
        );
        client.query_one(&sql, &[]).await.ok().map(|r| r.get(0))
    };
    let distinct: BTreeSet<&str> = table.unique.iter().flatten().map(String::as_str).collect();
    let mut kept = Vec::new();
    for (name, check) in &table.checks {
        kept.push((name.clone(), check.clone()));
        // A check the generated values cannot even be evaluated with counts as rejecting all.
        let passed = passing(exprs, check).await.unwrap_or(0);
        if passed == sample {
            continue;
        }
        let involved: Vec<&Column> = table
            .columns
            .iter()
            .filter(|c| mentions(check, &c.name))
            .collect();
        if let [column] = involved[..] {
            if !distinct.contains(column.name.as_str()) {
                let Some(slot) = exprs.iter().position(|(c, _)| c == &column.name) else {
                    continue;
                };
                let mut fixed = false;
                for candidate in ["1 + i % 2", "i % 2", "1"] {
                    let mut trial = exprs.to_vec();
                    trial[slot].1 = format!("({candidate})::{}", column.declared);
                    if passing(&trial, check).await == Some(sample) {
                        exprs[slot].1 = trial[slot].1.clone();
                        fixed = true;
                        break;
                    }
                }
                if fixed {
                    continue;
                }
            }
        }
        if passed == 0 && !involved.is_empty() && involved.iter().all(|c| !c.not_null) {
            for (col, e) in exprs.iter_mut() {
                if let Some(c) = involved.iter().find(|c| &c.name == col) {
                    *e = format!("NULL::{}", c.declared);
                }
            }
            let cols: Vec<&str> = involved.iter().map(|c| c.name.as_str()).collect();
            report.unhonoured.push(format!(
                "{}: CHECK {name} rejects every generated value; {} loaded as NULL",
                table.name,
                cols.join(", ")
            ));
        }
    }
    Ok(kept)
}

/// Whether `expr` mentions the column `name` (as a whole word, or quoted).
fn mentions(expr: &str, name: &str) -> bool {
    if expr.contains(&locksmith_core::quote::ident(name))
        && name.chars().any(|c| !c.is_ascii_lowercase() && c != '_')
    {
        return true;
    }
    expr.match_indices(name).any(|(at, _)| {
        let before = expr[..at].chars().next_back();
        let after = expr[at + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}
