//! LS101: `ADD CONSTRAINT … UNIQUE / PRIMARY KEY` builds its index under an
//! `AccessExclusiveLock`. The incident's statement.

use crate::analysis::{AlterAction, ConstraintKind, ConstraintSummary};
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, cols, default_name, mode_on, online_fix, q, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … ADD CONSTRAINT … UNIQUE`, `… PRIMARY KEY` and
    /// `… EXCLUDE` (and `ADD COLUMN … UNIQUE`) that build a new index, on a
    /// table that already exists. An exclusion constraint has no concurrent
    /// form: add it while the table is new or small.
    ///
    /// ## Why is this bad?
    /// The index is built while the statement holds an `AccessExclusiveLock`,
    /// which blocks all reads and writes for as long as the whole table takes
    /// to read and sort. Worse, the lock request queues behind every open
    /// transaction that touched the table — an idle-in-transaction session is
    /// enough — and every query after it queues behind the request: even a
    /// 250-row table can take the site down.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);
    /// ```
    ///
    /// ## Use instead
    /// Build the index without blocking writes, then attach it (a brief lock):
    /// ```sql
    /// CREATE UNIQUE INDEX CONCURRENTLY academic_partners_name_key ON academic_partners (name);
    /// ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE USING INDEX academic_partners_name_key;
    /// ```
    /// `CREATE INDEX CONCURRENTLY` cannot run inside a transaction block, and
    /// leaves an `INVALID` index behind if it fails: drop it and retry.
    pub struct AddingUniqueConstraint {
        id: "LS101",
        name: "adding-unique-constraint",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let Some((table, actions)) = alter_on_existing(ctx) else {
        return Vec::new();
    };
    let mode = mode_on(ctx, table);
    let mut out = Vec::new();
    for action in actions {
        let constraints: Vec<&ConstraintSummary> = match action {
            AlterAction::AddConstraint(c) => vec![c],
            AlterAction::AddColumn { constraints, .. } => constraints.iter().collect(),
            _ => continue,
        };
        for c in constraints {
            let word = match c.kind {
                ConstraintKind::Unique => "UNIQUE",
                ConstraintKind::PrimaryKey => "PRIMARY KEY",
                ConstraintKind::Exclusion => "EXCLUDE",
                _ => continue,
            };
            if c.using_index.is_some() {
                continue;
            }
            if c.kind == ConstraintKind::Exclusion {
                out.push(Violation::new(format!(
                    "ADD CONSTRAINT … EXCLUDE builds its index while it {}, for as long as reading the whole table takes; an exclusion constraint cannot adopt an index built CONCURRENTLY, so add it while the table is new or small",
                    takes(mode, table)
                )));
                continue;
            }
            let message = format!(
                "ADD CONSTRAINT … {word} builds its index while it {}, for as long as reading the whole table takes",
                takes(mode, table)
            );
            out.push(
                Violation::new(message)
                    .with_fix_opt(online_fix(ctx).or_else(|| fix(table, c, word, action))),
            );
        }
    }
    out
}

fn fix(table: &str, c: &ConstraintSummary, word: &str, action: &AlterAction) -> Option<String> {
    if c.columns.is_empty() {
        return None;
    }
    let suffix = if c.kind == ConstraintKind::PrimaryKey {
        "pkey"
    } else {
        "key"
    };
    let name = c.name.clone().unwrap_or_else(|| {
        default_name(
            table,
            if suffix == "pkey" { &[] } else { &c.columns },
            suffix,
        )
    });
    let name = crate::analysis::quote_ident(&name);
    let mut sql = String::new();
    // For ADD COLUMN … UNIQUE the column must exist before its index.
    if let AlterAction::AddColumn {
        column, type_name, ..
    } = action
    {
        sql += &format!(
            "ALTER TABLE {} ADD COLUMN {} {type_name};\n",
            q(table),
            cols(std::slice::from_ref(column))
        );
    }
    sql += &format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {name} ON {} ({});\n",
        q(table),
        cols(&c.columns),
    );
    // A primary key sets NOT NULL on its columns: proven first, it scans nothing.
    sql += &super::setting_not_null::proven_first(
        table,
        &c.unproven_not_null,
        &format!(
            "ALTER TABLE {} ADD CONSTRAINT {name} {word} USING INDEX {name};",
            q(table)
        ),
    );
    Some(sql)
}

#[cfg(test)]
mod tests {
    use super::AddingUniqueConstraint as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn unique_constraint_gets_the_two_step_fix() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE academic_partners ADD CONSTRAINT uq UNIQUE (name, \"Kind\")",
        );
        insta::assert_snapshot!(format!("{}\n---\n{}", v[0].message, v[0].fix.as_deref().unwrap()), @r#"
            ADD CONSTRAINT … UNIQUE builds its index while it takes AccessExclusiveLock on `academic_partners`, which blocks all reads and writes, for as long as reading the whole table takes
            ---
            SET lock_timeout = '2s';
            CREATE UNIQUE INDEX CONCURRENTLY uq ON academic_partners (name, "Kind");
            ALTER TABLE academic_partners ADD CONSTRAINT uq UNIQUE USING INDEX uq;
            "#);
    }

    #[test]
    fn primary_key_and_unnamed_constraints() {
        let v = lint_errors(&R::RULE, "ALTER TABLE app.users ADD PRIMARY KEY (id)");
        insta::assert_snapshot!(v[0].fix.as_deref().unwrap(), @r"
            SET lock_timeout = '2s';
            ALTER TABLE app.users ADD CONSTRAINT users_id_not_null_check CHECK (id IS NOT NULL) NOT VALID;
            ALTER TABLE app.users VALIDATE CONSTRAINT users_id_not_null_check;
            ALTER TABLE app.users ALTER COLUMN id SET NOT NULL;
            ALTER TABLE app.users DROP CONSTRAINT IF EXISTS users_id_not_null_check;
            CREATE UNIQUE INDEX CONCURRENTLY users_pkey ON app.users (id);
            ALTER TABLE app.users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey;
            ");
        // The fix itself is clean, for this rule and for SET NOT NULL's.
        let fix = v[0].fix.clone().unwrap();
        lint_ok(&R::RULE, &fix);
        lint_ok(&super::super::setting_not_null::SettingNotNull::RULE, &fix);
        let v = lint_errors(&R::RULE, "ALTER TABLE users ADD UNIQUE (email)");
        assert!(v[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("users_email_key ON users (email)"));
    }

    #[test]
    fn add_column_unique() {
        let v = lint_errors(&R::RULE, "ALTER TABLE users ADD COLUMN handle text UNIQUE");
        assert!(v[0].fix.as_deref().unwrap().starts_with("ALTER TABLE users ADD COLUMN handle text;\nCREATE UNIQUE INDEX CONCURRENTLY users_handle_key"));
    }

    #[test]
    fn safe_forms() {
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD CONSTRAINT u UNIQUE USING INDEX users_email_idx",
        );
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (id int); ALTER TABLE t ADD PRIMARY KEY (id)",
        );
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD CONSTRAINT c CHECK (id > 0) NOT VALID",
        );
    }

    #[test]
    fn exclusion_constraint() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&)",
        );
        assert!(
            v[0].message.starts_with("ADD CONSTRAINT … EXCLUDE builds its index while it takes AccessExclusiveLock on `bookings`"),
            "{}",
            v[0].message
        );
        assert_eq!(v[0].fix, None);
    }
}
