-- The policy each gateway last reported (SHA-256 of its compiled rules), so a
-- change is audited once.
ALTER TABLE gateways ADD COLUMN policy TEXT NOT NULL DEFAULT '';
