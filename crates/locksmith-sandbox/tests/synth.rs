//! The synthetic load on a real server: every table filled, parents first,
//! keys distinct, foreign keys pointing at real rows, CHECKs true, sequences
//! moved past the generated keys, and what could not be honoured said.

use locksmith_sandbox::rehearsal::synth;

const SCHEMA: &str = "CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE teams (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name varchar(20) NOT NULL UNIQUE);
CREATE TABLE people (
  id bigserial PRIMARY KEY,
  team_id integer NOT NULL REFERENCES teams (id),
  manager_id bigint REFERENCES people (id),
  email text NOT NULL UNIQUE,
  mood mood NOT NULL,
  level smallint CHECK (level BETWEEN 1 AND 5),
  state text NOT NULL CHECK (state IN ('active', 'left')),
  born date, token uuid UNIQUE, score numeric(6,2), profile jsonb, tags text[]
);
CREATE TABLE memberships (team_id integer REFERENCES teams (id), person_id bigint REFERENCES people (id), PRIMARY KEY (team_id, person_id));
CREATE TABLE badges (id int PRIMARY KEY, flag boolean NOT NULL UNIQUE);";

#[tokio::test]
async fn constraints_hold_and_what_cannot_hold_is_said() {
    let (settings, _cluster) = locksmith_sandbox::shared::database("synth").await.unwrap();
    let client = settings.connect().await.unwrap();
    client.batch_execute(SCHEMA).await.unwrap();
    let rows = |table: &str| if table == "teams" { 10 } else { 300 };
    let mut calls = 0;
    let report = synth::load(&client, &rows, &mut |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .await
    .unwrap();
    assert!(calls >= 3, "progress reported per chunk of each table");

    let order: Vec<&str> = report.tables.iter().map(|t| t.table.as_str()).collect();
    let at = |t: &str| order.iter().position(|x| *x == t).unwrap();
    assert!(
        at("teams") < at("people") && at("people") < at("memberships"),
        "{order:?}"
    );
    let count = |t: &str| report.tables.iter().find(|x| x.table == t).unwrap().rows;
    assert_eq!(count("teams"), 10);
    assert_eq!(count("people"), 300);
    // level BETWEEN 1 AND 5 is met by regenerating level from a small range, not by dropping rows.
    assert_eq!(
        count("memberships"),
        300,
        "two foreign keys make enough distinct pairs"
    );
    assert_eq!(count("badges"), 0, "a unique boolean cannot hold 300 rows");
    assert_eq!(report.unhonoured.len(), 1, "{:?}", report.unhonoured);
    assert!(
        report.unhonoured[0].contains("badges.flag"),
        "{:?}",
        report.unhonoured
    );

    // The loaded values, checked by the server's own rules and by counting.
    let one = |sql: &str| {
        let client = &client;
        let sql = sql.to_string();
        async move { client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        one("SELECT count(DISTINCT state) FROM people WHERE state IN ('active', 'left')").await,
        2
    );
    assert_eq!(
        one("SELECT count(*) FROM people WHERE level IS NOT NULL AND level NOT BETWEEN 1 AND 5")
            .await,
        0
    );
    assert_eq!(one("SELECT count(DISTINCT team_id) FROM people").await, 10);
    // Sequences continue after the generated keys: the app's next insert works.
    client
        .batch_execute("INSERT INTO teams (name) VALUES ('new'); INSERT INTO people (team_id, email, mood, state) VALUES (1, 'x@y', 'calm', 'left');")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
