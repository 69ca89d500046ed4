-- Gateway telemetry, aggregated per minute: counts per (gateway, service,
-- client identity, kind, reason). kind is allowed, denied (reason = rule)
-- or failed (reason = handshake reason code).
CREATE TABLE telemetry (
    bucket  INTEGER NOT NULL,   -- unix seconds, start of the minute
    gateway TEXT    NOT NULL,
    service TEXT    NOT NULL,
    client  TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (bucket, gateway, service, client, kind, reason)
);
CREATE INDEX telemetry_bucket ON telemetry (bucket);

-- The gateways that reported, and the client CAs each one trusts.
CREATE TABLE gateways (
    gateway   TEXT    PRIMARY KEY,
    service   TEXT    NOT NULL,
    last_seen INTEGER NOT NULL,
    trust     TEXT    NOT NULL      -- one "sha256 subject" per line
);

-- Inventory queries sort and filter on these.
CREATE INDEX certificates_issued_at ON certificates (issued_at);
