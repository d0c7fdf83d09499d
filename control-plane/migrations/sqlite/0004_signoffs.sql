-- Single sign-off: one durable record per sign-off, with a per-host state.
--
-- A sign-off is a versioned row like every fact hosts must know: from the revision that
-- signed the person off (`since_rev`) until the revision that re-enabled them
-- (`until_rev`). While it is live, every host's view carries its signed statement, so a
-- host that was offline still receives it, whenever it comes back.

CREATE TABLE signoffs (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Unix seconds at which every host that must confirm had confirmed.
    completed_at INTEGER,
    -- Canonical statement bytes (signoff_proto::orders::SignoffStatement) and SSHSIG.
    statement    BLOB NOT NULL,
    signature    TEXT NOT NULL,
    since_rev    INTEGER NOT NULL,
    until_rev    INTEGER
);
CREATE UNIQUE INDEX signoffs_live ON signoffs(user_id) WHERE until_rev IS NULL;
CREATE INDEX signoffs_since ON signoffs(since_rev);
CREATE INDEX signoffs_until ON signoffs(until_rev);

-- The hosts a sign-off waits for: every host enrolled when it was made.
CREATE TABLE signoff_hosts (
    signoff_id   INTEGER NOT NULL REFERENCES signoffs(id),
    host_id      TEXT NOT NULL REFERENCES hosts(id),
    -- Unix seconds at which the host had applied the revision and ended every session.
    confirmed_at INTEGER,
    -- Session ids the host ended for this sign-off, JSON array.
    ended_sessions TEXT NOT NULL DEFAULT '[]',
    -- The host's last word when it could not enforce the statement.
    last_error   TEXT,
    PRIMARY KEY (signoff_id, host_id)
);
CREATE INDEX signoff_hosts_host ON signoff_hosts(host_id) WHERE confirmed_at IS NULL;

-- Revocations a sign-off added, so that re-enabling withdraws exactly those.
CREATE TABLE signoff_revocations (
    signoff_id    INTEGER NOT NULL REFERENCES signoffs(id),
    revocation_id INTEGER NOT NULL REFERENCES revocations(id),
    PRIMARY KEY (signoff_id, revocation_id)
);

-- Whether the host's agent holds a sync stream now (the control plane resets it at start).
ALTER TABLE hosts ADD COLUMN online INTEGER NOT NULL DEFAULT 0;
