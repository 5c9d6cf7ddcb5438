-- +goose Up
-- Every metadata document of the region, whatever its domain. Keys compare
-- byte by byte (COLLATE "C") so that range scans agree with SQLite.
CREATE TABLE documents (
    kind  TEXT COLLATE "C" NOT NULL,
    key   TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (kind, key)
);

-- The change log: one row per committed transaction, in commit order.
CREATE TABLE changes (
    seq     BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    ops     BYTEA  NOT NULL
);

-- Named integers of the store itself; last_seq is the newest change. Writers
-- lock its row for the whole transaction, which makes commit order equal to
-- sequence order.
CREATE TABLE store_state (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO store_state (name, value) VALUES ('last_seq', 0);

-- +goose Down
DROP TABLE store_state;
DROP TABLE changes;
DROP TABLE documents;
