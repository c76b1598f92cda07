-- Schema version 2 (PostgreSQL): how the store came to hold a history the signer may trust.
-- Same model as migrations/sqlite/0002: a new or empty store while the key module holds keys is a
-- lost history; the signer refuses to sign until this table has its row (first import, the
-- operator's `signer protection init --keys-never-signed`, or `signer serve --dev` creating its keys
-- and store together). One row at most (id = 1): the first initialization wins, also when several
-- replicas initialize at once (INSERT ... ON CONFLICT DO NOTHING).

CREATE TABLE initialization (
    id             smallint    PRIMARY KEY CHECK (id = 1),
    initialized_at timestamptz NOT NULL DEFAULT now(),
    how            text        NOT NULL,
    who            text        NOT NULL
);

-- A database that already holds history when it is upgraded was in use: it is initialized.
INSERT INTO initialization (id, how, who)
SELECT 1, 'upgrade', 'schema migration 2 (the database held history)'
 WHERE EXISTS (SELECT 1 FROM validators) OR EXISTS (SELECT 1 FROM consensus_state);
