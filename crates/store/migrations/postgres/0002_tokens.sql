-- One-time enrollment tokens. A token is usable once: redeeming it and
-- recording the certificate it bought happen in one transaction.
CREATE TABLE tokens (
    id             TEXT   PRIMARY KEY,  -- random 128-bit hex, the token's jti
    identities     TEXT   NOT NULL,     -- one identity per line, as displayed
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    used_by_serial TEXT
);
