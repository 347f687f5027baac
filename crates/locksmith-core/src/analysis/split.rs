//! Rewriting one statement into its parts, for the online plan: an
//! `ADD COLUMN … DEFAULT <expr>` as the column alone plus the default set
//! afterwards, so existing rows can be filled in batches instead of by a
//! rewrite under `AccessExclusiveLock`. Done on the parse tree and deparsed
//! by PostgreSQL's own deparser, so the expression is kept exactly.

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
    if cmd.subtype != T::AtAddColumn as i32 {
        return None;
    }
    let Some(NodeEnum::ColumnDef(def)) = cmd.def.as_ref()?.node.as_ref() else {
        return None;
    };
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

    let mut bare = (**def).clone();
    bare.constraints.clear();
    bare.raw_default = None;
    bare.is_not_null = false;
    let mut add = stmt.clone();
    add.cmds = vec![command(AlterTableCmd {
        def: Some(Box::new(protobuf::Node {
            node: Some(NodeEnum::ColumnDef(Box::new(bare))),
        })),
        ..(**cmd).clone()
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
