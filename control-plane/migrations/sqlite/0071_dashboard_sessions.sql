-- Issue 18: dashboard web sessions and the login limiter live here, not in a server's
-- memory, so that several servers behind a load balancer without stickiness share them: a
-- login on one is honoured by every other, a logout on one ends the session everywhere, and
-- failed logins counted by one delay the next try on any.

-- A web session. Only the SHA-256 (hex) of the id in the browser's cookie is stored, so a
-- copy of the database does not log anyone in. Idle expiry and the maximum age are checked
-- by the queries; expired rows are deleted when a session is made.
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    operator   TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_last_seen ON dashboard_sessions (last_seen);

-- Failed dashboard logins of one name from one client address ('' when unknown): the
-- delay before the next try grows with failures (a delay, never a lockout). A pair is
-- forgotten a day after its last failure.
CREATE TABLE dashboard_login_failures (
    name         TEXT NOT NULL,
    address      TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    last_failure INTEGER NOT NULL,
    PRIMARY KEY (name, address)
);
CREATE INDEX dashboard_login_failures_last ON dashboard_login_failures (last_failure);
