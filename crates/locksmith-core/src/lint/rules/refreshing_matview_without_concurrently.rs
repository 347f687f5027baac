//! LS112: `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY` blocks reads of the view.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};

use super::{insert_after_word, mode_on, takes};

declare_rule! {
    /// ## What it does
    /// Flags `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.
    ///
    /// ## Why is this bad?
    /// It holds an `AccessExclusiveLock` on the view while the query re-runs,
    /// so every `SELECT` of the view waits for the whole refresh.
    ///
    /// ## Example
    /// ```sql
    /// REFRESH MATERIALIZED VIEW daily_totals;
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;
    /// ```
    /// It takes an `ExclusiveLock`, which lets reads go on; it needs a unique
    /// index on the view and cannot be used on a view that was never populated.
    pub struct RefreshingMatviewWithoutConcurrently {
        id: "LS112",
        name: "refreshing-matview-without-concurrently",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    match &ctx.statement.kind {
        StatementKind::RefreshMatView {
            view,
            concurrently: false,
        } if !ctx.is_new(view) => {
            let message = format!(
                "REFRESH MATERIALIZED VIEW {} while the query re-runs",
                takes(mode_on(ctx, view), view)
            );
            vec![Violation::new(message).with_fix_opt(insert_after_word(
                &ctx.statement.sql,
                &["VIEW"],
                "CONCURRENTLY",
            ))]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::RefreshingMatviewWithoutConcurrently as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn flags_and_fixes() {
        let v = lint_errors(&R::RULE, "REFRESH MATERIALIZED VIEW mv");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("REFRESH MATERIALIZED VIEW CONCURRENTLY mv")
        );
        lint_ok(&R::RULE, "REFRESH MATERIALIZED VIEW CONCURRENTLY mv");
    }
}
