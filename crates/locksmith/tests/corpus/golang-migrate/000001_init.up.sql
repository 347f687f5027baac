CREATE TABLE orgs (id bigint PRIMARY KEY);
CREATE TABLE users (id bigint NOT NULL, email text, name text);
CREATE INDEX users_old_idx ON users (name);
INSERT INTO orgs VALUES (1);
INSERT INTO users SELECT g, 'u' || g || '@example.com', 'n' || g FROM generate_series(1, 50) g;
CREATE MATERIALIZED VIEW user_count AS SELECT 1 AS one, count(*) AS n FROM users;
CREATE UNIQUE INDEX user_count_one ON user_count (one);
