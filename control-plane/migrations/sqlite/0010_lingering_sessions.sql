-- A login is tracked until no process of it remains: after its connection ended, while
-- processes it left run on, it is `lingering`, with who runs what. Kill orders get the
-- states a final scan can tell apart (`incomplete`: something remained) and `expired`
-- (never carried out: the agent reported no result before the order expired).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.

CREATE TABLE sessions_new (
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
    -- live: reported by a connected agent; lingering: its connection ended but processes
    -- of it remain; unknown: its agent is disconnected; ended: nothing of it remains.
    state           TEXT NOT NULL CHECK (state IN ('live', 'lingering', 'unknown', 'ended')),
    ended_at        INTEGER,
    -- JSON array of {pid, uid, account, command} while lingering, else '[]'.
    lingering       TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (host_id, id)
);
INSERT INTO sessions_new (host_id, id, account, key_id, serial, ca_fingerprint, key_fingerprint,
    source_address, source_port, started_at, tty, pids, state, ended_at)
SELECT host_id, id, account, key_id, serial, ca_fingerprint, key_fingerprint,
    source_address, source_port, started_at, tty, pids, state, ended_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_state ON sessions(state);
CREATE INDEX sessions_key_id ON sessions(key_id);
