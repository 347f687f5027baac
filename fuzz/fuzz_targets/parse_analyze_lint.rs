//! Fuzz target: any bytes → parse → analyze (every modelled version) →
//! lint → the JSON `lint --format json` prints. Nothing may panic.
//!
//! `cargo +nightly fuzz run parse_analyze_lint -- -max_total_time=600`
//! (seed corpus: `fuzz/corpus/parse_analyze_lint`, the conformance catalogue).
//! The property itself is `crates/locksmith-core/tests/support/fuzz_property.rs`,
//! which also runs on stable as `crates/locksmith-core/tests/fuzz_smoke.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/locksmith-core/tests/support/fuzz_property.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        property::check(sql);
    }
});
