//! LS900: an ignore comment that suppresses nothing. Reported by the engine
//! (it needs every other rule's results), so its check is empty.

use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Reports a `-- locksmith: ignore RULE reason` comment that suppressed no
    /// finding of the statement after it, or that names no known rule.
    ///
    /// ## Why is this bad?
    /// A stale suppression hides nothing today but will silently hide a real
    /// problem once someone edits the statement below it; a misspelled rule id
    /// never suppressed anything.
    ///
    /// ## Example
    /// ```sql
    /// -- locksmith: ignore LS101 tiny table
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    pub struct UnmatchedIgnore {
        id: "LS900",
        name: "unmatched-ignore",
        severity: Warning,
        check: check,
    }
}

fn check(_: &Context<'_>) -> Vec<Violation> {
    Vec::new()
}
