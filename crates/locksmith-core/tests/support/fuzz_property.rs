//! The property both fuzzers check, in one place: any text → parse →
//! analyze on every modelled version → lint → the JSON `lint --format json`
//! is built from, without a panic. The JSON renderer itself lives in the
//! binary, out of reach here, so the property checks what it prints through:
//! each statement and finding serialises (with the same `Serialize` impls) to
//! JSON that survives a round trip through text and carries the contract's
//! fields, and each statement's offset, line and column point at its text.
//! Used by `tests/fuzz_smoke.rs` (stable) and `fuzz/fuzz_targets` (cargo fuzz).

use locksmith_core::analysis::{MAX_PG_VERSION, MIN_PG_VERSION};
use locksmith_core::lint::{lint, Options};
use serde_json::Value;

/// Runs the whole pipeline on `sql`; panics if any step misbehaves.
pub fn check(sql: &str) {
    for pg_version in MIN_PG_VERSION..=MAX_PG_VERSION {
        let options = Options {
            pg_version,
            ..Options::default()
        };
        let Ok(report) = lint(sql, &options) else {
            continue;
        };
        for s in &report.statements {
            let st = &s.statement;
            // The statement's text starts at its offset, on its line and column.
            let at = sql
                .get(st.offset..)
                .unwrap_or_else(|| panic!("offset {} outside the input", st.offset));
            assert!(at.starts_with(&st.sql), "{:?} not at {}", st.sql, st.offset);
            let before = &sql[..st.offset];
            let line = 1 + before.matches('\n').count() as u32;
            let column = 1 + before.rsplit('\n').next().unwrap_or("").chars().count() as u32;
            assert_eq!((st.line, st.column), (line, column), "{:?}", st.sql);

            let statement = round_trip(serde_json::to_value(st).expect("statement serialises"));
            assert_eq!(statement["sql"], Value::from(st.sql.as_str()));
            assert_eq!(statement["line"], Value::from(st.line));
            assert_eq!(statement["column"], Value::from(st.column));
            for lock in statement["locks"].as_array().expect("locks is an array") {
                assert!(
                    lock["relation"].as_str().is_some_and(|r| !r.is_empty()),
                    "{lock}"
                );
                assert!(
                    lock["mode"].as_str().is_some_and(|m| !m.is_empty()),
                    "{lock}"
                );
            }
            let findings =
                round_trip(serde_json::to_value(&s.findings).expect("findings serialise"));
            for f in findings.as_array().expect("findings is an array") {
                assert!(
                    f["rule"].as_str().is_some_and(|r| r.starts_with("LS")),
                    "{f}"
                );
                assert!(f["severity"].is_string(), "{f}");
                assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
            }
        }
    }
}

/// The value after printing and parsing it again, as a consumer reads it.
fn round_trip(value: Value) -> Value {
    let text = serde_json::to_string(&value).expect("JSON prints");
    let back: Value = serde_json::from_str(&text).expect("printed JSON parses");
    assert_eq!(back, value, "{text}");
    back
}
