-- Single-use join tokens for agent enrollment.
CREATE TABLE join_tokens (
    id           INTEGER PRIMARY KEY,
    -- SHA-256 of the secret, hex.
    hash         TEXT NOT NULL UNIQUE,
    -- Host groups the enrolled host joins, JSON array of names.
    groups       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    used_by_host TEXT
);

-- Agent certificate facts for the dashboard and `host list`.
ALTER TABLE hosts ADD COLUMN cert_not_after INTEGER;
ALTER TABLE hosts ADD COLUMN agent_version TEXT;
