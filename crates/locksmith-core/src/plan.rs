//! The migration plan: every migration of a source, parsed and analysed once
//! into what the guard runs. Built before anything connects, so a syntax
//! error stops a run at `FILE:LINE:COLUMN` with nothing executed; then read by
//! every part of a run (the look, the attempts, the `--max-hold` estimate,
//! the online plan, the dry run) instead of parsing the SQL again.
//!
//! Each migration runs either in one transaction with its history row, or,
//! when it asks for none (dbmate `transaction:false`, goose `NO TRANSACTION`,
//! `-- locksmith: no-transaction`) or holds a statement PostgreSQL refuses in
//! a transaction block (`CREATE INDEX CONCURRENTLY`, `VACUUM`), statement by
//! statement. The file's own `BEGIN`/`COMMIT` and `lock_timeout` /
//! `statement_timeout` settings are left out: the guard owns the transaction
//! and the budget.
//!
//! Pure: the caller reads the files ([`crate::source`] turns them into
//! migrations) and runs the plan (`locksmith_pg::migrate`).
//!
//! ```
//! use locksmith_core::plan::Plan;
//! use locksmith_core::source::{read_folder, SourceFile};
//! let files = [SourceFile {
//!     path: "001_unique.sql".into(),
//!     content: "ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (informal_name);".into(),
//! }];
//! let plan = Plan::new("migrations", read_folder(&files).unwrap(), Some(15)).unwrap();
//! let m = &plan.migrations[0];
//! assert!(m.in_transaction);
//! assert_eq!(m.statements[0].locks[0].relation, "academic_partners");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::analysis::{
    self, Schema, Statement, StatementKind, TransactionControl, MAX_PG_VERSION, MIN_PG_VERSION,
};
use crate::online::{self, Unit};
use crate::source::{self, Migration};

/// Every migration of a source, analysed for one PostgreSQL major version.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The folder the migrations were read from, as given (for messages).
    pub dir: PathBuf,
    /// The major version the statements were analysed for.
    pub pg_version: u32,
    /// Whether that version was chosen by the caller (`--pg-version`) rather
    /// than assumed until the server says which it is.
    pub version_given: bool,
    /// The migrations, in the order they run.
    pub migrations: Vec<PlannedMigration>,
}

/// One migration, analysed.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMigration {
    /// The migration as the source gave it.
    pub migration: Migration,
    /// Its history key (`7`, `1.1`, `R__views`).
    pub id: String,
    /// Its file, as messages name it (the folder joined with its path).
    pub path: PathBuf,
    /// One transaction with its history row (true), or statement by statement.
    pub in_transaction: bool,
    /// The file wraps its statements in its own `BEGIN` … `COMMIT`: its
    /// author wanted them atomic (they are, as one transaction, unless an
    /// online plan splits them into steps).
    pub explicit_transaction: bool,
    /// What runs, in order, each with its position in the file.
    pub statements: Vec<Statement>,
}

/// A statement that cannot be planned: where it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct PlanError {
    /// The file, as messages name it.
    pub path: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl Plan {
    /// Analyses every migration for `pg_version` (the newest modelled major
    /// when `None`: the caller may then [`for_server`](Self::for_server)
    /// once it knows the server's), in order, each against the schema the
    /// earlier ones build (column types, indexes), as `lint` judges a folder.
    /// A syntax error is returned with its position in the original file.
    pub fn new(
        dir: impl AsRef<Path>,
        migrations: Vec<Migration>,
        pg_version: Option<u32>,
    ) -> Result<Plan, PlanError> {
        let dir = dir.as_ref().to_path_buf();
        let version = pg_version.unwrap_or(MAX_PG_VERSION);
        let mut schema = Schema::default();
        let migrations = migrations
            .into_iter()
            .map(|m| PlannedMigration::new(&dir, m, version, &mut schema))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            dir,
            pg_version: version,
            version_given: pg_version.is_some(),
            migrations,
        })
    }

    /// The plan for the server's major `major` (clamped to the modelled
    /// ones), unless the caller chose a version: lock levels differ between
    /// majors. Analysed again, from the files alone, only when the version
    /// changes, so the same files always give the same plan (an interrupted
    /// online migration resumes the steps it recorded).
    pub fn for_server(&mut self, major: u32) -> Result<(), PlanError> {
        let major = major.clamp(MIN_PG_VERSION, MAX_PG_VERSION);
        if self.version_given || major == self.pg_version {
            return Ok(());
        }
        let migrations = self
            .migrations
            .iter()
            .map(|p| p.migration.clone())
            .collect();
        let again = Plan::new(&self.dir, migrations, Some(major))?;
        self.migrations = again.migrations;
        self.pg_version = major;
        Ok(())
    }

    /// The migrations at `indices` (those about to run, in order) as the
    /// server will meet them: analysed again starting from `live`, what its
    /// catalog says about the tables they touch, so a type change is known to
    /// rewrite or not. For judging what runs (refusals, hold estimates); what
    /// runs stays the plan's.
    pub fn judged_live(
        &self,
        indices: &[usize],
        live: Schema,
    ) -> Result<Vec<PlannedMigration>, PlanError> {
        let mut schema = live;
        indices
            .iter()
            .map(|&i| {
                let m = self.migrations[i].migration.clone();
                PlannedMigration::new(&self.dir, m, self.pg_version, &mut schema)
            })
            .collect()
    }

    /// Every relation the migrations at `indices` lock, once each, in order:
    /// what to ask the server about before [`for_server`](Self::for_server).
    pub fn relations(&self, indices: &[usize]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for &i in indices {
            for s in &self.migrations[i].statements {
                for l in &s.locks {
                    if !names.contains(&l.relation) {
                        names.push(l.relation.clone());
                    }
                }
            }
        }
        names
    }
}

impl PlannedMigration {
    fn new(
        dir: &Path,
        migration: Migration,
        version: u32,
        schema: &mut Schema,
    ) -> Result<Self, PlanError> {
        let path = dir.join(&migration.path);
        let statements =
            analysis::analyze_in(schema, &migration.sql, version).map_err(|e| PlanError {
                path: path.clone(),
                line: e.line,
                column: e.column,
                message: e.message,
            })?;
        let statements = source::group_blocks(statements, &migration.blocks, &migration.sql);
        let explicit_transaction = statements.iter().any(|s| {
            matches!(
                s.kind,
                StatementKind::Transaction(TransactionControl::Begin)
            )
        });
        let statements: Vec<Statement> = statements.into_iter().filter(runs).collect();
        // As its tool runs it (docs/tools.md): a tool that opens no
        // transaction of its own (Prisma, golang-migrate) runs a
        // one-statement file outside one.
        let in_transaction = !migration.no_transaction
            && statements.iter().all(|s| s.transactional)
            && (source::tool::wraps_file(migration.layout, &migration.path)
                || statements.len() > 1);
        Ok(PlannedMigration {
            id: migration.id(),
            migration,
            path,
            in_transaction,
            explicit_transaction,
            statements,
        })
    }

    /// Its path relative to the folder, as the source listed it.
    pub fn file(&self) -> &str {
        &self.migration.path
    }

    /// Its online plan (`apply --online`), `None` when it runs as written. A
    /// statement that would block traffic while it works and has no online
    /// form is an error at its position: nothing should run.
    pub fn online(&self, pg_version: u32) -> Result<Option<Vec<Unit>>, PlanError> {
        online::units(&self.statements, pg_version).map_err(|r| {
            let s = &self.statements[r.index];
            PlanError {
                path: self.path.clone(),
                line: s.line,
                column: s.column,
                message: format!(
                    "cannot run `{}` online: {}. Nothing was run.",
                    analysis::source::one_line(&s.sql, 80),
                    r.why.trim_end_matches('.')
                ),
            }
        })
    }
}

/// Whether a statement of the file runs under the guard: the file's own
/// transaction control and lock budget are the guard's to set.
fn runs(s: &Statement) -> bool {
    !matches!(
        &s.kind,
        StatementKind::Transaction(TransactionControl::Begin | TransactionControl::Commit)
            | StatementKind::Empty
    ) && !matches!(&s.kind, StatementKind::Set { name, .. }
        if name == "lock_timeout" || name == "statement_timeout")
}

impl fmt::Display for PlannedMigration {
    /// `7 add_email`, as reports name a migration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.migration.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{read_folder, SourceFile};

    fn plan(files: &[(&str, &str)], version: Option<u32>) -> Result<Plan, PlanError> {
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(path, content)| SourceFile {
                path: path.to_string(),
                content: content.to_string(),
            })
            .collect();
        Plan::new("m", read_folder(&files).unwrap(), version)
    }

    #[test]
    fn the_files_own_transaction_and_budget_are_left_to_the_guard() {
        let p = plan(
            &[(
                "001_a.sql",
                "BEGIN;\nSET lock_timeout = '5s';\nALTER TABLE t ADD COLUMN c int;\nCOMMIT;\n",
            )],
            None,
        )
        .unwrap();
        let m = &p.migrations[0];
        assert_eq!(m.statements.len(), 1);
        assert_eq!((m.statements[0].line, m.statements[0].column), (3, 1));
        assert!(m.in_transaction);
    }

    #[test]
    fn a_statement_refused_in_a_transaction_block_runs_the_file_statement_by_statement() {
        let p = plan(
            &[(
                "001_a.sql",
                "CREATE INDEX CONCURRENTLY i ON t (c);\nALTER TABLE t ADD COLUMN d int;\n",
            )],
            None,
        )
        .unwrap();
        assert!(!p.migrations[0].in_transaction);
    }

    #[test]
    fn a_syntax_error_is_at_its_place_in_the_file() {
        let e = plan(&[("001_a.sql", "SELECT 1;\n\nALTER TABLE t ADD;\n")], None).unwrap_err();
        assert_eq!(e.path, Path::new("m/001_a.sql"));
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("m/001_a.sql:3:"), "{e}");
    }

    #[test]
    fn the_servers_version_replans_unless_one_was_given() {
        let files = [("001_a.sql", "ALTER TABLE t ADD COLUMN c int;")];
        let mut p = plan(&files, None).unwrap();
        p.for_server(13).unwrap();
        assert_eq!(p.pg_version, 13);
        let mut given = plan(&files, Some(16)).unwrap();
        given.for_server(13).unwrap();
        assert_eq!(given.pg_version, 16);
    }

    #[test]
    fn the_live_schema_tells_a_rewriting_type_change() {
        let files = [("001_a.sql", "ALTER TABLE t ALTER COLUMN v TYPE numeric;")];
        let p = plan(&files, Some(15)).unwrap();
        assert!(p.migrations[0].statements[0].rewrites.is_empty());
        assert_eq!(p.relations(&[0]), vec!["t".to_string()]);
        let mut live = Schema::default();
        live.learn_column("t", "v", "int8", Vec::new(), false);
        let judged = p.judged_live(&[0], live).unwrap();
        assert_eq!(judged[0].statements[0].rewrites, vec!["t".to_string()]);
        let units = judged[0].online(15).unwrap().unwrap();
        assert!(units[0].unexpanded().is_some());
        assert_eq!(p.migrations[0].online(15), Ok(None));
        // The files alone cannot tell.
        assert!(p.migrations[0].statements[0].rewrites.is_empty());
    }

    #[test]
    fn later_files_are_judged_against_the_schema_earlier_ones_build() {
        let p = plan(
            &[
                ("001_a.sql", "CREATE TABLE t (v bigint);"),
                ("002_b.sql", "ALTER TABLE t ALTER COLUMN v TYPE numeric;"),
            ],
            Some(15),
        )
        .unwrap();
        assert_eq!(
            p.migrations[1].statements[0].rewrites,
            vec!["t".to_string()]
        );
    }

    #[test]
    fn a_statement_with_no_online_form_is_refused_where_it_is_written() {
        let p = plan(
            &[(
                "001_a.sql",
                "\n  ALTER TABLE t ALTER COLUMN c TYPE text USING c::text, ALTER COLUMN d TYPE text;",
            )],
            None,
        )
        .unwrap();
        let e = p.migrations[0].online(15).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(
            e.message
                .contains("cannot run `ALTER TABLE t ALTER COLUMN c TYPE text"),
            "{e}"
        );
    }
}
