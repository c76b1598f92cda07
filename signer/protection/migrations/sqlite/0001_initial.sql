-- Slashing-protection schema, version 1 (SQLite).
-- A signing root stored as X'' (empty) is UNKNOWN (imported without a root, or all zeros): it never
-- equals anything. Any 32-byte value is known, including 32 zero bytes recorded by this signer.

CREATE TABLE metadata (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- One row per validator public key, with its low watermarks (NULL: no record of that kind yet).
-- A watermark is set by the first record of its kind and never lowered (imports merge records but
-- do not lower it).
CREATE TABLE validators (
    id               INTEGER PRIMARY KEY,
    public_key       BLOB NOT NULL UNIQUE,
    min_slot         INTEGER,
    min_source_epoch INTEGER,
    min_target_epoch INTEGER
);

-- Complete block history. Several rows per slot only after importing slashable data.
CREATE TABLE signed_blocks (
    validator_id INTEGER NOT NULL REFERENCES validators (id),
    slot         INTEGER NOT NULL,
    signing_root BLOB NOT NULL,
    PRIMARY KEY (validator_id, slot, signing_root)
) WITHOUT ROWID;

-- Complete attestation history. The primary key serves the double-vote check and the
-- "surrounded by an earlier vote" check (records with a higher target); the source index serves
-- the "surrounds an earlier vote" check (records with a higher source). Both range scans start at
-- the newest records, so a normal request touches only its neighbours.
CREATE TABLE signed_attestations (
    validator_id INTEGER NOT NULL REFERENCES validators (id),
    target_epoch INTEGER NOT NULL,
    source_epoch INTEGER NOT NULL,
    signing_root BLOB NOT NULL,
    PRIMARY KEY (validator_id, target_epoch, source_epoch, signing_root)
) WITHOUT ROWID;

CREATE INDEX signed_attestations_by_source
    ON signed_attestations (validator_id, source_epoch, target_epoch);

-- CometBFT: the last height/round/step signed per chain and key (FilePV's LastSignState).
CREATE TABLE consensus_state (
    chain_id                     TEXT    NOT NULL,
    public_key                   BLOB    NOT NULL,
    height                       INTEGER NOT NULL,
    round                        INTEGER NOT NULL,
    step                         INTEGER NOT NULL,
    sign_bytes                   BLOB,
    sign_bytes_without_timestamp BLOB,
    signature                    BLOB,
    PRIMARY KEY (chain_id, public_key)
) WITHOUT ROWID;
