//! Fuzz target: any bytes → a folder of migration files (paths and contents)
//! → `locksmith_core::source`'s folder and section readers. Nothing may
//! panic, and every position (up section, blocks, statements, error lines)
//! must fall inside its file.
//!
//! `cargo +nightly fuzz run migration_sources -- -max_total_time=600`.
//! The input format and the property are
//! `crates/locksmith-core/tests/support/source_property.rs`, which also runs
//! on stable as `crates/locksmith-core/tests/source_fuzz_smoke.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/locksmith-core/tests/support/source_property.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        property::check(&property::folder(input));
    }
});
