//! Snapshot tests of what users read: every finding of realistic migrations,
//! rendered one per line with its position, plus the fix.

use locksmith_core::lint::{lint, Options, Report};

fn render(report: &Report) -> String {
    let mut out = String::new();
    for s in &report.statements {
        let st = &s.statement;
        let locks: Vec<String> = st
            .locks
            .iter()
            .map(|l| format!("{} {}", l.mode, l.relation))
            .collect();
        out += &format!(
            "{}:{} {} [{}]",
            st.line,
            st.column,
            st.sql.lines().next().unwrap_or(""),
            locks.join(", ")
        );
        if !st.rewrites.is_empty() {
            out += &format!(" rewrites={}", st.rewrites.join(","));
        }
        out.push('\n');
        for f in &s.findings {
            out += &format!("  {} {}: {}\n", f.severity, f.rule, f.message);
            if let Some(fix) = &f.fix {
                for l in fix.lines() {
                    out += &format!("    | {l}\n");
                }
            }
        }
    }
    for f in &report.file_findings {
        out += &format!(
            "{}:{} {} {}: {}\n",
            f.line, f.column, f.finding.severity, f.finding.rule, f.finding.message
        );
    }
    out
}

#[test]
fn the_incident_migration() {
    let sql = "-- 2024_03_add_unique_name.sql\nALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);\n";
    insta::assert_snapshot!(render(&lint(sql, &Options::default()).unwrap()));
}

#[test]
fn alembic_offline_output() {
    let sql = r#"BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 3f2a
ALTER TABLE orders ADD COLUMN customer_id BIGINT;
ALTER TABLE orders ADD CONSTRAINT fk_orders_customer FOREIGN KEY(customer_id) REFERENCES customers (id);
CREATE INDEX ix_orders_customer_id ON orders (customer_id);
UPDATE orders SET customer_id = 0;
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;

INSERT INTO alembic_version (version_num) VALUES ('3f2a') RETURNING alembic_version.version_num;

COMMIT;
"#;
    insta::assert_snapshot!(render(&lint(sql, &Options::default()).unwrap()));
}

#[test]
fn a_careful_migration_is_clean() {
    let sql = r#"SET lock_timeout = '2s';
CREATE UNIQUE INDEX CONCURRENTLY academic_partners_name_key ON academic_partners (name);
ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE USING INDEX academic_partners_name_key;
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;
ALTER TABLE orders ADD COLUMN note text DEFAULT '';
"#;
    let report = lint(sql, &Options::default()).unwrap();
    assert_eq!(report.findings().count(), 0, "{}", render(&report));
}

#[test]
fn suppressions() {
    let sql = r#"SET lock_timeout = '2s';
-- locksmith: ignore LS101 the table has 12 rows and no traffic yet
ALTER TABLE flags ADD CONSTRAINT flags_name_key UNIQUE (name);
-- locksmith: ignore LS107 stale, nothing to suppress
ALTER TABLE flags ADD COLUMN note text;
-- locksmith: ignore LS999 misspelled
SELECT 1;
-- locksmith: ignore LS102 after the last statement
"#;
    insta::assert_snapshot!(render(&lint(sql, &Options::default()).unwrap()));
}

#[test]
fn versions_change_the_verdict() {
    let sql =
        "SET lock_timeout = '1s';\nALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;\n";
    let on13 = lint(
        sql,
        &Options {
            pg_version: 13,
            ..Options::default()
        },
    )
    .unwrap();
    let on17 = lint(
        sql,
        &Options {
            pg_version: 17,
            ..Options::default()
        },
    )
    .unwrap();
    insta::assert_snapshot!(format!("-- 13\n{}-- 17\n{}", render(&on13), render(&on17)));
}
