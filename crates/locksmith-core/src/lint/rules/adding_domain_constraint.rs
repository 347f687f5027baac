//! LS114: `ALTER DOMAIN … ADD CONSTRAINT` checks every column of the domain
//! under a `ShareLock` on each table using it.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};
use crate::lock::LockMode;

use super::q;

declare_rule! {
    /// ## What it does
    /// Flags `ALTER DOMAIN … ADD CONSTRAINT` without `NOT VALID`, and
    /// `ALTER DOMAIN … SET NOT NULL`.
    ///
    /// ## Why is this bad?
    /// PostgreSQL checks the new constraint against every value of every
    /// column of that domain, in every table that uses it, while it holds a
    /// `ShareLock` on each of those tables: no `INSERT`, `UPDATE` or `DELETE`
    /// on any of them until the last one is read. The tables are not named in
    /// the statement, so the blast radius is easy to miss.
    ///
    /// ## Example
    /// ```sql
    /// ALTER DOMAIN price ADD CONSTRAINT price_positive CHECK (VALUE > 0);
    /// ```
    ///
    /// ## Use instead
    /// Add it `NOT VALID` (new values are checked at once), then validate it
    /// when the tables are quiet (before PostgreSQL 18 validation still takes
    /// the `ShareLock`):
    /// ```sql
    /// ALTER DOMAIN price ADD CONSTRAINT price_positive CHECK (VALUE > 0) NOT VALID;
    /// ```
    pub struct AddingDomainConstraint {
        id: "LS114",
        name: "adding-domain-constraint",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let StatementKind::AddDomainConstraint { domain, constraint } = &ctx.statement.kind else {
        return Vec::new();
    };
    if constraint.not_valid {
        return Vec::new();
    }
    let tables: Vec<String> = ctx
        .statement
        .locks
        .iter()
        .filter(|l| !ctx.is_new(&l.relation))
        .map(|l| format!("`{}`", l.relation))
        .collect();
    let on = if tables.is_empty() {
        "every table with a column of it".to_string()
    } else {
        tables.join(", ")
    };
    let message = format!(
        "adding {} to domain `{domain}` checks every column of that domain while it holds {} on {on}, which blocks {}",
        if constraint.definition.is_empty() { "a constraint" } else { &constraint.definition },
        LockMode::Share,
        LockMode::Share.blocks()
    );
    let fix = (constraint.kind == crate::analysis::ConstraintKind::Check
        && !constraint.definition.is_empty())
    .then(|| {
        let name = constraint
            .name
            .as_deref()
            .map(|n| format!("CONSTRAINT {} ", crate::analysis::quote_ident(n)))
            .unwrap_or_default();
        format!(
            "ALTER DOMAIN {} ADD {name}{} NOT VALID;",
            q(domain),
            constraint.definition
        )
    });
    vec![Violation::new(message).with_fix_opt(fix)]
}

#[cfg(test)]
mod tests {
    use super::AddingDomainConstraint as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn names_the_tables_it_knows() {
        let v = lint_errors(
            &R::RULE,
            "ALTER DOMAIN price ADD CONSTRAINT positive CHECK (VALUE > 0)",
        );
        insta::assert_snapshot!(format!("{}\n---\n{}", v[0].message, v[0].fix.as_deref().unwrap()), @r"
        adding CHECK (value > 0) to domain `price` checks every column of that domain while it holds ShareLock on every table with a column of it, which blocks writes (INSERT, UPDATE, DELETE)
        ---
        ALTER DOMAIN price ADD CONSTRAINT positive CHECK (value > 0) NOT VALID;
        ");
        let v = lint_errors(
            &R::RULE,
            "CREATE DOMAIN price AS numeric; CREATE TABLE orders (total price); ALTER DOMAIN price SET NOT NULL",
        );
        // `orders` is new in this file: nobody writes it yet.
        assert!(
            v[0].message.contains("on every table with a column of it"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn not_valid_is_fine() {
        lint_ok(
            &R::RULE,
            "ALTER DOMAIN price ADD CONSTRAINT positive CHECK (VALUE > 0) NOT VALID",
        );
        lint_ok(&R::RULE, "ALTER DOMAIN price SET DEFAULT 0");
    }
}
