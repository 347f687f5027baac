//! Making `CREATE INDEX CONCURRENTLY` safe to rerun after any fault.
//!
//! A concurrent build commits its catalog entry before it builds, so a fault
//! leaves one of two things behind under the statement's index name:
//! - an INVALID index (the build failed, was cancelled, or the server
//!   restarted): it is dropped, concurrently and within the lock budget, and
//!   the build runs again; `IF NOT EXISTS` would otherwise skip it;
//! - a valid index (the server finished the build after `apply` was killed,
//!   before it could write the history row): if it is the index the
//!   statement builds, the step is done; if it is another index under the
//!   same name, that is an error to resolve by hand.
//!
//! "The index the statement builds" is decided by the server: the statement
//! is retargeted ([`create_index_on`]) at an empty temporary copy of the
//! table's columns, built there inside a transaction that is rolled back, and
//! both indexes' `pg_get_indexdef` compared from `USING` on (access method,
//! keys, opclasses, collations, `INCLUDE`, storage options, predicate) plus
//! uniqueness. Comparing SQL text would miss `a = 1` against `(a = 1)`.

use std::time::Duration;

use crate::Connection;
use locksmith_core::analysis::index_copy::create_index_on;
use locksmith_core::duration::to_pg_setting;
use locksmith_core::quote::{ident, qualified};
use tokio_postgres::error::SqlState;

use super::{Event, Guard, GuardError, Step};
use crate::Error;

/// What stands under a concurrent build's index name before it runs.
#[derive(Debug, PartialEq)]
pub(super) enum Existing {
    /// Nothing (or no index): build.
    Absent,
    /// A failed build's leftover, by its qualified name: drop it, then build.
    Invalid(String),
    /// The very index the statement builds: nothing to do.
    Built(String),
}

/// The temporary table and index the statement is retargeted at.
const COPY_TABLE: &str = "locksmith_index_copy";
const COPY_INDEX: &str = "locksmith_index_copy_idx";

impl Guard {
    /// Looks under `step`'s index name in its table's schema: drops an INVALID
    /// leftover, and says whether a valid index there means the step is done.
    /// `Ok(None)` when the drop lost the race for its lock (retry).
    pub(super) async fn prepare_index_build(
        &mut self,
        step: &Step,
    ) -> Result<Option<Existing>, GuardError> {
        let (Some(index), Some(table)) = (&step.builds_index, step.locks.first()) else {
            return Ok(Some(Existing::Absent));
        };
        let lock_timeout = self.policy.lock_timeout;
        let existing = match existing_index(
            self.outside_client(),
            &step.sql,
            &table.relation,
            index,
            lock_timeout,
        )
        .await
        {
            Ok(existing) => existing,
            // The copy's brief ACCESS SHARE on the table lost to an ACCESS EXCLUSIVE holder.
            Err(e) if e.sqlstate() == Some(SqlState::LOCK_NOT_AVAILABLE.code()) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Existing::Invalid(name) = &existing {
            if !self.drop_index(name).await? {
                return Ok(None);
            }
            (self.on_event)(Event::DroppedInvalidIndex(name));
        }
        Ok(Some(existing))
    }

    /// After a failed build: drops what it left INVALID. Returns false when
    /// the drop lost the race for its lock; the next attempt drops it first.
    pub(super) async fn drop_invalid_index(&mut self, step: &Step) -> Result<(), GuardError> {
        let (Some(index), Some(table)) = (&step.builds_index, step.locks.first()) else {
            return Ok(());
        };
        if let Some((name, false)) =
            find_index(self.outside_client(), &table.relation, index).await?
        {
            if self.drop_index(&name).await? {
                (self.on_event)(Event::DroppedInvalidIndex(&name));
            }
        }
        Ok(())
    }

    /// `DROP INDEX CONCURRENTLY` within the lock budget; false if it lost the race.
    async fn drop_index(&mut self, name: &str) -> Result<bool, GuardError> {
        // Separate calls: several statements in one simple query form an implicit
        // transaction block, where DROP INDEX CONCURRENTLY cannot run.
        let set = format!(
            "SET lock_timeout = '{}'",
            to_pg_setting(self.policy.lock_timeout)
        );
        let fail = |e| Error::query(format!("dropping the invalid index {name}"), e);
        let client = self.outside_client();
        client.batch_execute(&set).await.map_err(fail)?;
        let dropped = client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            .await;
        let _ = client.batch_execute("RESET lock_timeout").await;
        match dropped {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(fail(e).into()),
        }
    }
}

/// The index named `index` in the schema of `table`: its qualified name and
/// whether it is valid. `None` when there is none (or the name is not an index).
async fn find_index(
    client: &Connection,
    table: &str,
    index: &str,
) -> Result<Option<(String, bool)>, Error> {
    // The index lives in its table's schema, whatever the search_path says.
    let row = client
        .query_opt(
            "SELECT c.oid::regclass::text, i.indisvalid
             FROM pg_class t
             JOIN pg_class c ON c.relnamespace = t.relnamespace AND c.relname = $2
             JOIN pg_index i ON i.indexrelid = c.oid
             WHERE t.oid = to_regclass($1)",
            &[&qualified(table), &index],
        )
        .await
        .map_err(|e| Error::query(format!("looking for an existing index {index}"), e))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// What stands under the name the statement `sql` builds on `table`.
async fn existing_index(
    client: &Connection,
    sql: &str,
    table: &str,
    index: &str,
    lock_timeout: Duration,
) -> Result<Existing, Error> {
    let Some((name, valid)) = find_index(client, table, index).await? else {
        return Ok(Existing::Absent);
    };
    if !valid {
        return Ok(Existing::Invalid(name));
    }
    // The statement's table as the server sees it (schema-qualified), for the copy's columns.
    let found: String = client
        .query_one("SELECT pg_get_indexdef($1::text::regclass)", &[&name])
        .await
        .map_err(|e| Error::query(format!("reading the definition of {name}"), e))?
        .get(0);
    let Some(wanted) = definition_built_by(client, sql, table, lock_timeout).await? else {
        // Not a statement we can retarget: let the build say "already exists".
        return Ok(Existing::Absent);
    };
    if same_index(&found, &wanted) {
        return Ok(Existing::Built(name));
    }
    Err(Error::IndexExists {
        name,
        found,
        wanted: wanted.replace(
            &format!("{COPY_INDEX} ON pg_temp.{COPY_TABLE}"),
            &format!("{} ON {}", ident(index), qualified(table)),
        ),
    })
}

/// `pg_get_indexdef` of the index `sql` would build, built on an empty
/// temporary copy of `table`'s columns in a transaction that is rolled back.
async fn definition_built_by(
    client: &Connection,
    sql: &str,
    table: &str,
    lock_timeout: Duration,
) -> Result<Option<String>, Error> {
    let Some(copy) = create_index_on(sql, "pg_temp", COPY_TABLE, COPY_INDEX) else {
        return Ok(None);
    };
    let fail = |e| Error::query("comparing the existing index with the statement's", e);
    // LIKE copies names, types and collations, and takes only ACCESS SHARE on the table.
    let build = format!(
        "BEGIN; SET LOCAL lock_timeout = '{}';
         CREATE TEMP TABLE {COPY_TABLE} (LIKE {}) ON COMMIT DROP; {copy}",
        to_pg_setting(lock_timeout),
        qualified(table)
    );
    let result = async {
        client.batch_execute(&build).await.map_err(fail)?;
        let def: String = client
            .query_one(
                &format!("SELECT pg_get_indexdef('pg_temp.{COPY_INDEX}'::regclass)"),
                &[],
            )
            .await
            .map_err(fail)?
            .get(0);
        Ok(def)
    }
    .await;
    let _ = client.batch_execute("ROLLBACK").await;
    // pg_temp_N is this session's own temp schema: name it as the copy's SQL did.
    result.map(|def: String| {
        Some(match def.split_once(" USING ") {
            Some((_, rest)) => format!(
                "CREATE {}INDEX {COPY_INDEX} ON pg_temp.{COPY_TABLE} USING {rest}",
                if def.starts_with("CREATE UNIQUE") {
                    "UNIQUE "
                } else {
                    ""
                }
            ),
            None => def,
        })
    })
}

/// Whether two `pg_get_indexdef` outputs describe the same index, names aside:
/// the same uniqueness and everything from `USING` on.
fn same_index(a: &str, b: &str) -> bool {
    let shape = |def: &str| {
        let (head, tail) = def.split_once(" USING ").unwrap_or((def, ""));
        (head.starts_with("CREATE UNIQUE INDEX"), tail.to_string())
    };
    shape(a) == shape(b)
}

#[cfg(test)]
mod tests {
    use super::same_index;

    #[test]
    fn names_do_not_matter_shape_does() {
        let a = "CREATE UNIQUE INDEX users_email ON public.users USING btree (email) WHERE (deleted IS NULL)";
        let b = "CREATE UNIQUE INDEX locksmith_index_copy_idx ON pg_temp.locksmith_index_copy USING btree (email) WHERE (deleted IS NULL)";
        assert!(same_index(a, b));
        assert!(!same_index(a, &b.replace("UNIQUE ", "")));
        assert!(!same_index(a, &b.replace("(email)", "(lower(email))")));
    }
}
