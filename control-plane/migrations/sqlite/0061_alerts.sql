-- Issue 21. Alerts are events (kind 'alert'); an acknowledgement is recorded here, once
-- per alert, and audited. The index serves the dashboard's and API's "latest alerts" and
-- "latest refused attempts" without scanning the whole feed.
CREATE TABLE alert_acks (
    event_id INTEGER PRIMARY KEY REFERENCES events(id),
    by TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX events_by_kind ON events(kind, id);
