-- Live and past SSH sessions as agents report them, and the kill orders sent for them.

CREATE TABLE sessions (
    host_id         TEXT NOT NULL,
    id              TEXT NOT NULL,
    account         TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    serial          INTEGER NOT NULL,
    ca_fingerprint  TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    source_address  TEXT NOT NULL,
    source_port     INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    tty             TEXT NOT NULL,
    pids            TEXT NOT NULL,
    -- live: reported by a connected agent; unknown: its agent is disconnected; ended.
    state           TEXT NOT NULL CHECK (state IN ('live', 'unknown', 'ended')),
    ended_at        INTEGER,
    PRIMARY KEY (host_id, id)
);
CREATE INDEX sessions_state ON sessions(state);
CREATE INDEX sessions_key_id ON sessions(key_id);

CREATE TABLE kill_orders (
    -- The order's nonce, hex.
    nonce       TEXT PRIMARY KEY,
    host_id     TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    operator    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    order_bytes BLOB NOT NULL,
    signature   TEXT NOT NULL,
    -- sent, executed, refused, undelivered.
    state       TEXT NOT NULL,
    result      TEXT
);
