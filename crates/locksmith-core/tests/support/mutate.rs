//! The stable smoke tests' mutator: seeded, so a failure is reproducible.

/// xorshift64: a seeded, reproducible stream of numbers.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One seed with a few deletions, token insertions, splices from other
/// seeds, truncations and swaps.
pub fn mutate(rng: &mut Rng, seeds: &[&str], tokens: &[&str]) -> String {
    let mut s: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = tokens[rng.below(tokens.len())];
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
