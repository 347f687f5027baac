//! The fuzz property on stable Rust: parse → analyze → lint → JSON must not
//! panic on mutated SQL. Seeds are the conformance catalogue's statements;
//! mutations delete, duplicate, swap and splice bytes and tokens, and cut
//! statements short. `FUZZ_SMOKE_SECS=600` runs it longer (default 5 s);
//! the coverage-guided version is `fuzz/fuzz_targets/parse_analyze_lint.rs`.

mod support {
    pub mod fuzz_property;
}

use support::fuzz_property::check;

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

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[&str]) -> String {
    let mut s: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            2 => {
                let other: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
                let from = rng.below(other.len());
                let to = (from + rng.below(40)).min(other.len());
                s.splice(at..at, other[from..to].iter().copied());
            }
            3 => s.truncate(at),
            _ if !s.is_empty() => {
                let j = rng.below(s.len());
                let i = at.min(s.len() - 1);
                s.swap(i, j);
            }
            _ => {}
        }
    }
    s.into_iter().collect()
}

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
        let sql = mutate(&mut rng, &seeds);
        let result = std::panic::catch_unwind(|| check(&sql));
        assert!(result.is_ok(), "panicked on:\n{sql}");
        runs += 1;
    }
    eprintln!("fuzz smoke: {runs} mutated inputs, no panic");
}
