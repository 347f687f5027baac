//! `locksmith trace` end to end on the system PostgreSQL: the built binary
//! on a throwaway cluster and on `--database-url` (rolled back), JSON output.

use std::process::{Command, Output};

use serde_json::Value;

fn locksmith(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

const SETUP: &str =
    "CREATE TABLE academic_partners (id serial PRIMARY KEY, name text, country varchar(20));
CREATE TABLE users (id bigint PRIMARY KEY);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);
INSERT INTO academic_partners (name) SELECT 'p' || g FROM generate_series(1, 250) g;
";

const MIGRATION: &str = "SET lock_timeout = '2s';
ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);
ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE academic_partners ALTER COLUMN country TYPE bigint USING 0;
CREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);
ALTER TABLE missing ADD COLUMN x int;
";

fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("setup.sql"), SETUP).unwrap();
    std::fs::write(dir.path().join("m.sql"), MIGRATION).unwrap();
    dir
}

fn statements(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["files"][0]["statements"].as_array().unwrap().clone()
}

fn locks(s: &Value) -> Vec<(String, String)> {
    s["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["relation"].as_str().unwrap().to_string(),
                l["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn rules(s: &Value) -> Vec<String> {
    s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn traces_each_statement_on_a_throwaway_cluster() {
    let dir = files();
    let out = locksmith(
        &["trace", "m.sql", "--setup", "setup.sql", "--format", "json"],
        dir.path(),
    );
    // The failing statement is an error finding: exit 1.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = statements(&out);
    assert_eq!(s.len(), 6);
    assert!(locks(&s[0]).is_empty());
    assert!(locks(&s[1]).contains(&("academic_partners".into(), "AccessExclusiveLock".into())));
    assert_eq!(s[1]["trace"]["constraints"][0]["kind"], "unique");
    assert!(rules(&s[1]).contains(&"LS101".to_string()));
    assert_eq!(
        locks(&s[2])
            .into_iter()
            .filter(|(r, _)| !r.ends_with("_pkey"))
            .collect::<Vec<_>>(),
        [
            ("orders".to_string(), "ShareRowExclusiveLock".to_string()),
            ("users".to_string(), "ShareRowExclusiveLock".to_string())
        ]
    );
    assert_eq!(s[2]["trace"]["constraints"][0]["validated"], false);
    // Already held from statement 2: no new table lock, but the data file is new.
    assert_eq!(s[3]["rewrites"], serde_json::json!(["academic_partners"]));
    assert_eq!(s[4]["trace"]["method"], "second-session");
    assert_eq!(
        locks(&s[4]),
        [("orders".to_string(), "ShareUpdateExclusiveLock".to_string())]
    );
    assert_eq!(rules(&s[5]), ["LS952"]);
    for st in &s {
        assert!(
            !rules(st).contains(&"LS950".to_string()),
            "model mismatch: {st:#}"
        );
    }
}

#[test]
fn database_url_is_rolled_back_and_concurrently_is_not_traced() {
    let cluster = locksmith_sandbox::Cluster::start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let settings = rt.block_on(cluster.create_database("app")).unwrap();
    rt.block_on(async {
        let c = settings.connect().await.unwrap();
        c.batch_execute(SETUP).await.unwrap();
    });
    let dir = files();
    let url = cluster.url("app");
    let out = locksmith(
        &["trace", "m.sql", "--database-url", &url, "--format", "json"],
        dir.path(),
    );
    let s = statements(&out);
    assert!(locks(&s[1]).contains(&("academic_partners".into(), "AccessExclusiveLock".into())));
    assert_eq!(s[4]["trace"]["method"], "not-traced");
    assert!(rules(&s[4]).contains(&"LS951".to_string()));
    // Nothing was committed.
    rt.block_on(async {
        let c = settings.connect().await.unwrap();
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE conname IN ('academic_partners_name_key', 'orders_user_fk')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        let t: String = c
            .query_one(
                "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'academic_partners' AND column_name = 'country'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, "character varying");
    });
}
