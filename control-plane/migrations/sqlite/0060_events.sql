-- The events feed for SIEMs (`GET /api/v1/events?since=CURSOR`): audit, session and alert
-- events in the order they were recorded. The id is the cursor; AUTOINCREMENT so that an id
-- is never reused, even after the newest rows are deleted, and a client's cursor stays
-- meaningful across restarts. Rows are written in the same transaction as the change they
-- record, so none is lost across a restart.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
