-- signoff control plane schema.
--
-- Everything a host must know is versioned by revision: a row holds from `since_rev` (the
-- revision that created it) until `until_rev` (the revision that withdrew it; NULL while it
-- is live). The view of any host at any revision, and the change between two revisions,
-- are then plain queries, proportional to what changed rather than to the fleet.

CREATE TABLE revisions (
    revision   INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    summary    TEXT NOT NULL
);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE user_status (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    status    TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    since_rev INTEGER NOT NULL,
    until_rev INTEGER
);
CREATE UNIQUE INDEX user_status_live ON user_status(user_id) WHERE until_rev IS NULL;

CREATE TABLE user_key_ids (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    key_id    TEXT NOT NULL,
    since_rev INTEGER NOT NULL,
    until_rev INTEGER
);
-- A certificate key ID names exactly one person.
CREATE UNIQUE INDEX user_key_ids_live ON user_key_ids(key_id) WHERE until_rev IS NULL;
CREATE INDEX user_key_ids_user ON user_key_ids(user_id);

CREATE TABLE user_principals (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    principal TEXT NOT NULL,
    since_rev INTEGER NOT NULL,
    until_rev INTEGER
);
CREATE UNIQUE INDEX user_principals_live ON user_principals(user_id, principal) WHERE until_rev IS NULL;

CREATE TABLE user_keys (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    since_rev   INTEGER NOT NULL,
    until_rev   INTEGER
);
-- A plain key belongs to one person.
CREATE UNIQUE INDEX user_keys_live ON user_keys(fingerprint) WHERE until_rev IS NULL;
CREATE INDEX user_keys_user ON user_keys(user_id);

CREATE TABLE host_groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE hosts (
    id             TEXT PRIMARY KEY,
    hostname       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    removed_rev    INTEGER,
    acked_revision INTEGER NOT NULL DEFAULT 0,
    last_contact   INTEGER
);

CREATE TABLE host_group_members (
    host_id   TEXT NOT NULL REFERENCES hosts(id),
    group_id  INTEGER NOT NULL REFERENCES host_groups(id),
    since_rev INTEGER NOT NULL,
    until_rev INTEGER
);
CREATE UNIQUE INDEX host_group_members_live ON host_group_members(host_id, group_id) WHERE until_rev IS NULL;
CREATE INDEX host_group_members_group ON host_group_members(group_id);

CREATE TABLE grants (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id),
    account   TEXT NOT NULL,
    group_id  INTEGER NOT NULL REFERENCES host_groups(id),
    -- Unix seconds after which the grant no longer lets anyone in; NULL for never.
    not_after INTEGER,
    since_rev INTEGER NOT NULL,
    until_rev INTEGER
);
CREATE UNIQUE INDEX grants_live ON grants(user_id, account, group_id) WHERE until_rev IS NULL;
CREATE INDEX grants_user ON grants(user_id);
CREATE INDEX grants_group ON grants(group_id);
CREATE INDEX grants_since ON grants(since_rev);
CREATE INDEX grants_until ON grants(until_rev);

CREATE TABLE trusted_cas (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    since_rev   INTEGER NOT NULL,
    until_rev   INTEGER
);
CREATE UNIQUE INDEX trusted_cas_live_name ON trusted_cas(name) WHERE until_rev IS NULL;
CREATE UNIQUE INDEX trusted_cas_live_fp ON trusted_cas(fingerprint) WHERE until_rev IS NULL;

-- kind: 'key_id' (value = key ID), 'serial' (serial_lo..serial_hi), 'key' (value = OpenSSH
-- public key line), 'sha256' (value = SHA256:base64 fingerprint). ca_fingerprint is the CA
-- it applies to, or NULL for any CA (key_id) / not applicable (key, sha256).
CREATE TABLE revocations (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('key_id', 'serial', 'key', 'sha256')),
    ca_fingerprint TEXT,
    value          TEXT NOT NULL DEFAULT '',
    serial_lo      INTEGER,
    serial_hi      INTEGER,
    reason         TEXT NOT NULL DEFAULT '',
    since_rev      INTEGER NOT NULL,
    until_rev      INTEGER
);
CREATE UNIQUE INDEX revocations_live ON revocations(kind, ifnull(ca_fingerprint, ''), value, ifnull(serial_lo, 0), ifnull(serial_hi, 0)) WHERE until_rev IS NULL;
CREATE INDEX revocations_since ON revocations(since_rev);
CREATE INDEX revocations_until ON revocations(until_rev);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    -- SHA-256 of the secret, hex. Tokens are 256-bit random, so a fast hash is enough.
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- Append-only, hash-chained: hash = SHA-256(prev_hash || canonical row). `audit verify`
-- recomputes the chain and reports the first row that does not match.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    details   TEXT NOT NULL,
    revision  INTEGER,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
