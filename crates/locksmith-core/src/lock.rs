//! The eight PostgreSQL table lock modes, ordered by strength, with the
//! conflict matrix from the documentation ("Explicit Locking").
//!
//! One type shared by lint, trace, the guard, `blockers` and `top`: every
//! place that reasons about "does this lock make that one wait" asks
//! [`LockMode::conflicts_with`]. Nothing here knows about SQL or servers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A table-level lock mode. The derive order is the strength order, so
/// `max()` of several modes is the one a statement ends up holding.
///
/// Serializes as the `pg_locks` spelling (`"AccessExclusiveLock"`), the one
/// JSON contract every command shares; deserializes from either spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    /// `SELECT`.
    AccessShare,
    /// `SELECT … FOR UPDATE/SHARE`.
    RowShare,
    /// `INSERT`, `UPDATE`, `DELETE`.
    RowExclusive,
    /// `VACUUM`, `ANALYZE`, `CREATE INDEX CONCURRENTLY`, `VALIDATE CONSTRAINT`.
    ShareUpdateExclusive,
    /// `CREATE INDEX` (without `CONCURRENTLY`).
    Share,
    /// `CREATE TRIGGER`, foreign keys on the referenced table.
    ShareRowExclusive,
    /// `REFRESH MATERIALIZED VIEW CONCURRENTLY`.
    Exclusive,
    /// Most `ALTER TABLE` forms, `DROP`, `TRUNCATE`, `VACUUM FULL`.
    AccessExclusive,
}

/// Bit `j` of `CONFLICTS[i]` is set when mode `i` conflicts with mode `j`.
/// Transcribed from the documentation's table; the tests check it cell by cell.
const CONFLICTS: [u8; 8] = [
    0b1000_0000, // AccessShare: AX
    0b1100_0000, // RowShare: X AX
    0b1111_0000, // RowExclusive: S SRX X AX
    0b1111_1000, // ShareUpdateExclusive: SUX S SRX X AX
    0b1110_1100, // Share: RX SUX SRX X AX
    0b1111_1100, // ShareRowExclusive: RX SUX S SRX X AX
    0b1111_1110, // Exclusive: RS RX SUX S SRX X AX
    0b1111_1111, // AccessExclusive: everything
];

impl LockMode {
    /// All modes, weakest first.
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether a request for `self` must wait for a lock held in `other`
    /// (the matrix is symmetric).
    pub fn conflicts_with(self, other: LockMode) -> bool {
        CONFLICTS[self.index()] & (1 << other.index()) != 0
    }

    /// The modes that make a request for `self` wait.
    pub fn conflicting_modes(self) -> impl Iterator<Item = LockMode> {
        Self::ALL
            .into_iter()
            .filter(move |m| self.conflicts_with(*m))
    }

    /// The spelling used by `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub fn pg_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "AccessShareLock",
            LockMode::RowShare => "RowShareLock",
            LockMode::RowExclusive => "RowExclusiveLock",
            LockMode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            LockMode::Share => "ShareLock",
            LockMode::ShareRowExclusive => "ShareRowExclusiveLock",
            LockMode::Exclusive => "ExclusiveLock",
            LockMode::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// The spelling used by `LOCK TABLE … IN <mode> MODE`, e.g. `ACCESS EXCLUSIVE`.
    pub fn sql_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Parses a `pg_locks.mode` value. Row-level and other non-table modes
    /// (e.g. `SIReadLock`) are not table lock modes and give `None`.
    pub fn from_pg_name(name: &str) -> Option<LockMode> {
        Self::ALL.into_iter().find(|m| m.pg_name() == name)
    }

    /// Whether holding this mode makes ordinary traffic wait: it conflicts with
    /// the `ROW EXCLUSIVE` of every `INSERT`, `UPDATE` and `DELETE` (and, for
    /// `ACCESS EXCLUSIVE`, with every read too). How long such a lock is held is
    /// what `--max-hold` bounds.
    pub fn blocks_traffic(self) -> bool {
        self.conflicts_with(LockMode::RowExclusive)
    }

    /// What this mode blocks, in the words a reader needs when deciding
    /// whether a statement is safe during traffic.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare => "only ACCESS EXCLUSIVE (DDL)",
            LockMode::RowExclusive => "SHARE and stronger (e.g. CREATE INDEX)",
            LockMode::ShareUpdateExclusive => "schema changes and VACUUM, not reads or writes",
            LockMode::Share | LockMode::ShareRowExclusive => "writes (INSERT, UPDATE, DELETE)",
            LockMode::Exclusive => "writes and SELECT … FOR UPDATE, not plain reads",
            LockMode::AccessExclusive => "all reads and writes",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.pg_name())
    }
}

/// The error for a string that names no table lock mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lock mode `{0}` (expected e.g. AccessExclusiveLock or \"ACCESS EXCLUSIVE\")")]
pub struct UnknownLockMode(pub String);

impl FromStr for LockMode {
    type Err = UnknownLockMode;

    /// Accepts both the `pg_locks` spelling and the SQL spelling, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let folded = folded.strip_suffix("lock").unwrap_or(&folded);
        Self::ALL
            .into_iter()
            .find(|m| m.sql_name().replace(' ', "").to_ascii_lowercase() == folded)
            .ok_or_else(|| UnknownLockMode(s.to_string()))
    }
}

impl Serialize for LockMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.pg_name())
    }
}

impl<'de> Deserialize<'de> for LockMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::LockMode::{self, *};

    /// The documentation's table, row by row: requested mode, then the held
    /// modes it waits for.
    const DOCUMENTED: [(LockMode, &[LockMode]); 8] = [
        (AccessShare, &[AccessExclusive]),
        (RowShare, &[Exclusive, AccessExclusive]),
        (
            RowExclusive,
            &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
        ),
        (
            ShareUpdateExclusive,
            &[
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
        ),
        (
            Share,
            &[
                RowExclusive,
                ShareUpdateExclusive,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
        ),
        (
            ShareRowExclusive,
            &[
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
        ),
        (
            Exclusive,
            &[
                RowShare,
                RowExclusive,
                ShareUpdateExclusive,
                Share,
                ShareRowExclusive,
                Exclusive,
                AccessExclusive,
            ],
        ),
        (AccessExclusive, &LockMode::ALL),
    ];

    #[test]
    fn matrix_matches_documentation_cell_by_cell() {
        for (requested, waits_for) in DOCUMENTED {
            for held in LockMode::ALL {
                assert_eq!(
                    requested.conflicts_with(held),
                    waits_for.contains(&held),
                    "{requested} requested while {held} held"
                );
            }
        }
    }

    #[test]
    fn traffic_blocking_modes_are_share_and_stronger() {
        let blocking: Vec<LockMode> = LockMode::ALL
            .into_iter()
            .filter(|m| m.blocks_traffic())
            .collect();
        assert_eq!(
            blocking,
            [Share, ShareRowExclusive, Exclusive, AccessExclusive]
        );
    }

    #[test]
    fn matrix_is_symmetric() {
        for a in LockMode::ALL {
            for b in LockMode::ALL {
                assert_eq!(a.conflicts_with(b), b.conflicts_with(a), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn stronger_modes_conflict_with_a_superset() {
        for pair in LockMode::ALL.windows(2) {
            let (weak, strong) = (pair[0], pair[1]);
            // Share and ShareUpdateExclusive are the one pair that is not a
            // chain: SHARE does not conflict with itself, SUX does.
            if weak == ShareUpdateExclusive {
                continue;
            }
            for m in LockMode::ALL {
                if weak.conflicts_with(m) {
                    assert!(
                        strong.conflicts_with(m),
                        "{strong} should conflict with {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for m in LockMode::ALL {
            assert_eq!(LockMode::from_pg_name(m.pg_name()), Some(m));
            assert_eq!(m.pg_name().parse::<LockMode>().unwrap(), m);
            assert_eq!(m.sql_name().parse::<LockMode>().unwrap(), m);
            assert_eq!(m.sql_name().to_lowercase().parse::<LockMode>().unwrap(), m);
        }
        assert_eq!(LockMode::from_pg_name("SIReadLock"), None);
        assert!("exclusive share".parse::<LockMode>().is_err());
    }

    #[test]
    fn serde_uses_the_pg_locks_spelling() {
        let json = serde_json::to_string(&AccessExclusive).unwrap();
        assert_eq!(json, "\"AccessExclusiveLock\"");
        for m in LockMode::ALL {
            let back: LockMode = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert_eq!(back, m);
        }
        assert!(serde_json::from_str::<LockMode>("\"NoSuchLock\"").is_err());
    }

    #[test]
    fn strongest_is_max() {
        assert_eq!(
            [AccessShare, AccessExclusive, Share].into_iter().max(),
            Some(AccessExclusive)
        );
    }
}
