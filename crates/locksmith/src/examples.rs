//! What each `--help` ends with: examples to copy, and the exit codes the
//! command can end with (decided in [`crate::exit`]). Kept apart from the
//! argument definitions in [`crate::cli`] so the flags stay readable.

/// `locksmith --help`.
pub const LOCKSMITH: &str = "\
Start here:
  locksmith demo                                  the incident, replayed and prevented (25 s)
  locksmith lint migrations/                      what each statement locks, and the safe way
  locksmith blockers                              who blocks whom on your database, now

Exit codes: 0 done; 1 failed or found errors; 2 bad usage or input;
3 gave up (or found sessions) blocked, the blockers named.
A closed stdout (`| head`) ends quietly with 0.";

/// `locksmith demo --help`.
pub const DEMO: &str = "\
Examples:
  locksmith demo                                  narrated, about 25 seconds
  locksmith demo --json > result.json             the numbers only
  locksmith demo --replica                        and a hot standby's reads (15 s more)

Exit codes: 0 done; 1 the throwaway server could not start.";

/// `locksmith apply --help`.
pub const APPLY: &str = "\
Examples:
  locksmith apply migrations/ --dry-run           the plan, and who would block it now
  locksmith apply migrations/                     apply, giving up after 3 minutes blocked
  locksmith apply migrations/ --terminate-idle-after 30s
  locksmith apply migrations/ --online --dry-run  the online plan: steps, locks, transactions
  locksmith apply migrations/ --replica postgres://reader-1/app
  locksmith apply migrations/ --targets tenants.txt --parallel 16 --canary 2

Exit codes: 0 applied (or nothing to do); 1 a migration failed; 2 bad input,
or a statement --online cannot run online (nothing ran); 3 gave up blocked,
the blockers named, or a statement would hold a lock blocking traffic past
--max-hold (rolled back); 130/143 Ctrl-C/SIGTERM.
With --targets: 0 every database applied or up to date; 1 any failed or was
unreachable; 3 some gave up and none failed; 2 a bad line (FILE:LINE, nothing ran).";

/// The layout of a command with a description longer than its one-line
/// summary: the summary, the description, then usage, options, examples and
/// exit codes, as every other command's (`-h` and `--help` print the same).
pub const DETAILED: &str =
    "{about-with-newline}\n{before-help}{usage-heading} {usage}\n\n{all-args}{after-help}";

/// What `locksmith run` does to the command, before its usage.
pub const RUN_DETAILS: &str = "\
The command gets PGAPPNAME=locksmith-run-<pid> unless PGAPPNAME is set, and
`-c lock_timeout=<wait>` appended to PGOPTIONS (what is there is kept); with
--database-url, DATABASE_URL is set to it unless the command's environment
already has one (psql ignores DATABASE_URL: pass it the URL, as in the
examples). Nothing else about where the command connects is changed.

The wait starts at 75ms on the first try: three polls of the watch, the
shortest wait it is sure to see, so a try that loses a lock race still tells
whom it waited for. It doubles on each retry up to --lock-timeout. The first
try runs before locksmith knows which tables the command locks, so it makes
traffic wait as little as it can.

A second connection (--database-url, else DATABASE_URL, else PG*) watches the
sessions carrying that application_name: a lock wait over the budget is
cancelled on the server even if the driver ignored PGOPTIONS, and
--terminate-idle-after applies to the sessions blocking them.

Behind a connection pooler (PgBouncer: detected at connect, said on stderr and
under \"pooler\" in the JSON), PGOPTIONS is not touched (a pooler refuses or
drops it) and PGAPPNAME is always locksmith-run-<pid>-<attempt>: the watch
alone bounds the lock waits, finding the pooled sessions by that name (over
--direct-url when given). A command that sets its own application_name is
refused there (exit 2).

When the command fails because it lost a lock race (a wait was cancelled, or
its output carries SQLSTATE 55P03 / \"lock timeout\"), it is rerun with backoff
and jitter, but not while long-lived sessions still hold the lock it waited
for, until --max-attempts or --deadline (no new attempt starts after it, and
one still running is stopped at it, its statements cancelled on the server);
then exit 3 naming the blockers. Any other failure exits with the command's
own code. Ctrl-C/SIGTERM: the signal is passed on, the command's statements
are cancelled on the server, exit 130/143.

The command's stdout and stderr pass through live. The final report goes to
stderr (human) or stdout (--format json; the command's stdout then goes to
stderr, so stdout holds only the JSON).";

/// `locksmith run --help`.
pub const RUN: &str = "\
Examples:
  locksmith run -- alembic upgrade head
  locksmith run --database-url \"$URL\" -- psql \"$URL\" -1 -f migrate.sql
  locksmith run --terminate-idle-after 30s -- npx prisma migrate deploy
  locksmith run --format json -- ./manage.py migrate > report.json

Exit codes: 0 the command succeeded; 3 gave up blocked, the blockers named,
or a statement held a lock blocking traffic past --max-hold (stopped);
otherwise the command's own code (127 not found, 126 not runnable, 130/143
after Ctrl-C/SIGTERM).";

/// `locksmith blockers --help`.
pub const BLOCKERS: &str = "\
Examples:
  locksmith blockers
  locksmith blockers --format json | jq '.blockers[].pid'
  locksmith blockers --targets tenants.txt        each database of the list: its own queues

Exit codes: 0 nobody waits for a lock; 3 sessions wait behind a root blocker
(an outage in progress; the roots are named; with --targets: on any database);
1 could not connect (with --targets: to some database, none blocked).";

/// `locksmith top --help`.
pub const TOP: &str = "\
Keys:
  ↑ ↓ PgUp PgDn   select a session (the lock-wait tree first, then the list)
  Enter           details: full query, locks held and wanted
  c               cancel the selected session's statement (asks [y/N])
  k               terminate the selected session (asks [y/N])
  /               filter the session list     s  change the sort
  p               pause / resume              r  refresh now
  ?               help                        q  quit (Ctrl-C too)
  Esc             close a popup, clear the filter (never quits)

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
  locksmith doctor --targets tenants.txt          every database of the list, one report

Exit codes: 0 nothing to fix; 1 a warning or worse (with --targets: on any
database, or one could not be reached); 2 bad input.";

/// Where `locksmith rehearse` gets the schema, the rows and the traffic.
pub const REHEARSE_DETAILS: &str = "\
The schema comes from --setup files, from the earlier migrations when a folder
is given (its last file is the migration), or, read-only, from --database-url
(pg_dump --schema-only of the tables the migration touches and those they
reference, sizes from the catalog; nothing is written there and no lock beyond
ACCESS SHARE is taken). Every table gets synthetic rows typed from its columns,
keeping keys distinct, foreign keys pointing at real rows and CHECKs true (what
could not be honoured is said).

The traffic is a read and a write by primary key on every table the migration
touches, each request its own short transaction, or the templates of --traffic
FILE, one per line: `RATE SQL`, e.g. `30 SELECT * FROM orders WHERE id = $1`
(RATE requests per second; `$1` receives a key from 1 to the row count; `#`
starts a comment).";

/// `locksmith rehearse --help`.
pub const REHEARSE: &str = "\
Examples:
  locksmith rehearse migrations/0042_unique_name.sql --setup schema.sql --leaks 3
  locksmith rehearse migrations/ --online --report rehearsal.html
  locksmith rehearse m.sql --database-url \"$REPLICA_URL\" --scale 0.1 --format json

Exit codes: 0 rehearsed; 1 the plain run stalled traffic beyond --max-stall;
2 bad input.";

/// `locksmith completions --help`.
pub const COMPLETIONS: &str = "\
Examples:
  locksmith completions bash > ~/.local/share/bash-completion/completions/locksmith
  locksmith completions zsh > \"${fpath[1]}/_locksmith\"
  locksmith completions fish > ~/.config/fish/completions/locksmith.fish

Exit codes: 0 done; 2 unknown shell.";
