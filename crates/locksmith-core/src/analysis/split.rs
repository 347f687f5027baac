//! Rewriting one statement into its parts, for the online plan: an
//! `ADD COLUMN … DEFAULT <expr>` as the column alone plus the default set
//! afterwards, so existing rows can be filled in batches instead of by a
//! rewrite under `AccessExclusiveLock`; an `UPDATE` as its `SET` and its
//! `WHERE`, so it can run in key-range batches. Done on the parse tree and
//! deparsed by PostgreSQL's own deparser, so the expressions are kept exactly.

use pg_query::protobuf::{self, AlterTableCmd, AlterTableType as T, ConstrType};
use pg_query::NodeEnum;

/// An `ADD COLUMN` with a default, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedDefault {
    /// The column.
    pub column: String,
    /// `ALTER TABLE … ADD COLUMN …` without the default and without `NOT NULL`.
    pub add_column: String,
    /// `ALTER TABLE … ALTER COLUMN … SET DEFAULT <expr>`.
    pub set_default: String,
    /// The column was declared `NOT NULL`.
    pub not_null: bool,
}

/// Takes apart `sql` when it is one `ALTER TABLE … ADD COLUMN` whose only
/// constraints are a `DEFAULT` and `NOT NULL`; `None` otherwise.
pub fn added_default(sql: &str) -> Option<AddedDefault> {
    let (stmt, cmd, def) = column_command(sql, T::AtAddColumn)?;
    let mut default = def.raw_default.clone();
    let mut not_null = def.is_not_null;
    for c in &def.constraints {
        let Some(NodeEnum::Constraint(c)) = &c.node else {
            return None;
        };
        match ConstrType::try_from(c.contype).ok()? {
            ConstrType::ConstrDefault => default = c.raw_expr.clone(),
            ConstrType::ConstrNotnull => not_null = true,
            _ => return None,
        }
    }
    let default = default?;

    let mut bare = def.clone();
    bare.constraints.clear();
    bare.raw_default = None;
    bare.is_not_null = false;
    let mut add = stmt.clone();
    add.cmds = vec![command(AlterTableCmd {
        def: Some(Box::new(protobuf::Node {
            node: Some(NodeEnum::ColumnDef(Box::new(bare))),
        })),
        ..cmd.clone()
    })];
    let mut set = stmt.clone();
    set.cmds = vec![command(AlterTableCmd {
        subtype: T::AtColumnDefault as i32,
        name: def.colname.clone(),
        def: Some(default),
        behavior: protobuf::DropBehavior::DropRestrict as i32,
        ..Default::default()
    })];
    let deparse =
        |s: protobuf::AlterTableStmt| NodeEnum::AlterTableStmt(s).deparse(Default::default()).ok();
    Some(AddedDefault {
        column: def.colname.clone(),
        add_column: deparse(add)?,
        set_default: deparse(set)?,
        not_null,
    })
}

/// An `UPDATE` taken apart so it can run in batches, each its own short
/// transaction over one range of the table's key, with its own `WHERE` kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchedUpdate {
    /// The table, as written.
    pub table: String,
    /// `UPDATE … SET …` without its `WHERE`.
    pub update: String,
    /// Its `WHERE` condition, if any.
    pub condition: Option<String>,
}

/// Takes apart `sql`, one `UPDATE`, for a batched run; `Err` says why its
/// batches would not do what the statement does, and what to do instead.
/// Each batch sees the rows as they are when it runs, so what reads other
/// rows (`FROM`, a subquery, a `WITH`) or must be the same for every row
/// (`now()`, fixed per transaction) would differ from batch to batch.
pub fn batched_update(sql: &str) -> Result<BatchedUpdate, String> {
    let bail = |why: &str| {
        Err(format!(
            "its batches would not do what it does: {why}. Compute the values first (a \
             column or a table filled beforehand) and update from those, or apply this \
             UPDATE in a migration of its own without --online, where --max-hold stops it \
             should it make writers wait longer"
        ))
    };
    let parsed = pg_query::parse(sql, 0).map_err(|e| e.to_string())?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return bail("it is not one statement");
    };
    let Some(NodeEnum::UpdateStmt(stmt)) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return bail("it is not an UPDATE");
    };
    if stmt.with_clause.is_some() {
        return bail("a WITH query is read once by the statement, but once per batch by batches");
    }
    if !stmt.from_clause.is_empty() {
        return bail("UPDATE … FROM reads other rows, which change between batches");
    }
    if stmt
        .returning_clause
        .as_ref()
        .is_some_and(|r| !r.exprs.is_empty())
    {
        return bail("RETURNING returns the rows to the caller, and a batched run has none");
    }
    let node = NodeEnum::UpdateStmt(stmt.clone());
    for (n, ..) in node.nodes() {
        match n {
            pg_query::NodeRef::SubLink(_) => {
                return bail("a subquery reads other rows, which change between batches")
            }
            pg_query::NodeRef::CurrentOfExpr(_) => {
                return bail("WHERE CURRENT OF names a cursor's row")
            }
            pg_query::NodeRef::SqlvalueFunction(f) if (1..=9).contains(&f.op) => {
                return bail(
                    "the current time is fixed per transaction, so each batch would write another",
                )
            }
            pg_query::NodeRef::FuncCall(f)
                if super::expr::strings(&f.funcname)
                    .last()
                    .is_some_and(|name| {
                        ["now", "transaction_timestamp", "statement_timestamp"]
                            .contains(&name.as_str())
                    }) =>
            {
                return bail(
                    "the current time is fixed per transaction, so each batch would write another",
                )
            }
            _ => {}
        }
    }
    let table = stmt
        .relation
        .as_ref()
        .map(super::expr::range_var)
        .unwrap_or_default();
    let mut bare = (**stmt).clone();
    bare.where_clause = None;
    let update = NodeEnum::UpdateStmt(Box::new(bare))
        .deparse(Default::default())
        .map_err(|e| e.to_string())?;
    let condition = match &stmt.where_clause {
        None => None,
        Some(cond) => Some(expression(cond).ok_or("its WHERE could not be printed back")?),
    };
    Ok(BatchedUpdate {
        table,
        update,
        condition,
    })
}

/// A one-subcommand `ALTER TABLE … ALTER COLUMN … TYPE …`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retyped {
    /// The table, as written.
    pub table: String,
    /// The column.
    pub column: String,
    /// The new type, as the deparser prints it (with its collation, if any).
    pub type_sql: String,
    /// The `USING` expression, if any, over the table's columns.
    pub using: Option<String>,
}

/// Takes apart `sql` when it is one `ALTER TABLE … ALTER COLUMN … TYPE`;
/// `None` otherwise.
pub fn retyped(sql: &str) -> Option<Retyped> {
    let (stmt, cmd, def) = column_command(sql, T::AtAlterColumnType)?;
    let mut type_sql = def.type_name.as_ref().map(super::expr::type_sql)?;
    if let Some(collation) = &def.coll_clause {
        type_sql.push_str(&format!(
            " COLLATE {}",
            super::expr::strings(&collation.collname)
                .iter()
                .map(|n| crate::quote::ident(n))
                .collect::<Vec<_>>()
                .join(".")
        ));
    }
    let using = match &def.raw_default {
        Some(expr) => Some(expression(expr)?),
        None => None,
    };
    Some(Retyped {
        table: stmt.relation.as_ref().map(super::expr::range_var)?,
        column: cmd.name.clone(),
        type_sql,
        using,
    })
}

/// `sql` when it is one `ALTER TABLE` whose only subcommand is `subtype`
/// on a column definition: the statement, the subcommand, the column.
fn column_command(
    sql: &str,
    subtype: T,
) -> Option<(protobuf::AlterTableStmt, AlterTableCmd, protobuf::ColumnDef)> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(NodeEnum::AlterTableStmt(stmt)) = raw.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let [cmd] = stmt.cmds.as_slice() else {
        return None;
    };
    let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node else {
        return None;
    };
    if cmd.subtype != subtype as i32 {
        return None;
    }
    let Some(NodeEnum::ColumnDef(def)) = cmd.def.as_ref()?.node.as_ref() else {
        return None;
    };
    Some((stmt.clone(), (**cmd).clone(), (**def).clone()))
}

/// An expression as the deparser prints it: as a select list, the one way
/// it prints an expression alone.
fn expression(node: &protobuf::Node) -> Option<String> {
    let mut select = pg_query::parse("SELECT 1", 0).ok()?;
    let Some(NodeEnum::SelectStmt(s)) = select.protobuf.stmts[0]
        .stmt
        .as_mut()
        .and_then(|n| n.node.as_mut())
    else {
        return None;
    };
    let Some(NodeEnum::ResTarget(t)) = s.target_list[0].node.as_mut() else {
        return None;
    };
    t.val = Some(Box::new(node.clone()));
    let text = select.deparse(Default::default()).ok()?;
    Some(text.trim_start_matches("SELECT ").to_string())
}

fn command(cmd: AlterTableCmd) -> protobuf::Node {
    protobuf::Node {
        node: Some(NodeEnum::AlterTableCmd(Box::new(cmd))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volatile_default_is_split_from_its_column() {
        let split = added_default(
            "ALTER TABLE app.users ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid()",
        )
        .unwrap();
        assert_eq!(split.column, "token");
        assert_eq!(
            split.add_column,
            "ALTER TABLE app.users ADD COLUMN token uuid"
        );
        assert_eq!(
            split.set_default,
            "ALTER TABLE app.users ALTER COLUMN token SET DEFAULT gen_random_uuid()"
        );
        assert!(split.not_null);
        let exact = added_default(
            r#"ALTER TABLE t ADD COLUMN "Score" numeric(10,2) DEFAULT (random() * 100)::numeric(10,2)"#,
        )
        .unwrap();
        assert!(
            exact.set_default.contains("random() * 100"),
            "{}",
            exact.set_default
        );
        assert!(!exact.not_null);
    }

    #[test]
    fn an_update_is_split_into_its_set_and_its_where() {
        let b = batched_update("UPDATE app.accounts AS a SET balance = balance * 2, note = 'x' WHERE a.balance > 0 OR note IS NULL").unwrap();
        assert_eq!(b.table, "app.accounts");
        assert_eq!(
            b.update,
            "UPDATE app.accounts a SET balance = balance * 2, note = 'x'"
        );
        assert_eq!(
            b.condition.as_deref(),
            Some("a.balance > 0 OR note IS NULL")
        );
        let whole = batched_update("update t set c = random()").unwrap();
        assert_eq!(whole.update, "UPDATE t SET c = random()");
        assert_eq!(whole.condition, None);
    }

    #[test]
    fn what_batches_would_change_is_not_batched() {
        for (sql, why) in [
            ("UPDATE t SET c = u.c FROM u WHERE u.id = t.id", "FROM"),
            ("UPDATE t SET c = 1 RETURNING id", "RETURNING"),
            ("UPDATE t SET c = (SELECT max(c) FROM t)", "subquery"),
            (
                "UPDATE t SET c = 1 WHERE id IN (SELECT id FROM u)",
                "subquery",
            ),
            ("WITH x AS (SELECT 1) UPDATE t SET c = 1", "WITH"),
            ("UPDATE t SET at = now()", "current time"),
            ("UPDATE t SET at = CURRENT_TIMESTAMP", "current time"),
        ] {
            let e = batched_update(sql).unwrap_err();
            assert!(e.contains(why), "{sql}: {e}");
            assert!(e.contains("without --online"), "{sql}: {e}");
        }
        assert!(batched_update("UPDATE t SET u = current_user").is_ok());
    }

    #[test]
    fn a_type_change_is_split_into_column_type_and_using() {
        let r = retyped("ALTER TABLE app.accounts ALTER COLUMN balance TYPE bigint").unwrap();
        assert_eq!(
            (r.table.as_str(), r.column.as_str(), r.type_sql.as_str()),
            ("app.accounts", "balance", "bigint")
        );
        assert_eq!(r.using, None);
        let r = retyped(
            "ALTER TABLE t ALTER COLUMN code SET DATA TYPE int USING nullif(code, '')::int",
        )
        .unwrap();
        assert_eq!(r.type_sql, "integer");
        assert_eq!(r.using.as_deref(), Some("NULLIF(code, '')::int"));
        assert_eq!(retyped("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), None);
    }

    #[test]
    fn anything_else_is_not_split() {
        for sql in [
            "ALTER TABLE t ADD COLUMN a int",
            "ALTER TABLE t ADD COLUMN a int DEFAULT 1 UNIQUE",
            "ALTER TABLE t ADD COLUMN a int DEFAULT 1, ADD COLUMN b int",
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1",
            "SELECT 1",
        ] {
            assert_eq!(added_default(sql), None, "{sql}");
        }
    }
}
