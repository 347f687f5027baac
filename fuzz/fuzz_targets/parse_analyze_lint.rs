//! Fuzz target: any bytes → parse → analyze (every modelled version) →
//! lint → the JSON `lint --format json` prints. Nothing may panic.
//!
//! `cargo +nightly fuzz run parse_analyze_lint -- -max_total_time=600`
//! (seed corpus: `fuzz/corpus/parse_analyze_lint`, the conformance catalogue).
//! The same property runs on stable as `crates/locksmith-core/tests/fuzz_smoke.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use locksmith_core::analysis::{MAX_PG_VERSION, MIN_PG_VERSION};
use locksmith_core::lint::{lint, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
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
});
