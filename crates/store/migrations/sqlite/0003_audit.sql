-- The audit trail: append-only; each record's hash covers its content and
-- the previous record's hash, so editing, inserting or deleting a record
-- breaks the chain. `audit_head` holds the latest (seq, hash), updated in
-- the same transaction, so deleting the newest records is detected too.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
