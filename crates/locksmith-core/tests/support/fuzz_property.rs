//! The property both fuzzers check, in one place: any text → parse →
//! analyze on every modelled version → lint → the JSON `lint --format json`
//! prints, without a panic, and every statement's offset inside the input.
//! Used by `tests/fuzz_smoke.rs` (stable) and `fuzz/fuzz_targets` (cargo fuzz).

use locksmith_core::analysis::{MAX_PG_VERSION, MIN_PG_VERSION};
use locksmith_core::lint::{lint, Options};

/// Runs the whole pipeline on `sql`; panics if any step misbehaves.
pub fn check(sql: &str) {
    for pg_version in MIN_PG_VERSION..=MAX_PG_VERSION {
        let options = Options {
            pg_version,
            ..Options::default()
        };
        if let Ok(report) = lint(sql, &options) {
            for s in &report.statements {
                let json = serde_json::json!({
                    "line": s.statement.line,
                    "column": s.statement.column,
                    "sql": s.statement.sql,
                    "locks": s.statement.locks,
                    "rewrites": s.statement.rewrites,
                    "findings": s.findings,
                });
                assert!(!json.to_string().is_empty());
                assert!(sql.get(s.statement.offset..).is_some());
            }
        }
    }
}
