//! The migration-source fuzz property on stable Rust: mutated folders of
//! every layout (names and contents) must read without a panic and with every
//! position inside its file. `FUZZ_SMOKE_SECS=600` runs it longer (default
//! 5 s); the coverage-guided version is `fuzz/fuzz_targets/migration_sources.rs`.

mod support {
    pub mod mutate;
    pub mod source_property;
}

use support::mutate::{mutate, Rng};
use support::source_property::{check, folder};

/// Folders in the fuzz input format: files separated by `\u{1}`, `path\ncontent`.
const SEEDS: &[&str] = &[
    "1_users.sql\nCREATE TABLE users (id int);\u{1}2_users.down.sql\nDROP TABLE users;\u{1}README.md\n",
    "000001_a.up.sql\nCREATE TABLE a (id int);\u{1}000001_a.down.sql\nDROP TABLE a;",
    "V1__a.sql\nCREATE TABLE a (id int);\u{1}V1_1__b.sql\nALTER TABLE a ADD COLUMN b int;\u{1}R__v.sql\nCREATE OR REPLACE VIEW v AS SELECT 1;\u{1}U1_1__b.sql\nDROP TABLE a;",
    "20240101_a.sql\n-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON a (id);\n\n-- migrate:down\nDROP INDEX i;\n",
    "00001_f.sql\n-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\nSELECT 2;\n-- +goose StatementEnd\n-- +goose Down\nDROP FUNCTION f();\n",
    "20240101000000_init/migration.sql\nCREATE TABLE é (id int);\r\nSELECT 'ü';\r\n\u{1}migration_lock.toml\n",
];

const TOKENS: &[&str] = &[
    "-- migrate:up\n",
    "-- migrate:down\n",
    " transaction:false",
    "-- +goose Up\n",
    "-- +goose Down\n",
    "-- +goose StatementBegin\n",
    "-- +goose StatementEnd\n",
    "-- +goose NO TRANSACTION\n",
    "-- locksmith: no-transaction\n",
    "\u{1}",
    "\n",
    "\r\n",
    ";",
    "$$",
    "'",
    "/migration.sql",
    ".sql",
    ".SQL",
    ".up",
    ".down",
    "__",
    "_",
    "V",
    "R__",
    "U",
    "1.1",
    "é",
    "/",
];

#[test]
fn mutated_folders_never_panic_and_positions_stay_inside() {
    let secs: u64 = std::env::var("FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut runs = 0u64;
    while std::time::Instant::now() < deadline {
        let input = mutate(&mut rng, SEEDS, TOKENS);
        let result = std::panic::catch_unwind(|| check(&folder(&input)));
        assert!(result.is_ok(), "panicked on:\n{input:?}");
        runs += 1;
    }
    eprintln!("source fuzz smoke: {runs} mutated folders, no panic");
}

#[test]
fn every_seed_reads() {
    for seed in SEEDS {
        check(&folder(seed));
    }
}
