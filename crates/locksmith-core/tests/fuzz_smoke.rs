//! The fuzz property on stable Rust: parse → analyze → lint → JSON must not
//! panic on mutated SQL. Seeds are the conformance catalogue's statements;
//! mutations delete, duplicate, swap and splice bytes and tokens, and cut
//! statements short. `FUZZ_SMOKE_SECS=600` runs it longer (default 5 s);
//! the coverage-guided version is `fuzz/fuzz_targets/parse_analyze_lint.rs`.

mod support {
    pub mod fuzz_property;
    pub mod mutate;
}

use support::fuzz_property::check;
use support::mutate::{mutate, Rng};

const CATALOGUE: &str = include_str!("../../locksmith-pg/tests/conformance/catalogue.sql");

const TOKENS: &[&str] = &[
    "ALTER TABLE ",
    "ADD ",
    "CONSTRAINT ",
    "UNIQUE ",
    "NOT VALID",
    "CONCURRENTLY ",
    "(",
    ")",
    ";",
    "'",
    "\"",
    "$$",
    "--",
    "/*",
    "*/",
    "USING INDEX ",
    "PARTITION ",
    "DEFAULT ",
    "SET ",
    "DROP ",
    "BEGIN;",
    "COMMIT;",
    "-- locksmith: ignore LS101 x\n",
    "é",
    "\u{0}",
    "\n",
    "VALIDATE ",
    ",",
];

#[test]
fn mutated_sql_never_panics() {
    let seeds: Vec<&str> = CATALOGUE
        .split("-- @case")
        .skip(1)
        .flat_map(|c| c.lines().filter(|l| !l.starts_with("--")))
        .filter(|l| !l.trim().is_empty())
        .chain(CATALOGUE.split("-- @case").take(1))
        .collect();
    let secs: u64 = std::env::var("FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0u64;
    while std::time::Instant::now() < deadline {
        let sql = mutate(&mut rng, &seeds, TOKENS);
        let result = std::panic::catch_unwind(|| check(&sql));
        assert!(result.is_ok(), "panicked on:\n{sql}");
        runs += 1;
    }
    eprintln!("fuzz smoke: {runs} mutated inputs, no panic");
}
