-- Every certificate the CA signed, recorded before it is handed out.
CREATE TABLE certificates (
    serial            TEXT    PRIMARY KEY,  -- lower-case hex, no leading zeros
    issuer            TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    identities        TEXT    NOT NULL,     -- one identity per line, as displayed
    profile           TEXT    NOT NULL,
    not_before        INTEGER NOT NULL,     -- unix seconds
    not_after         INTEGER NOT NULL,
    fingerprint       TEXT    NOT NULL UNIQUE,
    der               BLOB    NOT NULL,
    issued_at         INTEGER NOT NULL,
    revoked_at        INTEGER,
    revocation_reason TEXT,
    CHECK ((revoked_at IS NULL) = (revocation_reason IS NULL))
);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every CRL signed; numbers strictly increase (RFC 5280 §5.2.3).
CREATE TABLE crls (
    number      INTEGER PRIMARY KEY,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    der         BLOB    NOT NULL
);
