//! goose `StatementBegin`…`StatementEnd` blocks: the statements the analysis
//! found inside one block become one statement again, so the guard runs the
//! block whole, as goose does (a function body with semicolons stays one).

use std::ops::Range;

use crate::analysis::{RelationLock, Statement, StatementKind};

/// Merges the statements starting inside each block of `sql` (the text they
/// were analysed from) into one: its text runs from the first statement to
/// the end of the last; locks (the strongest per relation), rewrites, scans
/// and requirements are the union; it is transactional if all are.
pub fn group_blocks(
    statements: Vec<Statement>,
    blocks: &[Range<usize>],
    sql: &str,
) -> Vec<Statement> {
    let mut out: Vec<Statement> = Vec::with_capacity(statements.len());
    let mut current_block: Option<usize> = None;
    for s in statements {
        let block = blocks.iter().position(|b| b.contains(&s.offset));
        match (block, current_block, out.last_mut()) {
            (Some(b), Some(c), Some(last)) if b == c => merge(last, s, sql),
            _ => out.push(s),
        }
        current_block = block;
    }
    out
}

fn merge(into: &mut Statement, next: Statement, sql: &str) {
    let end = next.offset + next.sql.len();
    if let Some(text) = sql.get(into.offset..end) {
        into.sql = text.to_string();
    }
    for lock in next.locks {
        match into.locks.iter_mut().find(|l| l.relation == lock.relation) {
            Some(RelationLock { mode, .. }) => *mode = (*mode).max(lock.mode),
            None => into.locks.push(lock),
        }
    }
    for (list, more) in [
        (&mut into.rewrites, next.rewrites),
        (&mut into.scans, next.scans),
    ] {
        for name in more {
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    into.requires.extend(next.requires);
    into.transactional &= next.transactional;
    if matches!(into.kind, StatementKind::Empty) {
        into.kind = next.kind;
    } else if !matches!(next.kind, StatementKind::Empty) {
        into.kind = StatementKind::Other {
            tag: "goose statement block".into(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze;
    use crate::lock::LockMode;

    #[test]
    fn a_block_is_one_statement() {
        let sql = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\nALTER TABLE a ADD COLUMN x int;\nSELECT 1;\n";
        let start = sql.find("CREATE TABLE b").unwrap();
        let end = sql.find("SELECT").unwrap();
        let statements = analyze(sql, 18).unwrap();
        let block: Vec<Range<usize>> = std::iter::once(start..end).collect();
        let grouped = group_blocks(statements, &block, sql);
        assert_eq!(grouped.len(), 3);
        assert_eq!(
            grouped[1].sql,
            "CREATE TABLE b (id int);\nALTER TABLE a ADD COLUMN x int"
        );
        assert_eq!((grouped[1].line, grouped[1].column), (2, 1));
        assert_eq!(grouped[1].lock_on("a"), Some(LockMode::AccessExclusive));
        assert_eq!(grouped[2].sql, "SELECT 1");
    }
}
