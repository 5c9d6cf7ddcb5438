-- +goose Up
-- Every metadata document of the region, whatever its domain.
CREATE TABLE documents (
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- The change log: one row per committed transaction, in commit order.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    ops     BLOB    NOT NULL
);

-- Named integers of the store itself; last_seq is the newest change.
CREATE TABLE store_state (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO store_state (name, value) VALUES ('last_seq', 0);

-- +goose Down
DROP TABLE store_state;
DROP TABLE changes;
DROP TABLE documents;
