-- Schema version 2 (SQLite): how the store came to hold a history the signer may trust.
-- A store that is new or empty while the key module holds keys is a lost history, not a fresh start
-- (docs/ARCHITECTURE.md, "Slashing rules"): the signer refuses to sign until this table has its row,
-- written by the first import, by the operator's declaration that the keys have never signed
-- (signer protection init --keys-never-signed), or by `signer serve --dev` when it creates its keys
-- and store together. One row at most (id = 1): the first initialization wins.

CREATE TABLE initialization (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    initialized_at TEXT    NOT NULL,
    how            TEXT    NOT NULL,
    who            TEXT    NOT NULL
);

-- A database that already holds history when it is upgraded was in use: it is initialized.
INSERT INTO initialization (id, initialized_at, how, who)
SELECT 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'upgrade', 'schema migration 2 (the database held history)'
 WHERE EXISTS (SELECT 1 FROM validators) OR EXISTS (SELECT 1 FROM consensus_state);
