//! The plan of a wrapped command, read before it runs: the SQL it will send
//! (asked of the tool itself), analysed with lint's model
//! (`locksmith_core::analysis`), with the current size of each table it
//! touches, the estimated hold at that size
//! (`locksmith_core::lint::live`), the sessions in its way now, and each
//! statement's online alternative (`locksmith_core::online`).
//!
//! Where the SQL comes from ([`SqlSource`]): for `alembic upgrade TARGET`
//! (argv[0] named `alembic`, or `python -m alembic`), alembic's offline mode,
//! `alembic upgrade CURRENT:TARGET --sql`, CURRENT read from the database's
//! `alembic_version` table (from the base when there is none); for psql,
//! its own `-c`/`-f` arguments ([`super::psql::script`]); for any other
//! tool, a command the user names (`--sql-from`), run through `sh -c`.
//! A command runs with the environment the real run gets.
//!
//! It must not change anything, nor queue for a lock: the SQL command is the
//! user's (or alembic's offline mode, which sends nothing), and every read
//! here is a catalog read, or a read-only transaction under a short
//! `lock_timeout` ([`crate::tables`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use locksmith_core::analysis::{analyze, RelationLock, Statement, StatementKind};
use locksmith_core::lint::live;

use crate::throughput::{Calibration, Sizes};
use locksmith_core::online::{self, Online};
use serde::Serialize;

use super::env::{shown_command, ChildEnv};
use super::psql;
use crate::guard::watcher::WantedLock;
use crate::guard::{look, Holder};
use crate::{Connection, Error};

/// Where the SQL of a wrapped command comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlSource {
    /// An `alembic … upgrade TARGET` command: alembic's offline mode.
    Alembic {
        /// The command up to and including `upgrade`.
        head: Vec<String>,
        /// Arguments after `upgrade` other than the target.
        rest: Vec<String>,
        /// The target revision (`head`, `0042`, `a1b2:head`).
        target: String,
    },
    /// A command that prints the SQL (`--sql-from`), run through `sh -c`.
    Command(String),
    /// psql's own script: its `-c` and `-f` arguments, read here.
    Psql(Vec<psql::Part>),
}

impl SqlSource {
    /// The source for `command`: `sql_from` when given, else alembic's
    /// offline mode for an alembic upgrade, psql's script for a psql that
    /// does not read its standard input; `None` for any other tool.
    pub fn for_command(command: &[String], sql_from: Option<&str>) -> Option<SqlSource> {
        if let Some(cmd) = sql_from {
            return Some(SqlSource::Command(cmd.to_string()));
        }
        if let Some(parts) = psql::script(command) {
            return Some(SqlSource::Psql(parts));
        }
        let name = |a: &String| {
            Path::new(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let first = command.first().map(name)?;
        let start = if first == "alembic" {
            1
        } else if first.starts_with("python")
            && command.get(1).map(String::as_str) == Some("-m")
            && command.get(2).map(String::as_str) == Some("alembic")
        {
            3
        } else {
            return None;
        };
        // Global options before the subcommand; those taking a value skip it.
        let mut i = start;
        while let Some(arg) = command.get(i) {
            match arg.as_str() {
                "upgrade" => break,
                "-c" | "--config" | "-n" | "--name" | "-x" => i += 2,
                a if a.starts_with('-') => i += 1,
                _ => return None,
            }
        }
        let after = command.get(i + 1..)?;
        // Already offline, or options we cannot carry over: not planned.
        if after.iter().any(|a| a == "--sql") {
            return None;
        }
        let mut rest = Vec::new();
        let mut target = None;
        let mut args = after.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--tag" => {
                    rest.push(a.clone());
                    rest.push(args.next()?.clone());
                }
                a if a.starts_with('-') => rest.push(a.to_string()),
                _ if target.is_none() => target = Some(a.clone()),
                _ => return None,
            }
        }
        Some(SqlSource::Alembic {
            head: command[..=i].to_vec(),
            rest,
            target: target?,
        })
    }

    /// The SQL `command` will send and what it was read from (shown in the
    /// plan), or why it cannot be had. Alembic's current revision is read
    /// over `client`; a command runs with `env`.
    pub async fn read(
        &self,
        client: &Connection,
        command: &[String],
        env: &ChildEnv,
    ) -> Result<Result<(String, String), NoSql>, Error> {
        let current = match self {
            SqlSource::Psql(parts) => {
                let sql = psql::script_sql(parts).map_err(|why| NoSql { why });
                return Ok(sql.map(|sql| (shown_command(command), sql)));
            }
            SqlSource::Alembic { .. } => match alembic_current(client).await? {
                Ok(current) => current,
                Err(no) => return Ok(Err(no)),
            },
            SqlSource::Command(_) => None,
        };
        let argv = self.argv(current.as_deref());
        Ok(read_sql(&argv, env)
            .await
            .map(|sql| (shown_command(&argv), sql)))
    }

    /// The command that prints the SQL, given alembic's current revision
    /// (psql's script is read, not printed: its own command).
    fn argv(&self, current: Option<&str>) -> Vec<String> {
        match self {
            SqlSource::Psql(_) => Vec::new(),
            SqlSource::Alembic { head, rest, target } => {
                let range = match current {
                    Some(current) if !target.contains(':') => format!("{current}:{target}"),
                    _ => target.clone(),
                };
                let mut argv = head.clone();
                argv.push(range);
                argv.extend(rest.iter().cloned());
                argv.push("--sql".to_string());
                argv
            }
            SqlSource::Command(cmd) => vec!["sh".into(), "-c".into(), cmd.clone()],
        }
    }
}

/// The plan of a wrapped command, as `run` prints it (and its JSON `plan` key).
#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    /// The command that printed the SQL.
    pub sql_from: String,
    /// Each statement that locks something, in order.
    pub statements: Vec<PlannedStatement>,
    /// Where the hold estimates' rates come from: this server's probe, or
    /// the conservative defaults and why.
    pub calibration: Calibration,
}

impl RunPlan {
    /// The locks its statements take, on the relations that exist now
    /// (partitions and children included), as the session watch's look
    /// before an attempt takes them.
    pub async fn wanted(&self, client: &Connection) -> Result<Vec<WantedLock>, Error> {
        let locks: Vec<RelationLock> = self
            .statements
            .iter()
            .flat_map(|s| s.locks.iter().cloned())
            .collect();
        Ok(look::resolve(client, &locks)
            .await?
            .into_iter()
            .map(|r| WantedLock {
                relation: r.name,
                oid: r.oid,
                mode: r.mode,
            })
            .collect())
    }
}

/// One statement of a [`RunPlan`].
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStatement {
    /// 1-based line in the SQL printed.
    pub line: u32,
    /// The statement.
    pub sql: String,
    /// The locks it takes.
    pub locks: Vec<RelationLock>,
    /// Tables it rewrites.
    pub rewrites: Vec<String>,
    /// Tables it reads in full.
    pub scans: Vec<String>,
    /// The tables it touches that exist now, with their size.
    pub tables: Vec<TableSize>,
    /// The longest traffic-blocking hold expected at today's sizes: the
    /// table, the lock held and for how long (an estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_hold: Option<Hold>,
    /// Sessions holding a lock that conflicts with one of its locks now.
    pub blockers: Vec<Holder>,
    /// What runs instead under `apply --online`, or why nothing can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineAlternative>,
}

/// A table's size now.
#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    /// The table.
    pub relation: String,
    /// Rows (the planner's estimate; 0 when never analysed).
    pub rows: i64,
    /// Bytes; absent when reading it would have waited for a lock.
    pub bytes: Option<i64>,
}

/// The estimated hold of a traffic-blocking lock.
#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    /// The table.
    pub relation: String,
    /// The lock held on it meanwhile (`pg_locks` spelling).
    pub mode: locksmith_core::lock::LockMode,
    /// Rewritten (else read in full).
    pub rewrite: bool,
    /// The estimate, in milliseconds.
    pub estimated_hold_ms: u64,
}

/// The online alternative of a statement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnlineAlternative {
    /// These steps do the same with brief locks (`apply --online` runs them).
    Steps(String),
    /// It blocks traffic while it works and has no online form: why.
    None(String),
}

/// Why no plan could be read: the message says what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSql {
    /// What failed, with the tail of the command's stderr.
    pub why: String,
}

/// Alembic's current revision, from the database's `alembic_version`
/// table: `None` when there is none (a fresh database), an error when there
/// are several (branches: no single start for the offline range).
pub async fn alembic_current(client: &Connection) -> Result<Result<Option<String>, NoSql>, Error> {
    // Whether the table exists on the search path (catalog only, no lock).
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('alembic_version')::text", &[])
        .await
        .map_err(|e| Error::query("looking for alembic_version", e))?
        .get(0);
    if exists.is_none() {
        return Ok(Ok(None));
    }
    // The revisions alembic recorded as applied, in a read-only transaction
    // that never queues for the table's lock (a migration may hold it).
    let context = "reading alembic_version";
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL lock_timeout = '{}ms'",
            crate::tables::SIZE_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| Error::query(context, e))?;
    let read = client
        .query("SELECT version_num::text FROM alembic_version", &[])
        .await;
    let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(|e| Error::query(context, e))?;
    let rows = match read {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            return Ok(Err(NoSql {
                why: "alembic_version is locked by another session right now".to_string(),
            }))
        }
        Err(e) => return Err(Error::query(context, e)),
    };
    let mut heads: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(match heads.len() {
        0 => Ok(None),
        1 => Ok(heads.pop()),
        _ => Err(NoSql {
            why: format!(
                "alembic_version has {} heads ({}): offline mode needs one starting revision",
                heads.len(),
                heads.join(", ")
            ),
        }),
    })
}

/// Runs `argv` with the run's environment and returns what it printed on
/// stdout, or why it failed (its exit status and the end of its stderr).
pub async fn read_sql(argv: &[String], env: &ChildEnv) -> Result<String, NoSql> {
    let shown = shown_command(argv);
    let out = env
        .command(argv, Stdio::null())
        .output()
        .await
        .map_err(|e| NoSql {
            why: format!("`{shown}` could not be started: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The last lines that say something (a traceback's last line is its error).
        let said: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().any(|c| !matches!(c, '^' | '~')))
            .collect();
        let tail = said[said.len().saturating_sub(2)..].join(" / ");
        return Err(NoSql {
            why: format!(
                "`{shown}` failed ({}){}",
                out.status,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Analyses `sql` for a server of major `pg_version` and reads, over
/// `client`, the sizes and blockers of the tables it touches.
pub async fn plan(
    client: &Connection,
    sql_from: String,
    sql: &str,
    pg_version: u32,
) -> Result<Result<RunPlan, NoSql>, Error> {
    let statements = match analyze(sql, pg_version) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(NoSql {
                why: format!(
                    "the SQL `{sql_from}` printed does not parse at line {}, column {}: {}",
                    e.line, e.column, e.message
                ),
            }))
        }
    };
    let sizes = Sizes::read(client, &statements).await?;
    let mut created = BTreeSet::new();
    let mut planned = Vec::new();
    for s in &statements {
        if !s.locks.is_empty() {
            planned.push(planned_statement(client, s, &sizes, &created, pg_version).await?);
        }
        if let StatementKind::CreateTable { table } = &s.kind {
            created.insert(table.clone());
        }
    }
    Ok(Ok(RunPlan {
        sql_from,
        statements: planned,
        calibration: sizes.throughput.calibration,
    }))
}

async fn planned_statement(
    client: &Connection,
    s: &Statement,
    sizes: &Sizes,
    created: &BTreeSet<String>,
    pg_version: u32,
) -> Result<PlannedStatement, Error> {
    let tables = live::relations([s])
        .into_iter()
        .filter_map(|relation| {
            let f = sizes.facts.get(&relation)?;
            Some(TableSize {
                relation,
                rows: f.rows.max(0),
                bytes: f.bytes,
            })
        })
        .collect();
    let estimated_hold = sizes.hold(s).map(|e| Hold {
        relation: e.relation,
        mode: e.mode,
        rewrite: e.rewrite,
        estimated_hold_ms: e.hold.as_millis() as u64,
    });
    let online = match online::plan(s, created, pg_version) {
        Online::AsIs => None,
        Online::Steps(steps) => Some(OnlineAlternative::Steps(online::script(&steps, false))),
        Online::Refused(why) => Some(OnlineAlternative::None(why)),
    };
    Ok(PlannedStatement {
        line: s.line,
        sql: s.sql.clone(),
        locks: s.locks.clone(),
        rewrites: s.rewrites.clone(),
        scans: s.scans.clone(),
        tables,
        estimated_hold,
        blockers: look::holders(client, &s.locks).await?,
        online,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn alembic_upgrades_are_read_offline() {
        let source = SqlSource::for_command(&argv("/venv/bin/alembic -c a.ini upgrade head"), None)
            .expect("an alembic upgrade");
        assert_eq!(
            source.argv(Some("0001")),
            argv("/venv/bin/alembic -c a.ini upgrade 0001:head --sql")
        );
        assert_eq!(
            source.argv(None),
            argv("/venv/bin/alembic -c a.ini upgrade head --sql")
        );
        let python = SqlSource::for_command(&argv("python3 -m alembic upgrade 0042 --tag x"), None)
            .expect("python -m alembic");
        assert_eq!(
            python.argv(Some("0041")),
            argv("python3 -m alembic upgrade 0041:0042 --tag x --sql")
        );
        for other in [
            "alembic downgrade -1",
            "alembic upgrade head --sql",
            "alembic-wrapper upgrade head",
            "flyway migrate",
            "alembic upgrade",
        ] {
            assert_eq!(SqlSource::for_command(&argv(other), None), None, "{other}");
        }
        assert_eq!(
            SqlSource::for_command(&argv("flyway migrate"), Some("cat m.sql"))
                .unwrap()
                .argv(None),
            ["sh", "-c", "cat m.sql"]
        );
    }
}
