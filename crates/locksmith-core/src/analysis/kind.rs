//! The summary of what a statement is, for rules: a handful of enums with
//! names and flags, nothing from the parse tree.
//!
//! Only what some rule or the guard needs is here; everything else is
//! [`StatementKind::Other`] with its command tag. Grow it when a rule needs more.

use crate::lock::LockMode;

/// What a statement is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StatementKind {
    /// `ALTER TABLE` (or `ALTER INDEX`/`ALTER MATERIALIZED VIEW` …) with its
    /// subcommands, in order.
    AlterTable {
        /// The relation altered.
        table: String,
        /// One entry per subcommand.
        actions: Vec<AlterAction>,
    },
    /// `CREATE [UNIQUE] INDEX [CONCURRENTLY]`.
    CreateIndex {
        /// The index name, if given.
        name: Option<String>,
        /// The table indexed.
        table: String,
        /// The key's columns; empty when a key is an expression.
        columns: Vec<String>,
        /// `UNIQUE`.
        unique: bool,
        /// `CONCURRENTLY`.
        concurrently: bool,
    },
    /// `DROP INDEX [CONCURRENTLY]`.
    DropIndex {
        /// The indexes dropped.
        indexes: Vec<String>,
        /// `CONCURRENTLY`.
        concurrently: bool,
    },
    /// `REINDEX [CONCURRENTLY] INDEX|TABLE|SCHEMA|DATABASE|SYSTEM`.
    Reindex {
        /// The index or table, when one is named.
        target: Option<String>,
        /// `CONCURRENTLY`.
        concurrently: bool,
    },
    /// `CREATE TABLE` (including `AS`, `PARTITION OF`).
    CreateTable {
        /// The new table.
        table: String,
    },
    /// `CREATE SEQUENCE`.
    CreateSequence {
        /// The new sequence.
        sequence: String,
    },
    /// `CREATE [OR REPLACE] VIEW`.
    CreateView {
        /// The view.
        view: String,
        /// `OR REPLACE`: the view may exist and be in use.
        replace: bool,
    },
    /// `DROP TABLE` / `VIEW` / `MATERIALIZED VIEW` / `SEQUENCE` …
    Drop {
        /// What kind of object, in SQL words (`TABLE`).
        object: &'static str,
        /// The objects dropped.
        names: Vec<String>,
    },
    /// `ALTER … RENAME`.
    Rename {
        /// What is renamed.
        target: RenameTarget,
        /// The table (for a column, constraint or trigger) or the object renamed.
        relation: String,
        /// The new name.
        new_name: String,
    },
    /// `ALTER DOMAIN … ADD CONSTRAINT` / `SET NOT NULL`: every column of the
    /// domain is checked, under a `ShareLock` on each table using it.
    AddDomainConstraint {
        /// The domain.
        domain: String,
        /// The constraint added (`NOT NULL` for `SET NOT NULL`).
        constraint: ConstraintSummary,
    },
    /// `TRUNCATE`.
    Truncate {
        /// The tables truncated.
        tables: Vec<String>,
    },
    /// `VACUUM [FULL]` or `ANALYZE`.
    Vacuum {
        /// `FULL`: rewrites under an `AccessExclusiveLock`.
        full: bool,
        /// False for a plain `ANALYZE`.
        is_vacuum: bool,
        /// The tables named; empty means every table.
        tables: Vec<String>,
    },
    /// `CLUSTER`.
    Cluster {
        /// The table, if named.
        table: Option<String>,
    },
    /// `REFRESH MATERIALIZED VIEW [CONCURRENTLY]`.
    RefreshMatView {
        /// The view.
        view: String,
        /// `CONCURRENTLY`.
        concurrently: bool,
    },
    /// `LOCK TABLE`.
    Lock {
        /// The tables.
        tables: Vec<String>,
        /// The mode requested.
        mode: LockMode,
        /// `NOWAIT`.
        nowait: bool,
    },
    /// `UPDATE`, `DELETE`, `INSERT`, `MERGE`, `COPY … FROM`.
    Dml {
        /// The command tag, e.g. `UPDATE`.
        command: &'static str,
        /// The table written.
        table: String,
        /// No `WHERE`: every row is written (`UPDATE`/`DELETE` only).
        whole_table: bool,
    },
    /// `SELECT` (with or without `FOR UPDATE`).
    Select,
    /// `CREATE [OR REPLACE] TRIGGER`.
    CreateTrigger {
        /// The table.
        table: String,
    },
    /// Transaction control.
    Transaction(TransactionControl),
    /// `SET [LOCAL] name …` (`value` is `None` for `DEFAULT`) or `RESET name`.
    Set {
        /// The setting, lower case.
        name: String,
        /// The value as written, without quotes; `None` for `DEFAULT`/`RESET`.
        value: Option<String>,
        /// `SET LOCAL`: lasts until the end of the transaction.
        local: bool,
    },
    /// Anything else (`CREATE FUNCTION`, `COMMENT ON`, `GRANT` …), by command tag.
    Other {
        /// The parse node's name, e.g. `CommentStmt`.
        tag: String,
    },
    /// An empty statement.
    #[default]
    Empty,
}

impl StatementKind {
    /// The relation this statement creates (a new table, index or view: no
    /// running code uses it yet, so locking it blocks nobody).
    pub fn creates(&self) -> Option<&str> {
        match self {
            StatementKind::CreateTable { table } => Some(table),
            StatementKind::CreateSequence { sequence } => Some(sequence),
            StatementKind::CreateIndex { name, .. } => name.as_deref(),
            StatementKind::CreateView {
                view,
                replace: false,
            } => Some(view),
            _ => None,
        }
    }

    /// The concurrent forms whose strong locks no application query waits
    /// for: `DROP INDEX CONCURRENTLY` takes its `AccessExclusiveLock` on an
    /// index already invalid and unused, `DETACH … CONCURRENTLY` on a
    /// partition after waiting out every query that could see it, and
    /// `REFRESH … CONCURRENTLY`'s `ExclusiveLock` blocks only writes, which
    /// a materialized view never gets.
    pub fn locks_block_no_traffic(&self) -> bool {
        match self {
            StatementKind::DropIndex { concurrently, .. }
            | StatementKind::RefreshMatView { concurrently, .. } => *concurrently,
            StatementKind::AlterTable { actions, .. } => {
                !actions.is_empty()
                    && actions.iter().all(|a| {
                        matches!(
                            a,
                            AlterAction::DetachPartition {
                                concurrently: true,
                                ..
                            }
                        )
                    })
            }
            _ => false,
        }
    }
}

/// `BEGIN`, `COMMIT` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionControl {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END` / `PREPARE TRANSACTION`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`: the transaction goes on.
    Savepoint,
}

/// What an `ALTER … RENAME` renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameTarget {
    /// A table, view, materialized view or sequence.
    Relation,
    /// A column.
    Column,
    /// An index.
    Index,
    /// A constraint.
    Constraint,
    /// A schema (`ALTER SCHEMA … RENAME`).
    Schema,
    /// An enum's value (`ALTER TYPE … RENAME VALUE`).
    EnumValue,
    /// Something else (trigger, policy, schema …).
    Other,
}

/// One `ALTER TABLE` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterAction {
    /// `ADD COLUMN`.
    AddColumn {
        /// Column name.
        column: String,
        /// Type as written (normalised: `pg_catalog.` dropped).
        type_name: String,
        /// The default, classified.
        default: ColumnDefault,
        /// `serial`, `bigserial`, `smallserial`.
        serial: bool,
        /// `GENERATED … AS IDENTITY`.
        identity: bool,
        /// `GENERATED ALWAYS AS (…) STORED`.
        generated_stored: bool,
        /// `NOT NULL`.
        not_null: bool,
        /// Inline constraints (`REFERENCES`, `UNIQUE`, `CHECK` …).
        constraints: Vec<ConstraintSummary>,
        /// The column's type is a domain with constraints (known from
        /// earlier statements): PostgreSQL checks them on every row by
        /// rewriting the table.
        checked_domain: Option<String>,
    },
    /// `ALTER COLUMN … TYPE`.
    AlterColumnType {
        /// Column name.
        column: String,
        /// The new type.
        type_name: String,
        /// Whether the table must be rewritten.
        coercion: Coercion,
        /// The column was declared `serial` (`serial4`, `smallserial`): it
        /// owns a sequence of its old type, which the change leaves as it is.
        was_serial: bool,
    },
    /// `ALTER COLUMN … SET NOT NULL`.
    SetNotNull {
        /// Column name.
        column: String,
        /// Known to hold no NULL already (declared `NOT NULL` or `PRIMARY KEY`, or a
        /// validated `CHECK (col IS NOT NULL)`): no scan.
        proven: bool,
    },
    /// `ALTER COLUMN … SET DEFAULT`.
    SetDefault {
        /// Column name.
        column: String,
    },
    /// `ADD CONSTRAINT` (or `ADD … USING INDEX`).
    AddConstraint(ConstraintSummary),
    /// `VALIDATE CONSTRAINT`.
    ValidateConstraint {
        /// Constraint name.
        name: String,
    },
    /// `DROP CONSTRAINT`.
    DropConstraint {
        /// Constraint name.
        name: String,
    },
    /// `DROP COLUMN`.
    DropColumn {
        /// Column name.
        column: String,
    },
    /// `ATTACH PARTITION`.
    AttachPartition {
        /// The partition attached.
        partition: String,
    },
    /// `DETACH PARTITION [CONCURRENTLY | FINALIZE]`.
    DetachPartition {
        /// The partition detached.
        partition: String,
        /// `CONCURRENTLY` (14+).
        concurrently: bool,
    },
    /// A subcommand rules don't single out, by its SQL words (`SET STATISTICS`).
    Other {
        /// The subcommand in SQL words.
        what: &'static str,
        /// The lock it takes.
        mode: LockMode,
        /// Whether it rewrites the table.
        rewrites: bool,
    },
    /// A subcommand this version of locksmith does not know: assumed
    /// `AccessExclusiveLock`.
    Unknown {
        /// `pg_query`'s name for it.
        subtype: String,
    },
}

/// A column's default value, classified by whether adding it rewrites the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnDefault {
    /// No default.
    None,
    /// A constant or a stable expression (`now()`): evaluated once, no rewrite (11+).
    NonVolatile,
    /// A volatile expression (`random()`, `gen_random_uuid()`, `nextval`): rewrites.
    Volatile(String),
    /// Calls a function locksmith doesn't know: rewrites if it is volatile.
    Unknown(String),
}

/// Whether `ALTER COLUMN TYPE` rewrites the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coercion {
    /// Binary-coercible from the known old type: catalog-only change.
    Binary,
    /// The table and its indexes are rewritten.
    Rewrite,
    /// Depends on the current type, which only the server knows.
    Unknown,
}

/// The kind of a table constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    /// `PRIMARY KEY`.
    PrimaryKey,
    /// `UNIQUE`.
    Unique,
    /// `EXCLUDE`.
    Exclusion,
    /// `FOREIGN KEY` / `REFERENCES`.
    ForeignKey,
    /// `CHECK`.
    Check,
    /// `NOT NULL` as a named constraint (18+).
    NotNull,
    /// Anything else (`DEFAULT`, `GENERATED` as column constraints).
    Other,
}

/// A constraint added by `ADD CONSTRAINT` or inline in `ADD COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintSummary {
    /// Its name, if given.
    pub name: Option<String>,
    /// Its kind.
    pub kind: ConstraintKind,
    /// The constrained columns (for a `CHECK`, the columns it mentions).
    pub columns: Vec<String>,
    /// The referenced table of a foreign key.
    pub references: Option<String>,
    /// `NOT VALID`: existing rows are not checked now.
    pub not_valid: bool,
    /// `USING INDEX name`: adopts an existing index.
    pub using_index: Option<String>,
    /// For a `PRIMARY KEY`: its columns not known to be `NOT NULL`, which
    /// PostgreSQL makes `NOT NULL` by scanning the table (all of them when
    /// the table's columns are unknown; none when a `USING INDEX` names an
    /// index whose columns are unknown).
    pub unproven_not_null: Vec<String>,
    /// The constraint's definition as SQL without its name, e.g.
    /// `FOREIGN KEY (a) REFERENCES b (id)`; empty if it could not be rendered.
    pub definition: String,
}
