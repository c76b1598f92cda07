-- Slashing-protection schema, version 1 (PostgreSQL). Same model as migrations/sqlite/0001.
-- A signing root stored as '\x' (empty) is UNKNOWN (imported without a root, or all zeros): it never
-- equals anything. Any 32-byte value is known, including 32 zero bytes recorded by this signer.
-- schema_version itself is created by the migration runner (signer/protection/postgres.py).

CREATE TABLE metadata (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per validator public key, with its low watermarks (NULL: no record of that kind yet).
-- A watermark is set by the first record of its kind, raised only by pruning (which deletes only
-- records below it), and never lowered (imports merge records but do not lower it).
CREATE TABLE validators (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_key       bytea  NOT NULL UNIQUE,
    min_slot         bigint,
    min_source_epoch bigint,
    min_target_epoch bigint
);

-- Complete block history (above the pruning watermark). Several rows per slot only after
-- importing slashable data.
CREATE TABLE signed_blocks (
    validator_id bigint NOT NULL REFERENCES validators (id),
    slot         bigint NOT NULL,
    signing_root bytea  NOT NULL,
    PRIMARY KEY (validator_id, slot, signing_root)
);

-- Complete attestation history. The primary key serves the double-vote check and the
-- "surrounded by an earlier vote" check (records with a higher target); the source index serves
-- the "surrounds an earlier vote" check (records with a higher source). Both range scans start at
-- the request and run towards the newest records, so a request at the head touches only neighbours.
CREATE TABLE signed_attestations (
    validator_id bigint NOT NULL REFERENCES validators (id),
    target_epoch bigint NOT NULL,
    source_epoch bigint NOT NULL,
    signing_root bytea  NOT NULL,
    PRIMARY KEY (validator_id, target_epoch, source_epoch, signing_root)
);

CREATE INDEX signed_attestations_by_source
    ON signed_attestations (validator_id, source_epoch, target_epoch);

-- CometBFT: the last height/round/step signed per chain and key (FilePV's LastSignState).
CREATE TABLE consensus_state (
    chain_id                     text     NOT NULL,
    public_key                   bytea    NOT NULL,
    height                       bigint   NOT NULL,
    round                        bigint   NOT NULL,
    step                         smallint NOT NULL,
    sign_bytes                   bytea,
    sign_bytes_without_timestamp bytea,
    signature                    bytea,
    PRIMARY KEY (chain_id, public_key)
);
