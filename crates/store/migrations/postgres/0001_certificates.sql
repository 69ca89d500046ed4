-- Every certificate the CA signed, recorded before it is handed out.
CREATE TABLE certificates (
    serial            TEXT    PRIMARY KEY,  -- lower-case hex, no leading zeros
    issuer            TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    identities        TEXT    NOT NULL,     -- one identity per line, as displayed
    profile           TEXT    NOT NULL,
    not_before        BIGINT  NOT NULL,     -- unix seconds
    not_after         BIGINT  NOT NULL,
    fingerprint       TEXT    NOT NULL UNIQUE,
    der               BYTEA   NOT NULL,
    issued_at         BIGINT  NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT,
    CHECK ((revoked_at IS NULL) = (revocation_reason IS NULL))
);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every CRL signed; numbers strictly increase (RFC 5280 §5.2.3).
CREATE TABLE crls (
    number      BIGINT PRIMARY KEY,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der         BYTEA  NOT NULL
);
