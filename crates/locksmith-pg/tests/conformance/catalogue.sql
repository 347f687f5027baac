-- The conformance catalogue: statements traced on every PostgreSQL major
-- version available and compared with lint's model for that version.
-- A disagreement fails the `conformance` test; the observations are written
-- to docs/locks.md (`UPDATE_DOCS=1 cargo test -p pg-locksmith-pg --test conformance`).
--
-- Format: `-- @base` starts the schema every case starts from; `-- @case NAME`
-- starts a case, `-- @setup SQL` adds to its own setup, `-- @since N` skips it
-- before PostgreSQL N; the remaining lines are the statement traced.

-- @base
CREATE TABLE users (id bigint PRIMARY KEY, email text, name varchar(50), age int, score numeric(10, 2), created timestamp, bio text);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total numeric, note text);
CREATE INDEX orders_user_idx ON orders (user_id);
CREATE TABLE events (id bigint, at date NOT NULL, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 (id bigint, at date NOT NULL, payload text);
CREATE MATERIALIZED VIEW user_counts AS SELECT count(*) AS n FROM users;
CREATE UNIQUE INDEX user_counts_n ON user_counts (n);
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE SEQUENCE ticket_seq;
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
INSERT INTO users SELECT g, 'u' || g || '@example.com', 'n' || g, g, g, now(), '' FROM generate_series(1, 100) g;
INSERT INTO orders SELECT g, g, g, '' FROM generate_series(1, 100) g;

-- @case add column
ALTER TABLE users ADD COLUMN note text;
-- @case add column with a constant default
ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;
-- @case add column with a volatile default
ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();
-- @case add column defaulting to clock_timestamp()
ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp();
-- @case add serial column
ALTER TABLE users ADD COLUMN seq serial;
-- @case add identity column
ALTER TABLE users ADD COLUMN num bigint GENERATED ALWAYS AS IDENTITY;
-- @case add generated stored column
ALTER TABLE users ADD COLUMN age2 int GENERATED ALWAYS AS (age * 2) STORED;
-- @case add column with REFERENCES
ALTER TABLE orders ADD COLUMN buyer_id bigint REFERENCES users (id);
-- @case add column with CHECK
ALTER TABLE users ADD COLUMN level int CHECK (level > 0);
-- @case change type: widen varchar
ALTER TABLE users ALTER COLUMN name TYPE varchar(100);
-- @case change type: varchar to text
ALTER TABLE users ALTER COLUMN name TYPE text;
-- @case change type: narrow varchar
ALTER TABLE users ALTER COLUMN name TYPE varchar(20);
-- @case change type: int to bigint
ALTER TABLE users ALTER COLUMN age TYPE bigint;
-- @case change type: widen numeric
ALTER TABLE users ALTER COLUMN score TYPE numeric(12, 2);
-- @case change type with USING
ALTER TABLE users ALTER COLUMN age TYPE text USING age::text;
-- @case set not null
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
-- @case set not null proven by a valid check
-- @setup ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL);
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
-- @case drop not null
-- @setup ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
-- @case set default
ALTER TABLE users ALTER COLUMN bio SET DEFAULT 'none';
-- @case drop default
-- @setup ALTER TABLE users ALTER COLUMN bio SET DEFAULT 'none';
ALTER TABLE users ALTER COLUMN bio DROP DEFAULT;
-- @case add unique constraint
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
-- @case add primary key
-- @setup CREATE TABLE tags (id int NOT NULL, name text);
ALTER TABLE tags ADD PRIMARY KEY (id);
-- @case add unique constraint using index
-- @setup CREATE UNIQUE INDEX users_email_idx ON users (email);
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;
-- @case add primary key using index
-- @setup CREATE TABLE tags (id int NOT NULL, name text); CREATE UNIQUE INDEX tags_id_idx ON tags (id);
ALTER TABLE tags ADD CONSTRAINT tags_pkey PRIMARY KEY USING INDEX tags_id_idx;
-- @case add foreign key
ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);
-- @case add foreign key not valid
ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
-- @case validate foreign key
-- @setup ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;
-- @case add check
ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);
-- @case add check not valid
ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID;
-- @case validate check
-- @setup ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_age_check;
-- @case add exclusion constraint
ALTER TABLE orders ADD CONSTRAINT orders_id_excl EXCLUDE USING btree (id WITH =);
-- @case drop constraint
-- @setup ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);
ALTER TABLE users DROP CONSTRAINT users_age_check;
-- @case drop foreign key
-- @setup ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE orders DROP CONSTRAINT orders_user_fk;
-- @case rename constraint
-- @setup ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);
ALTER TABLE users RENAME CONSTRAINT users_age_check TO users_age_positive;
-- @case rename column
ALTER TABLE users RENAME COLUMN bio TO about;
-- @case rename table
ALTER TABLE orders RENAME TO purchases;
-- @case rename index
ALTER INDEX orders_user_idx RENAME TO orders_user_id_idx;
-- @case drop column
ALTER TABLE users DROP COLUMN bio;
-- @case drop table
-- @setup CREATE TABLE scratch (id int);
DROP TABLE scratch;
-- @case create trigger
CREATE TRIGGER users_noop BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION noop();
-- @case create or replace trigger
-- @since 14
CREATE OR REPLACE TRIGGER users_noop BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION noop();
-- @case drop trigger
-- @setup CREATE TRIGGER users_noop BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION noop();
DROP TRIGGER users_noop ON users;
-- @case disable trigger
-- @setup CREATE TRIGGER users_noop BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION noop();
ALTER TABLE users DISABLE TRIGGER users_noop;
-- @case enable trigger
-- @setup CREATE TRIGGER users_noop BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION noop();
ALTER TABLE users ENABLE TRIGGER users_noop;
-- @case set fillfactor
ALTER TABLE users SET (fillfactor = 70);
-- @case set autovacuum parameter
ALTER TABLE users SET (autovacuum_enabled = false);
-- @case reset storage parameter
ALTER TABLE users RESET (fillfactor);
-- @case set statistics
ALTER TABLE users ALTER COLUMN email SET STATISTICS 500;
-- @case set column n_distinct
ALTER TABLE users ALTER COLUMN email SET (n_distinct = 100);
-- @case set storage
ALTER TABLE users ALTER COLUMN bio SET STORAGE EXTERNAL;
-- @case set compression
-- @since 14
ALTER TABLE users ALTER COLUMN bio SET COMPRESSION pglz;
-- @case set unlogged
ALTER TABLE users SET UNLOGGED;
-- @case set logged
-- @setup CREATE UNLOGGED TABLE staging (id int);
ALTER TABLE staging SET LOGGED;
-- @case set access method
-- @since 15
ALTER TABLE users SET ACCESS METHOD heap;
-- @case replica identity full
ALTER TABLE users REPLICA IDENTITY FULL;
-- @case enable row level security
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
-- @case force row level security
ALTER TABLE users FORCE ROW LEVEL SECURITY;
-- @case cluster on
ALTER TABLE users CLUSTER ON users_pkey;
-- @case attach partition
ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- @case detach partition
ALTER TABLE events DETACH PARTITION events_2024;
-- @case detach partition concurrently
-- @since 14
ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY;
-- @case create index
CREATE INDEX users_email_idx ON users (email);
-- @case create unique index
CREATE UNIQUE INDEX users_email_idx ON users (email);
-- @case create index concurrently
CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
-- @case drop index
DROP INDEX orders_user_idx;
-- @case drop index concurrently
DROP INDEX CONCURRENTLY orders_user_idx;
-- @case reindex index
REINDEX INDEX orders_user_idx;
-- @case reindex table
REINDEX TABLE orders;
-- @case reindex index concurrently
REINDEX INDEX CONCURRENTLY orders_user_idx;
-- @case reindex table concurrently
REINDEX TABLE CONCURRENTLY orders;
-- @case alter index set fillfactor
ALTER INDEX orders_user_idx SET (fillfactor = 80);
-- @case truncate
TRUNCATE orders;
-- @case cluster
CLUSTER users USING users_pkey;
-- @case vacuum
VACUUM users;
-- @case vacuum full
VACUUM FULL users;
-- @case analyze
ANALYZE users;
-- @case refresh materialized view
REFRESH MATERIALIZED VIEW user_counts;
-- @case refresh materialized view concurrently
REFRESH MATERIALIZED VIEW CONCURRENTLY user_counts;
-- @case lock table in share mode
LOCK TABLE users IN SHARE MODE;
-- @case lock table
LOCK TABLE users;
-- @case create table with references
CREATE TABLE reviews (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));
-- @case create table as
CREATE TABLE user_copy AS SELECT * FROM users;
-- @case create view
CREATE VIEW active_users AS SELECT id, email FROM users;
-- @case comment on table
COMMENT ON TABLE users IS 'people';
-- @case comment on column
COMMENT ON COLUMN users.email IS 'login';
-- @case grant
GRANT SELECT ON users TO PUBLIC;
-- @case create statistics
CREATE STATISTICS users_stats ON email, name FROM users;
-- @case alter type add value
ALTER TYPE mood ADD VALUE 'calm';
-- @case alter sequence
ALTER SEQUENCE ticket_seq RESTART WITH 10;
-- @case insert
INSERT INTO orders (id, user_id) VALUES (1000, 1);
-- @case update with where
UPDATE users SET age = age + 1 WHERE id = 1;
-- @case update whole table
UPDATE users SET age = age + 1;
-- @case delete
DELETE FROM orders WHERE id = 1;
-- @case select
SELECT count(*) FROM users;
-- @case select for update
SELECT * FROM users WHERE id = 1 FOR UPDATE;
-- @case select join
SELECT users.email, orders.total FROM users JOIN orders ON orders.user_id = users.id;
-- @case set lock_timeout
SET lock_timeout = '1s';
