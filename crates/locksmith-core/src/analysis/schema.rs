//! The schema model: what the statements analysed so far say about the
//! objects they made and changed — column types, columns proven `NOT NULL`,
//! constraints still to validate, indexes, foreign keys, domains,
//! materialized views.
//!
//! Linting a folder replays every earlier migration into one [`Schema`], so
//! each file is judged against the schema it will meet: `varchar(50)` →
//! `varchar(100)` is known not to rewrite, and `SET NOT NULL` after an
//! earlier file's validated `CHECK (col IS NOT NULL)` is known not to scan.
//! Pure: it knows only what the SQL said; what it does not know, the
//! summary reports as unknown.

use std::collections::{HashMap, HashSet};

/// A (table, column) pair, names as written.
pub(crate) type ColumnKey = (String, String);

/// What the statements so far said about the schema.
#[derive(Debug, Default, Clone)]
pub struct Schema {
    /// (table, column) → type name and modifiers.
    pub(crate) column_types: HashMap<ColumnKey, (String, Vec<i64>)>,
    /// Columns known to hold no NULL: declared `NOT NULL` or `PRIMARY KEY`,
    /// or proven by a validated `CHECK (col IS NOT NULL)`.
    pub(crate) not_null_checks: HashSet<ColumnKey>,
    /// `CHECK (col IS NOT NULL)` constraints added `NOT VALID`: name → column.
    pub(crate) pending_not_null_checks: HashMap<String, ColumnKey>,
    /// Foreign keys: constraint name → referenced table.
    pub(crate) foreign_keys: HashMap<String, String>,
    /// Indexes: index → table.
    pub(crate) indexes: HashMap<String, String>,
    /// Indexes on plain columns: index → its columns, in order.
    pub(crate) index_columns: HashMap<String, Vec<String>>,
    /// Materialized views → the relations their query reads.
    pub(crate) matview_sources: HashMap<String, Vec<String>>,
    /// Domains → whether they have constraints (`CHECK`, `NOT NULL`), which
    /// a new column of the domain is checked against.
    pub(crate) domains: HashMap<String, bool>,
}

impl Schema {
    /// Learns a column as a live server's catalog has it (`lint
    /// --database-url`): its type as `pg_type.typname` spells it (`varchar`,
    /// `int4`, a domain's name), its modifiers (`[50]` for `varchar(50)`,
    /// `[10, 2]` for `numeric(10,2)`), and whether it is `NOT NULL`.
    pub fn learn_column(
        &mut self,
        table: &str,
        column: &str,
        type_name: &str,
        modifiers: Vec<i64>,
        not_null: bool,
    ) {
        let key = (table.to_string(), column.to_string());
        if not_null {
            self.not_null_checks.insert(key.clone());
        }
        self.column_types
            .insert(key, (type_name.to_string(), modifiers));
    }

    /// Learns a domain from a live server's catalog, and whether it has
    /// constraints (`CHECK`, `NOT NULL`).
    pub fn learn_domain(&mut self, name: &str, constrained: bool) {
        self.domains.insert(name.to_string(), constrained);
    }

    /// Forgets a dropped table (or view) and everything on it.
    pub(crate) fn drop_table(&mut self, table: &str) {
        self.column_types.retain(|(t, _), _| t != table);
        self.not_null_checks.retain(|(t, _)| t != table);
        self.pending_not_null_checks.retain(|_, (t, _)| t != table);
        self.indexes.retain(|_, t| t != table);
        let indexes = &self.indexes;
        self.index_columns.retain(|i, _| indexes.contains_key(i));
        self.matview_sources.remove(table);
    }

    /// Forgets a dropped column.
    pub(crate) fn drop_column(&mut self, table: &str, column: &str) {
        let key = (table.to_string(), column.to_string());
        self.column_types.remove(&key);
        self.not_null_checks.remove(&key);
    }

    /// Follows `ALTER TABLE … RENAME COLUMN`.
    pub(crate) fn rename_column(&mut self, table: &str, from: &str, to: &str) {
        let old = (table.to_string(), from.to_string());
        let new = (table.to_string(), to.to_string());
        if let Some(t) = self.column_types.remove(&old) {
            self.column_types.insert(new.clone(), t);
        }
        if self.not_null_checks.remove(&old) {
            self.not_null_checks.insert(new);
        }
    }

    /// Follows `ALTER TABLE … RENAME TO` (the new name keeps the old schema).
    pub(crate) fn rename_table(&mut self, from: &str, to: &str) {
        let to = match from.rsplit_once('.') {
            Some((schema, _)) => format!("{schema}.{to}"),
            None => to.to_string(),
        };
        let moved = |t: &mut String| {
            if t == from {
                *t = to.clone();
            }
        };
        self.column_types = std::mem::take(&mut self.column_types)
            .into_iter()
            .map(|((mut t, c), v)| {
                moved(&mut t);
                ((t, c), v)
            })
            .collect();
        self.not_null_checks = std::mem::take(&mut self.not_null_checks)
            .into_iter()
            .map(|(mut t, c)| {
                moved(&mut t);
                (t, c)
            })
            .collect();
        self.indexes.values_mut().for_each(moved);
    }
}
