-- +goose Up
ALTER TABLE users ADD COLUMN handle text UNIQUE, ADD COLUMN org_id bigint REFERENCES orgs (id), ADD COLUMN active boolean NOT NULL DEFAULT true;
ALTER TABLE users ADD PRIMARY KEY (id);
CREATE INDEX users_email_idx ON users (email);
ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid() NOT NULL;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> '');
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE orgs ADD COLUMN owner_id bigint;
ALTER TABLE orgs ADD CONSTRAINT orgs_owner_fkey FOREIGN KEY (owner_id) REFERENCES users (id);
DROP INDEX users_old_idx;
REINDEX INDEX users_email_idx;
ALTER TABLE users RENAME COLUMN name TO full_name;

-- +goose Down
DROP INDEX users_email_idx;
