//! Every fix lint prints for its documented examples runs on a real server,
//! as printed: standalone (each statement on its own, as psql runs a file)
//! and in place inside the file's own `BEGIN … COMMIT`. (That each also
//! re-lints clean is checked without a server, in `lint::docs`.)

use locksmith_core::analysis::analyze;
use locksmith_core::lint::docs::example_fixes;
use locksmith_sandbox::shared;

/// Tables and objects the rules' examples name, with a few rows each.
const SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, name text);
INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 20) AS i;
CREATE TABLE academic_partners (id serial PRIMARY KEY, name text NOT NULL, informal_name text);
INSERT INTO academic_partners (name, informal_name) SELECT 'University ' || i, 'uni-' || i FROM generate_series(1, 50) AS i;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint, amount int);
INSERT INTO orders (customer_id, amount) SELECT 1 + i % 20, i FROM generate_series(1, 200) AS i;
CREATE TABLE users (id bigserial PRIMARY KEY, email text, legacy_flag boolean);
INSERT INTO users (email) SELECT 'u' || i || '@example.com' FROM generate_series(1, 100) AS i;
CREATE TABLE events (id int PRIMARY KEY, price int, quantity int);
INSERT INTO events SELECT i, i, 2 FROM generate_series(1, 100) AS i;
CREATE MATERIALIZED VIEW daily_totals AS SELECT 1 AS day, count(*) AS n FROM orders;
CREATE UNIQUE INDEX daily_totals_day ON daily_totals (day);
CREATE DOMAIN price AS int;
";

/// What an example needs beyond [`SCHEMA`].
fn prelude(rule: &str) -> &'static str {
    match rule {
        "LS103" | "LS104" => "CREATE INDEX orders_customer_id_idx ON orders (customer_id);",
        _ => "",
    }
}

/// Runs `sql` statement by statement, as psql runs a file.
async fn run(client: &locksmith_pg::Connection, sql: &str) -> Result<(), String> {
    for s in analyze(sql, 18).map_err(|e| e.to_string())? {
        client
            .batch_execute(&s.sql)
            .await
            .map_err(|e| format!("`{}`: {e:?}", s.sql))?;
    }
    Ok(())
}

#[tokio::test]
async fn every_documented_fix_runs_on_a_real_server_alone_and_in_place() {
    let cluster = shared::cluster().unwrap();
    let fixes = example_fixes();
    let mut failures = Vec::new();
    for f in &fixes {
        let name = shared::unique_name(&format!("fix_{}", f.rule));
        let db = cluster.create_database(&name).await.unwrap();
        let client = db.connect().await.unwrap();
        client
            .batch_execute(&format!("{SCHEMA}{}", prelude(f.rule)))
            .await
            .unwrap();
        if let Err(e) = run(&client, &f.in_place).await {
            let place = if f.wrapped { "in place" } else { "alone" };
            failures.push(format!("{} ({place}):\n{}\n{e}", f.rule, f.in_place));
        }
    }
    let ran = fixes.len();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 10, "only {ran} fixes ran");
}
