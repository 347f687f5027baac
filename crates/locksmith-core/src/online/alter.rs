//! The online forms of `ALTER TABLE` subcommands (`UNIQUE`/`PRIMARY KEY`,
//! `FOREIGN KEY`/`CHECK`, `SET NOT NULL`, a volatile default) and the catalog
//! queries that tell whether an interrupted run already did a step.

use super::{BatchedUpdate, Draft, DraftStep, Pairs};
use crate::analysis::{
    quote_ident, quote_qualified, split, AlterAction, ColumnDefault, ConstraintKind,
    ConstraintSummary,
};
use crate::quote::{ident, literal, qualified, split_qualified};

/// Online steps for a one-subcommand `ALTER TABLE`; `None` when it needs none.
pub(super) fn alter_table(
    sql: &str,
    table: &str,
    actions: &[AlterAction],
) -> Option<Result<Draft, String>> {
    let needs = |a: &AlterAction| match a {
        AlterAction::AddConstraint(c) => transforms(c),
        AlterAction::SetNotNull { proven, .. } => !proven,
        AlterAction::AddColumn { default, .. } => {
            matches!(
                default,
                ColumnDefault::Volatile(_) | ColumnDefault::Unknown(_)
            )
        }
        _ => false,
    };
    if !actions.iter().any(needs) {
        return None;
    }
    if actions.len() > 1 {
        return Some(Err(
            "split the ALTER TABLE into one statement per subcommand, so each can run online"
                .into(),
        ));
    }
    let pairs = match &actions[0] {
        AlterAction::AddConstraint(c) => match c.kind {
            ConstraintKind::Unique | ConstraintKind::PrimaryKey => unique(table, c),
            _ => Ok(not_valid_then_validate(table, c)),
        },
        AlterAction::SetNotNull { column, .. } => Ok(not_null(table, column)),
        AlterAction::AddColumn { .. } => return Some(added_default(sql, table)),
        _ => unreachable!("only the subcommands `needs` accepts"),
    };
    Some(pairs.map(|p| p.into_iter().map(DraftStep::from).collect()))
}

/// Rows a backfill batch covers, as heap pages: about a thousand short rows,
/// a few milliseconds of row locks per batch.
const BACKFILL_PAGES: u32 = 10;

/// `ADD COLUMN … DEFAULT <volatile>`: the column alone (no rewrite), its
/// default for new rows, existing rows filled in committed batches, then
/// `NOT NULL` through a validated check if it was asked for.
fn added_default(sql: &str, table: &str) -> Result<Draft, String> {
    let Some(split) = split::added_default(sql) else {
        return Err(
            "only ADD COLUMN … DEFAULT … [NOT NULL] is planned online; add the column, SET DEFAULT and backfill in batches by hand".into(),
        );
    };
    let t = quote_qualified(table);
    let c = quote_ident(&split.column);
    let exists = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass({}) AND attname = {} AND NOT attisdropped)",
        literal(&t),
        literal(&split.column)
    );
    // By heap pages first (one pass, TID range scans from 14 on), then
    // whatever rows moved behind the pass meanwhile, until none is left.
    let backfill = format!(
        "DO $locksmith$
DECLARE
  pages bigint := pg_relation_size({rel}) / current_setting('block_size')::int;
  page bigint := 0;
  filled bigint;
BEGIN
  WHILE page <= pages LOOP
    UPDATE {t} SET {c} = DEFAULT
     WHERE ctid >= format('(%s,0)', page)::tid AND ctid < format('(%s,0)', page + {BACKFILL_PAGES})::tid
       AND {c} IS NULL;
    COMMIT;
    page := page + {BACKFILL_PAGES};
  END LOOP;
  LOOP
    UPDATE {t} SET {c} = DEFAULT
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM {t} WHERE {c} IS NULL LIMIT 1000));
    GET DIAGNOSTICS filled = ROW_COUNT;
    COMMIT;
    EXIT WHEN filled = 0;
  END LOOP;
END
$locksmith$",
        rel = literal(&t),
    );
    let mut steps: Draft = vec![
        (split.add_column, Some(exists)).into(),
        (split.set_default, None).into(),
        DraftStep {
            sql: backfill,
            done_when: None,
            outside_transaction: true,
            // Throttled batches where the table has a key; idempotent, as is the DO block.
            batch: Some(BatchedUpdate {
                table: table.to_string(),
                update: format!("UPDATE {t} SET {c} = DEFAULT"),
                condition: Some(format!("{c} IS NULL")),
            }),
        },
    ];
    if split.not_null {
        steps.extend(
            not_null(table, &split.column)
                .into_iter()
                .map(DraftStep::from),
        );
    }
    Ok(steps)
}

/// Whether `ADD CONSTRAINT c` scans or builds under its lock, and has an online form.
fn transforms(c: &ConstraintSummary) -> bool {
    match c.kind {
        ConstraintKind::Unique | ConstraintKind::PrimaryKey => c.using_index.is_none(),
        ConstraintKind::ForeignKey | ConstraintKind::Check => !c.not_valid,
        _ => false,
    }
}

/// `UNIQUE` / `PRIMARY KEY`: the index built concurrently, then adopted.
fn unique(table: &str, c: &ConstraintSummary) -> Result<Pairs, String> {
    let pk = c.kind == ConstraintKind::PrimaryKey;
    let word = if pk { "PRIMARY KEY" } else { "UNIQUE" };
    let plain = c.definition.to_ascii_uppercase();
    if c.columns.is_empty()
        || ["INCLUDE", "DEFERRABLE", "NULLS", " WITH ", "TABLESPACE"]
            .iter()
            .any(|w| plain.contains(w))
    {
        return Err(format!(
            "only a plain {word} (columns) is planned online; build the index with CREATE UNIQUE INDEX CONCURRENTLY and ADD CONSTRAINT … USING INDEX by hand"
        ));
    }
    let name = c.name.clone().unwrap_or_else(|| {
        default_name(
            table,
            if pk { &[] } else { &c.columns },
            if pk { "pkey" } else { "key" },
        )
    });
    let mut steps = Vec::new();
    if pk {
        for column in &c.columns {
            steps.extend(not_null(table, column));
        }
    }
    let columns = c
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let constraint = constraint_exists(table, &name);
    steps.push((
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({columns})",
            quote_ident(&name),
            quote_qualified(table)
        ),
        Some(format!(
            "SELECT ({}) OR ({})",
            strip_select(&valid_index_exists(&sibling(table, &name))),
            strip_select(&constraint)
        )),
    ));
    steps.push((
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {word} USING INDEX {}",
            quote_qualified(table),
            quote_ident(&name),
            quote_ident(&name)
        ),
        Some(constraint),
    ));
    Ok(steps)
}

/// `FOREIGN KEY` / `CHECK`: added without checking existing rows (a brief
/// lock), then validated under a lock that lets reads and writes through.
fn not_valid_then_validate(table: &str, c: &ConstraintSummary) -> Pairs {
    let suffix = if c.kind == ConstraintKind::ForeignKey {
        "fkey"
    } else {
        "check"
    };
    let name = c
        .name
        .clone()
        .unwrap_or_else(|| default_name(table, &c.columns, suffix));
    vec![
        (
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID",
                quote_qualified(table),
                quote_ident(&name),
                c.definition
            ),
            Some(constraint_exists(table, &name)),
        ),
        (
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                quote_qualified(table),
                quote_ident(&name)
            ),
            None,
        ),
    ]
}

/// `SET NOT NULL` proven by a validated `CHECK (col IS NOT NULL)`, which is
/// then dropped: the only scan runs under `VALIDATE`'s weak lock. The check
/// is not named `<table>_<col>_not_null`: PostgreSQL 18 gives that name to
/// the NOT NULL constraint itself, which would then get another.
fn not_null(table: &str, column: &str) -> Pairs {
    let check = default_name(table, &[column.to_string()], "not_null_check");
    let t = quote_qualified(table);
    let (c, k) = (quote_ident(column), quote_ident(&check));
    let is_not_null = format!(
        "SELECT coalesce((SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass({}) AND attname = {}), false)",
        literal(&t),
        literal(column)
    );
    let either = |other: &str| {
        Some(format!(
            "SELECT ({}) OR ({})",
            strip_select(&is_not_null),
            strip_select(other)
        ))
    };
    vec![
        (
            format!("ALTER TABLE {t} ADD CONSTRAINT {k} CHECK ({c} IS NOT NULL) NOT VALID"),
            either(&constraint_exists(table, &check)),
        ),
        (
            format!("ALTER TABLE {t} VALIDATE CONSTRAINT {k}"),
            either(&format!(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({}) AND conname = {} AND convalidated)",
                literal(&t),
                literal(&check)
            )),
        ),
        (
            format!("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"),
            Some(is_not_null.clone()),
        ),
        (format!("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {k}"), None),
    ]
}

/// The query "a valid index `index` exists".
pub(super) fn valid_index_exists(index: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass({}) AND indisvalid)",
        literal(&qualified(index))
    )
}

/// The query "`table` has a constraint `name`".
fn constraint_exists(table: &str, name: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({}) AND conname = {})",
        literal(&qualified(table)),
        literal(name)
    )
}

fn strip_select(query: &str) -> &str {
    query.strip_prefix("SELECT ").unwrap_or(query)
}

/// `name` in `table`'s schema (an index lives beside its table).
pub(super) fn sibling(table: &str, name: &str) -> String {
    let mut parts = split_qualified(table);
    parts.pop();
    parts.push(name.to_string());
    parts.iter().map(|p| ident(p)).collect::<Vec<_>>().join(".")
}

/// PostgreSQL's default constraint name: `table_col1_col2_suffix`, at most 63 bytes.
pub(crate) fn default_name(table: &str, columns: &[String], suffix: &str) -> String {
    let base = split_qualified(table).pop().unwrap_or_default();
    let mut parts = vec![base];
    parts.extend(columns.iter().cloned());
    parts.push(suffix.to_string());
    let mut name = parts.join("_");
    while name.len() > 63 {
        name.pop();
    }
    name
}
