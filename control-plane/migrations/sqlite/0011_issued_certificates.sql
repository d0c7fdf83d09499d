-- signoff's own user CA: every certificate it issued, and per-person issuance policy.
-- The serial is the row id: allocated here, in the same transaction as the audit row, so
-- two certificates never share one and revoke-by-serial names exactly one issuance.

CREATE TABLE issued_certificates (
    serial          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    ca_fingerprint  TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    -- JSON array of the principals the certificate carries.
    principals      TEXT NOT NULL,
    valid_after     INTEGER NOT NULL,
    valid_before    INTEGER NOT NULL,
    -- The certificate's source-address critical option, NULL when it has none.
    source_address  TEXT,
    issued_at       INTEGER NOT NULL,
    issued_by       TEXT NOT NULL
);
CREATE INDEX issued_certificates_user ON issued_certificates(user_id, valid_before);
CREATE INDEX issued_certificates_expiry ON issued_certificates(valid_before);

-- A person's own validity policy, over the server's [ca] defaults.
CREATE TABLE certificate_policies (
    user_id        INTEGER PRIMARY KEY REFERENCES users(id),
    default_ttl    INTEGER NOT NULL,
    max_ttl        INTEGER NOT NULL,
    source_address TEXT
);
