//! What each `--help` ends with: examples to copy, and the exit codes the
//! command can end with (decided in [`crate::exit`]). Kept apart from the
//! argument definitions in [`crate::cli`] so the flags stay readable.

/// `locksmith --help`.
pub const LOCKSMITH: &str = "\
Start here:
  locksmith demo                                  the incident, replayed and prevented (2 min)
  locksmith lint migrations/                      what each statement locks, and the safe way
  locksmith blockers                              who blocks whom on your database, now

Exit codes: 0 done; 1 failed or found errors; 2 bad usage or input;
3 gave up (or found sessions) blocked, the blockers named.
A closed stdout (`| head`) ends quietly with 0.";

/// `locksmith demo --help`.
pub const DEMO: &str = "\
Examples:
  locksmith demo                                  narrated, about two minutes
  locksmith demo --json > result.json             the numbers only

Exit codes: 0 done; 1 the throwaway server could not start.";

/// `locksmith apply --help`.
pub const APPLY: &str = "\
Examples:
  locksmith apply migrations/ --dry-run           the plan, and who would block it now
  locksmith apply migrations/                     apply, giving up after 3 minutes blocked
  locksmith apply migrations/ --terminate-idle-after 30s
  locksmith apply migrations/ --online --dry-run  the online plan: steps, locks, transactions
  locksmith apply migrations/ --replica postgres://reader-1/app

Exit codes: 0 applied (or nothing to do); 1 a migration failed; 2 bad input,
or a statement --online cannot run online (nothing ran); 3 gave up blocked,
the blockers named, or a statement would hold a lock blocking traffic past
--max-hold (rolled back); 130/143 Ctrl-C/SIGTERM.";

/// `locksmith run --help`.
pub const RUN: &str = "\
Examples:
  locksmith run -- alembic upgrade head
  locksmith run --terminate-idle-after 30s -- npx prisma migrate deploy
  locksmith run --format json -- ./manage.py migrate > report.json

Exit codes: 0 the command succeeded; 3 gave up blocked, the blockers named,
or a statement held a lock blocking traffic past --max-hold (stopped); otherwise the command's own code (127 not found, 126 not runnable, 130/143
after Ctrl-C/SIGTERM).";

/// `locksmith blockers --help`.
pub const BLOCKERS: &str = "\
Examples:
  locksmith blockers
  locksmith blockers --format json | jq '.blockers[].pid'

Exit codes: 0 nobody waits for a lock; 3 sessions wait behind a root blocker
(an outage in progress; the roots are named); 1 could not connect.";

/// `locksmith top --help`.
pub const TOP: &str = "\
Keys:
  ↑ ↓ PgUp PgDn   select a session (the lock-wait tree first, then the list)
  Enter           details: full query, locks held and wanted
  c               cancel the selected session's statement (asks [y/N])
  k               terminate the selected session (asks [y/N])
  /               filter the session list     s  change the sort
  p               pause / resume              r  refresh now
  ?               help                        q  quit

A cancel does nothing to an idle session: terminate it (k) instead.

Examples:
  locksmith top
  locksmith top --interval 500ms --database-url postgres://app@db/prod

Exit codes: 0 quit; 2 not a terminal (use `locksmith blockers`).";

/// `locksmith lint --help`.
pub const LINT: &str = "\
Examples:
  locksmith lint migrations/
  locksmith lint --pg-version 13 migrations/0042_add_index.sql
  alembic upgrade head --sql | locksmith lint -
  locksmith lint --format github migrations/      annotations in a GitHub Actions job
  locksmith lint --format gitlab migrations/ > gl-code-quality-report.json

Exit codes: 0 no error findings; 1 error findings; 2 bad input (a syntax
error is reported as FILE:LINE:COLUMN).";

/// `locksmith trace --help`.
pub const TRACE: &str = "\
Examples:
  locksmith trace migrations/0042.sql --setup schema.sql
  locksmith trace --pg-version 13 migrations/0042.sql
  locksmith trace --database-url postgres://localhost/staging migrations/0042.sql

Exit codes: 0 no error findings; 1 error findings or the trace failed; 2 bad input, or
(--database-url) a statement that would block traffic while it rewrites or scans a big table;
3 (--database-url) gave up blocked by other sessions, which the report names.";

/// `locksmith doctor --help`.
pub const DOCTOR: &str = "\
Examples:
  locksmith doctor
  locksmith doctor --log /var/log/postgresql/postgresql-15-main.log
  locksmith doctor --format json | jq '.findings[] | select(.severity == \"error\")'

Exit codes: 0 nothing to fix; 1 a warning or worse; 2 bad input.";

/// `locksmith completions --help`.
pub const COMPLETIONS: &str = "\
Examples:
  locksmith completions bash > ~/.local/share/bash-completion/completions/locksmith
  locksmith completions zsh > \"${fpath[1]}/_locksmith\"
  locksmith completions fish > ~/.config/fish/completions/locksmith.fish

Exit codes: 0 done; 2 unknown shell.";
